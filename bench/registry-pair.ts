// GetRegistry at 10,000 agents through two builds side by side (A: another checkout's build, B: this
// one's), each request sent to A and B in turn (the order alternating), so both see the same moment of
// the host: the bench mix of the reads phase (default page, one team, one status, two pages of 100)
// and, fifth, the whole registry 1,000 per page. Used to tell a regression from a run's tail.
//   tsx bench/registry-pair.ts <another checkout> [rounds=400]
import { join } from 'node:path';
import pg from 'pg';
import { startPrivateNats } from '../test/helpers/nats.js';
import { createTestDatabase } from '../test/helpers/pg.js';
import { migrate } from '../src/store/migrate.js';
import { createLogger } from '../src/logger.js';
import { makeClients, registryMixCall, wholeRegistry } from './clients.js';
import { summarize } from './lib.js';
import { startBenchService } from './service.js';

const [other, roundsArg] = process.argv.slice(2);
if (other === undefined) throw new Error('usage: tsx bench/registry-pair.ts <another checkout> [rounds]');
const rounds = Number(roundsArg ?? 400);
const db = await createTestDatabase('bench_regpair');
const pool = new pg.Pool({ connectionString: db.url, max: 1 });
await migrate(pool, createLogger('error'), join(import.meta.dirname, '..', 'migrations'));
// As the reads phase adds them (bench/run.ts readPhases): 40 teams, some silent, some BUSY/ERROR.
await pool.query(
  `INSERT INTO agent_registry (agent_id, team_id, status, last_seen, meta, status_at, status_seq, updated_at)
   SELECT 'bench-agent-' || lpad(g::text, 6, '0'), 'team-' || (g % 40),
          (ARRAY['IDLE','BUSY','ERROR','IDLE'])[1 + g % 4], now() - ((g % 7) * interval '1 minute'),
          jsonb_build_object('battery', (g % 100) / 100.0, 'location', 'rack-' || (g % 9)), now(), g, now()
   FROM generate_series(1, 10000) g`,
);
await pool.query('ANALYZE agent_registry');
await pool.end();
const nats = await startPrivateNats();
const env = (stream: string): Record<string, string> => ({ DATABASE_URL: db.url, MEMORY_STORE: 'postgres', INGEST_MODE: 'off', NATS_URL: nats.url, STREAM_NAME: stream, LOG_LEVEL: 'info' });
const svcs = { A: await startBenchService(env('PAIRA'), [], 60_000, join(other, 'dist', 'src', 'cli.js')), B: await startBenchService(env('PAIRB'), []) };
const clients = { A: makeClients(`127.0.0.1:${svcs.A.grpcPort}`, 1)[0]!, B: makeClients(`127.0.0.1:${svcs.B.grpcPort}`, 1)[0]! };
type V = 'A' | 'B';
const teams = Array.from({ length: 40 }, (_, i) => `team-${i}`);
const ms: Record<V, number[][]> = { A: [[], [], [], [], []], B: [[], [], [], [], []] };
for (let i = 0; i < rounds; i++) {
  // Rounds 0-3 of every five: the mix's four shapes; round 4: the whole registry.
  const variant = i % 5;
  for (const v of (i % 2 === 0 ? ['A', 'B'] : ['B', 'A']) as V[]) {
    const t = performance.now();
    if (variant < 4) await registryMixCall(clients[v], variant, teams[i % teams.length]!);
    else await wholeRegistry(clients[v], 1000);
    ms[v][variant]!.push(performance.now() - t);
  }
}
const fmt = (x: number): string => x.toFixed(1);
for (const v of ['A', 'B'] as V[]) {
  const mix = summarize(ms[v].slice(0, 4).flat());
  console.log(
    `${v} (${v === 'A' ? other : 'this checkout'}): bench mix p50/p95/p99/max ${fmt(mix.p50)}/${fmt(mix.p95)}/${fmt(mix.p99)}/${fmt(mix.max)} ms; ` +
      `p99 by variant ${ms[v].slice(0, 4).map((x) => fmt(summarize(x).p99)).join(' / ')}; whole registry p50 ${fmt(summarize(ms[v][4]!).p50)} ms`,
  );
}
await svcs.A.stop();
await svcs.B.stop();
await nats.stop();
await db.drop();
