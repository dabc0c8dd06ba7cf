// Issue 16's measurements (phase `partitions` of `npm run bench`), each against the same data in the
// two layouts, in the same run:
//
//   1. upgrade in place: migration 004 over a plain log_entries of N rows (30 days; default 1,000,000),
//      the time it holds ACCESS EXCLUSIVE on the table; again with its two indexes built beforehand
//      CONCURRENTLY; and the directive's own database (001 only, rows without seq) through 002-004.
//   2. reads over 30 daily partitions vs one table: StreamLogs catch-up (records/s from a cursor far
//      behind, unfiltered and filtered by agent) and QueryLogs pages (the read phase's mix, plus one-day
//      time ranges), p50/p99. The API runs in this process on both databases (the service would
//      convert the one-table database at start).
//   3. retention of one day of N rows: partition drop (StoreMaintenance) vs the batched delete the
//      service did before partitions (DELETE … LIMIT 5,000 until done), while the service's own ingest
//      pipeline (startIngest + BatchWriter, in this process) drains a backlog: seconds, the drain
//      rate while it runs against the same drain without retention, and the longest pause between
//      two commits.
import { pino, type Logger as PinoLogger } from 'pino';
import { Writable } from 'node:stream';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientReadableStream } from '@grpc/grpc-js';
import type { NatsConnection } from 'nats';
import pg from 'pg';
import { encodeCursor } from '../src/api/cursor.js';
import { MemoryCore } from '../src/api/core.js';
import { startGrpcServer } from '../src/api/grpc-server.js';
import { loadConfig } from '../src/config/config.js';
import { StreamLogsRequest, type LogFilter, type MemoryServiceClient } from '../src/gen/mycelis/memory/v1/memory.js';
import { startIngest } from '../src/ingest/ingest.js';
import { BatchWriter } from '../src/store/batch-writer.js';
import { CommitNotifier } from '../src/store/commit-notifier.js';
import { openDatabase, type Database } from '../src/store/database.js';
import { StoreMaintenance } from '../src/store/maintenance.js';
import { migrate, migrationsDir } from '../src/store/migrate.js';
import { DAY_MS, DEFAULT_PARTITION_SPEC, ensureLogPartitions, listLogPartitions } from '../src/store/partitions.js';
import type { PrivateNats } from '../test/helpers/nats.js';
import { createTestDatabase, ADMIN_URL, type TestDatabase } from '../test/helpers/pg.js';
import { decodeLight, emptyFilter, makeClients, queryLogs } from './clients.js';
import { buildMessages, createStream, fmt, nowMs, publishAll, summarize, until, type Summary } from './lib.js';

export interface PartitionBenchOptions {
  readonly rows: number;
  readonly quick: boolean;
  readonly keep: boolean;
  readonly log: (msg: string) => void;
  readonly cleanup: (() => Promise<void>)[];
}

const silent = pino({ level: 'silent' });

/** A logger that keeps the `ms` of each applied migration (migrate logs it). */
function migrationTimer(): { logger: PinoLogger; ms: Record<string, number> } {
  const ms: Record<string, number> = {};
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        const o = JSON.parse(line) as { msg?: string; migration?: string; ms?: number };
        if (o.msg === 'migration applied' && o.migration) ms[o.migration.replace(/\.sql$/, '')] = o.ms ?? -1;
      }
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), ms };
}

/** migrations/ up to 003: this project's schema before partitions. */
function migrationsUpTo(last: '003'): string {
  const dir = mkdtempSync(join(tmpdir(), 'mm-bench-mig-'));
  for (const f of ['001_init_memory.sql', '002_service_columns.sql', '003_registry_field_order.sql']) {
    if (f.slice(0, 3) <= last) copyFileSync(join(migrationsDir(), f), join(dir, f));
  }
  return dir;
}

async function withPool<T>(url: string, f: (p: pg.Pool) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    return await f(pool);
  } finally {
    await pool.end();
  }
}

/**
 * n log rows spread evenly over [fromMs, fromMs + spanMs), in seq order = time order: 1,000 agents in 40
 * teams, the level/intent mix of the generated traffic, contexts of 250-450 bytes. `directive`: the
 * directive's columns only (no seq, team, subject).
 */
async function loadRows(pool: pg.Pool, n: number, fromMs: number, spanMs: number, directive = false): Promise<void> {
  const chunk = 250_000;
  for (let start = 0; start < n; start += chunk) {
    const k = Math.min(chunk, n - start);
    const cols = directive
      ? 'id, trace_id, timestamp, level, source, intent, message, context'
      : 'id, seq, trace_id, timestamp, level, source, intent, message, context, team_id, subject, received_at';
    const ts = `$1::timestamptz + ((g - 1)::float8 / $3::float8) * $2::interval`;
    const vals = directive
      ? `gen_random_uuid(), CASE WHEN g % 3 = 0 THEN md5((g / 7)::text) ELSE '' END, ${ts},
         (ARRAY['INFO','INFO','INFO','INFO','WARN','ERROR','DEBUG'])[1 + g % 7], 'agent-' || lpad((g % 1000)::text, 4, '0'),
         (ARRAY['heartbeat','tool_call','tool_result','text','event','log_error'])[1 + g % 6], 'message ' || g,
         jsonb_build_object('source_agent_id', 'agent-' || lpad((g % 1000)::text, 4, '0'), 'n', g, 'payload', repeat('x', 250 + g % 200))`
      : `gen_random_uuid(), nextval('log_entries_seq'), CASE WHEN g % 3 = 0 THEN md5((g / 7)::text) ELSE '' END, ${ts},
         (ARRAY['INFO','INFO','INFO','INFO','WARN','ERROR','DEBUG'])[1 + g % 7], 'agent-' || lpad((g % 1000)::text, 4, '0'),
         (ARRAY['heartbeat','tool_call','tool_result','text','event','log_error'])[1 + g % 6], 'message ' || g,
         jsonb_build_object('source_agent_id', 'agent-' || lpad((g % 1000)::text, 4, '0'), 'n', g, 'payload', repeat('x', 250 + g % 200)),
         'team-' || (g % 40), 'swarm.agent.agent-' || lpad((g % 1000)::text, 4, '0') || '.output', ${ts}`;
    await pool.query(`INSERT INTO log_entries (${cols}) SELECT ${vals} FROM generate_series($4::int, $5::int) g`, [
      new Date(fromMs),
      `${spanMs} milliseconds`,
      n,
      start + 1,
      start + k,
    ]);
  }
  await pool.query('VACUUM ANALYZE log_entries');
}

async function copyDatabase(template: TestDatabase, label: string, keep: boolean, cleanup: (() => Promise<void>)[]): Promise<TestDatabase> {
  const name = `${template.name.slice(0, 40)}_${label}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template.name}"`);
  } finally {
    await admin.end();
  }
  const url = ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  const db: TestDatabase = {
    name,
    url,
    env: { DATABASE_URL: url, MEMORY_STORE: 'postgres' },
    async drop() {
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
  if (!keep) cleanup.push(() => db.drop());
  return db;
}

async function freshDb(label: string, o: PartitionBenchOptions): Promise<TestDatabase> {
  const db = await createTestDatabase(`bench_${label}`);
  if (!o.keep) o.cleanup.push(() => db.drop());
  return db;
}

// ---------------------------------------------------------------------------------------------
// 1. Upgrade in place.

async function upgradePhase(plain: TestDatabase, o: PartitionBenchOptions): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { rows: o.rows };
  // (b) this project's schema with N rows: 004 alone.
  const b = await copyDatabase(plain, 'up', o.keep, o.cleanup);
  const timer = migrationTimer();
  await withPool(b.url, (p) => migrate(p, timer.logger));
  out['fromOwnSchema004Ms'] = timer.ms['004_partition_log_entries'];
  o.log(`upgrade: 004 over ${o.rows} rows held ACCESS EXCLUSIVE for ${timer.ms['004_partition_log_entries']} ms`);
  await b.drop();

  // The same with the two indexes built beforehand without blocking writes.
  const c = await copyDatabase(plain, 'pre', o.keep, o.cleanup);
  const t0 = nowMs();
  await withPool(c.url, async (p) => {
    await p.query('CREATE UNIQUE INDEX CONCURRENTLY log_entries_legacy_pkey ON log_entries (id, "timestamp")');
    await p.query('CREATE INDEX CONCURRENTLY log_entries_legacy_seq_idx ON log_entries (seq)');
  });
  out['prebuildConcurrentlyMs'] = Math.round(nowMs() - t0);
  const timer2 = migrationTimer();
  await withPool(c.url, (p) => migrate(p, timer2.logger));
  out['fromOwnSchemaPrebuilt004Ms'] = timer2.ms['004_partition_log_entries'];
  o.log(`upgrade: with the indexes prebuilt (${out['prebuildConcurrentlyMs']} ms, no write lock), 004 held it for ${timer2.ms['004_partition_log_entries']} ms`);
  await c.drop();

  // (a) the directive's database with N rows (no seq): 002 numbers them, 004 partitions.
  const d = await freshDb('up_directive', o);
  await withPool(d.url, async (p) => {
    // The directive's schema as the directive applies it: no migration table of ours.
    await p.query(readFileSync(join(migrationsDir(), '001_init_memory.sql'), 'utf8'));
    await loadRows(p, o.rows, Date.now() - 30 * DAY_MS, 30 * DAY_MS, true);
  });
  const timer3 = migrationTimer();
  await withPool(d.url, (p) => migrate(p, timer3.logger));
  out['fromDirectiveMs'] = timer3.ms;
  o.log(`upgrade: the directive's database: ${JSON.stringify(timer3.ms)} ms`);
  await d.drop();
  return out;
}

// ---------------------------------------------------------------------------------------------
// 2. Reads.

interface InProcessApi {
  client: MemoryServiceClient;
  close(): Promise<void>;
}

async function inProcessApi(db: TestDatabase): Promise<InProcessApi> {
  const config = loadConfig({ ...db.env, HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', INGEST_MODE: 'off', LOG_LEVEL: 'silent', DB_POOL_MAX: '10' });
  const store = await openDatabase(config.database, silent);
  const notifier = new CommitNotifier(store, null, silent);
  await notifier.start();
  const core = new MemoryCore({ db: store, notifier, config, logger: silent });
  const server = await startGrpcServer({ config, core, logger: silent });
  const [client] = makeClients(`127.0.0.1:${server.port}`, 1);
  return {
    client: client!,
    async close() {
      client!.close();
      await server.shutdown(4000);
      await notifier.stop();
      await store.close();
    },
  };
}

/** Receives records from `afterSeq` until `toSeq`; returns seconds and records. */
function catchUp(client: MemoryServiceClient, afterSeq: number, count: number, filter: LogFilter, timeoutMs = 300_000): Promise<{ seconds: number; records: number }> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    let records = 0;
    const call: ClientReadableStream<{ eventMs: number[] }> = client.makeServerStreamRequest(
      '/mycelis.memory.v1.MemoryService/StreamLogs',
      (req: StreamLogsRequest) => Buffer.from(StreamLogsRequest.encode(req).finish()),
      (buf: Buffer) => decodeLight(buf),
      { filter, afterCursor: encodeCursor(afterSeq), tail: 0 },
    );
    const timer = setTimeout(() => {
      call.cancel();
      reject(new Error(`catch-up: ${records} of ${count} records in ${timeoutMs} ms`));
    }, timeoutMs);
    call.on('data', (r: { eventMs: number[] }) => {
      records += r.eventMs.length;
      if (records >= count) {
        clearTimeout(timer);
        const seconds = (nowMs() - t0) / 1000;
        call.cancel();
        resolve({ seconds, records });
      }
    });
    call.on('error', (err: Error & { code?: number }) => {
      if (err.code === 1) return;
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function readsOn(db: TestDatabase, o: PartitionBenchOptions): Promise<Record<string, unknown>> {
  const head = await withPool(db.url, async (p) => Number((await p.query<{ m: string }>('SELECT max(seq)::text AS m FROM log_entries')).rows[0]!.m));
  const api = await inProcessApi(db);
  try {
    const behind = Math.min(o.quick ? 50_000 : 200_000, head);
    const all = await catchUp(api.client, head - behind, behind, emptyFilter());
    // One agent of 1,000 over the same range: the (source, seq) index of every partition.
    const agentCount = await withPool(db.url, async (p) =>
      Number((await p.query<{ n: string }>("SELECT count(*)::text AS n FROM log_entries WHERE source = 'agent-0007' AND seq > $1", [head - behind])).rows[0]!.n),
    );
    const f = emptyFilter();
    f.agentIds = ['agent-0007'];
    const one = await catchUp(api.client, head - behind, agentCount, f);

    const q: number[] = [];
    const day: number[] = [];
    const n = o.quick ? 100 : 300;
    const dayStart = Math.floor((Date.now() - 10 * DAY_MS) / DAY_MS) * DAY_MS;
    for (let i = 0; i < n; i++) {
      const filter = emptyFilter();
      const v = i % 5;
      if (v === 1) filter.teamIds = [`team-${i % 40}`];
      if (v === 2) filter.agentIds = [`agent-${String(i % 1000).padStart(4, '0')}`];
      if (v === 3) filter.levels = ['ERROR'];
      if (v === 4) filter.intents = ['tool_call'];
      let t = nowMs();
      let r = await queryLogs(api.client, { filter, pageSize: 100 });
      q.push(nowMs() - t);
      for (let p = 0; p < 2 && r.nextPageToken; p++) {
        t = nowMs();
        r = await queryLogs(api.client, { filter, pageSize: 100, pageToken: r.nextPageToken });
        q.push(nowMs() - t);
      }
      // One day, ten days back: what partition pruning is for.
      const since = dayStart + (i % 24) * 3_600_000;
      t = nowMs();
      await queryLogs(api.client, {
        filter,
        pageSize: 100,
        since: { seconds: String(since / 1000), nanos: 0 },
        until: { seconds: String((since + DAY_MS) / 1000), nanos: 0 },
      });
      day.push(nowMs() - t);
    }
    return {
      catchUpUnfiltered: { records: all.records, seconds: all.seconds, recordsPerSec: all.records / all.seconds },
      catchUpOneAgent: { records: one.records, seconds: one.seconds },
      queryLogsPageMs: summarize(q),
      queryLogsOneDayMs: summarize(day),
    };
  } finally {
    await api.close();
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Retention under ingest.

const OLD_BATCHED_DELETE = `
DELETE FROM log_entries WHERE id IN (
  SELECT id FROM log_entries WHERE timestamp < now() - make_interval(secs => $1::double precision / 1000) LIMIT $2)`;

interface DrainResult {
  events: number;
  seconds: number;
  eventsPerSec: number;
  /** Longest time between two commits while draining (ms). */
  maxCommitGapMs: number;
}

async function retentionOn(
  label: string,
  db: TestDatabase,
  nats: PrivateNats,
  nc: NatsConnection,
  o: PartitionBenchOptions,
  retain: (store: Database) => Promise<{ seconds: number; detail: unknown }>,
): Promise<Record<string, unknown>> {
  const stream = `BENCH_RET_${label.toUpperCase()}`;
  await createStream(nc, stream);
  const config = loadConfig({ ...db.env, NATS_URL: nats.url, STREAM_NAME: stream, CONSUMER_NAME: `bench-${label}`, LOG_LEVEL: 'silent', DB_POOL_MAX: '10' });
  const store = await openDatabase(config.database, silent);
  const writer = new BatchWriter(store, silent);
  let lastCommit = nowMs();
  let maxGap = 0;
  let recording = false;
  writer.onCommit(() => {
    const t = nowMs();
    if (recording) maxGap = Math.max(maxGap, t - lastCommit);
    lastCommit = t;
  });
  const ingest = await startIngest({ config, nc, writer, logger: silent });
  const count = async (): Promise<number> => Number((await store.pool.query<{ n: string }>('SELECT last_value::text AS n FROM log_entries_seq')).rows[0]!.n);
  const K = o.quick ? 30_000 : 100_000;
  const drain = async (seed: number, during?: () => Promise<unknown>): Promise<DrainResult & { during?: unknown }> => {
    const msgs = buildMessages(K, { agents: 1000, teams: 40, seed });
    const before = await count();
    recording = true;
    lastCommit = nowMs();
    maxGap = 0;
    const t0 = nowMs();
    const side = during?.();
    await publishAll(nc, msgs);
    await until(async () => (await count()) >= before + K, 600_000, 20, `${label}: drain`);
    const seconds = (nowMs() - t0) / 1000;
    recording = false;
    const gap = maxGap;
    const sideResult = side ? await side : undefined;
    return { events: K, seconds, eventsPerSec: K / seconds, maxCommitGapMs: Math.round(gap), ...(sideResult !== undefined ? { during: sideResult } : {}) };
  };
  try {
    await drain(1); // warm-up
    const without = await drain(2);
    let ret: { seconds: number; detail: unknown } | undefined;
    const withRetention = await drain(3, async () => {
      ret = await retain(store);
      return ret;
    });
    o.log(
      `retention ${label}: ${fmt(ret!.seconds, 2)} s; ingest ${fmt(withRetention.eventsPerSec)} events/s while it ran vs ${fmt(without.eventsPerSec)} without (longest pause between commits ${withRetention.maxCommitGapMs} vs ${without.maxCommitGapMs} ms)`,
    );
    return { retentionSeconds: ret!.seconds, detail: ret!.detail, ingestWithout: without, ingestDuring: { ...withRetention, during: undefined }, ratio: withRetention.eventsPerSec / without.eventsPerSec };
  } finally {
    await ingest.stop();
    await store.close();
    await nc.jetstreamManager().then((j) => j.streams.delete(stream)).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------

export async function partitionPhases(nats: PrivateNats, nc: NatsConnection, o: PartitionBenchOptions): Promise<Record<string, unknown>> {
  const results: Record<string, unknown> = {};
  const span = 30 * DAY_MS;
  const from = Math.floor((Date.now() - span) / DAY_MS) * DAY_MS + DAY_MS / 2;

  // This project's schema before partitions, N rows over 30 days.
  o.log(`partitions: loading ${o.rows} rows over 30 days into one table`);
  const plain = await freshDb('plain', o);
  const dir = migrationsUpTo('003');
  await withPool(plain.url, async (p) => {
    await migrate(p, silent, dir);
    await loadRows(p, o.rows, from, span - DAY_MS);
  });
  rmSync(dir, { recursive: true, force: true });

  results['upgrade'] = await upgradePhase(plain, o);

  o.log(`partitions: loading the same ${o.rows} rows into 30 daily partitions`);
  const parts = await freshDb('parts', o);
  await withPool(parts.url, async (p) => {
    await migrate(p, silent, undefined, { partitions: { ...DEFAULT_PARTITION_SPEC, behindMs: 31 * DAY_MS } });
    await loadRows(p, o.rows, from, span - DAY_MS);
  });
  const nParts = await withPool(parts.url, async (p) => (await listLogPartitions(p)).length);
  const oneTable = await readsOn(plain, o);
  const partitioned = await readsOn(parts, o);
  results['reads'] = { rows: o.rows, partitions: nParts, oneTable, partitioned };
  const r = (x: Record<string, unknown>): { c: { recordsPerSec: number }; q: Summary; d: Summary } => ({
    c: x['catchUpUnfiltered'] as { recordsPerSec: number },
    q: x['queryLogsPageMs'] as Summary,
    d: x['queryLogsOneDayMs'] as Summary,
  });
  o.log(
    `reads, one table vs ${nParts} partitions: catch-up ${fmt(r(oneTable).c.recordsPerSec)} vs ${fmt(r(partitioned).c.recordsPerSec)} records/s; ` +
      `QueryLogs p99 ${fmt(r(oneTable).q.p99)} vs ${fmt(r(partitioned).q.p99)} ms; one day p99 ${fmt(r(oneTable).d.p99)} vs ${fmt(r(partitioned).d.p99)} ms`,
  );
  await plain.drop();
  await parts.drop();

  // Retention of one day of N rows, 10 days old, LOG_RETENTION=3d.
  const oldDay = Math.floor((Date.now() - 10 * DAY_MS) / DAY_MS) * DAY_MS;
  o.log(`retention: loading one day of ${o.rows} rows (10 days old) into each layout`);
  const retPart = await freshDb('ret_part', o);
  await withPool(retPart.url, async (p) => {
    await migrate(p, silent);
    await ensureLogPartitions(p, DEFAULT_PARTITION_SPEC, { nowMs: Date.now() - 10 * DAY_MS });
    await loadRows(p, o.rows, oldDay + 60_000, DAY_MS - 120_000);
  });
  const retPlain = await freshDb('ret_plain', o);
  const dir3 = migrationsUpTo('003');
  await withPool(retPlain.url, async (p) => {
    await migrate(p, silent, dir3);
    await loadRows(p, o.rows, oldDay + 60_000, DAY_MS - 120_000);
  });
  rmSync(dir3, { recursive: true, force: true });

  const byDrop = await retentionOn('drop', retPart, nats, nc, o, async (store) => {
    const m = new StoreMaintenance(store, { logRetentionMs: 3 * DAY_MS, deadLetterRetentionMs: null, partitions: DEFAULT_PARTITION_SPEC }, silent);
    const t0 = nowMs();
    const pass = await m.runOnce();
    return { seconds: (nowMs() - t0) / 1000, detail: { droppedPartitions: pass.dropped.length, rowsDeletedOneByOne: pass.trimmed, ms: pass.ms } };
  });
  const byDelete = await retentionOn('delete', retPlain, nats, nc, o, async (store) => {
    const t0 = nowMs();
    let total = 0;
    let statements = 0;
    for (;;) {
      const n = (await store.pool.query(OLD_BATCHED_DELETE, [3 * DAY_MS, 5000])).rowCount ?? 0;
      total += n;
      statements++;
      if (n < 5000) break;
    }
    return { seconds: (nowMs() - t0) / 1000, detail: { rowsDeleted: total, statements } };
  });
  const leftover = await withPool(retPlain.url, async (p) => {
    const s = await p.query<{ dead: string; size: string }>(
      "SELECT n_dead_tup::text AS dead, pg_size_pretty(pg_total_relation_size('log_entries')) AS size FROM pg_stat_user_tables WHERE relname = 'log_entries'",
    );
    return s.rows[0];
  });
  results['retention'] = { rows: o.rows, partitionDrop: byDrop, batchedDelete: { ...byDelete, deadTuplesLeft: Number(leftover?.dead ?? 0), tableSizeAfter: leftover?.size } };
  await retPart.drop();
  await retPlain.drop();
  return results;
}
