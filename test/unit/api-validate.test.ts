// Validation of every MemoryService request (DESIGN 6) and the cursor / page-token formats.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../src/errors.js';
import {
  AgentStatus,
  GetRegistryRequest,
  GetTraceRequest,
  QueryLogsRequest,
  StreamLogsRequest,
  WatchRegistryRequest,
  type LogFilter,
} from '../../src/gen/mycelis/memory/v1/memory.js';
import { decodeCursor, decodePageToken, encodeCursor, encodePageToken, requestHash } from '../../src/api/cursor.js';
import { validateGetRegistry, validateGetTrace, validateQueryLogs, validateStreamLogs, validateWatchRegistry } from '../../src/api/validate.js';
import { createAuthenticator } from '../../src/api/auth.js';
import { UnauthenticatedError } from '../../src/errors.js';

const long = 'x'.repeat(257);
const many = Array.from({ length: 101 }, (_, i) => `a${i}`);
const f = (over: Partial<LogFilter>): LogFilter => ({ agentIds: [], teamIds: [], levels: [], intents: [], traceId: '', ...over });

function expectField(fn: () => unknown, field: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
    assert.equal(err.field, field);
    assert.ok(err.message.startsWith(`${field}: `));
    return true;
  });
}

describe('api validation', () => {
  const streamCases: [string, Partial<StreamLogsRequest>, string][] = [
    ['unknown level', { filter: f({ levels: ['INFO', 'warn', 'LOUD'] }) }, 'filter.levels[2]'],
    ['too many agent ids', { filter: f({ agentIds: many }) }, 'filter.agent_ids'],
    ['too many team ids', { filter: f({ teamIds: many }) }, 'filter.team_ids'],
    ['too many intents', { filter: f({ intents: many }) }, 'filter.intents'],
    ['too many levels', { filter: f({ levels: Array.from({ length: 101 }, () => 'INFO') }) }, 'filter.levels'],
    ['long agent id', { filter: f({ agentIds: ['ok', long] }) }, 'filter.agent_ids[1]'],
    ['long team id', { filter: f({ teamIds: [long] }) }, 'filter.team_ids[0]'],
    ['long intent', { filter: f({ intents: [long] }) }, 'filter.intents[0]'],
    ['empty intent value', { filter: f({ intents: ['a', ''] }) }, 'filter.intents[1]'],
    ['long trace id', { filter: f({ traceId: long }) }, 'filter.trace_id'],
    ['tail over 10000', { tail: 10_001 }, 'tail'],
    ['tail with after_cursor', { tail: 5, afterCursor: encodeCursor(3) }, 'after_cursor'],
    ['malformed cursor', { afterCursor: 'not-a-cursor' }, 'after_cursor'],
    ['cursor with bad characters', { afterCursor: 'abc$%' }, 'after_cursor'],
  ];
  for (const [name, req, field] of streamCases) {
    it(`StreamLogs: ${name} -> ${field}`, () => expectField(() => validateStreamLogs(StreamLogsRequest.fromPartial(req)), field));
  }

  const queryCases: [string, Partial<QueryLogsRequest>, string][] = [
    ['page_size over 1000', { pageSize: 1001 }, 'page_size'],
    ['negative page_size', { pageSize: -1 }, 'page_size'],
    ['malformed token', { pageToken: 'garbage' }, 'page_token'],
    ['token of another method', { pageToken: encodePageToken('registry', 'h', { a: 'x', t: 1 }) }, 'page_token'],
    ['unknown level', { filter: f({ levels: ['trace'] }) }, 'filter.levels[0]'],
    ['since nanos out of range', { since: { seconds: '10', nanos: 1_000_000_000 } }, 'since'],
    ['until before since', { since: { seconds: '100', nanos: 0 }, until: { seconds: '50', nanos: 0 } }, 'until'],
    ['until seconds out of range', { until: { seconds: '999999999999999', nanos: 0 } }, 'until'],
  ];
  for (const [name, req, field] of queryCases) {
    it(`QueryLogs: ${name} -> ${field}`, () => expectField(() => validateQueryLogs(QueryLogsRequest.fromPartial(req)), field));
  }

  const registryCases: [string, Partial<GetRegistryRequest>, string][] = [
    ['page_size over 1000', { pageSize: 5000 }, 'page_size'],
    ['negative page_size', { pageSize: -3 }, 'page_size'],
    ['unspecified status', { statuses: [AgentStatus.AGENT_STATUS_IDLE, AgentStatus.AGENT_STATUS_UNSPECIFIED] }, 'statuses[1]'],
    ['unknown status number', { statuses: [42 as AgentStatus] }, 'statuses[0]'],
    ['too many team ids', { teamIds: many }, 'team_ids'],
    ['long team id', { teamIds: [long] }, 'team_ids[0]'],
    ['malformed token', { pageToken: '!!!' }, 'page_token'],
  ];
  for (const [name, req, field] of registryCases) {
    it(`GetRegistry: ${name} -> ${field}`, () => expectField(() => validateGetRegistry(GetRegistryRequest.fromPartial(req)), field));
  }

  const traceCases: [string, Partial<GetTraceRequest>, string][] = [
    ['missing trace id', {}, 'trace_id'],
    ['long trace id', { traceId: long }, 'trace_id'],
    ['NUL in trace id', { traceId: 'a\u0000b' }, 'trace_id'],
  ];
  for (const [name, req, field] of traceCases) {
    it(`GetTrace: ${name} -> ${field}`, () => expectField(() => validateGetTrace(GetTraceRequest.fromPartial(req)), field));
  }

  const watchCases: [string, Partial<WatchRegistryRequest>, string][] = [
    ['unspecified status', { statuses: [AgentStatus.AGENT_STATUS_UNSPECIFIED] }, 'statuses[0]'],
    ['too many statuses', { statuses: Array.from({ length: 101 }, () => AgentStatus.AGENT_STATUS_IDLE) }, 'statuses'],
    ['too many team ids', { teamIds: many }, 'team_ids'],
    ['empty team id', { teamIds: ['a', ''] }, 'team_ids[1]'],
  ];
  for (const [name, req, field] of watchCases) {
    it(`WatchRegistry: ${name} -> ${field}`, () => expectField(() => validateWatchRegistry(WatchRegistryRequest.fromPartial(req)), field));
  }

  it('accepts defaults and normalizes levels', () => {
    const s = validateStreamLogs(StreamLogsRequest.fromPartial({ filter: f({ levels: ['warn', 'Error'] }), tail: 10_000 }));
    assert.deepEqual(s.filter.levels, ['WARN', 'ERROR']);
    assert.equal(s.tail, 10_000);
    assert.equal(s.afterSeq, null);
    const q = validateQueryLogs(QueryLogsRequest.fromPartial({}));
    assert.equal(q.pageSize, 100);
    assert.equal(validateQueryLogs(QueryLogsRequest.fromPartial({ pageSize: 1000 })).pageSize, 1000);
    const r = validateGetRegistry(GetRegistryRequest.fromPartial({ statuses: [AgentStatus.AGENT_STATUS_OFFLINE] }));
    assert.deepEqual(r.statuses, ['OFFLINE']);
    assert.equal(r.pageSize, 100);
    assert.equal(validateGetTrace(GetTraceRequest.fromPartial({ traceId: 'wf-1' })), 'wf-1');
    const w = validateWatchRegistry(WatchRegistryRequest.fromPartial({ teamIds: ['t'], statuses: [AgentStatus.AGENT_STATUS_BUSY], snapshot: true }));
    assert.deepEqual([[...w.teamIds], [...w.statuses], w.snapshot], [['t'], ['BUSY'], true]);
  });
});

describe('api cursors and page tokens', () => {
  it('round-trips cursors, including 0 and large seqs', () => {
    for (const seq of [0, 1, 500, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER]) {
      const c = encodeCursor(seq);
      assert.match(c, /^[A-Za-z0-9_-]+$/);
      assert.equal(decodeCursor(c, 'after_cursor'), seq);
    }
  });

  it('rejects every single-character change of a cursor', () => {
    const c = encodeCursor(123_456);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    let rejected = 0;
    let total = 0;
    for (let i = 0; i < c.length; i++) {
      const other = alphabet[(alphabet.indexOf(c[i]!) + 17) % alphabet.length]!;
      const tampered = c.slice(0, i) + other + c.slice(i + 1);
      total++;
      try {
        const seq = decodeCursor(tampered, 'after_cursor');
        // Only the padding bits of the last character may change without changing the bytes.
        assert.equal(seq, 123_456);
      } catch (err) {
        assert.ok(err instanceof InvalidArgumentError);
        rejected++;
      }
    }
    assert.ok(rejected >= total - 1, `${rejected}/${total} tampered cursors rejected`);
    expectField(() => decodeCursor(c.slice(0, -2), 'after_cursor'), 'after_cursor');
    expectField(() => decodeCursor('', 'after_cursor'), 'after_cursor');
  });

  it('binds query page tokens to their filter and time range', () => {
    const req = QueryLogsRequest.fromPartial({ filter: f({ agentIds: ['b', 'a'], levels: ['info'] }), pageSize: 10 });
    const v = validateQueryLogs(req);
    const token = encodePageToken('logs', v.hash, { t: 1_700_000_000_000_000, s: 42 });
    // Same filter (different order/case), different page size: accepted (AIP-158).
    const again = validateQueryLogs(
      QueryLogsRequest.fromPartial({ filter: f({ agentIds: ['a', 'b'], levels: ['INFO'] }), pageSize: 50, pageToken: token }),
    );
    assert.deepEqual(again.after, { timestampUs: 1_700_000_000_000_000, seq: 42 });
    expectField(
      () => validateQueryLogs(QueryLogsRequest.fromPartial({ filter: f({ agentIds: ['a'] }), pageToken: token })),
      'page_token',
    );
    expectField(
      () =>
        validateQueryLogs(
          QueryLogsRequest.fromPartial({
            filter: f({ agentIds: ['a', 'b'], levels: ['INFO'] }),
            since: { seconds: '1', nanos: 0 },
            pageToken: token,
          }),
        ),
      'page_token',
    );
    // Tampering with the body is detected by the checksum.
    const raw = Buffer.from(token, 'base64url');
    raw[raw.length - 12] = raw[raw.length - 12]! ^ 0x01;
    expectField(() => validateQueryLogs(QueryLogsRequest.fromPartial({ ...req, pageToken: raw.toString('base64url') })), 'page_token');
  });

  it('binds registry page tokens to team and status filters', () => {
    const hash = validateGetRegistry(GetRegistryRequest.fromPartial({ teamIds: ['t1'] })).hash;
    const token = encodePageToken('registry', hash, { a: 'agent-9', t: 5 });
    const v = validateGetRegistry(GetRegistryRequest.fromPartial({ teamIds: ['t1'], pageToken: token }));
    assert.equal(v.afterAgentId, 'agent-9');
    assert.equal(v.asOfUs, 5);
    expectField(() => validateGetRegistry(GetRegistryRequest.fromPartial({ teamIds: ['t2'], pageToken: token })), 'page_token');
    expectField(
      () => validateGetRegistry(GetRegistryRequest.fromPartial({ teamIds: ['t1'], statuses: [AgentStatus.AGENT_STATUS_BUSY], pageToken: token })),
      'page_token',
    );
    assert.throws(() => decodePageToken('registry', token, requestHash('other'), 'page_token'), InvalidArgumentError);
  });
});

describe('api auth', () => {
  it('allows everything without tokens', () => {
    createAuthenticator([])(undefined);
  });
  it('checks bearer tokens: scheme case-insensitive, token case-sensitive', () => {
    const auth = createAuthenticator(['s3cret-Token', 'other']);
    auth('Bearer s3cret-Token');
    auth('bearer other');
    auth('BEARER s3cret-Token');
    for (const bad of [undefined, '', 's3cret-Token', 'Bearer s3cret-token', 'Bearer wrong', 'Basic s3cret-Token', 'Bearer s3cret-Token extra']) {
      assert.throws(
        () => auth(bad),
        (err: unknown) => err instanceof UnauthenticatedError && !err.message.includes('s3cret'),
        `expected rejection of ${String(bad)}`,
      );
    }
  });
});
