// Upgrades in place, with data (DESIGN 5): the log becomes partitioned under rows that must all stay
// served, with their seq, so cursors taken before the upgrade stay valid.
//  (a) A database with only the directive's own schema and rows written its way (no migration table
//      of ours): every row kept and served by QueryLogs and StreamLogs, new rows after them.
//  (b) A database of this project's schema before partitioning (001-003) with rows, dead letters and a
//      live JetStream consumer, upgraded while the service runs on it: ingest keeps committing, a
//      StreamLogs tail open across the upgrade sees every record once in order, and a cursor taken
//      before the upgrade resumes after it with no gap and no duplicate.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { loadConfig } from '../../src/config/config.js';
import { startIngest, type RunningIngest } from '../../src/ingest/ingest.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { listDeadLetters } from '../../src/store/dead-letters.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { StoreMaintenance } from '../../src/store/maintenance.js';
import { migrate, migrationsDir } from '../../src/store/migrate.js';
import { DAY_MS, DEFAULT_PARTITION_SPEC, listLogPartitions } from '../../src/store/partitions.js';
import type { QueryLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, dropStreamAndClose, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { countOf, publishTraffic } from '../fault/fault-helpers.js';
import { logger, startApi, StreamCollector, unary, type Api, type Env } from './api-harness.js';
import { makeRows } from './store-rows.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function openDb(tdb: TestDatabase): Promise<Database> {
  const db = await openDatabase({ kind: 'postgres', url: tdb.url, redactedUrl: tdb.url, sslMode: undefined, poolMax: 12, embeddedDataDir: '' }, logger);
  cleanups.push(() => db.close());
  return db;
}

/** migrations/ up to and including `last` (this project's schema as of that file). */
function migrationsUpTo(last: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mm-upgrade-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['001_init_memory.sql', '002_service_columns.sql', '003_registry_field_order.sql']) {
    if (f.slice(0, 3) <= last) cpSync(join(migrationsDir(), f), join(dir, f));
  }
  return dir;
}

async function startEnv(tdb: TestDatabase, db: Database): Promise<{ env: Env; api: Api }> {
  const writer = new BatchWriter(db, logger);
  const notifier = new CommitNotifier(db, writer, logger);
  await notifier.start();
  const env: Env = { tdb, db, writer, notifier, close: async () => notifier.stop() };
  const api = await startApi(env);
  cleanups.push(async () => {
    await api.close();
    await notifier.stop();
  });
  return { env, api };
}

/** Every record QueryLogs returns, page after page (newest first). */
async function queryAll(api: Api, pageSize = 100): Promise<{ id: string }[]> {
  const out: { id: string }[] = [];
  let token = '';
  for (;;) {
    const res = await unary<object, QueryLogsResponse>(api.client.queryLogs.bind(api.client) as never, { pageSize, pageToken: token });
    for (const r of res.records) out.push({ id: r.id });
    if (!res.nextPageToken) return out;
    token = res.nextPageToken;
  }
}

describe('upgrade in place: the directive\'s database', () => {
  let tdb: TestDatabase;
  let db: Database;

  before(async () => {
    tdb = await createTestDatabase('upgrade_directive');
    cleanups.push(() => tdb.drop());
    db = await openDb(tdb);
  });

  it('keeps every row (seq in timestamp order) and serves it through QueryLogs and StreamLogs; new rows follow', async () => {
    // The directive's way: its schema, gen_random_uuid ids, time.Now()-ish timestamps, no seq, ACTIVE.
    await db.pool.query(readFileSync(join(migrationsDir(), '001_init_memory.sql'), 'utf8'));
    await db.pool.query(
      `INSERT INTO log_entries (trace_id, timestamp, level, source, intent, message, context)
       SELECT '', now() - (g * interval '37 minutes'), 'INFO', 'agent-' || (g % 7), 'text', 'old ' || g, jsonb_build_object('g', g)
       FROM generate_series(1, 600) g`,
    );
    // A clock-skewed row from the future, past the cutover (the next UTC midnight).
    await db.pool.query(
      `INSERT INTO log_entries (trace_id, timestamp, level, source, intent, message) VALUES ('', now() + interval '2 days', 'INFO', 'agent-skew', 'text', 'future')`,
    );
    await db.pool.query(`INSERT INTO agent_registry (agent_id, team_id, status, last_seen) VALUES ('agent-1', 'default', 'ACTIVE', now())`);
    const ids = (await db.pool.query<{ id: string }>('SELECT id::text FROM log_entries ORDER BY timestamp, created_at, id')).rows.map((r) => r.id);

    const res = await migrate(db.pool, logger);
    assert.deepEqual(res.applied, ['001_init_memory', '002_service_columns', '003_registry_field_order', '004_partition_log_entries', '005_registry_revision', '006_log_search', '007_registry_meta_times', '008_dead_letter_identity', '009_log_seq_ranges', '010_log_time_ranges']);
    const parts = await listLogPartitions(db.pool);
    const legacy = parts.find((p) => p.name === 'log_entries_legacy');
    assert.ok(legacy && legacy.fromMs === null && legacy.toMs === Math.floor(Date.now() / DAY_MS) * DAY_MS + DAY_MS, JSON.stringify(legacy));
    // Every row kept, numbered in timestamp order; the future one moved out of the legacy partition.
    const stored = await db.pool.query<{ id: string; seq: string; p: string }>('SELECT id::text, seq::text, tableoid::regclass::text AS p FROM log_entries ORDER BY log_entries.seq');
    assert.deepEqual(stored.rows.map((r) => r.id), ids);
    // 006: the rows of the legacy partition are searchable (the column was computed for them).
    const found = await db.pool.query<{ p: string; n: number }>(
      `SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM log_entries WHERE search @@ websearch_to_tsquery('simple', 'old') GROUP BY 1`,
    );
    assert.deepEqual(found.rows, [{ p: 'log_entries_legacy', n: 600 }]);
    assert.deepEqual(stored.rows.map((r) => Number(r.seq)), ids.map((_, i) => i + 1));
    assert.ok(stored.rows.slice(0, 600).every((r) => r.p === 'log_entries_legacy'));
    assert.notEqual(stored.rows[600]!.p, 'log_entries_legacy');
    assert.notEqual(stored.rows[600]!.p, 'log_entries_default', 'adopted by its partition, created right after the upgrade');
    assert.deepEqual((await db.pool.query('SELECT status, team_id FROM agent_registry')).rows, [{ status: 'IDLE', team_id: 'default' }]);

    const { env, api } = await startEnv(tdb, db);
    // QueryLogs: every row once, newest first.
    const all = await queryAll(api);
    assert.equal(all.length, 601);
    assert.deepEqual(new Set(all.map((r) => r.id)), new Set(ids));
    // StreamLogs: the last 10 by seq, then a cursor from among them resumes exactly after it, then live.
    const tail = new StreamCollector(api.client, { tail: 10 });
    await waitFor('tail', () => tail.records.length === 10);
    assert.deepEqual(tail.records.map((r) => r.id), ids.slice(-10));
    tail.cancel();
    const resumed = new StreamCollector(api.client, { afterCursor: tail.records[4]!.cursor });
    await waitFor('resumed history', () => resumed.records.length === 5);
    const fresh = await env.writer.write({ rows: makeRows(3, { source: 'after-upgrade' }), rejects: [], registry: [] });
    assert.equal(fresh.firstSeq, 602, 'new rows come after the upgraded ones');
    await waitFor('live after resume', () => resumed.records.length === 8);
    assert.deepEqual(resumed.records.map((r) => r.seq), [597, 598, 599, 600, 601, 602, 603, 604]);
    resumed.cancel();

    // Retention: the legacy partition reaches into today, so it cannot be dropped yet; its expired rows
    // go in batches, everything newer stays.
    const m = new StoreMaintenance(db, { logRetentionMs: 5 * 3_600_000, deadLetterRetentionMs: null, partitions: DEFAULT_PARTITION_SPEC }, logger);
    const pass = await m.runOnce();
    assert.deepEqual(pass.dropped, []);
    const expected = Array.from({ length: 600 }, (_, i) => i + 1).filter((g) => g * 37 > 5 * 60).length;
    assert.equal(pass.trimmed, expected);
    assert.equal(await countOf(db.pool, 'SELECT 1 FROM log_entries'), 604 - expected);
  });
});

describe('upgrade in place: this project\'s schema, with the service running on it', { timeout: 180_000 }, () => {
  const names = uniqueNatsNames('upgrade');
  let tdb: TestDatabase;
  let db: Database;
  let nc: NatsConnection;
  let ingest: RunningIngest | undefined;

  before(async () => {
    tdb = await createTestDatabase('upgrade_live');
    cleanups.push(() => tdb.drop());
    db = await openDb(tdb);
    nc = await connect({ servers: SHARED_NATS_URL });
    cleanups.push(() => dropStreamAndClose(nc, names.stream));
  });
  after(async () => {
    await ingest?.stop();
  });

  it('ingest keeps committing through the upgrade; a live tail and a cursor from before see every record once, in order', async () => {
    assert.deepEqual((await migrate(db.pool, logger, migrationsUpTo('003'))).applied, ['001_init_memory', '002_service_columns', '003_registry_field_order']);
    const config = loadConfig({
      ...tdb.env,
      LOG_LEVEL: 'silent',
      NATS_URL: SHARED_NATS_URL,
      STREAM_NAME: names.stream,
      CONSUMER_NAME: names.consumer,
      NATS_SUBJECTS: `${names.prefix}.>`,
      LOG_ENTRY_SUBJECTS: `${names.prefix}.log.>`,
      NATS_EXCLUDE_SUBJECTS: `${names.prefix}.council.*.request`,
      INGEST_BATCH_WAIT: '20ms',
    });
    const { env, api } = await startEnv(tdb, db);
    ingest = await startIngest({ config, nc, writer: env.writer, logger });

    // Before: rows over the last days, and dead letters.
    const dayAgo = Date.now() - DAY_MS;
    let tick = 0;
    await publishTraffic(nc, { count: 2_000, agents: 20, subjectPrefix: names.prefix, typeHeaders: true, seed: 1, clock: () => dayAgo + tick++ * 10 });
    for (let i = 0; i < 5; i++) nc.publish(`${names.prefix}.agent.broken.output`, new Uint8Array([0xff, 0xfe, 0x00, 0x81, i]));
    await nc.flush();
    await waitFor('rows before the upgrade', async () => (await countOf(db.pool, 'SELECT 1 FROM log_entries')) === 2_000 && (await countOf(db.pool, 'SELECT 1 FROM ingest_rejects')) === 5, { timeoutMs: 60_000 });

    // A live tail opened before, and a cursor taken before (the 1,500th record).
    const live = new StreamCollector(api.client, { tail: 1 });
    await waitFor('live tail attached', () => live.records.length === 1);
    const history = new StreamCollector(api.client, { tail: 600 });
    await waitFor('history', () => history.records.length === 600);
    history.cancel();
    const cursor = history.records[99]!;
    assert.equal(cursor.seq, 1_500);

    // The upgrade runs (another process would run `migrate`; here another pool) while traffic flows.
    const publishing = publishTraffic(nc, { count: 6_000, agents: 20, subjectPrefix: names.prefix, typeHeaders: true, seed: 2 });
    await waitFor('traffic flowing', async () => (await countOf(db.pool, 'SELECT 1 FROM log_entries')) > 2_300, { timeoutMs: 60_000 });
    const migrator = await openDb(tdb);
    const t0 = Date.now();
    const up = await migrate(migrator.pool, logger);
    const upgradeMs = Date.now() - t0;
    assert.deepEqual(up.applied, ['004_partition_log_entries', '005_registry_revision', '006_log_search', '007_registry_meta_times', '008_dead_letter_identity', '009_log_seq_ranges', '010_log_time_ranges']);
    assert.equal(await publishing, 6_000);
    await waitFor('every row stored', async () => (await countOf(db.pool, 'SELECT 1 FROM log_entries')) === 8_000, { timeoutMs: 90_000 });
    const rowsAt = await db.pool.query<{ p: string; n: number }>('SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM log_entries GROUP BY 1 ORDER BY 1');
    process.stdout.write(`# upgrade under ingest took ${upgradeMs} ms; rows by partition: ${JSON.stringify(rowsAt.rows)}\n`);
    assert.equal((await db.pool.query("SELECT relkind::text AS k FROM pg_class WHERE oid = 'log_entries'::regclass")).rows[0].k, 'p');
    assert.ok(rowsAt.rows.some((r) => r.p === 'log_entries_legacy' && r.n >= 2_000));

    // seq is still gap-free where it matters: the stored seqs are unique and every tail saw them all.
    const seqs = (await db.pool.query<{ s: string }>('SELECT seq::text AS s FROM log_entries ORDER BY log_entries.seq')).rows.map((r) => Number(r.s));
    assert.equal(new Set(seqs).size, 8_000);
    const top = seqs.at(-1)!;
    await waitFor('live tail caught up', () => live.lastSeq === top, { timeoutMs: 30_000 });
    assert.deepEqual(live.records.map((r) => r.seq), seqs.filter((s) => s >= live.records[0]!.seq), 'live tail: every record once, in seq order');
    live.cancel();

    const resumed = new StreamCollector(api.client, { afterCursor: cursor.cursor });
    await waitFor('resumed from the cursor taken before', () => resumed.lastSeq === top, { timeoutMs: 30_000 });
    assert.deepEqual(resumed.records.map((r) => r.seq), seqs.filter((s) => s > cursor.seq), 'resumed: no gap, no duplicate');
    // And it stays live: new traffic after the upgrade arrives on it.
    await publishTraffic(nc, { count: 50, agents: 5, subjectPrefix: names.prefix, typeHeaders: true, seed: 3 });
    await waitFor('live after the upgrade', () => resumed.records.length === seqs.filter((s) => s > cursor.seq).length + 50, { timeoutMs: 30_000 });
    resumed.cancel();

    // QueryLogs serves every row once; dead letters and the registry are as they were.
    const all = await queryAll(api, 1000);
    assert.equal(all.length, 8_050);
    assert.equal(new Set(all.map((r) => r.id)).size, 8_050);
    const dead = await listDeadLetters(db.pool, { limit: 100 });
    assert.equal(dead.length, 5);
    assert.ok((await countOf(db.pool, 'SELECT 1 FROM agent_registry')) >= 20);
  });
});
