// On a PRIVATE PostgreSQL cluster (scram auth for TCP):
// - DB_PASSWORD='p@ss:w/rd?#%' connects through loadConfig's URL as a role created with that password;
// - the writer survives a PostgreSQL restart, retrying without losing the batch, and the LISTEN
//   connection of a notifier comes back and reports the commit.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/logger.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-pg.js';
import { waitFor } from '../helpers/wait.js';
import { makeRows } from './store-rows.js';

const logger = createLogger('silent');
const PASSWORD = 'p@ss:w/rd?#%';

describe('store: private PostgreSQL (password auth, restart)', () => {
  let server: PrivatePostgres;
  let db: Database | undefined;
  before(async () => {
    server = await startPrivatePostgres({ hostAuth: 'scram-sha-256' });
    const admin = new pg.Client(server.adminConfig);
    await admin.connect();
    try {
      // The password is a literal here (test-controlled); the service never builds SQL from input.
      await admin.query(`CREATE ROLE mm_writer LOGIN PASSWORD 'p@ss:w/rd?#%'`);
      await admin.query('CREATE DATABASE mm_store OWNER mm_writer');
    } finally {
      await admin.end();
    }
  });
  after(async () => {
    await db?.close();
    await server?.destroy();
  });

  it("connects with DB_PASSWORD='p@ss:w/rd?#%' through loadConfig's URL (scram)", async () => {
    const env = {
      MEMORY_STORE: 'postgres',
      DB_HOST: '127.0.0.1',
      DB_PORT: String(server.port),
      DB_USER: 'mm_writer',
      DB_PASSWORD: PASSWORD,
      DB_NAME: 'mm_store',
    };
    const config = loadConfig(env);
    assert.equal(config.database.kind, 'postgres');
    assert.ok(!config.database.redactedUrl.includes('rd?#'));
    // Auth really is enforced: a wrong password is refused.
    const wrong = loadConfig({ ...env, DB_PASSWORD: 'p@ss:w/rd?#' });
    const bad = new pg.Client({ connectionString: wrong.database.url });
    await assert.rejects(bad.connect(), (err: { code?: string }) => err.code === '28P01');
    await bad.end().catch(() => undefined);

    db = await openDatabase(config.database, logger);
    await migrate(db.pool, logger);
    const who = await db.pool.query('SELECT current_user AS u, current_database() AS d');
    assert.deepEqual(who.rows[0], { u: 'mm_writer', d: 'mm_store' });
  });

  it('the writer survives a PostgreSQL restart, retrying without losing the batch', async () => {
    assert.ok(db, 'previous test opened the database');
    const writer = new BatchWriter(db, logger);
    const remote = new CommitNotifier(db, null, logger); // LISTEN only: must reconnect by itself
    const heard: number[] = [];
    remote.onCommit((c) => heard.push(c.lastSeq));
    await remote.start();
    try {
      const first = makeRows(100);
      const r1 = await writer.write({ rows: first, rejects: [], registry: [] });
      assert.equal(r1.inserted, 100);
      await waitFor('first notification', () => heard.includes(r1.lastSeq));

      await server.stop();
      const second = makeRows(100);
      const retried: number[] = [];
      const pending = writer.write({ rows: second, rejects: [], registry: [] }, { onRetry: (attempt) => retried.push(attempt) });
      await waitFor('a retry while PostgreSQL is down', () => retried.length >= 2, { timeoutMs: 30_000 });
      await server.start();
      const r2 = await pending;
      assert.equal(r2.inserted, 100);
      assert.ok(r2.attempts > 2, `attempts ${r2.attempts}`);
      assert.deepEqual(retried.slice(0, 2), [1, 2]);

      const ids = [...first, ...second].map((r) => r.id);
      const res = await db.pool.query('SELECT count(*)::int AS n FROM log_entries WHERE id = ANY($1::uuid[])', [ids]);
      assert.equal(res.rows[0].n, 200);
      // The notifier's LISTEN connection came back and reported the commit (or the head after it).
      await waitFor('notification after restart', () => heard.some((s) => s >= r2.lastSeq), { timeoutMs: 30_000 });
    } finally {
      await remote.stop();
    }
  });

  it('an aborted retry loop rejects with CancelledError', async () => {
    assert.ok(db);
    const writer = new BatchWriter(db, logger);
    await server.stop();
    try {
      const ac = new AbortController();
      const p = writer.write({ rows: makeRows(1), rejects: [], registry: [] }, { signal: ac.signal, onRetry: () => ac.abort() });
      await assert.rejects(p, (err: Error) => err.name === 'CancelledError');
    } finally {
      await server.start();
    }
  });
});
