// Fault scenario 3 (issue 7): a NATS restart in the middle of ingest, against the built service as a
// process and a PRIVATE nats-server (never the shared one); each part on its own test database.
// - jetstream mode: a 20,000-event backlog is being ingested (batches delivered, some unacked) when the
//   server restarts; acks lost with the connection cause redeliveries. While NATS is down the service
//   stays ready (history serves; /readyz says nats disconnected). Afterwards every event is stored once.
// - core mode: commits are blocked (the test holds the writer's commit advisory lock) so the bounded
//   buffer overflows, NATS restarts while the buffer is still being written, more events follow. The
//   drop counter read from /metrics equals the loss exactly: published - stored.
//   "Published" counts only what the server delivered: core NATS keeps nothing for a subscriber that
//   is disconnected, so the test publishes before the stop (waiting until the service received all of
//   it) and after the service has resubscribed (probed on an excluded subject), never in between.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import * as grpc from '@grpc/grpc-js';
import { MemoryServiceClient, type QueryLogsRequest, type QueryLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import { COMMIT_LOCK_KEY } from '../../src/store/batch-writer.js';
import { startService, type ServiceProcess } from '../helpers/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { startPrivateNats, uniqueNatsNames, type PrivateNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { unary } from '../integration/api-harness.js';
import { textEnvelope } from '../integration/ingest-harness.js';
import { assertionPool, consumerDrained, countOf, publishTraffic, scrapeMetric, serviceEnv } from './fault-helpers.js';

describe('fault: NATS restart mid-ingest', { timeout: 150_000 }, () => {
  let nats: PrivateNats;
  let pub: NatsConnection;
  const dbs: TestDatabase[] = [];
  const pools: pg.Pool[] = [];
  const services: ServiceProcess[] = [];
  const cleanups: (() => Promise<unknown> | void)[] = [];

  before(async () => {
    nats = await startPrivateNats();
    pub = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    for (const s of services) {
      if (s.child.exitCode !== null) console.error(`service exited ${s.child.exitCode}:\n${s.output.slice(-30).join('\n')}`);
      await s.stop();
    }
    await pub?.close();
    await nats?.destroy();
    for (const p of pools) await p.end();
    for (const d of dbs) await d.drop();
  });

  const setup = async (label: string, extra: Record<string, string>) => {
    const db = await createTestDatabase(label);
    dbs.push(db);
    const pool = assertionPool(db.url);
    pools.push(pool);
    const names = uniqueNatsNames(label);
    const svc = await startService({ env: serviceEnv(db.env, nats.url, names, extra) });
    services.push(svc);
    return { db, pool, names, svc, rows: () => countOf(pool, 'SELECT 1 FROM log_entries') };
  };
  const readyz = async (svc: ServiceProcess): Promise<{ status: number; body: Record<string, unknown> }> => {
    const r = await fetch(`${svc.httpBase}/readyz`);
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  const restartNats = async (svc: ServiceProcess): Promise<void> => {
    await nats.stop();
    await waitFor('the service sees NATS down', async () => (await readyz(svc)).body['nats'] === 'disconnected', { timeoutMs: 20_000, intervalMs: 100 });
    // NATS down does not make the service unready: history still serves (DESIGN 6).
    const during = await readyz(svc);
    assert.equal(during.status, 200, `ready while NATS is down: ${JSON.stringify(during.body)}`);
    const client = new MemoryServiceClient(svc.grpcAddress, grpc.credentials.createInsecure());
    try {
      const page = await unary<QueryLogsRequest, QueryLogsResponse>(client.queryLogs.bind(client) as never, { filter: undefined, pageSize: 5, pageToken: '', since: undefined, until: undefined });
      assert.equal(page.records.length, 5, 'QueryLogs answers from history while NATS is down');
    } finally {
      client.close();
    }
    await nats.start();
    await waitFor('the service reconnected', async () => (await readyz(svc)).body['nats'] === 'connected', { timeoutMs: 30_000, intervalMs: 100 });
    assert.ok((await scrapeMetric(svc.httpBase, 'mycelis_memory_nats_reconnects_total')) >= 1, 'the reconnect is counted');
  };

  it('jetstream: a backlog being ingested across the restart is stored exactly once', async () => {
    const BACKLOG = 50_000; // ten default batches: the restart comes mid-ingest
    const AFTER = 5_000;
    const { pool, names, svc, rows } = await setup('natsjs', {}); // production defaults (ACK_WAIT 10 s, batches of 5,000)
    assert.equal(await publishTraffic(pub, { count: BACKLOG, agents: 100, subjectPrefix: names.prefix, typeHeaders: true, seed: 31 }), BACKLOG);
    const jsm = await pub.jetstreamManager();
    await waitFor('the stream holds the backlog', async () => (await jsm.streams.info(names.stream)).state.messages === BACKLOG);
    await waitFor('ingest under way', async () => (await rows()) > 2_000, { timeoutMs: 60_000, intervalMs: 5 });
    const atStop = await rows();
    await restartNats(svc);
    assert.ok(atStop < BACKLOG, `restarted mid-ingest (${atStop} of ${BACKLOG} rows)`);
    assert.equal(await publishTraffic(pub, { count: AFTER, agents: 100, subjectPrefix: names.prefix, typeHeaders: true, seed: 32 }), AFTER);
    await waitFor('the stream holds everything', async () => (await jsm.streams.info(names.stream)).state.messages === BACKLOG + AFTER);
    await waitFor('every event stored', async () => (await rows()) >= BACKLOG + AFTER, { timeoutMs: 90_000, intervalMs: 200 });
    await waitFor('consumer drained', () => consumerDrained(nats.url, names.stream, names.consumer), { timeoutMs: 30_000 });
    const r = await pool.query('SELECT count(*)::int AS n, count(DISTINCT id)::int AS d, count(DISTINCT seq)::int AS s FROM log_entries');
    assert.deepEqual(r.rows[0], { n: BACKLOG + AFTER, d: BACKLOG + AFTER, s: BACKLOG + AFTER }, 'nothing lost, nothing duplicated');
    assert.equal(await countOf(pool, 'SELECT 1 FROM ingest_rejects'), 0);
  });

  it('core: the drop counter equals exactly the loss (published - stored)', async () => {
    const BURST = 10_000;
    const AFTER = 5_000;
    const { db, pool, names, svc, rows } = await setup('natscore', { INGEST_MODE: 'core', CORE_BUFFER_SIZE: '2000', INGEST_BATCH_SIZE: '500' });
    const metric = (name: string, labels: Record<string, string> = {}): Promise<number> => scrapeMetric(svc.httpBase, name, labels);
    const received = async (): Promise<number> =>
      (await metric('mycelis_memory_ingest_messages_received_total', { mode: 'core' })) - (await metric('mycelis_memory_ingest_excluded_total'));

    // Every batch commit takes pg_advisory_xact_lock(COMMIT_LOCK_KEY) (per database): holding it blocks the writer.
    const locker = new pg.Client({ connectionString: db.url });
    locker.on('error', () => undefined);
    await locker.connect();
    cleanups.push(() => locker.end().catch(() => undefined));
    await locker.query('SELECT pg_advisory_lock($1)', [COMMIT_LOCK_KEY]);
    let published = await publishTraffic(pub, { count: BURST, agents: 100, subjectPrefix: names.prefix, typeHeaders: true, seed: 41 });
    await waitFor('the service received the whole burst', async () => (await received()) === published, { timeoutMs: 60_000, intervalMs: 100 });
    const droppedInBurst = await metric('mycelis_memory_ingest_dropped_total');
    assert.ok(droppedInBurst > 0, 'the bounded buffer overflowed');

    // Mid-ingest: the buffer is full and its batches are waiting for the database; NATS goes away, the
    // database comes back (the held messages are written while NATS is down), then NATS returns.
    await nats.stop();
    await locker.query('SELECT pg_advisory_unlock($1)', [COMMIT_LOCK_KEY]);
    await waitFor('the held messages written while NATS is down', async () => (await rows()) === published - droppedInBurst, { timeoutMs: 60_000, intervalMs: 100 });
    await nats.start();
    await waitFor('the service reconnected', async () => (await readyz(svc)).body['nats'] === 'connected', { timeoutMs: 30_000, intervalMs: 100 });
    // Resubscribed? Probe on an excluded subject (counted, never stored, not part of "published").
    await waitFor('the subscription is back', async () => {
      pub.publish(`${names.prefix}.council.probe.request`, textEnvelope('probe', 'probe', 'probe'));
      await pub.flush();
      return (await metric('mycelis_memory_ingest_excluded_total')) > 0;
    }, { timeoutMs: 30_000, intervalMs: 100 });

    published += await publishTraffic(pub, { count: AFTER, agents: 100, subjectPrefix: names.prefix, typeHeaders: true, seed: 42 });
    await waitFor('the service received everything published', async () => (await received()) === published, { timeoutMs: 60_000, intervalMs: 100 });
    const dropped = await metric('mycelis_memory_ingest_dropped_total'); // final: drops are decided on receipt
    await waitFor('everything not dropped is stored', async () => (await rows()) >= published - dropped, { timeoutMs: 60_000, intervalMs: 100 });
    await waitFor('nothing left in the buffer', async () => (await metric('mycelis_memory_ingest_rows_stored_total')) >= published - dropped, { timeoutMs: 30_000 });
    const r = await pool.query('SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM log_entries');
    assert.deepEqual(r.rows[0], { n: published - dropped, d: published - dropped }, `published ${published}, dropped ${dropped}: stored = published - dropped, each once`);
    assert.equal(await countOf(pool, 'SELECT 1 FROM ingest_rejects'), 0, 'no dead letters: the only loss is the counted drops');
    assert.equal(published, BURST + AFTER);
  });
});
