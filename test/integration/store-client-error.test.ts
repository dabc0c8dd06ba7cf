// Regression (found by test/fault/pg-outage.test.ts): a pooled client that is checked out but between
// queries when its connection dies (PostgreSQL shutting down sends FATAL 57P01 to every backend) emits
// 'error' with no listener attached (pg-pool removes its idle listener on checkout), which crashed the
// service on an unhandled 'error' event. Every pooled client now has an error listener for its whole life.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/store/database.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger } from './ingest-harness.js';

describe('store: a checked-out client whose connection dies', () => {
  let tdb: TestDatabase;
  let db: Database;
  let admin: pg.Client;

  before(async () => {
    tdb = await createTestDatabase('store_client_error');
    db = await openDatabase({ kind: 'postgres', url: tdb.url, redactedUrl: tdb.url, sslMode: undefined, poolMax: 4, embeddedDataDir: '' }, silentLogger);
    admin = new pg.Client({ connectionString: tdb.url });
    await admin.connect();
  });
  after(async () => {
    await admin?.end();
    await db?.close();
    await tdb?.drop();
  });

  it('does not crash the process; the next query fails and the pool recovers', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => {
      uncaught.push(err);
    };
    // The test runner would report an uncaught exception as a failure anyway; collect it to say what it was.
    process.prependListener('uncaughtException', onUncaught);
    try {
      const client = await db.pool.connect();
      const pid = (client as unknown as { processID: number }).processID;
      let ended = false;
      client.once('end', () => {
        ended = true;
      });
      // Idle between queries, checked out: the backend is terminated (FATAL 57P01, then the socket closes).
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await waitFor('the connection to end', () => ended);
      assert.deepEqual(uncaught, [], 'no unhandled error event');
      await assert.rejects(client.query('SELECT 1'));
      client.release(true);
      const r = await db.pool.query<{ one: number }>('SELECT 1 AS one');
      assert.equal(r.rows[0]!.one, 1);
    } finally {
      process.removeListener('uncaughtException', onUncaught);
    }
  });
});
