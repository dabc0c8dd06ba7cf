// The stream hub takes rows committed by this process's writer straight from the commit (no read
// back), and reads only what it was not handed (another replica's commits, ranges it fell behind
// on). Checked here against the real PostgreSQL: records that went live from memory are identical
// to the same records read back from the database; with a second writer committing in between (a
// replica, heard through LISTEN/NOTIFY), every stream still gets every row once, in seq order.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { encodeCursor } from '../../src/api/cursor.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import type { LogRow } from '../../src/domain/types.js';
import type { LogFilter, LogRecord } from '../../src/gen/mycelis/memory/v1/memory.js';
import { waitFor } from '../helpers/wait.js';
import { makeRow } from './store-rows.js';
import { logger, openEnv, startApi, StreamCollector, type Api, type Env } from './api-harness.js';

const HUB_ROWS = 'mycelis_memory_api_stream_hub_rows_total';

async function hubRows(): Promise<{ handed: number; database: number }> {
  const { metricsRegistry } = await import('../../src/metrics.js');
  const m = metricsRegistry.getSingleMetric(HUB_ROWS);
  const values = m ? (await m.get()).values : [];
  const of = (source: string): number => values.filter((v) => v.labels['source'] === source).reduce((s, v) => s + v.value, 0);
  return { handed: of('handed'), database: of('database') };
}

/** Rows whose contexts vary in key order, nesting, numbers and text: what jsonb normalizes. */
function variedRow(i: number, source: string): LogRow {
  const ctx =
    i % 3 === 0
      ? `{"z":${i},"a":{"y":[1,2.5,0,1e+21,{"k":null}],"b":"é∑😀\\t"},"m":true,"bb":"x"}`
      : i % 3 === 1
        ? `{"bb":"x","m":false,"a":{"b":"","y":[]},"z":${i}}`
        : `{"source_agent_id":"${source}","n":${i / 7}}`;
  return makeRow({ source, message: `row ${i}`, intent: i % 2 ? 'tool_call' : 'text', level: i % 5 === 0 ? 'ERROR' : 'INFO', teamId: `team-${i % 4}`, traceId: i % 2 ? '' : `t${i}`, context: ctx });
}

const deliveredSeqs = (s: StreamCollector): number[] => s.records.map((r) => r.seq);
const recordsOf = (s: StreamCollector): LogRecord[] => s.responses.flatMap((r) => r.records);

/** Live streams from the current head (one per filter; none = one unfiltered), each answered once. */
async function liveFromHead(api: Api): Promise<{ start: number; streams: [StreamCollector] }>;
async function liveFromHead(api: Api, a: LogFilter, b: LogFilter): Promise<{ start: number; streams: [StreamCollector, StreamCollector] }>;
async function liveFromHead(api: Api, ...filters: LogFilter[]): Promise<{ start: number; streams: StreamCollector[] }> {
  const start = await api.core.logReader.maxSeq();
  const streams = (filters.length > 0 ? filters : [undefined]).map((filter) => new StreamCollector(api.client, { afterCursor: encodeCursor(start), ...(filter ? { filter } : {}) }));
  await waitFor('streams open', () => streams.every((s) => s.responses.length > 0));
  return { start, streams };
}

describe('api: StreamLogs live rows from the writer, and from the database', { timeout: 300_000 }, () => {
  let env: Env;
  before(async () => {
    env = await openEnv('api_stream_handover');
  });
  after(async () => {
    await env?.close();
  });

  it('records handed over from memory equal the same records read back from the database', async () => {
    const api = await startApi(env, { KEEPALIVE_INTERVAL: '1s' });
    try {
      const { start, streams: [live] } = await liveFromHead(api);
      const before = await hubRows();
      const written: LogRow[] = [];
      for (let b = 0; b < 8; b++) {
        const rows = Array.from({ length: 250 }, (_, i) => variedRow(b * 250 + i, `agent-${b % 3}`));
        // Every other batch repeats rows of the previous one: the duplicate path hands over only the new rows.
        const batch = b % 2 === 1 ? [...written.slice(-100), ...rows] : rows;
        const res = await env.writer.write({ rows: batch, rejects: [], registry: [] });
        assert.equal(res.inserted, rows.length);
        assert.equal(res.rowsPath, b % 2 === 1 ? 'duplicate_fallback' : 'copy');
        written.push(...rows);
      }
      const stored = (await env.db.pool.query<{ s: string }>('SELECT seq::text AS s FROM log_entries WHERE seq > $1 ORDER BY seq', [start])).rows.map((r) => Number(r.s));
      assert.equal(stored.length, 2000);
      await waitFor('live stream has every row', () => live.lastSeq === stored[stored.length - 1]);
      assert.deepEqual(deliveredSeqs(live), stored);
      const after = await hubRows();
      // Each row went out once, from one source or the other; most (normally all) were handed over.
      assert.equal(after.handed - before.handed + (after.database - before.database), 2000);
      assert.ok(after.handed - before.handed > 0, `rows handed over: ${after.handed - before.handed}`);

      // The same range from the database (a tail read), record for record and byte for byte.
      const history = new StreamCollector(api.client, { tail: 2000 });
      await waitFor('history read', () => history.lastSeq === stored[stored.length - 1]);
      assert.deepEqual(recordsOf(history), recordsOf(live));
      live.cancel();
      history.cancel();
    } finally {
      await api.close();
    }
  });

  it('a record whose context is nested 64 deep (the ingest limit) reaches a gRPC client, cut at 32 levels', async () => {
    const api = await startApi(env, { KEEPALIVE_INTERVAL: '1s' });
    try {
      const { start, streams: [live] } = await liveFromHead(api);
      let deep: unknown = 'bottom';
      for (let i = 0; i < 63; i++) deep = { [`k${i}`]: deep };
      const res = await env.writer.write({ rows: [makeRow({ context: JSON.stringify({ deep }) }), makeRow({ message: 'after the deep one' })], rejects: [], registry: [] });
      await waitFor('both records', () => live.lastSeq === res.lastSeq || live.error !== null);
      assert.equal(live.error, null, `the stream failed: ${live.error?.details}`);
      const first = recordsOf(live)[0]!;
      assert.match(JSON.stringify(first.entry?.contextSnapshot), /\[truncated: nested deeper than 32 levels\]/);
      // History (read back from the database) is cut the same way.
      const history = new StreamCollector(api.client, { afterCursor: encodeCursor(start) });
      await waitFor('history', () => history.lastSeq === res.lastSeq || history.error !== null);
      assert.deepEqual(recordsOf(history), recordsOf(live));
      live.cancel();
      history.cancel();
    } finally {
      await api.close();
    }
  });

  it('a second writer (another replica) committing in between: every stream gets every row once, in order', async () => {
    const api = await startApi(env, { KEEPALIVE_INTERVAL: '1s', STREAM_BUFFER: '50000' });
    let other: Database | undefined;
    try {
      // A replica: its own pool and writer; its commits reach this hub only through LISTEN/NOTIFY.
      other = await openDatabase({ kind: 'postgres', url: env.tdb.url, redactedUrl: env.tdb.url, sslMode: undefined, poolMax: 4, embeddedDataDir: '' }, logger);
      const replica = new BatchWriter(other, logger);
      const everything: LogFilter = { agentIds: [], teamIds: [], levels: [], intents: [], traceId: '' };
      const { start, streams: [all, onlyA] } = await liveFromHead(api, everything, { ...everything, agentIds: ['replica-a'] });
      const before = await hubRows();
      const write = async (w: BatchWriter, source: string): Promise<void> => {
        for (let b = 0; b < 40; b++) {
          await w.write({ rows: Array.from({ length: 200 }, () => makeRow({ id: randomUUID(), source })), rejects: [], registry: [] });
        }
      };
      await Promise.all([write(env.writer, 'replica-a'), write(replica, 'replica-b')]);
      const stored = (await env.db.pool.query<{ s: string; source: string }>('SELECT seq::text AS s, source FROM log_entries WHERE seq > $1 ORDER BY seq', [start])).rows;
      assert.equal(stored.length, 16_000);
      const last = Number(stored[stored.length - 1]!.s);
      const lastA = Number(stored.filter((r) => r.source === 'replica-a').at(-1)!.s);
      await waitFor('both streams caught up', () => all.lastSeq === last && onlyA.lastSeq === lastA, { timeoutMs: 120_000 });
      assert.equal(all.error, null);
      assert.deepEqual(deliveredSeqs(all), stored.map((r) => Number(r.s)));
      assert.deepEqual(deliveredSeqs(onlyA), stored.filter((r) => r.source === 'replica-a').map((r) => Number(r.s)));
      const after = await hubRows();
      assert.equal(after.handed - before.handed + (after.database - before.database), 16_000);
      assert.ok(after.database - before.database >= 8000, 'the replica\'s rows were read from the database');
      all.cancel();
      onlyA.cancel();
    } finally {
      await other?.close();
      await api.close();
    }
  });
});
