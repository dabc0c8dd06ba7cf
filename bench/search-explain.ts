// Where SearchLogs' and GetTrace's time goes, on a database the reads phase left (`--only reads --keep`):
// the bench's own query mix (bench/search.ts: the same words, filters, orders and page size), each
// statement EXPLAIN (ANALYZE, BUFFERS)'d exactly as the service sends it (node-postgres' unnamed
// statements, planned with their values), then timed again plainly, several rounds. Per kind: the
// worst and median execution and planning times, whether JIT ran, the worst plan's shape.
//
//   tsx bench/search-explain.ts --db <database> [--rounds 6] [--plan <kind>] [--trace]
//   tsx bench/search-explain.ts --db <database> --ab <another checkout> [--kinds 'k1;k2'] [--by-query]
// --ab: each query's page through that checkout's SearchReader (A) and this one's (B), in turns (A B,
// then B A), twice, on one connection each: the SQL side of an A/B, without the service.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { NO_FILTER, type LogRowFilter } from '../src/store/log-reader.js';
import { SEARCH_NEWEST_SQL, SEARCH_RELEVANCE_SQL, SearchReader, searchParams, type SearchOrder } from '../src/store/search-reader.js';
import { TRACE_ROWS_SQL } from '../src/store/trace-reader.js';
import { pickWords } from './search.js';

const { values: flags } = parseArgs({
  options: {
    db: { type: 'string' },
    rounds: { type: 'string', default: '6' },
    plan: { type: 'string' },
    trace: { type: 'boolean', default: false },
    traces: { type: 'string', default: '400' },
    ab: { type: 'string' },
    kinds: { type: 'string' },
    'by-query': { type: 'boolean', default: false },
    'with-common-relevance': { type: 'boolean', default: false },
  },
});
if (flags.db === undefined) throw new Error('--db <database> is required');
const url = (process.env['TEST_PG_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres').replace(/\/[^/]*$/, `/${flags.db}`);
const rounds = Number(flags.rounds);

interface Q {
  kind: string;
  order: SearchOrder;
  query: string;
  filter: LogRowFilter;
  page2?: boolean;
}

interface Plan {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Total Time'?: number;
  Plans?: Plan[];
}

function shape(p: Plan, depth = 0, out: string[] = []): string[] {
  if (depth < 6) {
    const rel = p['Index Name'] ?? p['Relation Name'] ?? '';
    out.push(`${'  '.repeat(depth)}${p['Node Type']}${rel ? ` ${rel}` : ''} rows=${p['Actual Rows'] ?? '?'} ${(p['Actual Total Time'] ?? 0).toFixed(1)}ms`);
    // Many partitions: show the first two children of an Append only.
    const kids = p.Plans ?? [];
    const shown = p['Node Type'] === 'Append' || p['Node Type'] === 'Merge Append' ? [...kids].sort((a, b) => (b['Actual Total Time'] ?? 0) - (a['Actual Total Time'] ?? 0)).slice(0, 2) : kids;
    for (const k of shown) shape(k, depth + 1, out);
    if (shown.length < kids.length) out.push(`${'  '.repeat(depth + 1)}… ${kids.length - shown.length} more children`);
  }
  return out;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

const c = new pg.Client({ connectionString: url });
await c.connect();
try {
  const { rows, words } = await pickWords(c);
  const teams = (await c.query<{ t: string }>(`SELECT DISTINCT team_id AS t FROM agent_registry WHERE team_id <> '' ORDER BY 1`)).rows.map((r) => r.t);
  process.stdout.write(`${rows} rows; words ${JSON.stringify(words)}\n`);
  const at = <T>(xs: readonly T[], i: number): T => xs[i % xs.length]!;
  const qs: Q[] = [];
  for (let i = 0; i < rounds; i++) {
    const cw = at(words.common, i);
    const m = at(words.mid, i);
    const r = at(words.rare, i);
    const p = at(words.phrases, i);
    const n = (kind: string, query: string, filter: LogRowFilter = NO_FILTER, order: SearchOrder = 'newest'): Q => ({ kind, order, query, filter });
    qs.push(
      n('rare', r),
      n('mid', m),
      n('common', cw),
      n('common AND mid', `${cw} ${m}`),
      n('phrase', `"${p}"`),
      n('common -mid', `${cw} -${m}`),
      n('rare or mid', `${r} or ${m}`),
      n('common, one team', cw, { ...NO_FILTER, teamIds: [at(teams, i)] }),
      n('mid, ERROR', m, { ...NO_FILTER, levels: ['ERROR'] }),
      { ...n('common, page 2', cw), page2: true },
      n('no match', `zq${i}xv`),
      n('R rare', r, NO_FILTER, 'relevance'),
      n('R mid', m, NO_FILTER, 'relevance'),
      n('R phrase', `"${p}"`, NO_FILTER, 'relevance'),
      n('R rare or mid', `${r} or ${m}`, NO_FILTER, 'relevance'),
    );
    // Not in the bench's mix (bench/search.ts): relevance of a common word, which ranks the most.
    if (flags['with-common-relevance']) qs.push(n('R common', cw, NO_FILTER, 'relevance'));
  }
  if (flags.kinds !== undefined) {
    const keep = new Set(flags.kinds.split(';'));
    qs.splice(0, qs.length, ...qs.filter((q) => keep.has(q.kind)));
  }
  if (flags['by-query']) for (const q of qs) q.kind = `${q.kind}: ${q.query}`;
  if (flags.ab !== undefined) {
    type Page = { rows: { row: { id: string; timestampUs: number; seq: number } }[] } | { row: { id: string; timestampUs: number; seq: number } }[];
    type AnyReader = { page(f: LogRowFilter, o: object): Promise<Page>; parseQuery?(q: string): Promise<{ text: string }>; lastPlan?: string[] };
    const rowsOf = (p: Page): { row: { id: string; timestampUs: number; seq: number } }[] => (Array.isArray(p) ? p : p.rows);
    const mod = (await import(`${flags.ab}/src/store/search-reader.ts`)) as { SearchReader: new (db: { pool: pg.Pool }) => AnyReader };
    const poolA = new pg.Pool({ connectionString: url, max: 1 });
    const poolB = new pg.Pool({ connectionString: url, max: 1 });
    const readers: Record<'A' | 'B', AnyReader> = { A: new mod.SearchReader({ pool: poolA }), B: new SearchReader({ pool: poolB }) as unknown as AnyReader };
    const reader = new SearchReader({ pool: poolB });
    const times = { A: new Map<string, number[]>(), B: new Map<string, number[]>() };
    const all = { A: [] as number[], B: [] as number[] };
    for (let rep = 0; rep < 2; rep++) {
      for (const q of qs) {
        let after: { timestampUs: number; seq: number } | null = null;
        const parsed = (await reader.parseQuery(q.query)).text;
        const o = (a: typeof after) => ({ query: q.query, order: q.order, sinceUs: null, untilUs: null, after: a, afterRank: null, limit: 101, parsed });
        if (q.page2) {
          const last = (await reader.page(q.filter, o(null))).rows[99];
          if (!last) continue;
          after = { timestampUs: last.row.timestampUs, seq: last.row.seq };
        }
        const ids: Record<string, string> = {};
        for (const v of rep % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)) {
          const t = performance.now();
          const got = rowsOf(await readers[v].page(q.filter, o(after)));
          const ms = performance.now() - t;
          ids[v] = got.map((r) => r.row.id).join(',');
          if (process.env['SEARCH_EXPLAIN_TRACE'] === '1') process.stdout.write(`${rep} ${v} ${q.kind} ${q.query} ${ms.toFixed(1)} ms ${got.length} rows\n`);
          if (v === 'B' && flags['by-query'] && rep === 0) process.stdout.write(`plan ${q.kind}: ${(readers.B.lastPlan ?? []).join(' > ')}\n`);
          if (!times[v].has(q.kind)) times[v].set(q.kind, []);
          times[v].get(q.kind)!.push(ms);
          all[v].push(ms);
        }
        if (ids['A'] !== ids['B']) process.stdout.write(`different pages for ${q.kind} ${q.query}\n`);
      }
    }
    const pct = (xs: number[], p: number): string => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!.toFixed(1);
    const w = Math.max(18, ...[...times.A.keys()].map((k) => k.length + 1));
    process.stdout.write(`\n${'kind'.padEnd(w)} A med/max          B med/max (ms)\n`);
    for (const [k, a] of times.A) {
      const b = times.B.get(k)!;
      process.stdout.write(`${k.padEnd(w)} ${`${pct(a, 0.5)}/${pct(a, 1)}`.padEnd(18)} ${pct(b, 0.5)}/${pct(b, 1)}\n`);
    }
    process.stdout.write(`all: A p50/p99 ${pct(all.A, 0.5)}/${pct(all.A, 0.99)}  B p50/p99 ${pct(all.B, 0.5)}/${pct(all.B, 0.99)} ms (${all.A.length} each)\n`);
    await poolA.end();
    await poolB.end();
  }
  const stats = new Map<string, { exec: number[]; planning: number[]; wall: number[]; jit: number; worst?: { ms: number; q: string; plan: Plan; jitMs: number } }>();
  for (const q of qs) {
    let after: { timestampUs: number; seq: number } | null = null;
    const opts = (a: typeof after) => ({ query: q.query, order: q.order, sinceUs: null, untilUs: null, after: a, afterRank: null, limit: 101 });
    const sql = q.order === 'relevance' ? SEARCH_RELEVANCE_SQL : SEARCH_NEWEST_SQL;
    const args = (a: typeof after): unknown[] => {
      const all = searchParams(q.filter, opts(a));
      return q.order === 'relevance' ? all : all.slice(0, 11);
    };
    if (q.page2) {
      const first = await c.query<{ ts_us: string; seq_text: string }>(sql, args(null));
      const last = first.rows[99];
      if (!last) continue;
      after = { timestampUs: Number(last.ts_us), seq: Number(last.seq_text) };
    }
    const ex = await c.query<{ 'QUERY PLAN': [{ Plan: Plan; 'Planning Time': number; 'Execution Time': number; JIT?: { Timing?: { Total?: number } } }] }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, args(after));
    const e = ex.rows[0]!['QUERY PLAN'][0];
    const t = performance.now();
    await c.query(sql, args(after));
    const wall = performance.now() - t;
    let s = stats.get(q.kind);
    if (!s) stats.set(q.kind, (s = { exec: [], planning: [], wall: [], jit: 0 }));
    s.exec.push(e['Execution Time']);
    s.planning.push(e['Planning Time']);
    s.wall.push(wall);
    const jitMs = e.JIT?.Timing?.Total ?? 0;
    if (e.JIT) s.jit++;
    if (!s.worst || e['Execution Time'] + e['Planning Time'] > s.worst.ms) s.worst = { ms: e['Execution Time'] + e['Planning Time'], q: q.query, plan: e.Plan, jitMs };
  }
  process.stdout.write(`\n${'kind'.padEnd(18)} exec med/max  planning med/max  wall med/max (ms)  jit\n`);
  for (const [k, s] of stats) {
    const f = (xs: number[]): string => `${median(xs).toFixed(1)}/${Math.max(...xs).toFixed(1)}`;
    process.stdout.write(`${k.padEnd(18)} ${f(s.exec).padEnd(12)} ${f(s.planning).padEnd(17)} ${f(s.wall).padEnd(18)} ${s.jit}/${s.exec.length}\n`);
  }
  for (const [k, s] of stats) {
    if (flags.plan !== undefined && flags.plan !== 'all' && flags.plan !== k) continue;
    if (flags.plan === undefined) continue;
    process.stdout.write(`\n== ${k}: worst ${s.worst!.ms.toFixed(1)} ms (${s.worst!.q})${s.worst!.jitMs ? `, JIT ${s.worst!.jitMs.toFixed(1)} ms` : ''}\n${shape(s.worst!.plan).join('\n')}\n`);
  }

  if (flags.trace) {
    const ids = (await c.query<{ trace_id: string }>(`SELECT trace_id FROM (SELECT DISTINCT trace_id FROM log_entries WHERE trace_id <> '') t ORDER BY md5(trace_id) LIMIT $1`, [Number(flags.traces)])).rows.map((r) => r.trace_id);
    const exec: number[] = [];
    const planning: number[] = [];
    const wall: number[] = [];
    let worst: { ms: number; id: string; plan: Plan } | undefined;
    for (const id of ids) {
      const ex = await c.query<{ 'QUERY PLAN': [{ Plan: Plan; 'Planning Time': number; 'Execution Time': number }] }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${TRACE_ROWS_SQL}`, [id, 10_001, 3 * 1024 * 1024]);
      const e = ex.rows[0]!['QUERY PLAN'][0];
      exec.push(e['Execution Time']);
      planning.push(e['Planning Time']);
      const t = performance.now();
      await c.query(TRACE_ROWS_SQL, [id, 10_001, 3 * 1024 * 1024]);
      wall.push(performance.now() - t);
      if (!worst || e['Execution Time'] > worst.ms) worst = { ms: e['Execution Time'], id, plan: e.Plan };
    }
    const q = (xs: number[], p: number): string => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!.toFixed(1);
    process.stdout.write(`\ntrace rows (${ids.length} traces): exec p50/p99/max ${q(exec, 0.5)}/${q(exec, 0.99)}/${q(exec, 1)}  planning p50/p99 ${q(planning, 0.5)}/${q(planning, 0.99)}  wall p50/p99 ${q(wall, 0.5)}/${q(wall, 0.99)} ms\n`);
    process.stdout.write(`worst ${worst!.ms.toFixed(1)} ms (${worst!.id})\n${shape(worst!.plan).join('\n')}\n`);
  }
} finally {
  await c.end();
}
