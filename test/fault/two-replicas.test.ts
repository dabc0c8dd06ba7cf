// Fault scenario 8: two replicas on one database and one NATS, sharing the durable consumer. 50,000
// events; one replica SIGKILLed halfway. 0 duplicates, 0 lost; the survivor commits on at once and
// what the killed one had been delivered is committed within ACK_WAIT (default, 10 s) + 5 s of the
// kill (issue 13); a tail on each replica receives every record once in cursor order; the killed
// replica's client resumes on the survivor with its cursor, and its joined sequence equals the
// survivor's tail.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import * as grpc from '@grpc/grpc-js';
import { MemoryServiceClient } from '../../src/gen/mycelis/memory/v1/memory.js';
import { startService, type ServiceProcess } from '../helpers/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, dropStreamAndClose, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { StreamCollector } from '../integration/api-harness.js';
import { textEnvelope } from '../integration/ingest-harness.js';
import { assertionPool, consumerDrained, countOf, publishTraffic, serviceEnv } from './fault-helpers.js';

const TOTAL = 50_000;
const ACK_WAIT_MS = 10_000; // the default, stated
const names = uniqueNatsNames('replicas');

function strictlyIncreasing(xs: number[]): boolean {
  for (let i = 1; i < xs.length; i++) if (xs[i]! <= xs[i - 1]!) return false;
  return true;
}

describe('fault: two replicas, one SIGKILLed halfway', { timeout: 240_000 }, () => {
  let tdb: TestDatabase;
  let pool: pg.Pool;
  let nc: NatsConnection;
  const services: ServiceProcess[] = [];
  const clients: MemoryServiceClient[] = [];

  before(async () => {
    tdb = await createTestDatabase('replicas');
    pool = assertionPool(tdb.url);
    nc = await connect({ servers: SHARED_NATS_URL });
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const s of services) await s.stop();
    await dropStreamAndClose(nc, names.stream);
    await pool?.end();
    await tdb?.drop();
  });

  it('0 duplicates, 0 lost; tails see every record once in order; the orphaned client resumes on the survivor', async () => {
    const env = serviceEnv(tdb.env, SHARED_NATS_URL, names); // production defaults (ACK_WAIT 10 s, batches of 5,000)
    const a = await startService({ env });
    services.push(a);
    const b = await startService({ env });
    services.push(b);
    const clientA = new MemoryServiceClient(a.grpcAddress, grpc.credentials.createInsecure());
    const clientB = new MemoryServiceClient(b.grpcAddress, grpc.credentials.createInsecure());
    clients.push(clientA, clientB);

    // One warm-up event, so both tails can start from a record they have certainly received.
    nc.publish(`${names.prefix}.agent.warmup.output`, textEnvelope('warmup', 'warmup', 'first'));
    await waitFor('warm-up row', async () => (await countOf(pool, 'SELECT 1 FROM log_entries')) === 1);
    const tailA = new StreamCollector(clientA, { tail: 1 });
    const tailB = new StreamCollector(clientB, { tail: 1 });
    await waitFor('both tails live', () => tailA.records.length === 1 && tailB.records.length === 1);

    const published = publishTraffic(nc, { count: TOTAL - 1, agents: 300, subjectPrefix: names.prefix, typeHeaders: true, seed: 8 });
    await waitFor('half the events stored', async () => (await countOf(pool, 'SELECT 1 FROM log_entries')) >= TOTAL / 2, { timeoutMs: 120_000, intervalMs: 20 });
    await a.kill();
    const killedAt = performance.now();
    const jsm = await nc.jetstreamManager();
    // Every message delivered so far (to A or B) is committed once A's unacked ones come back: ACK_WAIT
    // (the default, 10 s) after their delivery; B is never blocked by them (max_ack_pending has room).
    const deliveredAtKill = (await jsm.consumers.info(names.stream, names.consumer)).delivered.stream_seq;
    const rowsAtKill = await countOf(pool, 'SELECT 1 FROM log_entries');
    const aDone = waitFor('every delivery before the kill acked', async () => (await jsm.consumers.info(names.stream, names.consumer)).ack_floor.stream_seq >= deliveredAtKill, {
      timeoutMs: 60_000,
      intervalMs: 50,
    }).then(() => performance.now() - killedAt);
    await waitFor('B commits on', async () => (await countOf(pool, 'SELECT 1 FROM log_entries')) > rowsAtKill, { timeoutMs: 5_000, intervalMs: 20 });
    const bResumedMs = performance.now() - killedAt;
    assert.equal(await published, TOTAL - 1);
    const publishedAt = performance.now();
    await waitFor('A\'s tail sees the replica die', () => tailA.error !== null || tailA.ended, { timeoutMs: 30_000 });
    assert.equal(tailA.error?.code, grpc.status.UNAVAILABLE, `the orphaned tail ends UNAVAILABLE (${tailA.error?.details})`);
    assert.ok(tailA.records.length > 1 && tailA.records.length < TOTAL, `A's tail had ${tailA.records.length} records when A died`);

    // The orphaned client resumes on the survivor from the last cursor it received.
    const lastCursor = tailA.responses[tailA.responses.length - 1]!.cursor || tailA.records[tailA.records.length - 1]!.cursor;
    const resumed = new StreamCollector(clientB, { afterCursor: lastCursor });
    await waitFor('every event stored', async () => (await countOf(pool, 'SELECT 1 FROM log_entries')) >= TOTAL, { timeoutMs: 120_000, intervalMs: 200 });
    const finishedMs = performance.now() - publishedAt;
    const aDoneMs = await aDone;
    const report = `B committed on ${bResumedMs.toFixed(0)} ms after A's kill; A's deliveries done ${aDoneMs.toFixed(0)} ms after the kill; every event stored ${finishedMs.toFixed(0)} ms after the publisher finished`;
    console.log(report);
    assert.ok(aDoneMs <= ACK_WAIT_MS + 5_000, `${report}: more than ACK_WAIT + 5 s`);
    await waitFor('consumer drained (A\'s unacked messages redelivered to B)', () => consumerDrained(SHARED_NATS_URL, names.stream, names.consumer), { timeoutMs: 60_000 });
    await waitFor('B\'s tail complete', () => tailB.records.length >= TOTAL, { timeoutMs: 60_000 });
    await waitFor('the resumed tail complete', () => tailA.records.length + resumed.records.length >= TOTAL, { timeoutMs: 60_000 });

    const r = await pool.query('SELECT count(*)::int AS n, count(DISTINCT id)::int AS d, count(DISTINCT seq)::int AS s FROM log_entries');
    assert.deepEqual(r.rows[0], { n: TOTAL, d: TOTAL, s: TOTAL }, '0 duplicates, 0 lost');
    const dbOrder = (await pool.query<{ id: string }>('SELECT id FROM log_entries ORDER BY seq')).rows.map((x) => x.id);
    assert.equal(tailB.error, null);
    assert.ok(strictlyIncreasing(tailB.records.map((x) => x.seq)), 'B\'s tail in cursor order');
    assert.deepEqual(tailB.records.map((x) => x.id), dbOrder, 'B\'s tail: every record once, in commit order');
    const joined = [...tailA.records, ...resumed.records];
    assert.ok(strictlyIncreasing(joined.map((x) => x.seq)), 'the joined tail is in cursor order');
    assert.deepEqual(joined.map((x) => x.id), tailB.records.map((x) => x.id), 'the joined sequence equals the survivor\'s tail');
    tailB.cancel();
    resumed.cancel();
  });
});
