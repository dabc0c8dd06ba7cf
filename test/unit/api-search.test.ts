// SearchLogs without a database: request validation (every rejection names its field), page tokens bound
// to the request and its order, snippet tidying, and the CLI's time flags and hit lines.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { InvalidArgumentError } from '../../src/errors.js';
import { SearchLogsRequest, SearchLogsRequest_Order as Order } from '../../src/gen/mycelis/memory/v1/memory.js';
import { encodePageToken } from '../../src/api/cursor.js';
import { MAX_QUERY_CHARS, validateSearchLogs } from '../../src/api/validate.js';
import { firstWindowRows, lexemesOf, matchesFirst, MAX_SNIPPET_CHARS, nextWalk, tidySnippet, walkFirst, widenWindowRows, WALK_FIRST_ROWS, WALK_MAX_ROWS } from '../../src/store/search-reader.js';
import { formatHit, parseTimeFlag, searchCommand } from '../../src/cli/search.js';
import { painter } from '../../src/cli/terminal.js';
import { SearchHitSchema } from '../../web/gen/mycelis/memory/v1/memory_pb.js';

function expectField(fn: () => unknown, field: string, msg?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
    assert.equal(err.field, field);
    if (msg) assert.match(err.message, msg);
    return true;
  });
}

const req = (over: Partial<SearchLogsRequest>): SearchLogsRequest => SearchLogsRequest.fromPartial({ query: 'permission denied', ...over });

describe('SearchLogs validation', () => {
  it('the query: required, trimmed, bounded, no NUL', () => {
    expectField(() => validateSearchLogs(req({ query: '' })), 'query', /required/);
    expectField(() => validateSearchLogs(req({ query: ' \n\t ' })), 'query', /required/);
    expectField(() => validateSearchLogs(req({ query: 'x'.repeat(MAX_QUERY_CHARS + 1) })), 'query', /longer than 1024/);
    expectField(() => validateSearchLogs(req({ query: 'a\u0000' })), 'query', /NUL/);
    assert.equal(validateSearchLogs(req({ query: '  "a b" -c  ' })).query, '"a b" -c');
    assert.equal(validateSearchLogs(req({ query: 'x'.repeat(MAX_QUERY_CHARS) })).query.length, MAX_QUERY_CHARS);
  });

  it('filters, page size, range and order as QueryLogs', () => {
    expectField(() => validateSearchLogs(req({ filter: { agentIds: [''], teamIds: [], levels: [], intents: [], traceId: '' } })), 'filter.agent_ids[0]');
    expectField(() => validateSearchLogs(req({ pageSize: 1001 })), 'page_size');
    expectField(() => validateSearchLogs(req({ since: { seconds: '100', nanos: 0 }, until: { seconds: '50', nanos: 0 } })), 'until');
    expectField(() => validateSearchLogs(req({ order: 9 as Order })), 'order', /unknown order 9/);
    const v = validateSearchLogs(req({ filter: { agentIds: [], teamIds: [], levels: ['warn'], intents: [], traceId: '' } }));
    assert.deepEqual([v.order, v.pageSize, v.filter.levels], ['newest', 100, ['WARN']]);
    assert.equal(validateSearchLogs(req({ order: Order.ORDER_RELEVANCE })).order, 'relevance');
    assert.equal(validateSearchLogs(req({ order: Order.ORDER_NEWEST })).order, 'newest');
  });

  it('page tokens are bound to the query, filter and order; a RELEVANCE token carries the rank and where the ranking starts', () => {
    const v = validateSearchLogs(req({}));
    const token = encodePageToken('search', v.hash, { t: 1_000_000, s: 7 });
    assert.deepEqual(validateSearchLogs(req({ pageToken: token })).after, { timestampUs: 1_000_000, seq: 7 });
    expectField(() => validateSearchLogs(req({ query: 'other', pageToken: token })), 'page_token', /different filter/);
    expectField(() => validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: token })), 'page_token', /different filter/);
    // The same query with other whitespace around it is the same request.
    assert.ok(validateSearchLogs(req({ query: ' permission denied ', pageToken: token })).after);
    const rv = validateSearchLogs(req({ order: Order.ORDER_RELEVANCE }));
    const rt = encodePageToken('search', rv.hash, { t: 5, s: 1, r: '0.0607927' });
    assert.equal(validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: rt })).afterRank, '0.0607927');
    for (const r of ['x', '1; DROP', '', 5]) {
      const bad = encodePageToken('search', rv.hash, { t: 5, s: 1, r: r as string });
      expectField(() => validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: bad })), 'page_token', /malformed/);
    }
    // A RELEVANCE token may carry where its ranking starts (the oldest match the first page ranked).
    const ft = encodePageToken('search', rv.hash, { t: 5, s: 1, r: '0.5', ft: 2_000_000, fs: 9 });
    assert.deepEqual(validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: ft })).rankFrom, { timestampUs: 2_000_000, seq: 9 });
    assert.equal(validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: rt })).rankFrom, null);
    for (const bad of [{ ft: 'x', fs: 1 }, { ft: 1 }, { fs: 1 }, { ft: 1.5, fs: 1 }, { ft: 1, fs: -1 }]) {
      const t = encodePageToken('search', rv.hash, { t: 5, s: 1, r: '0.5', ...bad } as Record<string, string | number>);
      expectField(() => validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: t })), 'page_token', /malformed/);
    }
    // ...and the window of the log it ranks in (matches with seq >= fw); tokens without one rank in the whole log.
    const fw = encodePageToken('search', rv.hash, { t: 5, s: 1, r: '0.5', ft: 2_000_000, fs: 9, fw: 640 });
    assert.equal(validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: fw })).rankWindow, 640);
    assert.equal(validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: ft })).rankWindow, null);
    for (const bad of [{ ft: 1, fs: 1, fw: 'x' }, { ft: 1, fs: 1, fw: 0 }, { ft: 1, fs: 1, fw: 2.5 }, { fw: 7 }]) {
      const t = encodePageToken('search', rv.hash, { t: 5, s: 1, r: '0.5', ...bad } as Record<string, string | number>);
      expectField(() => validateSearchLogs(req({ order: Order.ORDER_RELEVANCE, pageToken: t })), 'page_token', /malformed/);
    }
    // A QueryLogs token is not a SearchLogs token.
    expectField(() => validateSearchLogs(req({ pageToken: encodePageToken('logs', v.hash, { t: 1, s: 1 }) })), 'page_token', /another method/);
  });
});

describe('SearchLogs snippets', () => {
  it('whitespace folded; long ones cut, with an open highlight closed', () => {
    assert.equal(tidySnippet('  a\n\tb  «c» '), 'a b «c»');
    const long = `${'w '.repeat(148)}«${'x'.repeat(100)}» end`;
    const t = tidySnippet(long);
    assert.ok(t.length <= MAX_SNIPPET_CHARS + 2, String(t.length));
    assert.ok(t.endsWith('»…'), t.slice(-5));
    assert.equal(tidySnippet('😀'.repeat(400)).endsWith('…'), true);
    assert.ok(!/[\ud800-\udbff]…$/.test(tidySnippet(`a${'😀'.repeat(400)}`)), 'not cut inside a surrogate pair');
  });
});

describe('SearchLogs NEWEST: walks first for a phrase or a level/intent filter', () => {
  it('a phrase (as PostgreSQL prints the parsed query) walks first, words, AND, OR, NOT do not; a level or intent filter walks, a trace id never', () => {
    assert.equal(walkFirst("'context' <-> 'window'"), true);
    assert.equal(walkFirst("'exit' <-> 'status' & 'late'"), true);
    assert.equal(walkFirst("'a' <2> 'b'"), true);
    for (const q of ["'context'", "'context' & 'window'", "'heartbeat' & !'from'", "'edae' | 'denied'", '', undefined]) assert.equal(walkFirst(q), false, String(q));
    // A filter on a column of few values walks first; a team, an agent or a trace id does not.
    const f = { agentIds: [], teamIds: [], levels: [], intents: [], traceId: '' };
    assert.equal(walkFirst("'denied'", { ...f, levels: ['ERROR'] }), true);
    assert.equal(walkFirst("'denied'", { ...f, intents: ['tool_call'] }), true);
    assert.equal(walkFirst("'denied'", { ...f, teamIds: ['ops'], agentIds: ['a'] }), false);
    assert.equal(walkFirst("'a' <-> 'b'", { ...f, levels: ['ERROR'], traceId: 'wf-1' }), false);
  });

  it('a level or intent filter with words (not a phrase, not one trace) asks for the estimate first (matchesFirst)', () => {
    const f = { agentIds: [], teamIds: [], levels: [], intents: [], traceId: '' };
    assert.equal(matchesFirst("'denied'", { ...f, levels: ['ERROR'] }), true);
    assert.equal(matchesFirst("'denied' | 'refused'", { ...f, intents: ['tool_call'], teamIds: ['ops'] }), true);
    assert.equal(matchesFirst("'denied'", f), false);
    assert.equal(matchesFirst("'denied'", { ...f, teamIds: ['ops'] }), false);
    assert.equal(matchesFirst("'permission' <-> 'denied'", { ...f, levels: ['ERROR'] }), false);
    assert.equal(matchesFirst("'denied'", { ...f, levels: ['ERROR'], traceId: 'wf-1' }), false);
  });

  it('the next walk: the rows still needed at the density seen, a quarter more, within the bound; none when nothing matched or it would not fit', () => {
    // 256 walked, 4 matched, 101 wanted: 97 more at 1 in 64 is 6,208 rows, 7,760 with the margin.
    assert.equal(nextWalk(256, 4, 101), 7760);
    // No match seen: the index.
    assert.equal(nextWalk(WALK_FIRST_ROWS, 0, 101), null);
    // Too sparse for what is left of the bound.
    assert.equal(nextWalk(256, 1, 101), 32_000);
    assert.equal(nextWalk(512, 1, 101), null);
    assert.equal(nextWalk(WALK_MAX_ROWS, 100, 101), null);
    // A walk is never smaller than the first one, while the bound allows.
    assert.equal(nextWalk(256, 100, 101), WALK_FIRST_ROWS);
    assert.equal(nextWalk(WALK_MAX_ROWS - 100, 99, 101), null);
  });
});

describe('SearchLogs RELEVANCE: the window of the newest rows it ranks in', () => {
  it('the words a parsed query asks for, each once; an excluded word is not one', () => {
    assert.deepEqual(lexemesOf("'context' <-> 'window'"), ['context', 'window']);
    assert.deepEqual(lexemesOf("'a' <-> 'b' & !'c' | 'a'"), ['a', 'b']);
    assert.deepEqual(lexemesOf("'it''s' <2> 'ok'"), ["it's", 'ok']);
    // A word of an excluded group counts: an estimate can only be lower for it, the window larger (more read, never fewer matches).
    assert.deepEqual(lexemesOf("!( 'x' <-> 'y' )"), ['x', 'y']);
  });

  it('the first window holds the minimum with a quarter more at the estimated density; few matches rank the whole log', () => {
    // 15,000 of 1,000,000 rows: 2,000 of them in 166,667 rows.
    assert.equal(firstWindowRows(15_000, 1_000_000, 2_000, 16_384), 166_667);
    // Dense: never under the least window.
    assert.equal(firstWindowRows(400_000, 1_000_000, 2_000, 16_384), 16_384);
    // Up to twice the minimum, or nothing known: the whole log.
    assert.equal(firstWindowRows(4_000, 1_000_000, 2_000, 16_384), null);
    assert.equal(firstWindowRows(4_001, 1_000_000, 2_000, 16_384), 624_844);
    assert.equal(firstWindowRows(Number.NaN, 1_000_000, 2_000, 16_384), null);
    assert.equal(firstWindowRows(50_000, 0, 2_000, 16_384), null);
  });

  it('a window that held too few is widened to their density with a quarter more, at least doubled; 16 times when it held none', () => {
    assert.equal(widenWindowRows(100_000, 500, 2_000), 500_000);
    assert.equal(widenWindowRows(100_000, 1_900, 2_000), 200_000);
    assert.equal(widenWindowRows(100_000, 0, 2_000), 1_600_000);
  });
});

describe('cli search', () => {
  const now = Date.parse('2026-12-05T06:00:00Z');
  it('--since/--until: ISO 8601 times or ages', () => {
    assert.equal(parseTimeFlag(searchCommand, 'since', '2h', now), now - 7_200_000);
    assert.equal(parseTimeFlag(searchCommand, 'since', '30m', now), now - 1_800_000);
    assert.equal(parseTimeFlag(searchCommand, 'since', '1.5d', now), now - 129_600_000);
    assert.equal(parseTimeFlag(searchCommand, 'until', '2026-12-01T00:00:00Z', now), Date.parse('2026-12-01T00:00:00Z'));
    for (const bad of ['yesterday', '2h ago', '-1h', '12', '']) assert.throws(() => parseTimeFlag(searchCommand, 'since', bad, now), /--since must be/);
  });

  it('a hit line: time, level, agent, team, snippet (highlights kept in a pipe, bold on a terminal), trace', () => {
    const hit = create(SearchHitSchema, {
      record: { entry: { timestamp: timestampFromMs(now), level: 'ERROR', source: 'coder', teamId: 'ops', traceId: 'wf-1' } },
      snippet: 'open /etc/shadow: «Permission»\n«denied»',
      rank: 0.1,
    });
    assert.equal(formatHit(hit, painter(false), false), '2026-12-05T06:00:00.000Z ERROR coder [ops] open /etc/shadow: «Permission» «denied» trace=wf-1');
    const coloured = formatHit(hit, painter(true), true);
    assert.ok(coloured.includes('\x1b[1m\x1b[33mPermission\x1b[0m\x1b[0m') && !coloured.includes('«'), coloured);
  });
});
