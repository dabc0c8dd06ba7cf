// Fault scenario 10: with LOG_RETENTION / DEAD_LETTER_RETENTION set, old rows and old dead letters go
// away in small batches (each DELETE its own short transaction, at most batchSize rows) while ingest
// keeps committing new events: every new event stored, nothing recent deleted.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import { Retention } from '../../src/store/retention.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, dropStreamAndClose, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger, startHarness, type Harness } from '../integration/ingest-harness.js';
import { countOf, publishTraffic } from './fault-helpers.js';

const names = uniqueNatsNames('retention');
const OLD_ROWS = 20_000;
const OLD_DEAD = 3_000;
const NEW_EVENTS = 20_000;
const BATCH = 500;

describe('fault: retention under full-rate ingest', { timeout: 120_000 }, () => {
  let tdb: TestDatabase;
  let h: Harness;
  let nc: NatsConnection;

  before(async () => {
    tdb = await createTestDatabase('retention');
    nc = await connect({ servers: SHARED_NATS_URL });
    h = await startHarness(
      {
        ...tdb.env,
        STREAM_NAME: names.stream,
        CONSUMER_NAME: names.consumer,
        NATS_SUBJECTS: `${names.prefix}.>`,
        LOG_ENTRY_SUBJECTS: `${names.prefix}.log.>`,
        NATS_EXCLUDE_SUBJECTS: `${names.prefix}.council.*.request`,
      },
      SHARED_NATS_URL,
    );
  });
  after(async () => {
    await h?.close();
    await dropStreamAndClose(nc, names.stream);
    await tdb?.drop();
  });

  it('deletes old rows and dead letters in small batches while every new event is stored', async () => {
    await h.sql.query(
      `INSERT INTO log_entries (id, trace_id, timestamp, level, source, intent, message, context, seq, team_id, subject)
       SELECT gen_random_uuid(), '', now() - interval '30 days' - g * interval '1 second', 'INFO', 'old-agent', 'old', 'm', '{}', nextval('log_entries_seq'), '', 'old.subject'
       FROM generate_series(1, $1) g`,
      [OLD_ROWS],
    );
    await h.sql.query(
      `INSERT INTO ingest_rejects (received_at, subject, payload, reason) SELECT now() - interval '30 days', 'old.subject', '\\x00', 'decode_error' FROM generate_series(1, $1)`,
      [OLD_DEAD],
    );
    // Fresh dead letters must stay.
    await h.sql.query(`INSERT INTO ingest_rejects (received_at, subject, payload, reason) VALUES (now(), 'new.subject', '\\x01', 'decode_error')`);

    // Count every DELETE the retention issues and how many rows each removed.
    const deletes: number[] = [];
    const pool = new Proxy(h.db.pool, {
      get(target, prop, receiver) {
        if (prop !== 'query') return Reflect.get(target, prop, receiver) as unknown;
        return async (text: string, params?: unknown[]) => {
          const res = await (target.query as (t: string, p?: unknown[]) => Promise<pg.QueryResult>)(text, params);
          if (/^\s*DELETE/i.test(text)) deletes.push(res.rowCount ?? 0);
          return res;
        };
      },
    });
    const retention = new Retention({ ...h.db, pool }, { logRetentionMs: 86_400_000, deadLetterRetentionMs: 86_400_000 }, silentLogger, { batchSize: BATCH, intervalMs: 100 });
    const published = publishTraffic(nc, { count: NEW_EVENTS, agents: 100, subjectPrefix: names.prefix, typeHeaders: true, seed: 10 });
    retention.start();
    try {
      assert.equal(await published, NEW_EVENTS);
      await waitFor('old rows gone and new rows stored', async () => {
        const old = await countOf(h.sql, `SELECT 1 FROM log_entries WHERE source = 'old-agent'`);
        const oldDead = await countOf(h.sql, `SELECT 1 FROM ingest_rejects WHERE subject = 'old.subject'`);
        const fresh = await countOf(h.sql, `SELECT 1 FROM log_entries WHERE source <> 'old-agent'`);
        return old === 0 && oldDead === 0 && fresh === NEW_EVENTS;
      }, { timeoutMs: 90_000, intervalMs: 200 });
    } finally {
      await retention.stop();
    }
    assert.equal(await countOf(h.sql, 'SELECT 1 FROM log_entries'), NEW_EVENTS, 'every new event stored, none deleted');
    assert.equal(await countOf(h.sql, 'SELECT 1 FROM ingest_rejects'), 1, 'the fresh dead letter stays');
    assert.equal(deletes.reduce((s, n) => s + n, 0), OLD_ROWS + OLD_DEAD);
    assert.ok(deletes.every((n) => n <= BATCH), `every DELETE at most ${BATCH} rows (${Math.max(...deletes)})`);
    assert.ok(deletes.filter((n) => n > 0).length >= (OLD_ROWS + OLD_DEAD) / BATCH, 'in many small batches');
  });
});
