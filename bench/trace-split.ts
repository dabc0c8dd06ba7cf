// Where a GetTrace call's time goes, by trace size (the traffic's 20 largest traces, and bench/traces.ts's
// sized traces, made by a reads run or --reads-ab on the database): in this process through the service's
// own code on one pg connection, the rows statement (SQL + pg's row parsing), the agents' summary (only
// when truncated), the Node side (context parse, the pre-encoded response) and a client's ts-proto decode
// of the bytes. p50 / p99 ms.
//   tsx bench/trace-split.ts <database> [rounds=8]
import pg from 'pg';
import { GetTraceResponse } from '../src/gen/mycelis/memory/v1/memory.js';
import { getTraceEncoded } from '../src/api/queries/trace.js';
import { TraceReader } from '../src/store/trace-reader.js';
import { sizedTraceId, SIZED_TRACES } from './traces.js';
import { summarize } from './lib.js';
const url = 'postgres://postgres@127.0.0.1:5432/' + process.argv[2];
const rounds = Number(process.argv[3] ?? 8);
const pool = new pg.Pool({ connectionString: url, max: 1 });
const inner = new TraceReader({ pool, kind: 'postgres' });
let rowsMs = 0, agentsMs = 0;
const reader = {
  rows: async (...a: Parameters<TraceReader['rows']>) => { const t = performance.now(); try { return await inner.rows(...a); } finally { rowsMs += performance.now() - t; } },
  agents: async (...a: Parameters<TraceReader['agents']>) => { const t = performance.now(); try { return await inner.agents(...a); } finally { agentsMs += performance.now() - t; } },
} as unknown as TraceReader;
const signal = new AbortController().signal;
const f = (xs: number[]) => `${summarize(xs).p50.toFixed(1)}/${summarize(xs).p99.toFixed(1)}`;
// The traffic's largest traces (their rows interleaved with everything else, as a real workflow's
// are; the sized traces' copies are stored together), then the sized ones.
const largest = (await pool.query<{ trace_id: string; n: number }>(
  `SELECT trace_id, count(*)::int AS n FROM log_entries WHERE trace_id <> '' AND trace_id NOT LIKE 'bench-%' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20`,
)).rows;
const groups: { label: string; ids: string[] }[] = [
  { label: `traffic's largest 20 (${largest[largest.length - 1]?.n}-${largest[0]?.n} records)`, ids: largest.map((r) => r.trace_id) },
  ...SIZED_TRACES.map(({ records, traces }) => ({ label: String(records), ids: Array.from({ length: traces }, (_, k) => sizedTraceId(records, k)) })),
];
for (const { label, ids } of groups) {
  const c = { rows: [] as number[], agents: [] as number[], encode: [] as number[], decode: [] as number[], total: [] as number[], bytes: 0 };
  for (let round = -1; round < rounds; round++) for (const id of ids) {
    rowsMs = 0; agentsMs = 0;
    const t0 = performance.now();
    const bytes = await getTraceEncoded(reader, id, signal);
    const t1 = performance.now();
    GetTraceResponse.decode(bytes);
    const t2 = performance.now();
    if (round < 0) continue;
    c.rows.push(rowsMs); c.agents.push(agentsMs); c.encode.push(t1 - t0 - rowsMs - agentsMs); c.decode.push(t2 - t1); c.total.push(t1 - t0); c.bytes = bytes.length;
  }
  console.log(`${label}: rows SQL+pg ${f(c.rows)} | agents SQL ${f(c.agents)} | Node (parse+encode) ${f(c.encode)} | in-process total ${f(c.total)} | client ts-proto decode ${f(c.decode)} | ${c.bytes} bytes`);
}
await pool.end();
