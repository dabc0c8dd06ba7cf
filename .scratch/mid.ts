import pg from 'pg';
import { SearchReader } from '../src/store/search-reader.ts';
import { NO_FILTER } from '../src/store/log-reader.ts';
const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/t_bench_reads_b153fb87', max: 2 });
const r = new SearchReader({ pool } as never);
for (const w of ['after', 'timeout', 'denied', 'permission', 'exit', 'status', 'tests', 'does', 'exist', 'orders', 'relation', 'from']) {
  const est = (await pool.query(`EXPLAIN (FORMAT JSON) SELECT 1 FROM log_entries l WHERE l.search @@ websearch_to_tsquery('simple', $1)`, [w])).rows[0]['QUERY PLAN'][0].Plan['Plan Rows'];
  const t = performance.now();
  const p = await r.page({ ...NO_FILTER, levels: ['ERROR'] }, { query: w, order: 'newest', sinceUs: null, untilUs: null, after: null, afterRank: null, limit: 101, parsed: `'${w}'` });
  console.log(w, 'est', est, 'rows', p.rows.length, (performance.now() - t).toFixed(1), 'ms', r.lastPlan.join(' | '));
}
await pool.end();
