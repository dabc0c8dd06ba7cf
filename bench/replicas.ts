// Phase `replicas` of `npm run bench`: one service against two replicas of it (one database, one durable
// consumer: the k8s deployment's shape) draining the same prefilled stream. Commits are serialized by
// pg_advisory_xact_lock (DESIGN 3.2: seq order is commit order, also across replicas), so a second
// replica adds decoding and fetching in parallel but never a second commit at the same time. Measured:
// events/s, CPU per event (each process group), and each replica's mean time per commit (which
// includes its wait for the lock) and share of the commits.
import type { NatsConnection } from 'nats';
import pg from 'pg';
import type { PrivateNats } from '../test/helpers/nats.js';
import type { TestDatabase } from '../test/helpers/pg.js';
import { startBenchService, type BenchService } from './service.js';
import { buildMessages, createStream, CpuTracker, fmt, nowMs, publishAll, until } from './lib.js';

export interface ReplicaBenchOptions {
  readonly events: number;
  readonly log: (msg: string) => void;
  readonly cleanup: (() => Promise<void>)[];
  readonly freshDb: (label: string) => Promise<TestDatabase>;
  readonly env: (db: TestDatabase, stream: string, consumer: string) => Record<string, string>;
  readonly nodeFlags: string[];
}

const COMMIT = ['mycelis_memory_store_batch_commit_seconds_sum', 'mycelis_memory_store_batch_commit_seconds_count'];

async function committed(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ n: string }>('SELECT ((SELECT count(*) FROM log_entries) + (SELECT count(*) FROM ingest_rejects))::text AS n');
    return Number(r.rows[0]!.n);
  } finally {
    await c.end();
  }
}

async function drainWith(replicas: number, nats: PrivateNats, nc: NatsConnection, n: number, o: ReplicaBenchOptions): Promise<Record<string, unknown>> {
  const db = await o.freshDb(`replicas${replicas}`);
  const stream = `BENCH_REPLICAS_${replicas}`;
  const consumer = `bench-replicas-${replicas}`;
  await createStream(nc, stream);
  // Every replica is up (the first migrates) before the events are published, so all of them drain
  // from the first event: time is taken from the first row received to the last committed.
  const services: BenchService[] = [];
  const groups: Record<string, (cmd: string, pid: string) => boolean> = {
    postgres: (cmd) => cmd.startsWith('postgres: ') && cmd.includes(` ${db.name} `),
    nats: (cmd) => cmd.includes('nats-server') && cmd.includes(nats.storeDir),
  };
  const pids: number[] = [];
  groups['node'] = (_cmd, pid) => pids.includes(Number(pid));
  const cpu = new CpuTracker(groups);
  for (let i = 0; i < replicas; i++) {
    const svc = await startBenchService(o.env(db, stream, consumer), o.nodeFlags);
    o.cleanup.push(() => svc.stop());
    services.push(svc);
    pids.push(svc.pid);
  }
  await publishAll(nc, buildMessages(n, { agents: 1000, teams: 40, seed: 77 }));
  await until(async () => (await committed(db.url)) >= n, 600_000, 25, `${replicas} replica(s) to commit every event`);
  const t1 = nowMs();
  const cpuSeconds = cpu.stop();
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  const t0 = await c.query<{ t0: string }>('SELECT (extract(epoch FROM min(received_at)) * 1000)::text AS t0 FROM log_entries');
  await c.end();
  const seconds = (t1 - Number(t0.rows[0]!.t0)) / 1000;
  const perReplica = [];
  for (const s of services) {
    const m = await s.metrics(COMMIT);
    const count = m['mycelis_memory_store_batch_commit_seconds_count'] ?? 0;
    perReplica.push({ commits: count, meanCommitMs: count > 0 ? ((m['mycelis_memory_store_batch_commit_seconds_sum'] ?? 0) / count) * 1000 : 0 });
  }
  for (const s of services) await s.stop();
  for (let i = 0; i < services.length; i++) o.cleanup.pop();
  await nc.jetstreamManager().then((j) => j.streams.delete(stream)).catch(() => undefined);
  const total = Object.values(cpuSeconds).reduce((a, b) => a + b, 0);
  return {
    replicas,
    events: n,
    seconds,
    eventsPerSec: n / seconds,
    cpuSeconds,
    cpuUsPerEvent: Math.round((total / n) * 1e7) / 10,
    perReplica,
  };
}

export async function replicaPhases(nats: PrivateNats, nc: NatsConnection, o: ReplicaBenchOptions): Promise<Record<string, unknown>> {
  const one = await drainWith(1, nats, nc, o.events, o);
  o.log(`replicas: one instance ${fmt(one['eventsPerSec'] as number)} events/s, ${String(one['cpuUsPerEvent'])} µs CPU/event`);
  const two = await drainWith(2, nats, nc, o.events, o);
  o.log(`replicas: two ${fmt(two['eventsPerSec'] as number)} events/s, ${String(two['cpuUsPerEvent'])} µs CPU/event; per replica ${JSON.stringify(two['perReplica'])}`);
  return { one, two, ratio: (two['eventsPerSec'] as number) / (one['eventsPerSec'] as number) };
}
