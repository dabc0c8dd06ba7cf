// Fault scenario 2 (issue 7): PostgreSQL down for 30 s in the middle of ingest, against the built
// service as a process. A PRIVATE PostgreSQL (never the shared one); the shared NATS with a unique stream.
// During the outage: readiness NOT_SERVING ("" and MemoryService over gRPC health, /readyz 503) while
// liveness stays SERVING ("liveness", /healthz 200); an open StreamLogs ends UNAVAILABLE and new ones
// are refused UNAVAILABLE. Afterwards the client resumes by its last cursor with no gap and no
// duplicate, and every event is stored exactly once.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { MemoryServiceClient } from '../../src/gen/mycelis/memory/v1/memory.js';
import { startService, type ServiceProcess } from '../helpers/service.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-pg.js';
import { SHARED_NATS_URL, dropStreamAndClose, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { StreamCollector } from '../integration/api-harness.js';
import { textEnvelope } from '../integration/ingest-harness.js';
import { assertionPool, consumerDrained, countOf, publishTraffic, serviceEnv } from './fault-helpers.js';

const OUTAGE_MS = 30_000; // the number
const BEFORE = 30_000; // published before the outage (several default batches: the outage comes mid-ingest)
const DURING = 10_000; // published while PostgreSQL is down
const TOTAL = 1 + BEFORE + DURING; // plus one warm-up event
const names = uniqueNatsNames('pgoutage');

type HealthClient = grpc.Client & { check(req: { service: string }, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void };

describe('fault: PostgreSQL outage of 30 s mid-ingest', { timeout: 150_000 }, () => {
  let pgp: PrivatePostgres;
  let pool: pg.Pool;
  let nc: NatsConnection;
  let svc: ServiceProcess;
  let client: MemoryServiceClient;
  let health: HealthClient;

  before(async () => {
    pgp = await startPrivatePostgres();
    pool = assertionPool(pgp.url);
    nc = await connect({ servers: SHARED_NATS_URL });
    svc = await startService({
      env: serviceEnv({ DATABASE_URL: pgp.url, MEMORY_STORE: 'postgres' }, SHARED_NATS_URL, names), // production defaults (ACK_WAIT 10 s, batches of 5,000)
    });
    client = new MemoryServiceClient(svc.grpcAddress, grpc.credentials.createInsecure());
    const Health = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');
    health = new Health(svc.grpcAddress, grpc.credentials.createInsecure()) as unknown as HealthClient;
  });
  after(async () => {
    if (svc && svc.child.exitCode !== null) console.error(`service exited ${svc.child.exitCode}:\n${svc.output.slice(-45).join('\n')}`);
    client?.close();
    health?.close();
    await svc?.stop();
    await dropStreamAndClose(nc, names.stream);
    await pool?.end();
    await pgp?.destroy();
  });

  const check = (service: string): Promise<string> =>
    new Promise((res, rej) => health.check({ service }, (e, v) => (e ? rej(e) : res(v.status))));
  const http = async (path: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const r = await fetch(`${svc.httpBase}${path}`);
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  const probes = async (): Promise<Record<string, unknown>> => ({
    ready: await check(''),
    memoryService: await check('mycelis.memory.v1.MemoryService'),
    liveness: await check('liveness'),
    readyz: (await http('/readyz')).status,
    healthz: (await http('/healthz')).status,
  });
  const rows = (): Promise<number> => countOf(pool, 'SELECT 1 FROM log_entries');
  /** Opens a stream and waits for its first response or its error. */
  const openStream = async (req: { afterCursor?: string; tail?: number }): Promise<StreamCollector> => {
    const s = new StreamCollector(client, req);
    await waitFor('a first response or an error', () => s.responses.length > 0 || s.error !== null || s.ended, { timeoutMs: 20_000 });
    return s;
  };

  it('readiness down and liveness up during the outage; streams UNAVAILABLE, resumed by cursor; every event once', async () => {
    assert.deepEqual(await probes(), { ready: 'SERVING', memoryService: 'SERVING', liveness: 'SERVING', readyz: 200, healthz: 200 });

    nc.publish(`${names.prefix}.agent.warmup.output`, textEnvelope('warmup', 'warmup', 'first'));
    await waitFor('warm-up row', async () => (await rows()) === 1);
    const tail = await openStream({ tail: 1 });
    assert.equal(tail.error, null);
    await waitFor('the tail has the warm-up record', () => tail.records.length === 1);

    assert.equal(await publishTraffic(nc, { count: BEFORE, agents: 100, subjectPrefix: names.prefix, typeHeaders: true, seed: 2 }), BEFORE);
    await waitFor('ingest under way', async () => (await rows()) > 2_000, { timeoutMs: 60_000, intervalMs: 5 });
    await pgp.stop();
    const downAt = Date.now();
    const rowsAtStop = tail.records.length;

    // Publishing goes on: JetStream keeps what the service cannot store.
    assert.equal(await publishTraffic(nc, { count: DURING, agents: 100, subjectPrefix: names.prefix, typeHeaders: true, seed: 3 }), DURING);

    await waitFor('readiness NOT_SERVING on both names', async () => (await check('')) === 'NOT_SERVING' && (await check('mycelis.memory.v1.MemoryService')) === 'NOT_SERVING', { timeoutMs: 20_000, intervalMs: 200 });
    assert.deepEqual(await probes(), { ready: 'NOT_SERVING', memoryService: 'NOT_SERVING', liveness: 'SERVING', readyz: 503, healthz: 200 });
    const readyz = await http('/readyz');
    assert.equal(readyz.body['database'], 'unavailable');
    assert.equal(readyz.body['nats'], 'connected', 'NATS is fine; only the database is down');

    // The open stream learns of the outage: it ends UNAVAILABLE (its client resumes by cursor later).
    await waitFor('the open tail ends', () => tail.error !== null || tail.ended, { timeoutMs: 20_000, intervalMs: 100 });
    const tailError = tail.error as grpc.ServiceError | null; // (narrowed to null by the assertion above)
    assert.equal(tailError?.code, grpc.status.UNAVAILABLE, `the open tail ends UNAVAILABLE (${tailError?.details ?? 'ended OK'})`);
    assert.ok(tail.records.length >= rowsAtStop, 'records delivered before the outage are kept by the client');
    // New streams, however they start, are refused UNAVAILABLE while the database is down.
    const lastCursor = tail.responses[tail.responses.length - 1]!.cursor;
    for (const req of [{ afterCursor: lastCursor }, { tail: 10 }, {}]) {
      const s = await openStream(req);
      assert.equal(s.error?.code, grpc.status.UNAVAILABLE, `StreamLogs ${JSON.stringify(req)} during the outage: ${s.error?.details ?? 'answered'}`);
    }
    // Still not ready and still live just before the database returns.
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - downAt)))); // the outage itself (the 30 s)
    assert.deepEqual(await probes(), { ready: 'NOT_SERVING', memoryService: 'NOT_SERVING', liveness: 'SERVING', readyz: 503, healthz: 200 });
    assert.equal(svc.child.exitCode, null, 'the process is alive');
    await pgp.start();

    await waitFor('ready again', async () => (await check('')) === 'SERVING', { timeoutMs: 30_000, intervalMs: 200 });
    const resumed = await openStream({ afterCursor: lastCursor });
    assert.equal(resumed.error, null, `resume by cursor: ${resumed.error?.details}`);
    await waitFor('every event stored', async () => (await rows()) >= TOTAL, { timeoutMs: 90_000, intervalMs: 200 });
    await waitFor('consumer drained', () => consumerDrained(SHARED_NATS_URL, names.stream, names.consumer), { timeoutMs: 30_000 });
    await waitFor('the resumed stream caught up', () => tail.records.length + resumed.records.length >= TOTAL, { timeoutMs: 60_000 });

    const r = await pool.query('SELECT count(*)::int AS n, count(DISTINCT id)::int AS d, count(DISTINCT seq)::int AS s FROM log_entries');
    assert.deepEqual(r.rows[0], { n: TOTAL, d: TOTAL, s: TOTAL }, 'every event stored once');
    assert.equal(await countOf(pool, 'SELECT 1 FROM ingest_rejects'), 0, 'no dead letters');
    const dbOrder = (await pool.query<{ id: string }>('SELECT id FROM log_entries ORDER BY seq')).rows.map((x) => x.id);
    const joined = [...tail.records, ...resumed.records].map((x) => x.id);
    assert.equal(new Set(joined).size, joined.length, 'no duplicate across the resume');
    assert.deepEqual(joined, dbOrder, 'the tail before the outage joined with the resumed stream is every row once, in seq order');
    resumed.cancel();
  });
});
