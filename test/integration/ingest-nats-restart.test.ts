// NATS restarted under a running ingest (a private nats-server: never stop the shared one): the
// connection reconnects, the consume loop resumes from the durable consumer, and events published
// before, around and after the restart are each stored once. Also: stop() with work in flight
// commits and acks it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from 'nats';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { startPrivateNats, type PrivateNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { count, startHarness, textEnvelope, type Harness } from './ingest-harness.js';

describe('ingest across a NATS restart', () => {
  let tdb: TestDatabase;
  let nats: PrivateNats;
  let h: Harness | undefined;
  let pub: NatsConnection;

  before(async () => {
    tdb = await createTestDatabase('ingest_nats_restart');
    nats = await startPrivateNats();
    h = await startHarness({ ...tdb.env, INGEST_BATCH_SIZE: '100' }, nats.url);
    pub = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  });

  after(async () => {
    await h?.close();
    await pub?.close();
    await nats?.destroy();
    await tdb?.drop();
  });

  const publish = async (from: number, to: number): Promise<void> => {
    for (let i = from; i < to; i++) pub.publish(`swarm.agent.r${i % 7}.output`, textEnvelope(`nr-${i}`, `r${i % 7}`, `m${i}`, 1_780_000_000_000 + i));
    await pub.flush();
  };

  it('resumes after the server restarts and stores every event once', async () => {
    await publish(0, 500);
    await waitFor('500 rows', async () => (await count(h!.sql, 'SELECT 1 FROM log_entries')) === 500);
    await nats.stop();
    await waitFor('ingest sees the disconnect', () => h!.ingest.status().connected === false);
    await nats.start();
    await waitFor('publisher reconnected', () => !pub.isClosed() && pub.info !== undefined);
    await publish(500, 1000);
    await waitFor('1000 rows', async () => (await count(h!.sql, 'SELECT 1 FROM log_entries')) === 1000, { timeoutMs: 60_000 });
    assert.equal(await count(h!.sql, `SELECT DISTINCT context->>'id' FROM log_entries`), 1000);
    await waitFor('ingest reconnected', () => h!.ingest.status().connected === true);
  });

  it('stop() commits and acks what was delivered', async () => {
    await publish(1000, 1300);
    const jsm = await pub.jetstreamManager();
    await waitFor('delivered', async () => (await jsm.consumers.info('SWARM', 'mycelis-memory')).num_pending === 0);
    await h!.ingest.stop();
    const ci = await jsm.consumers.info('SWARM', 'mycelis-memory');
    assert.equal(ci.num_ack_pending, 0, 'nothing delivered is left unacked after stop()');
    assert.equal(await count(h!.sql, 'SELECT 1 FROM log_entries'), 1300);
  });
});
