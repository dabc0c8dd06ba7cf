// The registry is independent of delivery order (issue 7 scenario 1) through the real writer and
// PostgreSQL: the same events written in order, and shuffled across batches, leave identical rows
// (meta included: each key keeps the time of the event it came from, migration 007). And
// migration 003 backfills existing rows once.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createLogger } from '../../src/logger.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import type { Database } from '../../src/store/database.js';
import { migrate, migrationsDir } from '../../src/store/migrate.js';
import type { RegistryEvent } from '../../src/domain/types.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { makeEvent } from './store-rows.js';

const logger = createLogger('silent');
const T0 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z in µs

const ROW = `SELECT team_id, status, last_seen, meta, meta_at, last_error_summary, status_at, status_seq::int,
                    status_set_at, status_set_seq::int, team_at, team_seq::int, last_error_at, last_error_seq::int
             FROM agent_registry WHERE agent_id = $1`;

describe('store: registry order independence', () => {
  let tdb: TestDatabase;
  let pool: pg.Pool;
  const dirs: string[] = [];

  before(async () => {
    tdb = await createTestDatabase('store_reg_order');
    pool = new pg.Pool({ connectionString: tdb.url, max: 3 });
  });
  after(async () => {
    await pool?.end();
    await tdb?.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('003 backfills rows written before it, once; later runs of the file change nothing', async () => {
    // Migrate up to 002 only, write rows the 002 way, then apply the rest.
    const dir = mkdtempSync(join(tmpdir(), 'mm-mig003-'));
    dirs.push(dir);
    cpSync(migrationsDir(), dir, { recursive: true, filter: (src) => !/00[3-9]_|0[1-9]\d_/.test(src) });
    assert.deepEqual((await migrate(pool, logger, dir)).applied, ['001_init_memory', '002_service_columns']);
    await pool.query(
      `INSERT INTO agent_registry (agent_id, team_id, status, last_seen, last_error_summary, status_at, status_seq) VALUES
         ('with-error', 'ops', 'ERROR', now(), 'boom', '2026-01-01T00:00:05Z', 7),
         ('no-error', 'ops', 'IDLE', now(), NULL, '2026-01-01T00:00:06Z', 8),
         ('directive', 'default', 'IDLE', now(), 'old', NULL, 0)`,
    );
    assert.deepEqual((await migrate(pool, logger)).applied, ['003_registry_field_order', '004_partition_log_entries', '005_registry_revision', '006_log_search', '007_registry_meta_times', '008_dead_letter_identity', '009_log_seq_ranges', '010_log_time_ranges']);
    const q = `SELECT agent_id, (extract(epoch FROM last_error_at) * 1e6)::bigint::text AS e, last_error_seq::int AS es,
                      (extract(epoch FROM status_set_at) * 1e6)::bigint::text AS s, status_set_seq::int AS ss,
                      (extract(epoch FROM team_at) * 1e6)::bigint::text AS t, team_seq::int AS ts
               FROM agent_registry ORDER BY agent_id`;
    const at5 = String(T0 + 5_000_000);
    const at6 = String(T0 + 6_000_000);
    const expected = [
      { agent_id: 'directive', e: null, es: 0, s: null, ss: 0, t: null, ts: 0 },
      { agent_id: 'no-error', e: null, es: 0, s: at6, ss: 8, t: at6, ts: 8 },
      { agent_id: 'with-error', e: at5, es: 7, s: at5, ss: 7, t: at5, ts: 7 },
    ];
    assert.deepEqual((await pool.query(q)).rows, expected);
    // A row the service writes afterwards keeps its NULL "none" even if the file runs again by hand.
    await pool.query(`UPDATE agent_registry SET status_at = '2026-01-01T00:00:09Z' WHERE agent_id = 'directive'`);
    await pool.query(readFileSync(join(migrationsDir(), '003_registry_field_order.sql'), 'utf8'));
    assert.deepEqual((await pool.query(q)).rows, expected);
  });

  it('the same events, in order or shuffled across batches, leave identical rows', async () => {
    // Either migrated above, or migrate now (the test may run alone).
    await migrate(pool, logger);
    const db: Database = { kind: 'postgres', pool, url: tdb.url, close: async () => undefined };
    const writer = new BatchWriter(db, logger);
    const events = (agentId: string): RegistryEvent[] => [
      makeEvent({ agentId, eventTeam: 'ops', timeUs: T0 + 1, streamSeq: 1, serverTimeUs: T0 + 10, status: 'BUSY', meta: { rack: 'r1', battery: 0.9 } }),
      makeEvent({ agentId, eventTeam: '', timeUs: T0 + 2, streamSeq: 2, serverTimeUs: T0 + 30, status: 'ERROR', meta: { model: 'm2' }, errorMessage: 'disk full' }),
      makeEvent({ agentId, eventTeam: '', timeUs: T0 + 3, streamSeq: 3, serverTimeUs: T0 + 20, status: 'OFFLINE', meta: { battery: 0.5 } }),
      makeEvent({ agentId, eventTeam: '', timeUs: T0 + 4, streamSeq: 4, serverTimeUs: T0 + 40, status: null, meta: null }),
    ];
    const write = (registry: RegistryEvent[]) => writer.write({ rows: [], rejects: [], registry });
    const inOrder = events('order-clean');
    for (const e of inOrder) await write([e]);
    // A crash: the newest two first, the killed process's older two redelivered later, newest-first.
    const [e1, e2, e3, e4] = events('order-redelivered');
    await write([e4!, e3!]);
    await write([e2!]);
    await write([e1!]);
    const clean = (await pool.query(ROW, ['order-clean'])).rows[0];
    assert.deepEqual(
      { team: clean.team_id, status: clean.status, error: clean.last_error_summary, meta: clean.meta },
      { team: 'ops', status: 'IDLE', error: 'disk full', meta: { rack: 'r1', battery: 0.5, model: 'm2' } },
    );
    assert.deepEqual((await pool.query(ROW, ['order-redelivered'])).rows[0], clean);
  });
});
