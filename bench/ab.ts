// `tsx bench/ab.ts`: a same-run A/B of the ingest drain, for deciding one change at a time on a noisy box.
//
// One prefilled stream; the service drains it into a fresh database again and again, alternating
// two variants (A B A B ...). A variant is a built service (`--a-dist <dir>` holding src/cli.js; default
// ./dist; keep it inside the project so its imports resolve), node flags (`--a-flags="<flags>"`) and
// environment (`--a-env "K=V K=V"`), the migrations its database gets first (`--a-migrations <dir>`,
// default ./migrations: an older schema for an older build), SQL run on its database after the
// migrations (`--a-sql`) and the node binary that runs it (`--a-node <path>`, default this process's:
// compares Node lines). Prints, per round and as medians, the drain rate and
// the CPU per event of the service's Node process (and of that its GC pauses), its PostgreSQL backends
// and nats-server, the service's peak RSS, and the ratio B/A of each. Build B into ./dist (npm run build) and copy the old build aside for A.
//
//   tsx bench/ab.ts --a-dist /tmp/dist-before --rounds 3 --events 100000
//   tsx bench/ab.ts --b-flags="--max-semi-space-size=32"
//   tsx bench/ab.ts --b-env "INGEST_BATCH_SIZE=5000"
//   tsx bench/ab.ts --a-node /opt/nodes/24.22.3/bin/node --b-node /opt/nodes/26.12.1/bin/node
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from 'nats';
import pg from 'pg';
import { createLogger } from '../src/logger.js';
import { migrate } from '../src/store/migrate.js';
import { startPrivateNats } from '../test/helpers/nats.js';
import { createTestDatabase } from '../test/helpers/pg.js';
import { ROOT } from '../test/helpers/service.js';
import { buildMessages, createStream, fmt, nowMs, publishAll, RssMonitor, serviceCpuTracker, until } from './lib.js';
import { startBenchService, type ServiceRuntime } from './service.js';

const { values: flags } = parseArgs({
  options: {
    'a-dist': { type: 'string', default: join(ROOT, 'dist') },
    'b-dist': { type: 'string', default: join(ROOT, 'dist') },
    'a-flags': { type: 'string', default: '' },
    'b-flags': { type: 'string', default: '' },
    'a-env': { type: 'string', default: '' },
    'b-env': { type: 'string', default: '' },
    'a-sql': { type: 'string', default: '' },
    'b-sql': { type: 'string', default: '' },
    'a-node': { type: 'string', default: process.execPath },
    'b-node': { type: 'string', default: process.execPath },
    'a-migrations': { type: 'string' },
    'b-migrations': { type: 'string' },
    rounds: { type: 'string', default: '3' },
    events: { type: 'string', default: '100000' },
  },
});
const N = Number(flags.events);
const rounds = Number(flags.rounds);
const split = (s: string): string[] => s.split(' ').filter((f) => f !== '');
const envOf = (s: string): Record<string, string> => Object.fromEntries(split(s).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const variants = {
  A: { cli: join(resolve(flags['a-dist']), 'src', 'cli.js'), flags: split(flags['a-flags']), env: envOf(flags['a-env']), sql: flags['a-sql'], node: flags['a-node'], migrations: flags['a-migrations'] },
  B: { cli: join(resolve(flags['b-dist']), 'src', 'cli.js'), flags: split(flags['b-flags']), env: envOf(flags['b-env']), sql: flags['b-sql'], node: flags['b-node'], migrations: flags['b-migrations'] },
};
const log = (msg: string): void => void process.stderr.write(`[ab ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

interface Round {
  variant: 'A' | 'B';
  eventsPerSec: number;
  usPerEvent: Record<string, number>;
  peakRssMb: number;
  runtime: ServiceRuntime | undefined;
}

const nats = await startPrivateNats();
const nc = await connect({ servers: nats.url });
const stream = 'AB_INGEST';
const results: Round[] = [];
try {
  const jsm = await nc.jetstreamManager();
  await createStream(nc, stream);
  await publishAll(nc, buildMessages(N, { agents: 1000, teams: 40, seed: 42 }));
  await until(async () => (await jsm.streams.info(stream)).state.messages >= N, 120_000, 100, 'the stream to hold every event');
  log(`prefilled ${N} events`);
  for (let r = 0; r < rounds * 2; r++) {
    const variant = r % 2 === 0 ? 'A' : 'B';
    const v = variants[variant];
    const db = await createTestDatabase(`ab_${variant}`);
    try {
      const pool = new pg.Pool({ connectionString: db.url, max: 1 });
      await migrate(pool, createLogger('error'), v.migrations === undefined ? undefined : resolve(v.migrations));
      if (v.sql !== '') await pool.query(v.sql);
      await pool.end();
      const svc = await startBenchService(
        { ...db.env, NATS_URL: nats.url, STREAM_NAME: stream, CONSUMER_NAME: `ab_${r}`, LOG_LEVEL: 'info', ...v.env },
        v.flags,
        60_000,
        v.cli,
        v.node,
      );
      const rss = new RssMonitor(svc.pid);
      const gcSeconds = async (): Promise<number> => Object.values(await svc.metrics(['nodejs_gc_duration_seconds_sum'])).reduce((a, b) => a + b, 0);
      const gc0 = await gcSeconds();
      const cpu = serviceCpuTracker(svc.pid, db.name, nats.storeDir);
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        await until(async () => Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM log_entries')).rows[0]!.n) >= N, 600_000, 25, 'the drain');
        const t1 = nowMs();
        const t0 = Number((await c.query<{ t: string }>('SELECT (extract(epoch FROM min(received_at)) * 1000)::text AS t FROM log_entries')).rows[0]!.t);
        const secs = cpu.stop();
        const usPerEvent: Record<string, number> = {};
        for (const [k, s] of Object.entries(secs)) usPerEvent[k] = (s / N) * 1e6;
        // The service's own GC time (its main thread's pauses) over the drain.
        usPerEvent['gc'] = (((await gcSeconds()) - gc0) / N) * 1e6;
        const round: Round = { variant, eventsPerSec: N / ((t1 - t0) / 1000), usPerEvent, peakRssMb: rss.peakMb(), runtime: svc.runtime };
        rss.stop();
        results.push(round);
        log(`${variant}: ${fmt(round.eventsPerSec)} events/s, µs/event node ${fmt(usPerEvent['node']!)} pg ${fmt(usPerEvent['postgres']!)} nats ${fmt(usPerEvent['nats']!)} (gc ${fmt(usPerEvent['gc']!)}), peak RSS ${fmt(round.peakRssMb)} MB`);
      } finally {
        await c.end();
        await svc.stop();
      }
    } finally {
      await db.drop();
    }
  }
} finally {
  await nc.jetstreamManager().then((j) => j.streams.delete(stream)).catch(() => undefined);
  await nc.close();
  await nats.destroy();
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const med = (variant: 'A' | 'B', f: (r: Round) => number): number => median(results.filter((r) => r.variant === variant).map(f));
const rows: [string, (r: Round) => number][] = [
  ['events/s', (r) => r.eventsPerSec],
  ['node µs/event', (r) => r.usPerEvent['node']!],
  ['pg µs/event', (r) => r.usPerEvent['postgres']!],
  ['nats µs/event', (r) => r.usPerEvent['nats']!],
  ['gc µs/event', (r) => r.usPerEvent['gc']!],
  ['peak RSS MB', (r) => r.peakRssMb],
];
const runtimeOf = (variant: 'A' | 'B'): string => {
  const r = results.find((x) => x.variant === variant)?.runtime;
  return r ? `Node ${r.node} (V8 ${r.v8}), flags: ${r.execArgv.join(' ') || 'none'}, heap limit ${r.heapLimitMiB} MiB` : 'runtime not reported';
};
process.stdout.write(`A: ${flags['a-dist']} ${flags['a-flags']} ${flags['a-env']}; ${runtimeOf('A')}\nB: ${flags['b-dist']} ${flags['b-flags']} ${flags['b-env']}; ${runtimeOf('B')}\n`);
for (const [name, f] of rows) {
  const a = med('A', f);
  const b = med('B', f);
  process.stdout.write(`${name.padEnd(16)} A ${fmt(a).padStart(10)}  B ${fmt(b).padStart(10)}  B/A ${(b / a).toFixed(3)}\n`);
}
