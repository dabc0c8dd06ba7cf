// INGEST_MODE=core: a plain subscription with a bounded buffer. The database is made slow for real
// (this test holds the writer's commit advisory lock, so every commit waits), the buffer overflows,
// and every message is accounted for exactly: stored or counted as dropped, never silently lost.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { COMMIT_LOCK_KEY } from '../../src/store/batch-writer.js';
import { count, ingestMetrics, metricValue, startHarness, textEnvelope, type Harness } from './ingest-harness.js';

const names = uniqueNatsNames('core');
const BATCH = 10;
const BUFFER = 50;
const N = 500;

describe('core NATS ingest', () => {
  let tdb: TestDatabase;
  let h: Harness;
  let pub: NatsConnection;
  let locker: pg.Client;

  before(async () => {
    tdb = await createTestDatabase('ingest_core');
    pub = await connect({ servers: SHARED_NATS_URL });
    h = await startHarness(
      {
        ...tdb.env,
        INGEST_MODE: 'core',
        NATS_SUBJECTS: `${names.prefix}.>`,
        NATS_EXCLUDE_SUBJECTS: `${names.prefix}.council.*.request`,
        INGEST_BATCH_SIZE: String(BATCH),
        CORE_BUFFER_SIZE: String(BUFFER),
      },
      SHARED_NATS_URL,
    );
    locker = new pg.Client({ connectionString: tdb.url });
    await locker.connect();
  });

  after(async () => {
    await locker?.end().catch(() => {});
    await h?.close();
    await pub?.close();
    await tdb?.drop();
  });

  it('stores messages and counts excluded subjects', async () => {
    const excludedBefore = await metricValue(ingestMetrics.excluded);
    pub.publish(`${names.prefix}.agent.a.output`, textEnvelope('core-1', 'a', 'hello'));
    pub.publish(`${names.prefix}.council.x.request`, textEnvelope('core-x', 'x', 'not stored'));
    pub.publish(`${names.prefix}.agent.a.output`, textEnvelope('core-2', 'a', 'again'));
    await waitFor('two rows', async () => (await count(h.sql, 'SELECT 1 FROM log_entries')) === 2);
    await waitFor('excluded counted', async () => (await metricValue(ingestMetrics.excluded)) - excludedBefore === 1);
    const st = h.ingest.status();
    assert.equal(st.mode, 'core');
    assert.equal(st.lag, null);
    assert.equal(st.connected, true);
  });

  it('counts overflow exactly while commits are blocked, and never crashes', async () => {
    const rowsBefore = await count(h.sql, 'SELECT 1 FROM log_entries');
    const droppedBefore = await metricValue(ingestMetrics.dropped);
    const receivedBefore = await metricValue(ingestMetrics.received, { mode: 'core' });
    // Every batch commit takes pg_advisory_xact_lock(COMMIT_LOCK_KEY): holding it blocks the writer.
    await locker.query('SELECT pg_advisory_lock($1)', [COMMIT_LOCK_KEY]);
    try {
      for (let i = 0; i < N; i++) pub.publish(`${names.prefix}.agent.burst.output`, textEnvelope(`burst-${i}`, 'burst', `m${i}`));
      await pub.flush();
      // Received is counted before the buffer decides, so once all N are received, drops are final.
      await waitFor('all received', async () => (await metricValue(ingestMetrics.received, { mode: 'core' })) - receivedBefore === N);
    } finally {
      await locker.query('SELECT pg_advisory_unlock($1)', [COMMIT_LOCK_KEY]);
    }
    const dropped = (await metricValue(ingestMetrics.dropped)) - droppedBefore;
    // At most one batch waiting for the lock, one decoded behind it and a full buffer were held.
    assert.ok(dropped >= N - (2 * BATCH + BUFFER), `dropped ${dropped}: the buffer held more than its bound`);
    await waitFor('held messages committed', async () => (await count(h.sql, 'SELECT 1 FROM log_entries')) - rowsBefore === N - dropped);
    // A marker published now is committed after everything held before it: nothing else trickles in.
    pub.publish(`${names.prefix}.agent.a.output`, textEnvelope('core-after', 'a', 'after'));
    await waitFor('row after overflow', async () => (await count(h.sql, `SELECT 1 FROM log_entries WHERE context->>'id' = 'core-after'`)) === 1);
    const stored = (await count(h.sql, `SELECT 1 FROM log_entries WHERE source = 'burst'`));
    assert.equal(stored + dropped, N, 'every message is either stored or counted as dropped');
    assert.equal((await metricValue(ingestMetrics.dropped)) - droppedBefore, dropped, 'no drops after the database recovered');
  });
});
