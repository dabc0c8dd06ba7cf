// Reads A/B with both builds running side by side, each request sent to A and B in turn (the order
// alternating), so both see the same moment of a loaded host: --reads-ab runs the builds one after the
// other, and a p99 of one run moves more with the host's load than with the code. The bench's
// SearchLogs mix (bench/search.ts searchMix), then GetTrace of the traffic's traces and of the sized
// ones (bench/traces.ts), on a database a reads run kept (`--only reads --keep`).
//   tsx bench/reads-pair.ts <database> <another checkout: A, its build> [rounds=20] [out.json]
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startPrivateNats } from '../test/helpers/nats.js';
import { getTrace, makeClients, searchLogs } from './clients.js';
import { summarize, type Summary } from './lib.js';
import { pickWords, searchMix } from './search.js';
import { startBenchService } from './service.js';
import { sizedTraceId, SIZED_TRACES } from './traces.js';

const [db, other, roundsArg, out] = process.argv.slice(2);
if (db === undefined || other === undefined) throw new Error('usage: tsx bench/reads-pair.ts <database> <other checkout> [rounds] [out.json]');
const rounds = Number(roundsArg ?? 20);
const url = (process.env['TEST_PG_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres').replace(/\/[^/]*$/, `/${db}`);
const load = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);

const c = new pg.Client({ connectionString: url });
await c.connect();
const { words } = await pickWords(c);
const teams = (await c.query<{ t: string }>(`SELECT DISTINCT team_id AS t FROM agent_registry WHERE team_id <> '' ORDER BY 1`)).rows.map((r) => r.t);
const traceIds = (await c.query<{ trace_id: string }>(`SELECT trace_id FROM (SELECT DISTINCT trace_id FROM log_entries WHERE trace_id <> '' AND trace_id NOT LIKE 'bench-%') t ORDER BY md5(trace_id) LIMIT 400`)).rows.map((r) => r.trace_id);
const sized: { records: number; id: string }[] = [];
for (const { records, traces } of SIZED_TRACES) {
  for (let k = 0; k < traces; k++) {
    const id = sizedTraceId(records, k);
    const n = Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM log_entries WHERE trace_id = $1 AND trace_id <> ''`, [id])).rows[0]!.n);
    if (n === records) sized.push({ records, id });
  }
}
await c.end();

const nats = await startPrivateNats();
const env = (stream: string): Record<string, string> => ({ DATABASE_URL: url, MEMORY_STORE: 'postgres', INGEST_MODE: 'off', NATS_URL: nats.url, STREAM_NAME: stream, LOG_LEVEL: 'info' });
const svcA = await startBenchService(env('PAIRA'), [], 60_000, join(other, 'dist', 'src', 'cli.js'));
const svcB = await startBenchService(env('PAIRB'), []);
const clients = { A: makeClients(`127.0.0.1:${svcA.grpcPort}`, 1)[0]!, B: makeClients(`127.0.0.1:${svcB.grpcPort}`, 1)[0]! };
type V = 'A' | 'B';
const samples = new Map<string, { A: number[]; B: number[] }>();
const add = (key: string, v: V, ms: number): void => {
  if (!samples.has(key)) samples.set(key, { A: [], B: [] });
  samples.get(key)![v].push(ms);
};
let turn = 0;
/** fn on A and B in turn (alternating which goes first); `keys`: where each one's time counts. */
async function pair(keys: string[], fn: (v: V) => Promise<unknown>): Promise<void> {
  const order: V[] = turn++ % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
  for (const v of order) {
    const t = performance.now();
    await fn(v);
    const ms = performance.now() - t;
    for (const k of keys) add(k, v, ms);
  }
}

const loadStart = load();
// Warm-up: one round of the mix and the sized traces, not counted.
const tokens = { A: new Map<string, string>(), B: new Map<string, string>() };
const mix = searchMix(words, teams, rounds + 1);
const perRound = mix.length / (rounds + 1);
for (let i = 0; i < mix.length; i++) {
  const q = mix[i]!;
  const counted = i >= perRound;
  const order = q.relevance ? 'relevance' : 'newest';
  if (q.pageOf !== undefined && (!tokens.A.get(q.pageOf) || !tokens.B.get(q.pageOf))) continue;
  await pair(counted ? [order, `${order}: ${q.kind}`] : [], async (v) => {
    const pageToken = q.pageOf === undefined ? undefined : tokens[v].get(q.pageOf);
    const res = await searchLogs(clients[v], pageToken === undefined ? q.req : { ...q.req, pageToken });
    if (q.id !== undefined) tokens[v].set(q.id, res.nextPageToken);
  });
}
for (const id of traceIds) await pair(['GetTrace'], (v) => getTrace(clients[v], id));
for (let round = -1; round < 10; round++) for (const s of sized) await pair(round < 0 ? [] : [`GetTrace ${s.records}`], (v) => getTrace(clients[v], s.id));
const loadEnd = load();

clients.A.close();
clients.B.close();
await svcA.stop();
await svcB.stop();
await nats.destroy();

const result: Record<string, { A: Summary; B: Summary }> = {};
for (const [k, v] of samples) result[k] = { A: summarize(v.A), B: summarize(v.B) };
const f = (s: Summary): string => `${s.p50.toFixed(1)} / ${s.p99.toFixed(1)}`;
console.log(`reads pair: A ${other}, B this checkout; load ${loadStart.join(' ')} -> ${loadEnd.join(' ')}; ${rounds} rounds; p50 / p99 ms (n)`);
for (const [k, v] of Object.entries(result)) console.log(`${k.padEnd(36)} A ${f(v.A).padEnd(16)} B ${f(v.B).padEnd(16)} (${v.A.n})`);
if (out !== undefined) writeFileSync(out, JSON.stringify({ database: db, a: other, rounds, loadStart, loadEnd, words, result }, null, 2) + '\n');
