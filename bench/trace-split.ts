// Where a GetTrace call's time goes, by trace size (bench/traces.ts's sized traces, made by a reads run or
// --reads-ab on the database): in this process through the service's own code on one pg connection, the
// rows statement (SQL + pg's row parsing), the agents' summary (only when truncated), the Node side
// (context parse, the pre-encoded response) and a client's ts-proto decode of the bytes. p50 / p99 ms.
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
for (const { records, traces } of SIZED_TRACES) {
  const c = { rows: [] as number[], agents: [] as number[], encode: [] as number[], decode: [] as number[], total: [] as number[], bytes: 0 };
  for (let round = -1; round < rounds; round++) for (let k = 0; k < traces; k++) {
    rowsMs = 0; agentsMs = 0;
    const t0 = performance.now();
    const bytes = await getTraceEncoded(reader, sizedTraceId(records, k), signal);
    const t1 = performance.now();
    GetTraceResponse.decode(bytes);
    const t2 = performance.now();
    if (round < 0) continue;
    c.rows.push(rowsMs); c.agents.push(agentsMs); c.encode.push(t1 - t0 - rowsMs - agentsMs); c.decode.push(t2 - t1); c.total.push(t1 - t0); c.bytes = bytes.length;
  }
  console.log(`${records}: rows SQL+pg ${f(c.rows)} | agents SQL ${f(c.agents)} | Node (parse+encode) ${f(c.encode)} | in-process total ${f(c.total)} | client ts-proto decode ${f(c.decode)} | ${c.bytes} bytes`);
}
await pool.end();
