// `mycelis-memory dead-letters replay` replays the dead letters that exist when it starts, and only
// those. A still-invalid message replayed from an early page comes back through ingest as a new dead
// letter while the CLI reads its later pages; here a trigger plays that part deterministically (every
// dead letter marked replayed immediately gets a twin, as ingest would write it), so a replay that
// followed newly arriving rows would count them, and never stop while they keep coming.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { connect, type NatsConnection } from 'nats';

import { migrate } from '../../src/store/migrate.js';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, uniqueNatsNames } from '../helpers/nats.js';

const names = uniqueNatsNames('dlreplay');
const N = 1_234; // more than two of the CLI's pages (500)

describe('cli dead-letters replay', () => {
  let tdb: TestDatabase;
  let pool: pg.Pool;
  let nc: NatsConnection;
  before(async () => {
    tdb = await createTestDatabase('cli_dead_letters');
    pool = new pg.Pool({ connectionString: tdb.url, max: 2 });
    await migrate(pool, pino({ level: 'silent' }));
    await pool.query(
      `INSERT INTO ingest_rejects (received_at, subject, headers, payload, reason, detail)
       SELECT now(), $1, jsonb_build_object('N', g::text), convert_to('not an object ' || g, 'UTF8'), 'invalid_json', 'test'
       FROM generate_series(1, $2) g`,
      [`${names.prefix}.bad`, N],
    );
    // Ingest's part, instantly: each replayed dead letter comes back as a new one (not yet replayed).
    await pool.query(`
      CREATE FUNCTION test_replay_returns() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ingest_rejects (received_at, subject, headers, payload, reason, detail)
        VALUES (now(), NEW.subject, NEW.headers, NEW.payload, NEW.reason, 'came back');
        RETURN NULL;
      END $$;
      CREATE TRIGGER test_replay_returns AFTER UPDATE OF replayed_at ON ingest_rejects
        FOR EACH ROW WHEN (OLD.replayed_at IS NULL AND NEW.replayed_at IS NOT NULL) EXECUTE FUNCTION test_replay_returns();`);
    nc = await connect({ servers: SHARED_NATS_URL });
  });
  after(async () => {
    await nc?.close();
    await pool?.end();
    await tdb?.drop();
  });

  it('replays exactly the dead letters that existed when it started, each once, in id order', async () => {
    const sub = nc.subscribe(`${names.prefix}.bad`);
    const seen: string[] = [];
    const origins: string[] = [];
    const got = (async () => {
      for await (const m of sub) {
        seen.push(m.headers?.get('N') ?? '');
        origins.push(m.headers?.get('Mycelis-Replay-Of') ?? '');
      }
    })();
    await nc.flush();
    const env = { DATABASE_URL: tdb.url, MEMORY_STORE: 'postgres', NATS_URL: SHARED_NATS_URL };
    const res = await runCli(['dead-letters', 'replay', '--subject', `${names.prefix}.bad`], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, new RegExp(`^replayed ${N} dead letters \\[invalid_json=${N}\\] to NATS$`, 'm'));
    await nc.flush();
    sub.unsubscribe();
    await got;
    assert.deepEqual(seen, Array.from({ length: N }, (_, i) => String(i + 1)), 'each original published once, in order');
    // …naming the dead letter it came from (so ingest can give a message without id or time one row).
    const ids = await pool.query<{ id: string; us: string }>(`SELECT id::text, (extract(epoch FROM received_at) * 1000000)::bigint::text AS us FROM ingest_rejects WHERE detail = 'test' ORDER BY ingest_rejects.id`);
    assert.deepEqual(origins, ids.rows.map((r) => `dead-letter=${r.id}; stream-seq=0; received-us=${r.us}`));
    const counts = await pool.query<{ detail: string; replayed: boolean; n: string }>(
      `SELECT detail, replayed_at IS NOT NULL AS replayed, count(*)::text AS n FROM ingest_rejects GROUP BY 1, 2 ORDER BY 1, 2`);
    assert.deepEqual(
      counts.rows.map((r) => [r.detail, r.replayed, Number(r.n)]),
      [
        ['came back', false, N],
        ['test', true, N],
      ],
    );
    // A second run replays what came back (it existed when that run started), again exactly once each.
    const again = await runCli(['dead-letters', 'replay', '--subject', `${names.prefix}.bad`], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, new RegExp(`invalid_json=${N}\\]`));
  });
});
