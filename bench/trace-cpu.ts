// GetTrace through the built service with --cpu-prof, over a database a reads run kept (`--only reads --keep`):
// latency of 800 calls (400 traces, twice, after a warm-up round) and where the service's CPU goes.
//   tsx bench/trace-cpu.ts <database> [<another checkout>: its build instead of this one]
import { mkdirSync, readdirSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { startBenchService } from './service.js';
import { getTrace, makeClients } from './clients.js';
import { summarizeProfile } from './profile.js';
import { startPrivateNats } from '../test/helpers/nats.js';
const db = process.argv[2]!;
const url = 'postgres://postgres@127.0.0.1:5432/' + db;
const dir = join(tmpdir(), `mm-trace-profile-${process.pid}`);
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const nats = await startPrivateNats();
const svc = await startBenchService({ DATABASE_URL: url, MEMORY_STORE: 'postgres', INGEST_MODE: 'off', NATS_URL: nats.url, STREAM_NAME: 'TRPROF', LOG_LEVEL: 'info' }, ['--cpu-prof', `--cpu-prof-dir=${dir}`], 60_000, process.argv[3] === undefined ? undefined : join(process.argv[3], 'dist', 'src', 'cli.js'));
const [client] = makeClients(`127.0.0.1:${svc.grpcPort}`, 1);
const c = new pg.Client({ connectionString: url });
await c.connect();
const ids = (await c.query(`SELECT trace_id FROM (SELECT DISTINCT trace_id FROM log_entries WHERE trace_id <> '') t ORDER BY md5(trace_id) LIMIT 400`)).rows.map((r) => r.trace_id as string);
await c.end();
const ms: number[] = [];
const t0 = performance.now();
for (let rep = 0; rep < 3; rep++) for (const id of ids) {
  const t = performance.now();
  await getTrace(client!, id);
  if (rep > 0) ms.push(performance.now() - t);
}
const wall = performance.now() - t0;
client!.close();
await svc.stop();
await nats.destroy();
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!.toFixed(1);
console.log('GetTrace p50/p99', q(ms, .5), q(ms, .99), 'wall', (wall / 1000).toFixed(1), 's');
const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort((a, b) => statSync(join(dir, b)).size - statSync(join(dir, a)).size);
const s = summarizeProfile(join(dir, files[0]!), 1200);
console.log('busy s', s.busySeconds, 'per call µs', s.busyUsPerEvent);
for (const a of s.byArea.slice(0, 12)) console.log(a.area.padEnd(40), a.ms.toFixed(0), a.pct.toFixed(1) + '%');
for (const f of s.topFunctions.slice(0, 25)) console.log(f.fn.padEnd(80).slice(0, 80), f.ms.toFixed(0), f.pct.toFixed(1) + '%');
