// `npm run bench`: issue 6's benchmark, every figure measured in the same run on this machine.
//
//   1. ingest: prefill a stream with N events, start the service (child process, fresh database),
//      time until every row is committed
//   2. baselines on the same stream: the bare pipeline and the directive's design
//   3. latency: publish at a fixed rate while one StreamLogs client tails
//   4. fan-out: C concurrent StreamLogs clients with mixed filters at that rate; burst ingest rate
//      with and without them
//   5. GetRegistry at 10,000 agents, QueryLogs pages and GetTrace over 1,000,000 rows
//   6. the service's peak RSS per phase
//   7. partitions (bench/partitions.ts): the upgrade's lock time at 1,000,000 rows; StreamLogs catch-up
//      and QueryLogs over 30 daily partitions vs one table; retention of one day of 1,000,000 rows by
//      partition drop vs batched delete, and the ingest rate while it runs
//   8. replicas (bench/replicas.ts): two replicas vs one instance draining the same events
//   9. watch (bench/watch.ts): WatchRegistry, 1,000 watchers of 10,000 agents, OFFLINE delivered after
//      the threshold
//  10. (--only mixed, also in the default) the current swarm: the protobuf mix vs everything the swarm
//      sends today (`publish --mix current`) in alternating rounds, and one drain per format, with CPU per
//      event, and the decode cost per format (bench/mixed.ts)
//  11. (--only restart) a backlog stopped at 5,000 rows with SIGTERM, then with SIGKILL, and restarted:
//      the stop, and the seconds until the stopped process's deliveries are acked (bench/operations.ts)
//  12. (--only large) 1,000 tool results of 512 KiB: events/s, MB/s, peak RSS (bench/operations.ts)
//  13. (--only reads) phase 5 alone: one service drain of N events, then the reads over 1,000,000 rows
//      (--keep keeps its database; --reads-db <name> reads an existing one again, without the drain;
//      --reads-ab <checkout>: GetTrace and SearchLogs through that checkout's build and this one, A B A B)
//
// Everything runs on loopback: a PRIVATE nats-server (so the stream may capture plain `swarm.>`), the
// shared PostgreSQL with fresh databases (dropped at the end). Every loop is bounded; the run stops by
// itself. Prints a table and writes bench/results/latest.json.
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { createLogger } from '../src/logger.js';
import { migrate } from '../src/store/migrate.js';
import { startPrivateNats, type PrivateNats } from '../test/helpers/nats.js';
import { createTestDatabase, type TestDatabase } from '../test/helpers/pg.js';
import { ROOT } from '../test/helpers/service.js';
import { startBenchService, type BenchService, type ServiceRuntime } from './service.js';
import { runBarePipeline, runDirective, type BareDecoder, type BareResult } from './baselines.js';
import { profileStages } from './stages.js';
import { emptyFilter, makeClients, openLightTail, type LightTail } from './clients.js';
import type { SearchResult } from './search.js';
import type { ReadsClientOptions, ReadsClientResult } from './reads-client.js';
import { ensureSizedTraces, SIZED_TRACE_ROWS, type SizedTraceResult } from './traces.js';
import { buildMessages, createStream, CpuTracker, fmt, nowMs, publishAll, publishPaced, RssMonitor, Samples, serviceCpuTracker, sleep, summarize, until, type DataOptions, type Summary } from './lib.js';
import { summarizeProfile, type ProfileSummary } from './profile.js';
import { partitionPhases } from './partitions.js';
import { replicaPhases } from './replicas.js';
import { watchPhase } from './watch.js';
import { mixedPhase, type MixedResult } from './mixed.js';
import { largePhase, restartPhase } from './operations.js';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    events: { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    clients: { type: 'string' },
    burst: { type: 'string' },
    'directive-seconds': { type: 'string' },
    'registry-agents': { type: 'string' },
    'query-rows': { type: 'string' },
    'partition-rows': { type: 'string' },
    'replica-events': { type: 'string' },
    profile: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    only: { type: 'string' },
    'batch-size': { type: 'string' },
    'node-flags': { type: 'string' },
    watchers: { type: 'string' },
    'offline-after': { type: 'string' },
    'mixed-events': { type: 'string' },
    'format-events': { type: 'string' },
    'warmup-events': { type: 'string' },
    'mixed-rounds': { type: 'string' },
    'ingest-rounds': { type: 'string' },
    'restart-events': { type: 'string' },
    'large-messages': { type: 'string' },
    'reads-db': { type: 'string' },
    'reads-ab': { type: 'string' },
  },
});

function num(name: string, dflt: number, quick: number): number {
  const raw = flags[name as keyof typeof flags];
  if (typeof raw === 'string') {
    const v = Number(raw);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got ${raw}`);
    return v;
  }
  return flags.quick ? quick : dflt;
}

const opts = {
  quick: flags.quick === true,
  events: Math.round(num('events', 250_000, 20_000)),
  rate: num('rate', 5000, 2000),
  duration: num('duration', 30, 5),
  clients: Math.round(num('clients', 1000, 200)),
  burst: Math.round(num('burst', 100_000, 10_000)),
  directiveSeconds: num('directive-seconds', 10, 3),
  registryAgents: Math.round(num('registry-agents', 10_000, 10_000)),
  queryRows: Math.round(num('query-rows', 1_000_000, 60_000)),
  partitionRows: Math.round(num('partition-rows', 1_000_000, 100_000)),
  replicaEvents: Math.round(num('replica-events', 150_000, 20_000)),
  watchers: Math.round(num('watchers', 1000, 200)),
  /** AGENT_OFFLINE_AFTER of the watch phase's service, ms. */
  offlineAfterMs: Math.round(num('offline-after', 30_000, 10_000)),
  mixedEvents: Math.round(num('mixed-events', 100_000, 20_000)),
  formatEvents: Math.round(num('format-events', 40_000, 10_000)),
  warmupEvents: Math.round(num('warmup-events', 20_000, 10_000)),
  mixedRounds: Math.round(num('mixed-rounds', 3, 1)),
  /** Rounds of (bare ts-proto, bare protobufjs, service) drains in the ingest phase; medians reported. */
  ingestRounds: Math.round(num('ingest-rounds', 3, 1)),
  restartEvents: Math.round(num('restart-events', 50_000, 20_000)),
  largeMessages: Math.round(num('large-messages', 1000, 200)),
  profile: flags.profile === true,
  /** Extra node flags for the service (e.g. V8 heap settings), split on spaces. */
  nodeFlags: (flags['node-flags'] ?? '').split(' ').filter((f) => f !== ''),
};
const only = new Set((flags.only ?? 'ingest,mixed,live,partitions,replicas,watch,restart,large').split(','));
const DATA: DataOptions = { agents: 1000, teams: 40, seed: 42 };
/** Seconds of paced publishing at the phase's rate before the latency and fan-out phases record (their paths warm). */
const WARM_UP_S = 2;
const log = (msg: string): void => void process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const resultsDir = join(ROOT, 'bench', 'results');

interface PhaseRss {
  [phase: string]: number;
}

const results: Record<string, unknown> = {};
const rss: PhaseRss = {};
const cleanup: (() => Promise<void>)[] = [];

function machine(): Record<string, unknown> {
  const ver = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim().split('\n')[0]!;
    } catch {
      return 'unknown';
    }
  };
  return {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    freeMemoryGiB: Math.round((freemem() / 2 ** 30) * 10) / 10,
    node: process.version,
    nats: ver('nats-server', ['--version']),
    loadavgAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

async function pgVersion(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ v: string }>('SHOW server_version')).rows[0]!.v;
  } finally {
    await c.end();
  }
}

function perEvent(cpu: Record<string, number>, events: number): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const [k, v] of Object.entries(cpu)) {
    out[k] = Math.round((v / events) * 1e7) / 10;
    total += v;
  }
  out['total'] = Math.round((total / events) * 1e7) / 10;
  return out;
}

/**
 * Which runtime every figure of this run comes from (Node lines differ, in garbage collection above
 * all): the bench's own Node (clients, baselines and the in-process phases run in it), the flags the
 * bench gives the service, NODE_OPTIONS, and the Node.js release, V8 flags and heap limit the service
 * reported at start.
 */
interface RunRuntime {
  bench: { node: string; v8: string; execArgv: string[] };
  nodeFlags: string[];
  nodeOptions: string;
  service?: ServiceRuntime | 'not reported';
}
const runtimeRecord: RunRuntime = {
  bench: { node: process.version, v8: process.versions.v8, execArgv: process.execArgv },
  nodeFlags: opts.nodeFlags,
  nodeOptions: process.env['NODE_OPTIONS'] ?? '',
};
results['runtime'] = runtimeRecord;

function recordRuntime(svc: BenchService): void {
  if (runtimeRecord.service) return;
  runtimeRecord.service = svc.runtime ?? 'not reported';
  log(runtimeLine());
}

function runtimeLine(): string {
  const r = runtimeRecord;
  const s = typeof r.service === 'object' ? r.service : undefined;
  const extra = r.nodeOptions ? [`NODE_OPTIONS=${r.nodeOptions}`] : [];
  if (!s) return `runtime: Node ${r.bench.node} (V8 ${r.bench.v8}), in this process${r.service ? '; the service did not report its runtime' : ''}${extra.length ? `, ${extra[0]}` : ''}`;
  const flags = [...s.execArgv, ...extra];
  return `runtime: service on Node ${s.node} (V8 ${s.v8}), flags: ${flags.length ? flags.join(' ') : 'none'}, heap limit ${s.heapLimitMiB} MiB`;
}

async function freshDb(label: string): Promise<TestDatabase> {
  const db = await createTestDatabase(`bench_${label}`);
  if (!flags.keep) cleanup.push(() => db.drop());
  return db;
}

async function migrated(label: string, onlyDirective = false): Promise<TestDatabase> {
  const db = await freshDb(label);
  const pool = new pg.Pool({ connectionString: db.url, max: 1 });
  try {
    const dir = join(ROOT, 'migrations');
    if (onlyDirective) {
      // The directive's own schema: 001 only, in a directory of its own.
      const tmp = join(resultsDir, 'migrations-001');
      mkdirSync(tmp, { recursive: true });
      for (const f of readdirSync(tmp)) if (f !== '001_init_memory.sql') throw new Error(`unexpected ${f} in ${tmp}`);
      const { readFileSync } = await import('node:fs');
      writeFileSync(join(tmp, '001_init_memory.sql'), readFileSync(join(dir, '001_init_memory.sql')));
      await migrate(pool, createLogger('error'), tmp);
    } else {
      await migrate(pool, createLogger('error'), dir);
    }
  } finally {
    await pool.end();
  }
  return db;
}

/** This project's schema before partitions (migrations 001-003): one log_entries table. */
async function migratedUpTo003(label: string): Promise<TestDatabase> {
  const db = await freshDb(label);
  const tmp = join(resultsDir, 'migrations-003');
  mkdirSync(tmp, { recursive: true });
  for (const f of ['001_init_memory.sql', '002_service_columns.sql', '003_registry_field_order.sql']) {
    writeFileSync(join(tmp, f), readFileSync(join(ROOT, 'migrations', f)));
  }
  const pool = new pg.Pool({ connectionString: db.url, max: 1 });
  try {
    await migrate(pool, createLogger('error'), tmp);
  } finally {
    await pool.end();
  }
  return db;
}

async function withClient<T>(url: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

/** Highest seq handed out: with distinct events and no rejects, the number of committed rows. */
async function committedSeq(c: pg.Client): Promise<number> {
  const r = await c.query<{ v: string; called: boolean }>('SELECT last_value::text AS v, is_called AS called FROM log_entries_seq');
  return r.rows[0]!.called ? Number(r.rows[0]!.v) : 0;
}

/** Rows plus dead letters: every event is one or the other. */
async function storedRows(c: pg.Client): Promise<number> {
  const r = await c.query<{ n: string }>('SELECT ((SELECT count(*) FROM log_entries) + (SELECT count(*) FROM ingest_rejects))::text AS n');
  return Number(r.rows[0]!.n);
}

function serviceEnv(nats: PrivateNats, db: TestDatabase, stream: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...db.env,
    NATS_URL: nats.url,
    STREAM_NAME: stream,
    CONSUMER_NAME: 'mycelis-memory',
    LOG_LEVEL: 'info',
    MAX_STREAMS: String(opts.clients + 100),
    ...(flags['batch-size'] ? { INGEST_BATCH_SIZE: flags['batch-size'] } : {}),
    ...extra,
  };
}

async function streamMessages(nc: NatsConnection, name: string): Promise<number> {
  const jsm = await nc.jetstreamManager();
  return (await jsm.streams.info(name)).state.messages;
}

interface ServiceDrain {
  seconds: number;
  eventsPerSec: number;
  rejects: number;
  agents: number;
  bytesPerRow: number;
  cpuSeconds: Record<string, number>;
  /** The service's own GC time (nodejs_gc_duration_seconds_sum) during the drain, per event. */
  gcUsPerEvent: number;
  peakRssMb: number;
}

/** The service (child process, every feature on) drains the prefilled stream into `db`; stopped after. */
async function drainService(nats: PrivateNats, db: TestDatabase, stream: string, N: number, profDir: string | null, consumer: string): Promise<ServiceDrain> {
  // Its own durable consumer: a consumer an earlier drain acked through has nothing left to deliver.
  const svc = await startBenchService(serviceEnv(nats, db, stream, { CONSUMER_NAME: consumer }), [...opts.nodeFlags, ...(profDir !== null ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])]);
  cleanup.push(() => svc.stop());
  recordRuntime(svc);
  const mon = new RssMonitor(svc.pid);
  const gcSeconds = async (): Promise<number> => Object.values(await svc.metrics(['nodejs_gc_duration_seconds_sum'])).reduce((a, b) => a + b, 0);
  const gc0 = await gcSeconds();
  const svcCpu = serviceCpuTracker(svc.pid, db.name, nats.storeDir);
  let t1 = 0;
  await withClient(db.url, async (c) => {
    // seq = rows when nothing was retried or rejected; count(*) settles it either way.
    await until(async () => (await committedSeq(c)) >= N, 600_000, 25, 'the service to commit every event');
    await until(async () => (await storedRows(c)) >= N, 600_000, 25, 'the service to commit every event');
    t1 = nowMs();
  });
  const gcUsPerEvent = Math.round((((await gcSeconds()) - gc0) * 1e6 / N) * 10) / 10;
  const peakRssMb = mon.peakMb();
  const cpuSeconds = svcCpu.stop();
  mon.stop();
  const check = await withClient(db.url, async (c) => {
    const r = await c.query<{ n: string; t0: string; rejects: string; agents: string; bytes: string }>(
      `SELECT (SELECT count(*) FROM log_entries)::text AS n,
              (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'log_entries'::regclass)::bigint::text AS bytes,
              (SELECT (extract(epoch FROM min(received_at)) * 1000)::text FROM log_entries) AS t0,
              (SELECT count(*) FROM ingest_rejects)::text AS rejects,
              (SELECT count(*) FROM agent_registry)::text AS agents`,
    );
    return r.rows[0]!;
  });
  await svc.stop();
  cleanup.pop();
  if (Number(check.n) + Number(check.rejects) !== N) throw new Error(`service stored ${check.n} rows and ${check.rejects} dead letters, expected ${N} events`);
  const seconds = (t1 - Number(check.t0)) / 1000;
  return {
    seconds,
    eventsPerSec: N / seconds,
    rejects: Number(check.rejects),
    agents: Number(check.agents),
    bytesPerRow: Math.round(Number(check.bytes) / Number(check.n)),
    cpuSeconds,
    gcUsPerEvent,
    peakRssMb,
  };
}

// ---------------------------------------------------------------------------------------------
// Phases 1, 2, 5: prefilled stream -> bare pipeline, directive, service drain; then reads.

async function ingestPhases(nats: PrivateNats, nc: NatsConnection): Promise<void> {
  const N = opts.events;
  log(`generating ${N} events (${DATA.agents} agents, ${DATA.teams} teams)`);
  const msgs = buildMessages(N, DATA);
  const kinds: Record<string, number> = {};
  let bytes = 0;
  for (const m of msgs) {
    kinds[m.kind] = (kinds[m.kind] ?? 0) + 1;
    bytes += m.data.length;
  }
  const stream = 'BENCH_INGEST';
  await createStream(nc, stream);
  const t = nowMs();
  await publishAll(nc, msgs);
  await until(async () => (await streamMessages(nc, stream)) >= N, 120_000, 100, 'the stream to hold every event');
  const stored = await streamMessages(nc, stream);
  if (stored !== N) throw new Error(`stream holds ${stored} messages, expected ${N}`);
  log(`prefilled ${N} events in ${((nowMs() - t) / 1000).toFixed(1)} s`);
  results['data'] = { events: N, agents: DATA.agents, teams: DATA.teams, kinds, meanPayloadBytes: Math.round(bytes / N) };

  // Baselines and the service, alternating over `--ingest-rounds` rounds (bare ts-proto, bare
  // protobufjs, service; medians), so a host whose load drifts weighs on all three alike (issue 17).
  const profDir = join(resultsDir, 'profile');
  if (opts.profile) {
    mkdirSync(profDir, { recursive: true });
    for (const f of readdirSync(profDir)) if (f.endsWith('.cpuprofile')) (await import('node:fs')).rmSync(join(profDir, f));
  }
  const bareRuns: Record<BareDecoder, (BareResult & { cpuSeconds: Record<string, number> })[]> = { 'ts-proto': [], protobufjs: [] };
  const serviceRuns: ServiceDrain[] = [];
  const loadDuring: number[][] = [];
  let db: TestDatabase | undefined;
  for (let round = 1; round <= opts.ingestRounds; round++) {
    loadDuring.push(loadavg().map((x) => Math.round(x * 100) / 100));
    // The two bare variants take turns going first (the first drain of a round may find colder caches).
    for (const decoder of round % 2 === 1 ? (['ts-proto', 'protobufjs'] as const) : (['protobufjs', 'ts-proto'] as const)) {
      const bareDb = await migrated(`bare_${decoder === 'ts-proto' ? 'tsproto' : 'pbjs'}_${round}`);
      log(`round ${round}: bare pipeline (${decoder}): draining`);
      const bareCpu = serviceCpuTracker(process.pid, bareDb.name, nats.storeDir);
      const bare = { ...(await runBarePipeline(nc, stream, bareDb.url, N, decoder)), cpuSeconds: {} as Record<string, number> };
      bare.cpuSeconds = bareCpu.stop();
      bareRuns[decoder].push(bare);
      log(`round ${round}: bare pipeline (${decoder}): ${fmt(bare.eventsPerSec)} events/s`);
      if (round === 1 && decoder === 'ts-proto') {
        results['contextBytes'] = await withClient(bareDb.url, async (c) => {
          const r = await c.query<{ avg: string }>('SELECT avg(octet_length(context::text))::int::text AS avg FROM log_entries');
          return Number(r.rows[0]!.avg);
        });
      }
    }
    // The service, draining the same N events into a fresh database (the last round's is kept for phase 5).
    const last = round === opts.ingestRounds;
    const svcDb = await freshDb(`ingest_${round}`);
    log(`round ${round}: service: draining`);
    const run = await drainService(nats, svcDb, stream, N, opts.profile && last ? profDir : null, `mycelis-memory-${round}`);
    serviceRuns.push(run);
    log(`round ${round}: service: ${fmt(run.eventsPerSec)} events/s (${run.seconds.toFixed(2)} s); ` +
      `ratio to bare ts-proto ${(run.eventsPerSec / bareRuns['ts-proto'][round - 1]!.eventsPerSec).toFixed(2)}x, ` +
      `protobufjs ${(run.eventsPerSec / bareRuns.protobufjs[round - 1]!.eventsPerSec).toFixed(2)}x`);
    if (last) db = svcDb;
  }
  loadDuring.push(loadavg().map((x) => Math.round(x * 100) / 100));
  // The same bare pipeline into one unpartitioned table (the schema before migration 004): what the
  // partitions cost COPY.
  const bareOneDb = await migratedUpTo003('bare_one');
  const bareOne = await runBarePipeline(nc, stream, bareOneDb.url, N);
  log(`bare pipeline, one table: ${fmt(bareOne.eventsPerSec)} events/s`);

  // Baseline 2: the directive's design.
  const dirDb = await migrated('directive', true);
  log(`directive design: ${opts.directiveSeconds} s`);
  const directive = await runDirective(nc, stream, dirDb.url, opts.directiveSeconds);
  log(`directive design: ${fmt(directive.eventsPerSec)} events/s`);

  // Per-stage profile of the service's ingest code on these messages (bench/stages.ts), after the drains.
  log('per-stage profile');
  const stages = profileStages(msgs, { sample: Math.min(N, 50_000), rounds: 5 });
  results['stages'] = stages;

  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const medianRun = <T extends { eventsPerSec: number }>(runs: T[]): T => {
    const m = median(runs.map((r) => r.eventsPerSec));
    return runs.find((r) => r.eventsPerSec === m)!;
  };
  const bare = medianRun(bareRuns['ts-proto']);
  const barePbjs = medianRun(bareRuns.protobufjs);
  const svc = medianRun(serviceRuns);
  const ratios = serviceRuns.map((r, i) => ({
    tsProto: r.eventsPerSec / bareRuns['ts-proto'][i]!.eventsPerSec,
    protobufjs: r.eventsPerSec / bareRuns.protobufjs[i]!.eventsPerSec,
    faster: r.eventsPerSec / Math.max(bareRuns['ts-proto'][i]!.eventsPerSec, bareRuns.protobufjs[i]!.eventsPerSec),
  }));
  rss['ingestDrain'] = Math.max(...serviceRuns.map((r) => r.peakRssMb));
  results['ingest'] = {
    events: N,
    rounds: opts.ingestRounds,
    loadavgDuring: loadDuring,
    seconds: svc.seconds,
    eventsPerSec: svc.eventsPerSec,
    rejects: svc.rejects,
    cpuSeconds: svc.cpuSeconds,
    cpuUsPerEvent: perEvent(svc.cpuSeconds, N),
    bareCpuUsPerEvent: perEvent(bare.cpuSeconds, N),
    bareProtobufjsCpuUsPerEvent: perEvent(barePbjs.cpuSeconds, N),
    agents: svc.agents,
    // On disk per stored row: table, TOAST and every index, all partitions.
    bytesPerRow: svc.bytesPerRow,
    bare,
    bareProtobufjs: barePbjs,
    bareOneTable: bareOne,
    directive,
    serviceRuns: serviceRuns.map((r) => ({ eventsPerSec: r.eventsPerSec, cpuUsPerEvent: perEvent(r.cpuSeconds, N), gcUsPerEvent: r.gcUsPerEvent })),
    gcUsPerEvent: { service: svc.gcUsPerEvent, bareTsProto: bare.gcUsPerEvent, bareProtobufjs: barePbjs.gcUsPerEvent },
    bareRuns: { 'ts-proto': bareRuns['ts-proto'].map((r) => r.eventsPerSec), protobufjs: bareRuns.protobufjs.map((r) => r.eventsPerSec) },
    ratiosPerRound: ratios,
    // Medians of the per-round ratios (each from drains minutes apart, not hours).
    ratioToBare: median(ratios.map((r) => r.tsProto)),
    ratioToBareProtobufjs: median(ratios.map((r) => r.protobufjs)),
    ratioToFasterBare: median(ratios.map((r) => r.faster)),
    ratioToDirective: svc.eventsPerSec / directive.eventsPerSec,
  };

  // Phase 5 on the same database, a service without ingest: 10,000 agents, 1,000,000 rows.
  if (db === undefined) throw new Error('no ingest round ran');
  await readPhasesOn(nats, db, stream);
  if (opts.profile) {
    // `serve` replaces itself once at start (process.execve, with the memory budget's V8 flags): the
    // process before that writes a short profile of its own; the drain is in the largest.
    const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
    files.sort((a, b) => statSync(join(profDir, b)).size - statSync(join(profDir, a)).size);
    if (files.length > 0) {
      const prof: ProfileSummary = summarizeProfile(join(profDir, files[0]!), N);
      results['profile'] = prof;
    }
  }
  await nc.jetstreamManager().then((j) => j.streams.delete(stream));
}

/** Phase 5 against `db`: a service without ingest, its RSS watched. */
async function readPhasesOn(nats: PrivateNats, db: TestDatabase, stream: string): Promise<void> {
  const reader = await startBenchService(serviceEnv(nats, db, stream, { INGEST_MODE: 'off' }), opts.nodeFlags);
  cleanup.push(() => reader.stop());
  const readMon = new RssMonitor(reader.pid);
  await readPhases(reader, db, readMon);
  readMon.stop();
  await reader.stop();
  cleanup.pop();
}

/** Phase 5 alone (`--only reads`): one drain into a fresh database, or `--reads-db` as it is. */
async function readsOnly(nats: PrivateNats, nc: NatsConnection): Promise<void> {
  let db: TestDatabase;
  const stream = 'BENCH_READS';
  await createStream(nc, stream);
  const name = flags['reads-db'];
  if (name !== undefined) {
    const url = (process.env['TEST_PG_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres').replace(/\/[^/]*$/, `/${name}`);
    db = { name, url, env: { DATABASE_URL: url, MEMORY_STORE: 'postgres' }, drop: async () => {} };
    log(`reads: database ${name} as it is`);
  } else {
    const N = opts.events;
    const msgs = buildMessages(N, DATA);
    await publishAll(nc, msgs);
    await until(async () => (await streamMessages(nc, stream)) >= N, 120_000, 100, 'the stream to hold every event');
    db = await freshDb('reads');
    log(`reads: service drains ${N} events into ${db.name}`);
    const run = await drainService(nats, db, stream, N, null, 'mycelis-memory-reads');
    log(`reads: drained at ${fmt(run.eventsPerSec)} events/s`);
  }
  const other = flags['reads-ab'];
  if (other === undefined) {
    await readPhasesOn(nats, db, stream);
  } else {
    // --reads-ab <checkout>: GetTrace and SearchLogs through that checkout's build (A) and this one (B)
    // in turns, A B A B, on the same database (--reads-db, as it is).
    if (name === undefined) throw new Error('--reads-ab needs --reads-db (a database a reads run left with --keep)');
    const runs: { variant: string; loadavg: number[]; loadavgEnd: number[]; getTraceMs: Summary; traceRecordsMean: number; getTraceBySize: Record<string, SizedTraceResult>; search: SearchResult }[] = [];
    await ensureSizedTraces(db.url, log);
    for (const variant of ['A', 'B', 'A', 'B']) {
      const cli = variant === 'A' ? join(other, 'dist', 'src', 'cli.js') : undefined;
      const svc = await startBenchService(serviceEnv(nats, db, stream, { INGEST_MODE: 'off' }), opts.nodeFlags, 60_000, cli);
      cleanup.push(() => svc.stop());
      const mon = new RssMonitor(svc.pid);
      const load = loadavg().map((x) => Math.round(x * 100) / 100);
      const r = await runReadsClient(svc, db, 'trace-search', mon);
      mon.stop();
      await svc.stop();
      cleanup.pop();
      const loadEnd = loadavg().map((x) => Math.round(x * 100) / 100);
      runs.push({ variant, loadavg: load, loadavgEnd: loadEnd, ...r });
      const sized = Object.values(r.getTraceBySize).map((t) => `${t.records}${t.truncated ? ` (${t.returned} sent)` : ''}: ${fmt(t.ms.p50)}/${fmt(t.ms.p99)}`).join(', ');
      log(`reads A/B ${variant} (${variant === 'A' ? other : 'this checkout'}, load ${load.join(' ')} -> ${loadEnd.join(' ')}): GetTrace p50/p99 ${fmt(r.getTraceMs.p50)}/${fmt(r.getTraceMs.p99)} ms (${fmt(r.traceRecordsMean)} records a trace; by size ${sized}); SearchLogs newest p50/p99 ${fmt(r.search.newestMs.p50)}/${fmt(r.search.newestMs.p99)}, relevance ${fmt(r.search.relevanceMs.p50)}/${fmt(r.search.relevanceMs.p99)} ms`);
    }
    results['readsAb'] = { a: other, runs };
  }
  await nc.jetstreamManager().then((j) => j.streams.delete(stream));
}

async function readPhases(svc: BenchService, db: TestDatabase, mon: RssMonitor): Promise<void> {
  await withClient(db.url, async (c) => {
    const have = Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM agent_registry')).rows[0]!.n);
    const add = Math.max(0, opts.registryAgents - have);
    // Extra agents spread over the same 40 teams; some silent (effectively OFFLINE), some BUSY/ERROR.
    await c.query(
      `INSERT INTO agent_registry (agent_id, team_id, status, last_seen, meta, status_at, status_seq, updated_at)
       SELECT 'bench-agent-' || lpad(g::text, 6, '0'), (SELECT team_id FROM agent_registry ORDER BY agent_id OFFSET (g % 40) LIMIT 1),
              (ARRAY['IDLE','BUSY','ERROR','IDLE'])[1 + g % 4], now() - ((g % 7) * interval '1 minute'),
              jsonb_build_object('battery', (g % 100) / 100.0, 'location', 'rack-' || (g % 9)), now(), g, now()
       FROM generate_series(1, $1::int) g`,
      [add],
    );
    const rows = Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM log_entries')).rows[0]!.n);
    // The sized traces (bench/traces.ts) are added after the copies and count towards the total.
    let need = opts.queryRows - rows - (opts.queryRows >= 1_000_000 ? SIZED_TRACE_ROWS : 0);
    log(`loading ${Math.max(0, need)} more log rows (set-based, straight into PostgreSQL)`);
    // Copies of the ingested rows, shifted back in time, new ids and seqs: same sizes and filters.
    let k = 1;
    while (need > 0) {
      const take = Math.min(need, rows);
      await c.query(
        `INSERT INTO log_entries (id, seq, trace_id, timestamp, level, source, intent, message, context, team_id, subject, received_at)
         SELECT gen_random_uuid(), nextval('log_entries_seq'), trace_id, timestamp - $2::int * interval '1 hour', level, source,
                intent, message, context, team_id, subject, received_at
         FROM (SELECT * FROM log_entries ORDER BY seq LIMIT $1) s`,
        [take, k],
      );
      need -= take;
      k++;
    }
    await ensureSizedTraces(db.url, log, false);
    await c.query('VACUUM ANALYZE log_entries');
    await c.query('ANALYZE agent_registry');
  });
  const r = await runReadsClient(svc, db, 'all', mon);
  results['reads'] = { registryAgents: opts.registryAgents, queryRows: opts.queryRows, ...r };
  log(`GetRegistry p50 ${fmt(r.getRegistryMs!.p50)} ms p99 ${fmt(r.getRegistryMs!.p99)} ms; QueryLogs p99 ${fmt(r.queryLogsPageMs!.p99)} ms; GetTrace p99 ${fmt(r.getTraceMs.p99)} ms`);
}

/**
 * The reads phase's calls through `svc`, from a process of their own (bench/reads-client.ts: the bench
 * process's collections would be timed as the service's latency); the service's peak RSS per part.
 */
async function runReadsClient(svc: BenchService, db: TestDatabase, parts: ReadsClientOptions['parts'], mon: RssMonitor): Promise<ReadsClientResult> {
  const o: ReadsClientOptions = { quick: opts.quick, parts, registryAgents: opts.registryAgents, timeMigration: flags['reads-db'] === undefined && flags.keep !== true };
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'reads-client.ts'), `127.0.0.1:${svc.grpcPort}`, db.url, JSON.stringify(o)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let part: string | null = null;
  let result: ReadsClientResult | null = null;
  for await (const line of createInterface({ input: child.stdout! })) {
    const [word, ...rest] = line.split(' ');
    const text = rest.join(' ');
    if (word === 'phase') {
      if (part !== null) rss[part] = mon.peakMb();
      mon.reset();
      part = text;
    } else if (word === 'log') log(text);
    else if (word === 'result') result = JSON.parse(text) as ReadsClientResult;
  }
  const code = await exited;
  if (part !== null) rss[part] = mon.peakMb();
  if (code !== 0 || result === null) throw new Error(`reads client exited (${code})${result === null ? ' without a result' : ''}`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Phases 3, 4: a live service; paced publishing; tails.

/** Busy CPU-seconds of the whole machine since boot (/proc/stat: everything but idle and iowait). */
function hostCpu(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ is 100 on Linux
}

/** CPU of the service, its database backends, nats-server and this bench process (the tails' clients). */
function liveCpuTracker(svcPid: number, db: TestDatabase, nats: PrivateNats): CpuTracker {
  return serviceCpuTracker(svcPid, db.name, nats.storeDir, { benchClients: process.pid });
}

interface BurstResult {
  events: number;
  seconds: number;
  eventsPerSec: number;
  cpuSeconds: Record<string, number>;
}

async function burstRate(nc: NatsConnection, db: TestDatabase, label: string, cpu: () => CpuTracker): Promise<BurstResult> {
  const msgs = buildMessages(opts.burst, { ...DATA, seed: DATA.seed + label.length });
  return withClient(db.url, async (c) => {
    const before = await committedSeq(c);
    const tracker = cpu();
    const t0 = nowMs();
    await publishAll(nc, msgs);
    await until(async () => (await committedSeq(c)) >= before + opts.burst, 600_000, 25, `burst ${label} to commit`);
    const seconds = (nowMs() - t0) / 1000;
    return { events: opts.burst, seconds, eventsPerSec: opts.burst / seconds, cpuSeconds: tracker.stop() };
  });
}

function tailFilter(i: number, teams: string[], agents: string[]): ReturnType<typeof emptyFilter> {
  const f = emptyFilter();
  const slot = i % 100;
  if (i < 2) return f; // two unfiltered dashboards
  if (slot < 15) f.teamIds = [teams[i % teams.length]!];
  else if (slot < 19) {
    f.teamIds = [teams[i % teams.length]!];
    f.levels = ['ERROR', 'WARN'];
  } else if (slot < 20) f.levels = ['ERROR', 'FATAL'];
  else if (slot < 90) f.agentIds = [agents[i % agents.length]!, agents[(i * 7 + 3) % agents.length]!];
  else f.traceId = `${(i * 2654435761 >>> 0).toString(16).padStart(8, '0')}${'0'.repeat(24)}`;
  return f;
}

async function livePhases(nats: PrivateNats, nc: NatsConnection): Promise<void> {
  const db = await freshDb('live');
  const stream = 'BENCH_LIVE';
  const liveProfDir = join(resultsDir, 'profile-live');
  if (opts.profile) {
    mkdirSync(liveProfDir, { recursive: true });
    for (const f of readdirSync(liveProfDir)) if (f.endsWith('.cpuprofile')) (await import('node:fs')).rmSync(join(liveProfDir, f));
  }
  const svc = await startBenchService(serviceEnv(nats, db, stream), [...opts.nodeFlags, ...(opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${liveProfDir}`] : [])]);
  cleanup.push(() => svc.stop());
  recordRuntime(svc);
  const mon = new RssMonitor(svc.pid);
  const address = `127.0.0.1:${svc.grpcPort}`;
  const teams = Array.from({ length: DATA.teams }, (_, i) => i);
  // Warm up (and learn team and agent names) with a short paced publish.
  await publishPaced(nc, 1000, 1, { ...DATA, seed: 7 });
  await withClient(db.url, (c) => until(async () => (await committedSeq(c)) >= 1000, 60_000, 25, 'warm-up'));
  const names = await withClient(db.url, async (c) => ({
    teams: (await c.query<{ t: string }>('SELECT DISTINCT team_id AS t FROM agent_registry ORDER BY 1')).rows.map((r) => r.t),
    agents: (await c.query<{ a: string }>('SELECT agent_id AS a FROM agent_registry ORDER BY 1')).rows.map((r) => r.a),
  }));
  void teams;

  // 3. Latency: one unfiltered tail, in its own process (bench/latency-tail.ts: the bench's own GC
  // would otherwise delay the receive timestamps).
  mon.reset();
  const latTail = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'latency-tail.ts'), address], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const latLines = createInterface({ input: latTail.stdout! });
  const nextLine = (): Promise<string> => new Promise((resolve, reject) => {
    latLines.once('line', resolve);
    latTail.once('exit', (code) => reject(new Error(`latency tail exited (${code})`)));
  });
  const readyLine = await nextLine();
  if (readyLine !== 'ready') throw new Error(`latency tail: ${readyLine}`);
  // The phase measures a warm path: WARM_UP_S at the phase's rate with the tail attached first, its
  // records not counted (the tail counts records with an event time from the phase's start). Without
  // it the first second - the tail's stream and the paced batching going cold to busy - held 200-280 ms
  // latencies, 10 % of a 10 s phase's samples and so its p99 (bench/README.md, session 5).
  await publishPaced(nc, opts.rate, WARM_UP_S, { ...DATA, seed: 9 });
  await sleep(500);
  const seqBeforeLatency = await withClient(db.url, (c) => committedSeq(c));
  latTail.stdin!.write(`from ${nowMs()}\n`);
  log(`latency: ${opts.rate}/s for ${opts.duration} s, one tail (own process)`);
  // Whether the host had room: CPU of each process involved, and of the whole machine, during the phase.
  const latCpu = serviceCpuTracker(svc.pid, db.name, nats.storeDir, { publisher: process.pid, tail: latTail.pid! });
  const latHost = hostCpu();
  const latT0 = nowMs();
  const published = await publishPaced(nc, opts.rate, opts.duration, { ...DATA, seed: 11 });
  const resultLine = nextLine();
  latTail.stdin!.write(`expect ${published}\n`);
  const timeout = setTimeout(() => latTail.stdin!.write('stop\n'), 60_000);
  const latResult = JSON.parse(await resultLine) as { received: number; error: string | null; ms: Summary };
  clearTimeout(timeout);
  const latCpuSeconds = latCpu.stop();
  const latHostBusy = hostCpu() - latHost;
  const latWall = (nowMs() - latT0) / 1000;
  latTail.stdin!.end();
  if (latResult.received < published) log(`latency tail received ${latResult.received} of ${published}`);
  const lat = latResult.ms;
  // The first leg, from the rows themselves: publish time (the event timestamp) -> received by the
  // service (received_at). The rest is batching, the commit, the fan-out and the client.
  const toService = await withClient(db.url, async (c) => {
    const r = await c.query<{ p50: number; p95: number; p99: number; max: number }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, percentile_cont(0.95) WITHIN GROUP (ORDER BY d) AS p95,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99, max(d) AS max
       FROM (SELECT extract(epoch FROM received_at - timestamp)::float8 * 1000 AS d FROM log_entries WHERE seq > $1) x`,
      [seqBeforeLatency],
    );
    return r.rows[0]!;
  });
  log(`latency, publish -> received by the service: p50 ${fmt(toService.p50)} p95 ${fmt(toService.p95)} p99 ${fmt(toService.p99)} ms`);
  rss['latency'] = mon.peakMb();
  // Where latency goes on the service side: commit times and batch sizes during this phase (cumulative since start).
  const latencyMetrics = await svc
    .metrics(['mycelis_memory_store_batch_commit_seconds_bucket', 'mycelis_memory_store_batch_commit_seconds_count', 'mycelis_memory_ingest_batch_size_bucket', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_eventloop_lag_max_seconds', 'nodejs_gc_duration_seconds_sum', 'nodejs_gc_duration_seconds_count', 'mycelis_memory_buffer_collections_total'])
    .catch((err: Error) => ({ error: err.message }));
  results['latency'] = { rate: opts.rate, durationS: opts.duration, published, received: latResult.received, client: 'own process', ms: lat, publishToServiceMs: toService, serviceMetrics: latencyMetrics,
    cpuSeconds: latCpuSeconds,
    // Busy CPU-seconds of the whole machine (every process, ours or not) and what 2 cores offer in that time.
    host: { busyCpuSeconds: Math.round(latHostBusy * 100) / 100, availableCpuSeconds: Math.round(latWall * cpus().length * 100) / 100 } };
  log(`latency: p50 ${fmt(lat.p50)} p95 ${fmt(lat.p95)} p99 ${fmt(lat.p99)} ms; CPU s ${JSON.stringify(latCpuSeconds)}; host busy ${fmt(latHostBusy)} of ${fmt(latWall * cpus().length)} CPU-s`);

  // 4a. Burst ingest rate without tails.
  mon.reset();
  const without = await burstRate(nc, db, 'without', () => liveCpuTracker(svc.pid, db, nats));
  rss['burstWithoutTails'] = mon.peakMb();
  log(`burst without tails: ${fmt(without.eventsPerSec)} events/s; CPU s ${JSON.stringify(without.cpuSeconds)}`);

  // 4b. C tails, mixed filters, paced publishing.
  mon.reset();
  const channels = Math.max(1, Math.ceil(opts.clients / 100));
  const clients = makeClients(address, channels);
  const fanSamples = new Samples();
  let fanRecording = false;
  const tails: LightTail[] = [];
  for (let i = 0; i < opts.clients; i++) {
    tails.push(openLightTail(clients[i % channels]!, tailFilter(i, names.teams, names.agents), fanSamples, () => fanRecording));
  }
  await Promise.all(tails.map((t) => t.ready.catch(() => undefined)));
  // Every tail has been answered (attached); trace-id tails only get keepalives, so wait on the rest.
  const failed = tails.filter((t) => t.error !== null).length;
  if (failed > 0) throw new Error(`${failed} tails failed: ${tails.find((t) => t.error)!.error!.message}`);
  // Warm, as the latency phase: the tails' streams carry the phase's rate before it is recorded.
  await publishPaced(nc, opts.rate, WARM_UP_S, { ...DATA, seed: 12 });
  await sleep(1000);
  const receivedBefore = tails.reduce((s, t) => s + t.received, 0);
  fanRecording = true;
  log(`fan-out: ${opts.clients} tails, ${opts.rate}/s for ${opts.duration} s`);
  const fanCpu = liveCpuTracker(svc.pid, db, nats);
  const fanPublished = await publishPaced(nc, opts.rate, opts.duration, { ...DATA, seed: 13 });
  await withClient(db.url, async (c) => {
    const target = await committedSeq(c);
    void target;
  });
  await sleep(1000); // let the last deliveries land before stopping the recording (bounded, not asserted)
  fanRecording = false;
  const fanCpuSeconds = fanCpu.stop();
  const fanDelivered = tails.reduce((s, t) => s + t.received, 0) - receivedBefore;
  const fan = summarize(fanSamples.view());
  rss['fanout'] = mon.peakMb();
  log(`fan-out: delivery p50 ${fmt(fan.p50)} p99 ${fmt(fan.p99)} ms over ${fan.n} deliveries`);

  // 4c. Burst ingest rate with the tails attached.
  mon.reset();
  const withTails = await burstRate(nc, db, 'with', () => liveCpuTracker(svc.pid, db, nats));
  rss['burstWithTails'] = mon.peakMb();
  log(`burst with tails: ${fmt(withTails.eventsPerSec)} events/s; CPU s ${JSON.stringify(withTails.cpuSeconds)}`);
  // How the hub got its rows (handed over by the writer vs read back), its coalescing window, fallbacks.
  const hubMetrics = await svc
    .metrics(['mycelis_memory_api_stream_hub_rows_total', 'mycelis_memory_api_stream_coalesce_seconds', 'mycelis_memory_api_stream_fallbacks_total', 'mycelis_memory_api_stream_buffer_high_water'])
    .catch((err: Error) => ({ error: err.message }));
  log(`hub: ${JSON.stringify(hubMetrics)}`);
  const tailErrors = tails.filter((t) => t.error !== null).length;
  for (const t of tails) t.cancel();
  for (const c of clients) c.close();
  results['fanout'] = {
    clients: opts.clients,
    rate: opts.rate,
    durationS: opts.duration,
    published: fanPublished,
    // Records received by all tails during the paced phase (+1 s), and from then until the burst with tails had committed.
    deliveries: fanDelivered,
    burstDeliveries: tails.reduce((s, t) => s + t.received, 0) - receivedBefore - fanDelivered,
    deliveryMs: fan,
    // The tails read only each record's event time from the wire (bench/clients.ts decodeLight).
    clientDecode: 'timestamps-only',
    // Over the paced publishing (+1 s): the service, its database, nats-server and the bench's own tails.
    cpuSeconds: fanCpuSeconds,
    tailErrors,
    burstWithoutTails: without,
    burstWithTails: withTails,
    hubMetrics,
    ingestRatioWithTails: withTails.eventsPerSec / without.eventsPerSec,
  };
  mon.stop();
  await svc.stop();
  cleanup.pop();
  if (opts.profile) {
    // The whole live service: latency, bursts and fan-out (no per-event normalization).
    const files = readdirSync(liveProfDir).filter((f) => f.endsWith('.cpuprofile'));
    if (files.length > 0) results['profileLive'] = summarizeProfile(join(liveProfDir, files[0]!));
  }
  await nc.jetstreamManager().then((j) => j.streams.delete(stream)).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------
// Phase 6: WatchRegistry.

async function watchPhases(nats: PrivateNats, nc: NatsConnection): Promise<void> {
  const db = await freshDb('watch');
  const stream = 'BENCH_WATCH';
  await createStream(nc, stream);
  const svc = await startBenchService(
    serviceEnv(nats, db, stream, { AGENT_OFFLINE_AFTER: `${opts.offlineAfterMs}ms`, MAX_STREAMS: String(opts.watchers + 100) }),
    opts.nodeFlags,
  );
  cleanup.push(() => svc.stop());
  const mon = new RssMonitor(svc.pid);
  const cpu = serviceCpuTracker(svc.pid, db.name, nats.storeDir);
  const clients = makeClients(`127.0.0.1:${svc.grpcPort}`, 10);
  const started = nowMs();
  const res = await withClient(db.url, (c) =>
    watchPhase(
      nc,
      clients,
      { agents: opts.registryAgents, watchers: opts.watchers, silent: 100, offlineAfterMs: opts.offlineAfterMs, teams: 40 },
      async () => Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM agent_registry')).rows[0]!.n),
      log,
    ),
  );
  const cpuSeconds = cpu.stop();
  rss['watch'] = mon.peakMb();
  mon.stop();
  for (const c of clients) c.close();
  results['watch'] = { ...res, seconds: (nowMs() - started) / 1000, cpuSeconds };
  log(
    `watch: OFFLINE delivered p50 ${fmt(res.offlineDeliveryMs.p50)} p99 ${fmt(res.offlineDeliveryMs.p99)} max ${fmt(res.offlineDeliveryMs.max)} ms after the threshold ` +
      `(${res.deliveriesReceived}/${res.deliveriesExpected} deliveries, ${res.falseOffline} false)`,
  );
  await svc.stop();
  cleanup.pop();
  await nc.jetstreamManager().then((j) => j.streams.delete(stream)).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------

interface ReadStats {
  catchUpUnfiltered: { recordsPerSec: number };
  queryLogsPageMs: Summary;
  queryLogsOneDayMs: Summary;
}
interface RetentionStats {
  retentionSeconds: number;
  ratio: number;
}

function printTable(): void {
  const r = results as {
    ingest?: { eventsPerSec: number; bare: { eventsPerSec: number }; directive: { eventsPerSec: number }; ratioToBare: number; ratioToDirective: number };
    latency?: { ms: Summary };
    fanout?: { deliveryMs: Summary; ingestRatioWithTails: number; burstWithoutTails: { eventsPerSec: number }; burstWithTails: { eventsPerSec: number }; clients: number };
    reads?: { getRegistryMs: Summary; queryLogsPageMs: Summary; getRegistryAllPagesMs: Summary; getTraceMs?: Summary; traceRecordsMean?: number; getTraceBySize?: Record<string, SizedTraceResult>; search?: SearchResult };
    watch?: { watchers: number; agents: number; snapshotsMs: number; offlineDeliveryMs: Summary; deliveriesReceived: number; deliveriesExpected: number; falseOffline: number };
  };
  const rows: [string, string, string][] = [];
  const add = (what: string, value: string, target = ''): void => void rows.push([what, value, target]);
  if (r.ingest) {
    add('ingest (service, every feature on)', `${fmt(r.ingest.eventsPerSec)} events/s`);
    const ii = r.ingest as unknown as { bareProtobufjs?: { eventsPerSec: number }; ratioToBareProtobufjs?: number; ratioToFasterBare?: number; rounds?: number; bareProtobufjsCpuUsPerEvent?: Record<string, number> };
    add('bare pipeline (ts-proto decode + toJSON)', `${fmt(r.ingest.bare.eventsPerSec)} events/s`);
    if (ii.bareProtobufjs) add('bare pipeline (protobufjs decode + plain JSON)', `${fmt(ii.bareProtobufjs.eventsPerSec)} events/s`);
    const one = (r.ingest as unknown as { bareOneTable?: { eventsPerSec: number } }).bareOneTable;
    if (one) add('bare pipeline into one table (no partitions)', `${fmt(one.eventsPerSec)} events/s`);
    add("directive's design", `${fmt(r.ingest.directive.eventsPerSec)} events/s`);
    add(`ratio to bare ts-proto (median of ${ii.rounds ?? 1} rounds)`, `${r.ingest.ratioToBare.toFixed(2)}x`);
    if (ii.ratioToBareProtobufjs !== undefined) add('ratio to bare protobufjs', `${ii.ratioToBareProtobufjs.toFixed(2)}x`);
    if (ii.ratioToFasterBare !== undefined) add('ratio to the faster bare variant', `${ii.ratioToFasterBare.toFixed(2)}x`, '>= 0.85x');
    const ci = (r.ingest as unknown as { cpuUsPerEvent: Record<string, number>; bareCpuUsPerEvent: Record<string, number> });
    const cpuText = (c: Record<string, number>): string => `node ${c['node']} + pg ${c['postgres']} + nats ${c['nats']} = ${c['total']} µs`;
    add('CPU per event: service', cpuText(ci.cpuUsPerEvent));
    add('CPU per event: bare ts-proto', cpuText(ci.bareCpuUsPerEvent));
    const gc = (r.ingest as unknown as { gcUsPerEvent?: Record<string, number> }).gcUsPerEvent;
    if (gc) add('GC per event: service / bare ts-proto / bare protobufjs', `${gc['service']} / ${gc['bareTsProto']} / ${gc['bareProtobufjs']} µs`);
    if (ii.bareProtobufjsCpuUsPerEvent) add('CPU per event: bare protobufjs', cpuText(ii.bareProtobufjsCpuUsPerEvent));
    const st = (results['stages'] as { usPerEvent: Record<string, number> } | undefined)?.usPerEvent;
    if (st) for (const [stage, us] of Object.entries(st)) add(`  stage: ${stage}`, `${us.toFixed(2)} µs/event`);
    add("ratio to directive's design", `${r.ingest.ratioToDirective.toFixed(1)}x`, '>= 20x');
  }
  if (r.latency) add(`latency p50/p95/p99 @ ${opts.rate}/s`, `${fmt(r.latency.ms.p50)} / ${fmt(r.latency.ms.p95)} / ${fmt(r.latency.ms.p99)} ms`, 'p99 <= 100 ms');
  if (r.fanout) {
    add(`fan-out ${r.fanout.clients} tails: delivery p50/p99`, `${fmt(r.fanout.deliveryMs.p50)} / ${fmt(r.fanout.deliveryMs.p99)} ms`, 'p99 <= 250 ms');
    add('burst ingest without / with tails', `${fmt(r.fanout.burstWithoutTails.eventsPerSec)} / ${fmt(r.fanout.burstWithTails.eventsPerSec)} events/s`);
    add('ingest ratio with tails', `${r.fanout.ingestRatioWithTails.toFixed(2)}x`, '>= 0.9x');
  }
  if (r.reads) {
    add(`GetRegistry p50/p99 @ ${opts.registryAgents} agents`, `${fmt(r.reads.getRegistryMs.p50)} / ${fmt(r.reads.getRegistryMs.p99)} ms`, 'p99 <= 20 ms');
    add('GetRegistry all pages (1000/page) p50', `${fmt(r.reads.getRegistryAllPagesMs.p50)} ms`);
    add(`QueryLogs page p50/p99 @ ${opts.queryRows} rows`, `${fmt(r.reads.queryLogsPageMs.p50)} / ${fmt(r.reads.queryLogsPageMs.p99)} ms`);
    if (r.reads.getTraceMs) add(`GetTrace p50/p99 (${fmt(r.reads.traceRecordsMean ?? 0)} records/trace)`, `${fmt(r.reads.getTraceMs.p50)} / ${fmt(r.reads.getTraceMs.p99)} ms`, 'p99 <= 20 ms');
    for (const t of Object.values(r.reads.getTraceBySize ?? {})) {
      add(`GetTrace p50/p99 @ ${t.records} records${t.truncated ? ` (${t.returned} sent, truncated)` : ''}, ${t.ms.n} calls`, `${fmt(t.ms.p50)} / ${fmt(t.ms.p99)} ms`);
    }
    const s = r.reads.search;
    if (s) {
      add(`SearchLogs page p50/p99 @ ${opts.queryRows} rows (newest first, ${s.newestMs.n} pages)`, `${fmt(s.newestMs.p50)} / ${fmt(s.newestMs.p99)} ms`, 'p99 <= 50 ms');
      add('SearchLogs by relevance p50/p99 (selective queries)', `${fmt(s.relevanceMs.p50)} / ${fmt(s.relevanceMs.p99)} ms`);
      add('migration 006 (search column + GIN) lock at those rows', s.migration006Ms === null ? '- s (not timed)' : `${fmt(s.migration006Ms / 1000, 2)} s`);
    }
  }
  if (r.watch) {
    const w = r.watch;
    add(`WatchRegistry: ${w.watchers} snapshots of ${w.agents} agents`, `${fmt(w.snapshotsMs)} ms`);
    add('WatchRegistry: OFFLINE after threshold p50/p99', `${fmt(w.offlineDeliveryMs.p50)} / ${fmt(w.offlineDeliveryMs.p99)} ms`, 'p99 <= 1000 ms');
    add('WatchRegistry: deliveries, false OFFLINE', `${w.deliveriesReceived}/${w.deliveriesExpected}, ${w.falseOffline}`, 'all, 0');
  }
  const p = results['partitions'] as
    | {
        upgrade: { rows: number; fromOwnSchema004Ms: number; fromOwnSchemaPrebuilt004Ms: number };
        reads: { partitions: number; oneTable: ReadStats; partitioned: ReadStats };
        retention: { rows: number; partitionDrop: RetentionStats; batchedDelete: RetentionStats };
      }
    | undefined;
  if (p) {
    add(`upgrade (004) lock at ${p.upgrade.rows} rows / indexes prebuilt`, `${fmt(p.upgrade.fromOwnSchema004Ms / 1000, 2)} / ${fmt(p.upgrade.fromOwnSchemaPrebuilt004Ms / 1000, 2)} s`);
    add(`StreamLogs catch-up: one table / ${p.reads.partitions} partitions`, `${fmt(p.reads.oneTable.catchUpUnfiltered.recordsPerSec)} / ${fmt(p.reads.partitioned.catchUpUnfiltered.recordsPerSec)} records/s`);
    add('QueryLogs page p99: one table / partitions', `${fmt(p.reads.oneTable.queryLogsPageMs.p99)} / ${fmt(p.reads.partitioned.queryLogsPageMs.p99)} ms`);
    add('QueryLogs one day p99: one table / partitions', `${fmt(p.reads.oneTable.queryLogsOneDayMs.p99)} / ${fmt(p.reads.partitioned.queryLogsOneDayMs.p99)} ms`);
    add(`retention of one day (${p.retention.rows} rows): drop / delete`, `${fmt(p.retention.partitionDrop.retentionSeconds, 2)} / ${fmt(p.retention.batchedDelete.retentionSeconds, 1)} s`);
    add('ingest while retention runs (ratio to without): drop / delete', `${p.retention.partitionDrop.ratio.toFixed(2)}x / ${p.retention.batchedDelete.ratio.toFixed(2)}x`);
  }
  const rep = results['replicas'] as { one: { eventsPerSec: number }; two: { eventsPerSec: number }; ratio: number } | undefined;
  if (rep) add('ingest: one instance / two replicas', `${fmt(rep.one.eventsPerSec)} / ${fmt(rep.two.eventsPerSec)} events/s (${rep.ratio.toFixed(2)}x)`);
  const rs = results['restart'] as { sigterm: Record<string, number>; sigkill: Record<string, number> } | undefined;
  if (rs) {
    add('restart: SIGTERM at 5,000 rows, deliveries back after the restart', `${rs.sigterm['resumeSeconds']!.toFixed(2)} s (stop ${rs.sigterm['stopSeconds']!.toFixed(2)} s)`, '<= 5 s');
    add('restart: SIGKILL at 5,000 rows, deliveries back after the kill', `${rs.sigkill['resumeSeconds']!.toFixed(2)} s`, '<= ACK_WAIT + 5 s');
  }
  type LargeRun = { count: number; tails: number; eventsPerSec: number; mbPerSec: number; peakRssMb: number; longestCommitGapS: number; tailsDoneAfterS: number | null };
  const lg = results['large'] as { noTails: LargeRun; tails10: LargeRun } | undefined;
  if (lg) {
    for (const x of [lg.noTails, lg.tails10]) {
      add(
        `large: ${fmt(x.count, 0)} x 512 KiB, ${x.tails} tails`,
        `${x.eventsPerSec.toFixed(1)} events/s, ${x.mbPerSec.toFixed(1)} MB/s, peak RSS ${x.peakRssMb} MB, longest gap ${x.longestCommitGapS.toFixed(1)} s` +
          (x.tailsDoneAfterS !== null ? `, tails complete +${x.tailsDoneAfterS.toFixed(1)} s` : ''),
        'RSS <= 300 MB, gap <= 5 s',
      );
    }
  }
  const cs = results['currentSwarm'] as MixedResult | undefined;
  if (cs) {
    const cpu = (c: Record<string, number>): string => `${c['total']} µs`;
    add(`protobuf mix, ${cs.protobufMix.events} events`, `${fmt(cs.protobufMix.eventsPerSec)} events/s, CPU/event ${cpu(cs.protobufMix.cpuUsPerEvent)}`);
    add(`current-swarm mix, ${cs.currentMix.events} events`, `${fmt(cs.currentMix.eventsPerSec)} events/s, CPU/event ${cpu(cs.currentMix.cpuUsPerEvent)}`);
    add(`ratio current mix to protobuf mix (median of ${cs.rounds.currentMix.length} alternating rounds)`, `${cs.ratioCurrentToProtobuf.toFixed(2)}x`);
    for (const [f, d] of Object.entries(cs.perFormat)) {
      add(`  ${f} only`, `${fmt(d.eventsPerSec)} events/s, CPU/event ${cpu(d.cpuUsPerEvent)} (node ${d.cpuUsPerEvent['node']}), decode ${cs.decodeUsPerMessage[f]} µs`);
    }
  }
  for (const [phase, mb] of Object.entries(rss)) add(`peak RSS: ${phase}`, `${fmt(mb)} MB`, phase === 'ingestDrain' ? '<= 300 MB' : '');
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(...rows.map((x) => x[1].length));
  const out = rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`).join('\n');
  process.stdout.write(`\n${runtimeLine()}\n${out}\n`);
}

async function main(): Promise<void> {
  const started = nowMs();
  mkdirSync(resultsDir, { recursive: true });
  const nats = await startPrivateNats();
  cleanup.push(() => nats.destroy());
  const nc = await connect({ servers: nats.url });
  cleanup.push(() => nc.close());
  const m = machine();
  const probe = await freshDb('probe');
  m['postgres'] = await pgVersion(probe.url);
  results['machine'] = m;
  results['options'] = opts;
  log(`machine: ${m['nproc']} cores, ${String(m['cpuModel'])}, load ${JSON.stringify(m['loadavgAtStart'])}`);
  if (only.has('ingest')) await ingestPhases(nats, nc);
  if (only.has('mixed')) {
    results['currentSwarm'] = await mixedPhase(
      { nats, nc, freshDb, serviceEnv: (db, stream) => serviceEnv(nats, db, stream), nodeFlags: opts.nodeFlags, log },
      opts.mixedEvents,
      opts.formatEvents,
      opts.warmupEvents,
      opts.mixedRounds,
    );
  }
  if (only.has('live')) await livePhases(nats, nc);
  if (only.has('partitions')) {
    results['partitions'] = await partitionPhases(nats, nc, { rows: opts.partitionRows, quick: opts.quick, keep: flags.keep === true, log, cleanup });
  }
  if (only.has('replicas')) {
    results['replicas'] = await replicaPhases(nats, nc, {
      events: opts.replicaEvents,
      log,
      cleanup,
      freshDb: (label) => freshDb(label),
      env: (db, stream, consumer) => serviceEnv(nats, db, stream, { CONSUMER_NAME: consumer }),
      nodeFlags: opts.nodeFlags,
    });
  }
  if (only.has('watch')) await watchPhases(nats, nc);
  if (only.has('reads')) await readsOnly(nats, nc);
  const operations = { nats, nc, log, cleanup, freshDb, env: (db: TestDatabase, stream: string) => serviceEnv(nats, db, stream), nodeFlags: opts.nodeFlags };
  if (only.has('restart')) results['restart'] = await restartPhase(operations, opts.restartEvents);
  if (only.has('large')) {
    results['large'] = await largePhase(operations, opts.largeMessages);
    rss['large'] = (results['large'] as { noTails: { peakRssMb: number } }).noTails.peakRssMb;
    rss['large, 10 tails'] = (results['large'] as { tails10: { peakRssMb: number } }).tails10.peakRssMb;
  }
  results['rssMb'] = rss;
  (results['machine'] as Record<string, unknown>)['loadavgAtEnd'] = loadavg().map((x) => Math.round(x * 100) / 100);
  results['totalSeconds'] = (nowMs() - started) / 1000;
  results['finishedAt'] = new Date().toISOString();
  writeFileSync(join(resultsDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  printTable();
  process.stdout.write(`\nwrote bench/results/latest.json (${((nowMs() - started) / 1000).toFixed(1)} s)\n`);
}

async function runCleanup(): Promise<void> {
  for (const f of cleanup.reverse()) {
    try {
      await f();
    } catch {
      // best effort
    }
  }
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  exitCode = 1;
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
}
await runCleanup();
process.exit(exitCode);
