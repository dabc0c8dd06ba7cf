// log_entries partitioned by event time (DESIGN 5): what migrate leaves (partitions ahead and behind, a
// default partition, safe to rerun), exactly once across partitions (a row that waited in the default
// partition until its partition was created; copies whose timestamp normalize replaced by server time),
// the plans of the API's reads (seq reads through each partition's index, QueryLogs pruned to its time
// range), and retention by partition (dropped whole; only the default partition trimmed row by row).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { uuidV7 } from '../../src/domain/identity.js';
import { nowUs } from '../../src/domain/time.js';
import { createLogger } from '../../src/logger.js';
import { metricsRegistry } from '../../src/metrics.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { NO_FILTER, QUERY_PAGE_SQL, READ_RANGE_SQL, TAIL_SQL, queryPageParams } from '../../src/store/log-reader.js';
import { StoreMaintenance } from '../../src/store/maintenance.js';
import { migrate, migrationsDir } from '../../src/store/migrate.js';
import { DAY_MS, DEFAULT_PARTITION_SPEC, ensureLogPartitions, listLogPartitions, partitionName } from '../../src/store/partitions.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { makeRow, makeRows } from './store-rows.js';

const logger = createLogger('silent');

async function lookedUp(): Promise<number> {
  const m = metricsRegistry.getSingleMetric('mycelis_memory_store_rows_looked_up_by_id_total');
  return m ? (await m.get()).values.reduce((s, v) => s + v.value, 0) : 0;
}
const HOUR_US = 3_600_000_000;
const DAY_US = 24 * HOUR_US;

/** Every relation a JSON plan reads, with the node types reading it. */
function scans(plan: unknown): { rel: string; node: string }[] {
  const out: { rel: string; node: string }[] = [];
  const walk = (n: Record<string, unknown>): void => {
    if (typeof n['Relation Name'] === 'string') out.push({ rel: n['Relation Name'], node: String(n['Node Type']) });
    for (const c of (n['Plans'] as Record<string, unknown>[] | undefined) ?? []) walk(c);
  };
  walk((plan as [{ Plan: Record<string, unknown> }])[0].Plan);
  return out;
}

describe('store: log_entries partitioned by event time', () => {
  let tdb: TestDatabase;
  let db: Database;
  let writer: BatchWriter;

  before(async () => {
    tdb = await createTestDatabase('store_partitions');
    db = await openDatabase({ kind: 'postgres', url: tdb.url, redactedUrl: tdb.url, sslMode: undefined, poolMax: 4, embeddedDataDir: '' }, logger);
    writer = new BatchWriter(db, logger);
  });
  after(async () => {
    await db?.close();
    await tdb?.drop();
  });

  it('migrate leaves a partitioned table: daily partitions from 7 days back to 3 ahead, a default partition; a rerun changes nothing', async () => {
    const first = await migrate(db.pool, logger);
    assert.ok(first.applied.includes('004_partition_log_entries'));
    const kind = await db.pool.query("SELECT relkind::text AS k FROM pg_class WHERE oid = 'log_entries'::regclass");
    assert.equal(kind.rows[0].k, 'p');
    const parts = await listLogPartitions(db.pool);
    const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
    const daily = parts.filter((p) => !p.isDefault);
    assert.deepEqual(
      daily.map((p) => [p.fromMs, p.toMs]),
      Array.from({ length: 11 }, (_, i) => [today + (i - 7) * DAY_MS, today + (i - 6) * DAY_MS]),
    );
    assert.deepEqual(daily.map((p) => p.name), daily.map((p) => partitionName(p.fromMs!)));
    assert.equal(parts.filter((p) => p.isDefault).length, 1);
    // No legacy partition: the table was empty.
    assert.equal(daily.filter((p) => p.fromMs === null).length, 0);

    const again = await migrate(db.pool, logger);
    assert.deepEqual([again.applied, again.partitionsCreated], [[], []]);
    // The file itself is safe to run again.
    await db.pool.query(readFileSync(join(migrationsDir(), '004_partition_log_entries.sql'), 'utf8'));
    assert.deepEqual(await listLogPartitions(db.pool), parts);
    // Every partition has the parent's indexes (declared once on log_entries): the key, seven btrees, 006's GIN, the BRINs of 009 and 010.
    const idx = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid
        WHERE i.inhparent = 'log_entries'::regclass GROUP BY i.inhrelid`,
    );
    assert.ok(idx.rows.every((r) => r.n === 11), `indexes per partition: ${idx.rows.map((r) => r.n).join(',')}`);
  });

  it('a row that waited in the default partition moves into its partition when it is created; a redelivery then collapses', async () => {
    const t = nowUs() - 40 * DAY_US; // before every partition
    const row = makeRow({ timestampUs: t, source: 'early-bird' });
    const w = await writer.write({ rows: [row], rejects: [], registry: [] });
    assert.equal(w.inserted, 1);
    const where = async (): Promise<string[]> =>
      (await db.pool.query<{ p: string }>('SELECT tableoid::regclass::text AS p FROM log_entries WHERE id = $1', [row.id])).rows.map((r) => r.p);
    assert.deepEqual(await where(), ['log_entries_default']);

    // Its day gets a partition (as when the service starts with STREAM_MAX_AGE covering it).
    const ensured = await ensureLogPartitions(db.pool, DEFAULT_PARTITION_SPEC, { nowMs: t / 1000 });
    assert.ok(ensured.created.includes(partitionName(Math.floor(t / 1000 / DAY_MS) * DAY_MS)), ensured.created.join());
    assert.equal(ensured.adopted, 1);
    assert.deepEqual(await where(), [partitionName(Math.floor(t / 1000 / DAY_MS) * DAY_MS)]);
    const kept = await db.pool.query('SELECT seq::text AS s FROM log_entries WHERE id = $1', [row.id]);
    assert.equal(Number(kept.rows[0].s), w.firstSeq, 'the moved row keeps its seq');

    const before = await lookedUp();
    for (const useCopy of [true, false]) {
      const again = await new BatchWriter(db, logger, { useCopy }).write({ rows: [row, makeRow({ source: 'early-bird' })], rejects: [], registry: [] });
      assert.deepEqual([again.inserted, again.duplicates], [1, 1], `useCopy=${useCopy}`);
    }
    assert.deepEqual(await where(), [partitionName(Math.floor(t / 1000 / DAY_MS) * DAY_MS)]);
    assert.equal(await lookedUp(), before, 'rows stored under their own time are never looked up by id');
  });

  it('copies whose timestamp was replaced by server time (another value per copy) still collapse, in one batch and across batches', async () => {
    for (const useCopy of [true, false]) {
      const w = new BatchWriter(db, logger, { useCopy });
      const now = nowUs();
      // An event stamped 10 minutes ahead: normalize stores the server time instead; the id keeps the
      // event's own time. The audit copy is another stream message, so another server time.
      const eventMs = Math.floor(now / 1000) + 600_000;
      const id = uuidV7(eventMs, randomBytes(16).toString('hex'));
      const original = makeRow({ id, timestampUs: now, receivedAtUs: now, source: `skewed-${useCopy}` });
      const copy = { ...original, timestampUs: now + 3_000, receivedAtUs: now + 3_000 };
      const later = { ...original, timestampUs: now + DAY_US, receivedAtUs: now + DAY_US }; // in the next partition
      const a = await w.write({ rows: [original, copy], rejects: [], registry: [] });
      assert.deepEqual([a.inserted, a.duplicates], [1, 1], `one batch, useCopy=${useCopy}`);
      const b = await w.write({ rows: [copy, makeRow({ source: `skewed-${useCopy}` })], rejects: [], registry: [] });
      assert.deepEqual([b.inserted, b.duplicates], [1, 1], `next batch, useCopy=${useCopy}`);
      const c = await w.write({ rows: [later], rejects: [], registry: [] });
      assert.deepEqual([c.inserted, c.duplicates], [0, 1], `another partition, useCopy=${useCopy}`);
      // A later copy that arrived inside the 5-minute limit keeps the event's own time (the id's prefix).
      const own = { ...original, timestampUs: eventMs * 1000, receivedAtUs: eventMs * 1000 - 290_000_000 };
      const d = await w.write({ rows: [own], rejects: [], registry: [] });
      assert.deepEqual([d.inserted, d.duplicates], [0, 1], `own time, useCopy=${useCopy}`);
      const n = await db.pool.query('SELECT count(*)::int AS n FROM log_entries WHERE id = $1', [id]);
      assert.equal(n.rows[0].n, 1);
    }
    assert.ok((await lookedUp()) >= 10, 'the skewed rows were looked up by id');
  });

  it('reads by seq go through each partition\'s seq index; QueryLogs reads only the partitions of its time range', async () => {
    // 12 days of rows (today's partitions and older ones), analyzed as autovacuum would.
    const base = nowUs();
    const days = 8;
    for (let d = 0; d < days; d++) {
      await writer.write({ rows: makeRows(3000, { timestampUs: base - d * DAY_US - 1_000_000, source: `agent-${d % 3}` }), rejects: [], registry: [] });
    }
    await db.pool.query('ANALYZE log_entries');
    const explain = async (sql: string, params: unknown[]): Promise<{ rel: string; node: string }[]> =>
      scans((await db.pool.query(`EXPLAIN (FORMAT JSON) ${sql}`, params)).rows[0]['QUERY PLAN']);
    const head = Number((await db.pool.query('SELECT max(seq)::text AS m FROM log_entries')).rows[0].m);
    const filterNone = [null, null, null, null, null];

    for (const [what, sql, params] of [
      ['catch-up read', READ_RANGE_SQL, [...filterNone, head - 5000, head, 1000]],
      ['filtered read', READ_RANGE_SQL, [['agent-1'], null, null, null, null, head - 5000, null, 1000]],
      ['tail', TAIL_SQL, [...filterNone, head, 100]],
    ] as const) {
      const s = await explain(sql, [...params]);
      const parts = new Set(s.map((x) => x.rel));
      assert.ok(parts.size >= 11, `${what}: every partition searched (${parts.size})`);
      assert.deepEqual(s.filter((x) => !/Index/.test(x.node)), [], `${what}: index scans only`);
    }

    // One day [since, until): the planner keeps that day's partition and no other (not even the default one).
    const dayStartMs = Math.floor((base / 1000 - 2 * DAY_MS) / DAY_MS) * DAY_MS;
    const page = await explain(QUERY_PAGE_SQL, queryPageParams(NO_FILTER, { sinceUs: dayStartMs * 1000, untilUs: (dayStartMs + DAY_MS) * 1000, after: null, limit: 100 }));
    assert.deepEqual([...new Set(page.map((x) => x.rel))], [partitionName(dayStartMs)]);
    // The keyset position prunes too: a next page after a row of that day reads nothing newer.
    const next = await explain(
      QUERY_PAGE_SQL,
      queryPageParams(NO_FILTER, { sinceUs: null, untilUs: null, after: { timestampUs: dayStartMs * 1000 + 5, seq: 1 }, limit: 100 }),
    );
    const newer = [...new Set(next.map((x) => x.rel))].filter((r) => r !== 'log_entries_default' && r > partitionName(dayStartMs));
    assert.deepEqual(newer, [], 'no partition newer than the keyset position');
  });

  it('retention drops expired partitions whole and deletes row by row only in the default partition', async () => {
    const nowMs = Date.now();
    // Partitions 10 and 9 days back (as a database that has run that long has), rows in them.
    await ensureLogPartitions(db.pool, DEFAULT_PARTITION_SPEC, { nowMs: nowMs - 10 * DAY_MS });
    const oldRows = [...makeRows(500, { timestampUs: (nowMs - 10 * DAY_MS) * 1000, source: 'old' }), ...makeRows(500, { timestampUs: (nowMs - 9 * DAY_MS) * 1000, source: 'old' })];
    await writer.write({ rows: oldRows, rejects: [], registry: [] });
    const before = await listLogPartitions(db.pool);
    const expired = before.filter((p) => p.toMs !== null && p.toMs <= nowMs - 3 * DAY_MS).map((p) => p.name);
    assert.ok(expired.length >= 7, expired.join());
    const freshBefore = (await db.pool.query("SELECT count(*)::int AS n FROM log_entries WHERE timestamp >= now() - interval '2 days'")).rows[0].n as number;

    // Count every DELETE the pass issues and the rows each removed.
    const deletes: { sql: string; n: number }[] = [];
    const pool = new Proxy(db.pool, {
      get(target, prop, receiver) {
        if (prop !== 'query') return Reflect.get(target, prop, receiver) as unknown;
        return async (text: string, params?: unknown[]) => {
          const res = await (target.query as (t: string, p?: unknown[]) => Promise<{ rowCount: number | null }>).call(target, text, params);
          if (/^\s*DELETE/i.test(text)) deletes.push({ sql: text, n: res.rowCount ?? 0 });
          return res;
        };
      },
    });
    const m = new StoreMaintenance({ ...db, pool }, { logRetentionMs: 3 * DAY_MS, deadLetterRetentionMs: null, partitions: DEFAULT_PARTITION_SPEC }, logger);
    const pass = await m.runOnce();
    assert.deepEqual(pass.dropped.sort(), expired.sort());
    const after = await listLogPartitions(db.pool);
    assert.deepEqual(after.filter((p) => expired.includes(p.name)), [], 'expired partitions gone');
    assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM log_entries WHERE source = 'old'")).rows[0].n, 0);
    const left = await db.pool.query("SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'log_entries_dropping_%'");
    assert.equal(left.rows[0].n, 0, 'detached tables dropped');
    // Row-by-row deletes touched only the default partition.
    assert.ok(deletes.every((d) => /log_entries_default/.test(d.sql)), deletes.map((d) => d.sql).join('\n'));
    assert.equal(deletes.reduce((s, d) => s + d.n, 0), pass.trimmed);
    assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM log_entries WHERE timestamp >= now() - interval '2 days'")).rows[0].n, freshBefore);

    // Rows older than the cutoff in the default partition are deleted in batches.
    const outlier = makeRows(30, { timestampUs: (nowMs - 60 * DAY_MS) * 1000, source: 'outlier' });
    await writer.write({ rows: outlier, rejects: [], registry: [] });
    deletes.length = 0;
    const m2 = new StoreMaintenance({ ...db, pool }, { logRetentionMs: 3 * DAY_MS, deadLetterRetentionMs: null, partitions: DEFAULT_PARTITION_SPEC }, logger, { batchSize: 7 });
    const pass2 = await m2.runOnce();
    assert.deepEqual(pass2.dropped, []);
    assert.equal(pass2.trimmed, 30);
    assert.ok(deletes.every((d) => d.n <= 7 && /log_entries_default/.test(d.sql)));
    assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM log_entries WHERE source = 'outlier'")).rows[0].n, 0);
    // Partitions are not re-created behind the cutoff.
    const again = await m2.runOnce();
    assert.deepEqual([again.created, again.dropped], [[], []]);
  });

  it('a reader holding the table postpones partition upkeep to the next pass; the pass neither fails nor waits long', async () => {
    const nowMs = Date.now();
    const later = nowMs + 5 * DAY_MS; // partitions ahead are missing then, and older ones expire
    const reader = await db.pool.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM log_entries'); // AccessShare on every partition until COMMIT
      const m = new StoreMaintenance(db, { logRetentionMs: 3 * DAY_MS, deadLetterRetentionMs: null, partitions: DEFAULT_PARTITION_SPEC }, logger, {
        lockTimeoutMs: 100,
        now: () => later,
      });
      const t0 = Date.now();
      const blocked = await m.runOnce();
      assert.deepEqual([blocked.created, blocked.dropped], [[], []]);
      assert.ok(Date.now() - t0 < 15_000, `the pass gave up within its retries (${Date.now() - t0} ms)`);
      await reader.query('COMMIT');
      const next = await m.runOnce();
      assert.ok(next.created.length > 0 && next.dropped.length > 0, JSON.stringify(next));
    } finally {
      reader.release();
    }
  });
});
