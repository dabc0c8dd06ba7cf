// How SearchLogs reads (src/store/search-reader.ts), against PostgreSQL. NEWEST for a phrase (or with a
// level filter and a word of many matches; of few, its matches through GIN) walks the newest rows itself first: the pages it gives are exactly the matches in (timestamp, seq) order that
// PostgreSQL finds for the same query in one ordered scan, whether the walks fill the page, run out of
// rows, or hand over to the index; with filters, a time range and keyset positions; and a query that is
// not a phrase never walks. RELEVANCE ranks the newest matches only (a smaller bound here than
// RANK_MATCHES): every page of one ranking draws from the first page's set, newer matches committed
// since join it, older ones never do.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { nowUs, usToIso } from '../../src/domain/time.js';
import type { LogRow } from '../../src/domain/types.js';
import { NO_FILTER, type LogRowFilter } from '../../src/store/log-reader.js';
import { MATCHES_FIRST_MAX, RANK_MATCHES, SearchReader, WALK_FIRST_ROWS, type SearchRow } from '../../src/store/search-reader.js';
import { makeRow } from './store-rows.js';
import { openEnv, type Env } from './api-harness.js';

const N = 4000;

describe('search plans: NEWEST walks first for a phrase; RELEVANCE ranks the newest matches', { timeout: 120_000 }, () => {
  let env: Env;
  let reader: SearchReader;
  const t0 = nowUs() - 3_600_000_000;
  // Two rows share each timestamp (seq breaks the tie), oldest first.
  const tsOf = (i: number): number => t0 + Math.floor(i / 2) * 1000;

  before(async () => {
    env = await openEnv('search-walk');
    reader = new SearchReader(env.db);
    const rows: LogRow[] = [];
    for (let i = 0; i < N; i++) {
      let message = `routine step ${i}`;
      if (i < 3) message = `exit status 2 at ${i}`; // the oldest three only
      else if (i % 25 === 0) message = `context window exceeded at ${i}`; // dense: 159 rows
      else if (i % 25 === 1) message = `window context reversed ${i}`; // both words, not the phrase
      else if (i % 60 === 7) message = `handoff target chosen ${i}`; // 1 in 60
      else if (i % 300 === 11) message = `schema validation failed ${i}`; // 1 in 300
      rows.push(makeRow({ timestampUs: tsOf(i), message, context: '{}', teamId: i % 2 === 0 ? 'even' : 'odd', level: i % 3 === 0 ? 'ERROR' : 'INFO' }));
    }
    for (let i = 0; i < N; i += 1000) await env.writer.write({ rows: rows.slice(i, i + 1000), rejects: [], registry: [] });
    await env.db.pool.query('ANALYZE log_entries');
  });
  after(async () => {
    await env?.close();
  });

  /** Every match, newest first, from one ordered scan of PostgreSQL's own (the reference). */
  async function expected(query: string, f: LogRowFilter, sinceUs: number | null, untilUs: number | null): Promise<string[]> {
    const r = await env.db.pool.query<{ id: string }>(
      `SELECT id::text AS id FROM log_entries
        WHERE search @@ websearch_to_tsquery('simple', $1)
          AND ($2::text[] IS NULL OR team_id = ANY($2::text[])) AND ($3::text[] IS NULL OR level = ANY($3::text[]))
          AND ($4::timestamptz IS NULL OR timestamp >= $4) AND ($5::timestamptz IS NULL OR timestamp < $5)
        ORDER BY timestamp DESC, seq DESC`,
      [query, f.teamIds.length ? [...f.teamIds] : null, f.levels.length ? [...f.levels] : null, sinceUs === null ? null : usToIso(sinceUs), untilUs === null ? null : usToIso(untilUs)],
    );
    return r.rows.map((x) => x.id);
  }

  /** Every page as the API asks for it (page size + 1 rows, keyset from the last row shown). */
  async function pages(query: string, pageSize: number, f: LogRowFilter = NO_FILTER, sinceUs: number | null = null, untilUs: number | null = null): Promise<{ ids: string[]; plans: string[][] }> {
    const parsed = (await reader.parseQuery(query)).text;
    const ids: string[] = [];
    const plans: string[][] = [];
    let afterPos: { timestampUs: number; seq: number } | null = null;
    for (;;) {
      const { rows }: { rows: SearchRow[] } = await reader.page(f, { query, order: 'newest', sinceUs, untilUs, after: afterPos, afterRank: null, limit: pageSize + 1, parsed });
      plans.push(reader.lastPlan);
      const page = rows.slice(0, pageSize);
      ids.push(...page.map((r) => r.row.id));
      for (const r of page) assert.ok(r.snippet.includes('\u00ab'), `a highlighted snippet: ${r.snippet}`);
      if (rows.length <= pageSize) return { ids, plans };
      const last = page[page.length - 1]!;
      afterPos = { timestampUs: last.row.timestampUs, seq: last.row.seq };
    }
  }

  it('a dense phrase: the walks fill the pages, never the index; every match once, in order', async () => {
    const want = await expected('"context window"', NO_FILTER, null, null);
    assert.equal(want.length, 159);
    for (const size of [20, 100]) {
      const got = await pages('"context window"', size);
      assert.deepEqual(got.ids, want, `page size ${size}`);
      assert.equal(got.plans[0]![0], `walk ${WALK_FIRST_ROWS}`);
      assert.ok(!got.plans[0]!.includes('index'), `first page walked only: ${got.plans[0]!.join(', ')}`);
    }
  });

  it('a phrase only the oldest rows hold: no match in the first walk, the index gives the rest', async () => {
    const want = await expected('"exit status"', NO_FILTER, null, null);
    assert.equal(want.length, 3);
    const got = await pages('"exit status"', 20);
    assert.deepEqual(got.ids, want);
    assert.deepEqual(got.plans[0], [`walk ${WALK_FIRST_ROWS}`, 'index']);
  });

  it('sparser phrases, a phrase with an exclusion, filters and a time range: the same pages as one scan', async () => {
    const cases: [string, LogRowFilter, number | null, number | null][] = [
      ['"handoff target"', NO_FILTER, null, null],
      ['"schema validation"', NO_FILTER, null, null],
      ['"context window" -reversed', NO_FILTER, null, null],
      ['"context window"', { ...NO_FILTER, teamIds: ['even'], levels: ['ERROR'] }, null, null],
      ['"context window" or "handoff target"', NO_FILTER, tsOf(500), tsOf(3500)],
    ];
    for (const [q, f, since, until] of cases) {
      const want = await expected(q, f, since, until);
      assert.ok(want.length > 0, q);
      for (const size of [7, 50]) assert.deepEqual((await pages(q, size, f, since, until)).ids, want, `${q} ${JSON.stringify(f)} page ${size}`);
    }
  });

  it('a word with a level filter: its matches through GIN when few, else walked first; a team filter goes to the planner; the same pages', async () => {
    // 'routine' is in about 3,700 rows: at most MATCHES_FIRST_MAX, so its matches are read and the level tested on each.
    const want = await expected('routine', { ...NO_FILTER, levels: ['ERROR'] }, null, null);
    const errors = await pages('routine', 30, { ...NO_FILTER, levels: ['ERROR'] });
    assert.deepEqual(errors.ids, want);
    for (const p of errors.plans) assert.deepEqual(p, ['matches']);
    // With a bound below its estimate: walked first, as a common word's would be.
    const bounded = new SearchReader(env.db, RANK_MATCHES, 1000);
    const parsed = (await bounded.parseQuery('routine')).text;
    const first = await bounded.page({ ...NO_FILTER, levels: ['ERROR'] }, { query: 'routine', order: 'newest', sinceUs: null, untilUs: null, after: null, afterRank: null, limit: 31, parsed });
    assert.deepEqual(first.rows.map((r) => r.row.id), want.slice(0, 31));
    assert.equal(bounded.lastPlan[0], `walk ${WALK_FIRST_ROWS}`);
    // An intent filter, a time range and a later page: the same as one scan.
    const since = tsOf(1000);
    const intent = await pages('routine', 40, { ...NO_FILTER, intents: ['text'] }, since, null);
    assert.deepEqual(intent.ids, (await expected('routine', NO_FILTER, since, null)));
    assert.deepEqual(intent.plans[0], ['matches']);
    const team = await pages('routine', 500, { ...NO_FILTER, teamIds: ['odd'] });
    assert.deepEqual(team.ids, await expected('routine', { ...NO_FILTER, teamIds: ['odd'] }, null, null));
    for (const p of team.plans) assert.deepEqual(p, ['index']);
  });

  it('words that are not a phrase go to the planner at once, with the same pages', async () => {
    for (const q of ['context window', 'window', 'context -window', 'schema or exit']) {
      const got = await pages(q, 50);
      assert.deepEqual(got.ids, await expected(q, NO_FILTER, null, null), q);
      for (const p of got.plans) assert.deepEqual(p, ['index'], q);
    }
  });

  it('RELEVANCE ranks the newest matches only: pages of one ranking keep the first page\'s set (newer matches join, older never)', async () => {
    assert.equal(RANK_MATCHES, 10_000);
    const bound = 40;
    const small = new SearchReader(env.db, bound);
    // 100 rows with "marmot" among others words, so ranks differ (normalized by length) and tie often.
    const base = t0 + 10 * 3_600_000_000 - 3_600_000_000 * 9; // one hour after t0's rows
    const marmots = Array.from({ length: 100 }, (_, i) => makeRow({ timestampUs: base + i * 1000, message: `marmot ${'filler '.repeat(i % 7)}${i}`, context: '{}' }));
    await env.writer.write({ rows: marmots, rejects: [], registry: [] });
    const newest = await expected('marmot', NO_FILTER, null, null);
    assert.equal(newest.length, 100);
    const set = new Set(newest.slice(0, bound));

    const seen: string[] = [];
    const ranks: { rank: number; ts: number; seq: number }[] = [];
    let afterPos: { timestampUs: number; seq: number } | null = null;
    let afterRank: string | null = null;
    let rankFrom: { timestampUs: number; seq: number } | null = null;
    let pageNo = 0;
    for (;;) {
      const page = await small.page(NO_FILTER, { query: 'marmot', order: 'relevance', sinceUs: null, untilUs: null, after: afterPos, afterRank, rankFrom, limit: 8 });
      if (pageNo === 0) {
        // The oldest of the newest `bound` matches, for the token.
        const oldest = marmots[100 - bound]!;
        assert.deepEqual(page.rankFrom?.timestampUs, oldest.timestampUs);
        rankFrom = page.rankFrom;
      } else assert.equal(page.rankFrom, null, 'only the first page says where the ranking starts');
      const shown = page.rows.slice(0, 7);
      seen.push(...shown.map((r) => r.row.id));
      ranks.push(...shown.map((r) => ({ rank: Number(r.rankText), ts: r.row.timestampUs, seq: r.row.seq })));
      if (pageNo === 1) {
        // Mid-way: a newer match (joins the ranking; ranked below every match so far, as a long message,
        // so the keyset is not past it yet) and an older one (older than the set, and ranked lower still: without the set it would come on a later page).
        await env.writer.write({
          rows: [
            makeRow({ timestampUs: base + 200_000, message: `marmot ${'filler '.repeat(40)}late`, context: '{}' }),
            makeRow({ timestampUs: base - 5_000, message: `marmot ${'filler '.repeat(45)}ancient`, context: '{}' }),
          ],
          rejects: [],
          registry: [],
        });
      }
      pageNo++;
      if (page.rows.length <= 7) break;
      const last = shown[shown.length - 1]!;
      afterPos = { timestampUs: last.row.timestampUs, seq: last.row.seq };
      afterRank = last.rankText;
    }
    assert.equal(new Set(seen).size, seen.length, 'no duplicates');
    const late = (await expected('marmot late', NO_FILTER, null, null))[0]!;
    const old = (await expected('marmot ancient', NO_FILTER, null, null))[0]!;
    assert.deepEqual(new Set(seen), new Set([...set, late]), 'the newest 40 at the first page, and the one committed since that is newer');
    assert.ok(!seen.includes(old));
    for (let i = 1; i < ranks.length; i++) {
      const a = ranks[i - 1]!;
      const b = ranks[i]!;
      assert.ok(a.rank > b.rank || (a.rank === b.rank && (a.ts > b.ts || (a.ts === b.ts && a.seq > b.seq))), `order at ${i}`);
    }
    // Fewer matches than the bound: every one is ranked (the service's bound, 10,000).
    const all = await reader.page(NO_FILTER, { query: 'marmot', order: 'relevance', sinceUs: null, untilUs: null, after: null, afterRank: null, limit: 1000 });
    assert.equal(all.rows.length, 102);
  });

  it('RELEVANCE of a phrase ranks in a window of the newest rows (by seq) sized from its rarest word, widened while it holds too few; later pages keep it', async () => {
    // Windows of at least 40 rows, widened while they hold fewer than 12 matches.
    const windowed = new SearchReader(env.db, RANK_MATCHES, MATCHES_FIRST_MAX, 40, 12);
    const base = t0 + 2 * 3_600_000_000;
    // 300 rows with an "old wombat den" in one of 10, 5,000 others, then 300 with a "wombat den" in one of 10.
    const block = (from: number, words: string): LogRow[] =>
      Array.from({ length: 300 }, (_, i) => makeRow({ timestampUs: base + (from + i) * 1000, message: i % 10 === 0 ? `${words} ${'filler '.repeat(i % 7)}${i}` : `burrow ${from + i}`, context: '{}' }));
    await env.writer.write({ rows: block(0, 'old wombat den'), rejects: [], registry: [] });
    const gap = Array.from({ length: 5_000 }, (_, i) => makeRow({ timestampUs: base + (300 + i) * 1000, message: `tunnel ${i}`, context: '{}' }));
    await env.writer.write({ rows: gap, rejects: [], registry: [] });
    await env.writer.write({ rows: block(5_300, 'wombat den'), rejects: [], registry: [] });
    await env.db.pool.query('ANALYZE log_entries');
    const all = await expected('"wombat den"', NO_FILTER, null, null);
    const newest = new Set(all.slice(0, 30));
    assert.equal(all.length, 60);
    const phrase = { query: '"wombat den"', order: 'relevance' as const, sinceUs: null, untilUs: null, parsed: "'wombat' <-> 'den'" };

    // Its words are estimated at about 60 of about 9,700 rows each: a window of 2,000-odd rows, the newest 30 in it.
    const first = await windowed.page(NO_FILTER, { ...phrase, after: null, afterRank: null, limit: 5 });
    assert.equal(windowed.lastPlan.length, 1);
    assert.equal(windowed.lastPlan[0], `rank from ${first.rankWindow}`);

    // Every page of the ranking draws from that window: its 30 matches, and one committed since (newer,
    // so in the window and after the oldest ranked), never the 30 older ones.
    const seen: string[] = [];
    let pageNo = 0;
    for (let page = first; ; ) {
      const shown = page.rows.slice(0, 4);
      seen.push(...shown.map((r) => r.row.id));
      if (pageNo === 0) await env.writer.write({ rows: [makeRow({ timestampUs: base + 6_000_000, message: `wombat den ${'filler '.repeat(30)}late`, context: '{}' })], rejects: [], registry: [] });
      pageNo++;
      if (page.rows.length <= 4) break;
      const last = shown[shown.length - 1]!;
      const after = { timestampUs: last.row.timestampUs, seq: last.row.seq };
      page = await windowed.page(NO_FILTER, { ...phrase, after, afterRank: last.rankText, rankFrom: first.rankFrom, rankWindow: first.rankWindow, limit: 5 });
      assert.deepEqual(windowed.lastPlan, [`rank from ${first.rankWindow}`], 'a later page asks in the first page\'s window only');
      assert.equal(page.rankWindow, null);
    }
    const late = (await expected('wombat den late', NO_FILTER, null, null))[0]!;
    assert.equal(new Set(seen).size, seen.length, 'no duplicates');
    assert.deepEqual(new Set(seen), new Set([...newest, late]));

    // A phrase is estimated by its rarest word ('old': 30): its window of the newest rows holds none of
    // its matches, so it is asked again 16 times as wide, which is the whole log.
    const old = await windowed.page(NO_FILTER, { query: '"old wombat"', order: 'relevance', sinceUs: null, untilUs: null, after: null, afterRank: null, limit: 100, parsed: "'old' <-> 'wombat'" });
    assert.equal(windowed.lastPlan.length, 2, windowed.lastPlan.join(', '));
    assert.match(windowed.lastPlan[0]!, /^rank from \d+$/);
    assert.equal(windowed.lastPlan[1], 'rank all');
    assert.equal(old.rankWindow, null);
    assert.equal(old.rows.length, 30);
    // A phrase of few matches (here none) is ranked in the whole log at once.
    await windowed.page(NO_FILTER, { query: '"zzyzx den"', order: 'relevance', sinceUs: null, untilUs: null, after: null, afterRank: null, limit: 100, parsed: "'zzyzx' <-> 'den'" });
    assert.deepEqual(windowed.lastPlan, ['rank all']);
    // Words are never windowed (the planner bounds them): one ask in the whole log, all 61 matches.
    const words = await windowed.page(NO_FILTER, { query: 'wombat', order: 'relevance', sinceUs: null, untilUs: null, after: null, afterRank: null, limit: 100, parsed: "'wombat'" });
    assert.deepEqual(windowed.lastPlan, ['rank all']);
    assert.equal(words.rows.length, 61);
    assert.equal(words.rankWindow, null);
  });

  it('NEWEST through a word\'s matches with a level filter asks in the newest rows first (by event time: exact), widened when short', async () => {
    const windowed = new SearchReader(env.db, RANK_MATCHES, MATCHES_FIRST_MAX, 40);
    const base = t0 + 3 * 3_600_000_000;
    // An event committed first whose event time is the newest of all: a window by commit order would
    // miss it; a window by event time cannot.
    const early = makeRow({ timestampUs: base + 36_000_000_000, message: 'quokka early but newest', context: '{}', level: 'ERROR' });
    const rows = [early];
    for (let i = 0; i < 3_000; i++) {
      const quokka = i % 20 === 0;
      const level = quokka && i < 100 && i % 40 === 0 ? 'FATAL' : quokka && i % 40 === 0 ? 'ERROR' : 'INFO';
      rows.push(makeRow({ timestampUs: base + i * 1000, message: quokka ? `quokka ${i}` : `wallaby ${i}`, context: '{}', level }));
    }
    await env.writer.write({ rows, rejects: [], registry: [] });
    await env.db.pool.query('ANALYZE log_entries');
    const page = async (levels: string[]): Promise<string[]> => {
      const f: LogRowFilter = { ...NO_FILTER, levels };
      const got = await windowed.page(f, { query: 'quokka', order: 'newest', sinceUs: null, untilUs: null, after: null, afterRank: null, limit: 11, parsed: "'quokka'" });
      return got.rows.map((r) => r.row.id);
    };

    // ~150 matches among ~12,700 rows: a window of about 1,200 rows holds 11 at ERROR; one ask, the same page.
    const error = await page(['ERROR']);
    assert.equal(windowed.lastPlan.length, 1, windowed.lastPlan.join(', '));
    assert.match(windowed.lastPlan[0]!, /^matches from \d+$/);
    const reference = (await expected('quokka', { ...NO_FILTER, levels: ['ERROR'] }, null, null)).slice(0, 11);
    assert.equal(reference[0], early.id);
    assert.deepEqual(error, reference);

    // FATAL: three matches, all among the oldest of the block: the window is widened to the whole log.
    const fatal = await page(['FATAL']);
    assert.deepEqual(windowed.lastPlan.at(-1), 'matches');
    assert.ok(windowed.lastPlan.length >= 2);
    assert.deepEqual(fatal, await expected('quokka', { ...NO_FILTER, levels: ['FATAL'] }, null, null));
    assert.equal(fatal.length, 3);

    // A later page (a keyset position) asks in the whole log at once.
    const second = await windowed.page({ ...NO_FILTER, levels: ['ERROR'] }, { query: 'quokka', order: 'newest', sinceUs: null, untilUs: null, after: { timestampUs: base + 2_000_500, seq: Number.MAX_SAFE_INTEGER }, afterRank: null, limit: 11, parsed: "'quokka'" });
    assert.deepEqual(windowed.lastPlan, ['matches']);
    assert.deepEqual(second.rows.map((r) => r.row.id), (await expected('quokka', { ...NO_FILTER, levels: ['ERROR'] }, null, base + 2_000_500)).slice(0, 11));
  });
});
