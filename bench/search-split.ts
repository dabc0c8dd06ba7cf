// Where a SearchLogs call's time goes, on a database a reads run kept (`--only reads --keep`): the
// bench's query mix (bench/search.ts searchMix), each request twice in turn: in this process through
// the service's own code on one pg connection (the SQL: parseQuery + the page's statements, rows
// parsed by pg; then turning the page into a response: generic ts-proto objects + encode, or the
// pre-encoded path; and a client's ts-proto decode of the bytes), and through the built service's gRPC
// port (all of it plus transport, grpc-js, the client's decode). Per kind and order: p50 / p99 of each.
//   tsx bench/search-split.ts <database> [rounds=20]
import { loadavg } from 'node:os';
import pg from 'pg';
import { SearchLogsRequest, SearchLogsResponse } from '../src/gen/mycelis/memory/v1/memory.js';
import { encodeSearchResponse, searchLogs } from '../src/api/queries/search.js';
import { validateSearchLogs } from '../src/api/validate.js';
import { SearchReader, type SearchPage } from '../src/store/search-reader.js';
import { startPrivateNats } from '../test/helpers/nats.js';
import { makeClients, searchLogs as callSearch } from './clients.js';
import { summarize } from './lib.js';
import { pickWords, searchMix } from './search.js';
import { startBenchService } from './service.js';

const db = process.argv[2]!;
const rounds = Number(process.argv[3] ?? 20);
const url = (process.env['TEST_PG_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres').replace(/\/[^/]*$/, `/${db}`);
const pool = new pg.Pool({ connectionString: url, max: 1 });
const c = await pool.connect();
const { words } = await pickWords(c as unknown as pg.Client);
const teams = (await c.query<{ t: string }>(`SELECT DISTINCT team_id AS t FROM agent_registry WHERE team_id <> '' ORDER BY 1`)).rows.map((r) => r.t);
c.release();

// The reader, timed: every parseQuery and page call adds to `sqlMs`; the last page is kept.
let sqlMs = 0;
let lastPage: SearchPage | undefined;
const inner = new SearchReader({ pool, kind: 'postgres' });
const reader = {
  parseQuery: async (q: string, s?: AbortSignal) => {
    const t = performance.now();
    try {
      return await inner.parseQuery(q, s);
    } finally {
      sqlMs += performance.now() - t;
    }
  },
  page: async (...a: Parameters<SearchReader['page']>) => {
    const t = performance.now();
    try {
      return (lastPage = await inner.page(...a));
    } finally {
      sqlMs += performance.now() - t;
    }
  },
} as unknown as SearchReader;

const nats = await startPrivateNats();
const svc = await startBenchService({ DATABASE_URL: url, MEMORY_STORE: 'postgres', INGEST_MODE: 'off', NATS_URL: nats.url, STREAM_NAME: 'SPLIT', LOG_LEVEL: 'info' });
const [client] = makeClients(`127.0.0.1:${svc.grpcPort}`, 1);
const signal = new AbortController().signal;
const load0 = loadavg();

type Cols = { sql: number[]; generic: number[]; wire: number[]; decode: number[]; inProcess: number[]; grpc: number[] };
const by = new Map<string, Cols>();
const tokens = new Map<string, string>();
const mix = searchMix(words, teams, rounds + 1);
for (let i = 0; i < mix.length; i++) {
  const q = mix[i]!;
  const warm = i < mix.length / (rounds + 1);
  const pageToken = q.pageOf === undefined ? '' : tokens.get(q.pageOf);
  if (pageToken === undefined) continue;
  const req = SearchLogsRequest.fromPartial({ ...q.req, pageToken } as Partial<SearchLogsRequest>);
  const key = `${q.relevance ? 'relevance' : 'newest'}: ${q.kind}`;
  const cols: Cols = by.get(key) ?? { sql: [], generic: [], wire: [], decode: [], inProcess: [], grpc: [] };
  by.set(key, cols);
  // Alternate which goes first.
  const viaGrpc = async (): Promise<void> => {
    const t = performance.now();
    await callSearch(client!, { ...q.req, pageToken });
    if (!warm) cols.grpc.push(performance.now() - t);
  };
  const inProc = async (): Promise<void> => {
    sqlMs = 0;
    const t0 = performance.now();
    const v = validateSearchLogs(req);
    const res = await searchLogs(reader, v, signal);
    const bytes = SearchLogsResponse.encode(res).finish();
    const t1 = performance.now();
    const sql = sqlMs;
    const page = lastPage!.rows.slice(0, v.pageSize);
    const t2 = performance.now();
    const wire = encodeSearchResponse(page, res.nextPageToken);
    const t3 = performance.now();
    SearchLogsResponse.decode(wire);
    const t4 = performance.now();
    if (q.id !== undefined) tokens.set(q.id, res.nextPageToken);
    if (bytes.length !== wire.length) throw new Error(`${key}: generic ${bytes.length} bytes, pre-encoded ${wire.length}`);
    if (warm) return;
    cols.sql.push(sql);
    cols.generic.push(t1 - t0 - sql);
    cols.wire.push(t3 - t2);
    cols.decode.push(t4 - t3);
    cols.inProcess.push(t1 - t0);
  };
  if (i % 2 === 0) {
    await inProc();
    await viaGrpc();
  } else {
    await viaGrpc();
    await inProc();
  }
}
client!.close();
await svc.stop();
await nats.destroy();
await pool.end();
const f = (xs: number[]): string => (xs.length === 0 ? '-' : `${summarize(xs).p50.toFixed(1)} / ${summarize(xs).p99.toFixed(1)}`);
console.log(`load ${load0.map((x) => x.toFixed(2)).join(' ')} -> ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${rounds} rounds (+1 warm-up); p50 / p99 ms`);
console.log('| kind | SQL + pg rows | generic build + encode | pre-encoded | client decode | in process (generic) | through gRPC |');
console.log('|---|---|---|---|---|---|---|');
const empty = (): Cols => ({ sql: [], generic: [], wire: [], decode: [], inProcess: [], grpc: [] });
const all = { newest: empty(), relevance: empty() };
const row = (k: string, v: Cols): void => console.log(`| ${k} | ${f(v.sql)} | ${f(v.generic)} | ${f(v.wire)} | ${f(v.decode)} | ${f(v.inProcess)} | ${f(v.grpc)} |`);
for (const [k, v] of by) {
  row(k, v);
  const into = all[k.startsWith('newest') ? 'newest' : 'relevance'];
  for (const x of Object.keys(into) as (keyof Cols)[]) into[x].push(...v[x]);
}
row('**newest, all**', all.newest);
row('**relevance, all**', all.relevance);
