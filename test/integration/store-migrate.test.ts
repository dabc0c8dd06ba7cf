// Migrations: applied twice (idempotent), concurrently (advisory lock), over a database written the
// directive's way (same schema, upgraded data), over dead letters stored twice (008), and a changed
// applied file is an error naming it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { createLogger } from '../../src/logger.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import type { Database } from '../../src/store/database.js';
import { migrate, migrationsDir } from '../../src/store/migrate.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { makeReject, makeRows } from './store-rows.js';

const logger = createLogger('silent');
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function fresh(label: string): Promise<{ tdb: TestDatabase; pool: pg.Pool }> {
  const tdb = await createTestDatabase(label);
  const pool = new pg.Pool({ connectionString: tdb.url, max: 3 });
  cleanups.push(async () => {
    await pool.end();
    await tdb.drop();
  });
  return { tdb, pool };
}

/** Tables, columns, indexes and extensions, partitions left out (which exist depends on the data and the day). */
async function schemaOf(pool: pg.Pool): Promise<unknown> {
  const cols = await pool.query(
    `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns c
     JOIN pg_class r ON r.relname = c.table_name AND r.relnamespace = 'public'::regnamespace
     WHERE table_schema = 'public' AND NOT r.relispartition ORDER BY table_name, column_name`,
  );
  const idx = await pool.query(
    `SELECT tablename, indexname, indexdef FROM pg_indexes i JOIN pg_class r ON r.relname = i.tablename AND r.relnamespace = 'public'::regnamespace
     WHERE schemaname = 'public' AND NOT r.relispartition ORDER BY indexname`,
  );
  const ext = await pool.query(`SELECT extname FROM pg_extension ORDER BY extname`);
  const kinds = await pool.query(`SELECT relname, relkind::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY relname`);
  return { cols: cols.rows, idx: idx.rows, ext: ext.rows, kinds: kinds.rows };
}

const ALL = ['001_init_memory', '002_service_columns', '003_registry_field_order', '004_partition_log_entries', '005_registry_revision', '006_log_search', '007_registry_meta_times', '008_dead_letter_identity', '009_log_seq_ranges', '010_log_time_ranges'];

describe('store: migrations', () => {
  it('apply once, then find nothing pending; two concurrent runs apply each file once', async () => {
    const { pool } = await fresh('mig_twice');
    const [a, b] = await Promise.all([migrate(pool, logger), migrate(pool, logger)]);
    assert.deepEqual([...a.applied, ...b.applied].sort(), ALL);
    // Partitions were created once, by whichever run came second or first, never twice.
    assert.equal(a.partitionsCreated.length + b.partitionsCreated.length, 11);
    const again = await migrate(pool, logger);
    assert.deepEqual(again.applied, []);
    const tracked = await pool.query('SELECT version, checksum FROM schema_migrations ORDER BY version');
    assert.equal(tracked.rowCount, ALL.length);
    assert.ok(tracked.rows.every((r: { checksum: string }) => /^[0-9a-f]{64}$/.test(r.checksum)));
  });

  it('each file is safe to run again right after itself (a file replayed by hand)', async () => {
    const { pool } = await fresh('mig_replay');
    for (const f of ALL) {
      const sql = readFileSync(join(migrationsDir(), `${f}.sql`), 'utf8');
      await pool.query(sql);
      const once = await schemaOf(pool);
      await pool.query(sql);
      assert.deepEqual(await schemaOf(pool), once, `${f} twice`);
    }
  });

  it('over a database the directive wrote: same schema, ACTIVE -> IDLE, seq in timestamp order before new rows', async () => {
    const { pool: ref } = await fresh('mig_ref');
    await migrate(ref, logger);
    await migrate(ref, logger);

    const { pool } = await fresh('mig_directive');
    // The directive's way: its schema, rows with gen_random_uuid ids, no seq, status ACTIVE, team default.
    await pool.query(readFileSync(join(migrationsDir(), '001_init_memory.sql'), 'utf8'));
    const times = ['2025-01-01T00:00:03Z', '2025-01-01T00:00:01Z', '2025-01-01T00:00:02Z', '2025-01-01T00:00:01Z'];
    for (const t of times) {
      await pool.query(
        `INSERT INTO log_entries (trace_id, timestamp, level, source, intent, message, context)
         VALUES ('', $1::timestamptz, 'INFO', 'agent-old', 'text', $1::text, '{"a":1}')`,
        [t],
      );
      await pool.query(
        `INSERT INTO agent_registry (agent_id, team_id, status, last_seen, meta) VALUES ('agent-old', 'default', 'ACTIVE', NOW(), $1)
         ON CONFLICT (agent_id) DO UPDATE SET status = 'ACTIVE', last_seen = NOW()`,
        [{ battery: 50 }],
      );
    }
    const res = await migrate(pool, logger);
    assert.deepEqual(res.applied, ALL);
    assert.deepEqual(await schemaOf(pool), await schemaOf(ref));
    // The old rows are one partition: the old table, attached whole up to the next UTC midnight.
    const legacy = await pool.query(
      `SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM log_entries GROUP BY 1`,
    );
    assert.deepEqual(legacy.rows, [{ p: 'log_entries_legacy', n: 4 }]);

    const rows = await pool.query(
      `SELECT log_entries.seq::int AS seq, timestamp, team_id, subject, received_at = created_at AS kept_received
       FROM log_entries ORDER BY log_entries.seq`,
    );
    assert.deepEqual(rows.rows.map((r: { seq: number }) => r.seq), [1, 2, 3, 4]);
    const ts = rows.rows.map((r: { timestamp: Date }) => r.timestamp.getTime());
    assert.deepEqual(ts, [...ts].sort((x, y) => x - y));
    assert.ok(rows.rows.every((r: { team_id: string; kept_received: boolean }) => r.team_id === '' && r.kept_received));
    const reg = await pool.query('SELECT status, team_id, meta, status_at FROM agent_registry');
    assert.deepEqual(reg.rows, [{ status: 'IDLE', team_id: 'default', meta: { battery: 50 }, status_at: null }]);

    // New rows come after the upgraded ones.
    const db: Database = { kind: 'postgres', pool, url: '', close: async () => undefined };
    const r = await new BatchWriter(db, logger).write({ rows: makeRows(3), rejects: [], registry: [] });
    assert.equal(r.firstSeq, 5);
    assert.equal(r.lastSeq, 7);
    // Migrating again changes nothing.
    assert.deepEqual((await migrate(pool, logger)).applied, []);
    assert.deepEqual(await schemaOf(pool), await schemaOf(ref));
  });

  it('008 over dead letters an earlier version stored twice: the copies go, the first stays (replayed if a copy was); new ones are keyed', async () => {
    const { pool } = await fresh('mig_rejects');
    const dir = mkdtempSync(join(tmpdir(), 'mm-mig-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    cpSync(migrationsDir(), dir, { recursive: true });
    rmSync(join(dir, '008_dead_letter_identity.sql'));
    await migrate(pool, logger, dir);
    // A TOASTed payload (incompressible, 64 KiB), and one that differs from it only in its last byte.
    const big = randomBytes(64 << 10);
    const other = Buffer.from(big);
    other[other.length - 1] = big[big.length - 1]! ^ 1;
    const rows: [string, number, string, Record<string, string>, Buffer, string | null][] = [
      ['first', 5, 's.a', { h: '1' }, big, null],
      ['copy replayed', 5, 's.a', { h: '1' }, big, '2026-01-02T00:00:00Z'],
      ['copy', 5, 's.a', { h: '1' }, big, null],
      ['other payload', 5, 's.a', { h: '1' }, other, null],
      ['other subject', 5, 's.b', { h: '1' }, big, null],
      ['other seq', 6, 's.a', { h: '1' }, big, null],
      ['other headers', 5, 's.a', { h: '2' }, big, null],
      ['no seq', 0, 's.a', { h: '1' }, big, null],
      ['no seq again', 0, 's.a', { h: '1' }, big, null],
      ['small', 7, 's.a', {}, Buffer.from('x'), null],
      ['small copy', 7, 's.a', {}, Buffer.from('x'), null],
    ];
    for (const [detail, seq, subject, headers, payload, replayed] of rows) {
      await pool.query(
        `INSERT INTO ingest_rejects (received_at, subject, headers, payload, reason, detail, stream_seq, replayed_at)
         VALUES (now(), $1, $2, $3, 'decode_error', $4, $5, $6)`,
        [subject, headers, payload, detail, seq, replayed],
      );
    }
    assert.deepEqual((await migrate(pool, logger)).applied, ['008_dead_letter_identity']);
    const kept = await pool.query<{ detail: string; replayed: string | null }>(
      `SELECT detail, to_char(replayed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS replayed FROM ingest_rejects ORDER BY id`,
    );
    assert.deepEqual(kept.rows, [
      { detail: 'first', replayed: '2026-01-02' },
      ...['other payload', 'other subject', 'other seq', 'other headers', 'no seq', 'no seq again', 'small'].map((detail) => ({ detail, replayed: null })),
    ]);

    // New dead letters carry their stream and are stored once per JetStream message.
    const w = new BatchWriter({ kind: 'postgres', pool, url: '', close: async () => undefined }, logger);
    const dl = makeReject({ streamName: 'SWARM', streamCreatedUs: Date.now() * 1000, streamSeq: 5, subject: 's.a', headers: { h: '1' }, payload: big });
    assert.equal((await w.write({ rows: [], rejects: [dl], registry: [] })).rejected, 1);
    assert.equal((await w.write({ rows: [], rejects: [dl], registry: [] })).rejectDuplicates, 1);
    assert.equal((await pool.query(`SELECT count(*)::int AS n FROM ingest_rejects WHERE stream_name = 'SWARM'`)).rows[0].n, 1);
  });

  it('a migration file changed after it was applied is an error naming the file', async () => {
    const { pool } = await fresh('mig_checksum');
    const dir = mkdtempSync(join(tmpdir(), 'mm-mig-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    cpSync(migrationsDir(), dir, { recursive: true });
    await migrate(pool, logger, dir);
    appendFileSync(join(dir, '002_service_columns.sql'), '\n-- edited\n');
    await assert.rejects(migrate(pool, logger, dir), (err: Error) => {
      assert.equal(err.name, 'MigrationError');
      assert.match(err.message, /002_service_columns\.sql/);
      return true;
    });
    // A new file is applied; a failing one names itself and rolls back.
    writeFileSync(join(dir, '002_service_columns.sql'), readFileSync(join(migrationsDir(), '002_service_columns.sql')));
    writeFileSync(join(dir, '003_broken.sql'), 'CREATE TABLE t_ok (x int);\nSELECT no_such_function();\n');
    await assert.rejects(migrate(pool, logger, dir), /003_broken\.sql/);
    const t = await pool.query("SELECT to_regclass('t_ok') AS t");
    assert.equal(t.rows[0].t, null);
  });
});
