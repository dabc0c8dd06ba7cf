import pg from 'pg';
import { TraceReader, TRACE_ROWS_SQL } from '../src/store/trace-reader.js';
import { getTrace } from '../src/api/queries/trace.js';
import { GetTraceResponse } from '../src/gen/mycelis/memory/v1/memory.js';
const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/' + process.argv[2], max: 1 });
const ids = (await pool.query(`SELECT trace_id FROM (SELECT DISTINCT trace_id FROM log_entries WHERE trace_id <> '') t ORDER BY md5(trace_id) LIMIT 400`)).rows.map((r) => r.trace_id);
const reader = new TraceReader({ pool });
const sig = new AbortController().signal;
const m: Record<string, number[]> = { sqlOnly: [], explainExec: [], getTrace: [], encode: [], decode: [], n: [] };
for (let rep = 0; rep < 2; rep++) for (const id of ids) {
  const t0 = performance.now();
  await pool.query(TRACE_ROWS_SQL, [id, 10001, 3 * 1024 * 1024]);
  const t1 = performance.now();
  const res = await getTrace(reader, id, sig);
  const t2 = performance.now();
  const buf = GetTraceResponse.encode(res).finish();
  const t3 = performance.now();
  GetTraceResponse.decode(buf);
  const t4 = performance.now();
  if (rep === 1) { m.sqlOnly!.push(t1 - t0); m.getTrace!.push(t2 - t1); m.encode!.push(t3 - t2); m.decode!.push(t4 - t3); m.n!.push(res.records.length); }
}
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!.toFixed(1);
for (const [k, v] of Object.entries(m)) if (v.length) console.log(k.padEnd(10), 'p50/p99/max', q(v, .5), q(v, .99), q(v, 1));
await pool.end();
