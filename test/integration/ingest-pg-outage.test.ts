// PostgreSQL stopped for ~10 s while events keep arriving: ingest stops taking batches (the writer
// retries), holds what JetStream delivered unacked (touching it with working(), so an ack_wait much
// shorter than the outage causes no redelivery), and once PostgreSQL is back every event is stored
// exactly once. A private PostgreSQL (never stop the shared one); the shared NATS with a unique stream.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-pg.js';
import { deleteStreamQuietly, SHARED_NATS_URL, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { maxHeldFor } from '../../src/ingest/stream-setup.js';
import { ingestMetrics, metricValue, startHarness, textEnvelope, type Harness } from './ingest-harness.js';

const names = uniqueNatsNames('pg_outage');
const BATCH = 200;
/** What the service holds delivered and unacked (its credit): the window the outage must not move. */
const WINDOW = maxHeldFor(BATCH);

async function rowCount(url: string): Promise<{ rows: number; distinct: number }> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    const r = await c.query<{ n: string; d: string }>(`SELECT count(*)::text AS n, count(DISTINCT context->>'id')::text AS d FROM log_entries`);
    return { rows: Number(r.rows[0]!.n), distinct: Number(r.rows[0]!.d) };
  } finally {
    await c.end();
  }
}

describe('ingest across a PostgreSQL outage', () => {
  let pgs: PrivatePostgres;
  let h: Harness;
  let pub: NatsConnection;

  before(async () => {
    pgs = await startPrivatePostgres();
    pub = await connect({ servers: SHARED_NATS_URL });
    h = await startHarness(
      {
        DATABASE_URL: pgs.url,
        MEMORY_STORE: 'postgres',
        NATS_SUBJECTS: `${names.prefix}.>`,
        STREAM_NAME: names.stream,
        CONSUMER_NAME: names.consumer,
        INGEST_BATCH_SIZE: String(BATCH),
        ACK_WAIT: '2s',
      },
      SHARED_NATS_URL,
    );
  });

  after(async () => {
    await h?.close();
    if (pub) {
      await deleteStreamQuietly(pub, names.stream);
      await pub.close();
    }
    await pgs?.destroy();
  });

  it('stores every event exactly once after a ~10 s outage, without redelivery', async () => {
    const subject = `${names.prefix}.agent.steady.output`;
    const publish = (from: number, to: number): void => {
      for (let i = from; i < to; i++) pub.publish(subject, textEnvelope(`ev-${i}`, 'steady', `event ${i}`, 1_780_000_000_000 + i));
    };
    publish(0, 1000);
    await waitFor('first 1000 rows', async () => (await rowCount(pgs.url)).rows === 1000);

    const retriesBefore = await metricValue(ingestMetrics.errors, { kind: 'commit_retry' });
    await pgs.stop();
    publish(1000, 3000);
    await pub.flush();
    const jsm = await pub.jetstreamManager();
    // Delivered but not acknowledged: the pipeline holds a full window while the writer retries.
    await waitFor('writer retrying with a full unacked window', async () => {
      const ci = await jsm.consumers.info(names.stream, names.consumer);
      const retries = (await metricValue(ingestMetrics.errors, { kind: 'commit_retry' })) - retriesBefore;
      return ci.num_ack_pending === WINDOW && retries > 0;
    });
    // The outage itself (the scenario, not a timing assertion): 5 x ack_wait.
    await new Promise((r) => setTimeout(r, 10_000));
    const during = await jsm.consumers.info(names.stream, names.consumer);
    assert.equal(during.num_ack_pending, WINDOW, 'nothing is acked while PostgreSQL is down');
    assert.equal(during.num_redelivered, 0, 'working() kept the held messages from being redelivered');
    assert.ok(during.num_pending > 0, 'the rest waits in the stream');
    await pgs.start();

    await waitFor('all 3000 rows', async () => (await rowCount(pgs.url)).rows === 3000, { timeoutMs: 60_000 });
    const final = await rowCount(pgs.url);
    assert.deepEqual(final, { rows: 3000, distinct: 3000 });
    await waitFor('everything acked', async () => {
      const ci = await jsm.consumers.info(names.stream, names.consumer);
      return ci.num_pending === 0 && ci.num_ack_pending === 0;
    });
    assert.ok(h.ingest.status().lastCommitAt instanceof Date);
  });
});
