// GetTrace by trace size, on the reads phase's database. The bench's own traces are its traffic's
// workflows (a team's run of 3-24 messages and their tool results) times the copies that fill the
// database to 1,000,000 rows: 12-156 records, their mean depending on --events (Q1: 173, Q2: 70.5). So
// that p99 is judged at stated sizes, traces of 170, 1,000 and 12,000 records are added once to the
// database (`bench-workflow-<records>-<k>`): copies (new ids and seqs, the same times) of the newest rows
// of one team's workflows (two teams for 12,000: about 50 agents), so they hold what workflows hold
// (tool calls and results, text, events, errors; 460 stored bytes a row on average), under one trace id,
// as a team's long workflow would. 12,000 is past the response's caps (10,000 records, 3 MiB of message
// and context: at these sizes the byte cap cuts first, near 6,500 records; the record cap is reached
// first only by rows under about 315 bytes), so that trace measures a truncated response and the
// summary of the whole trace in SQL. A database without the rows for a size (--quick) leaves it out.
import pg from 'pg';
import { getTrace, type makeClients } from './clients.js';
import { nowMs, summarize, type Summary } from './lib.js';

export const SIZED_TRACES: readonly { readonly records: number; readonly traces: number }[] = [
  { records: 170, traces: 8 },
  { records: 1000, traces: 4 },
  { records: 12_000, traces: 2 },
];

/** Rows the sized traces add (the reads phase tops the database up to 1,000,000 with them). */
export const SIZED_TRACE_ROWS = SIZED_TRACES.reduce((n, t) => n + t.records * t.traces, 0);

export const sizedTraceId = (records: number, k: number): string => `bench-workflow-${records}-${k}`;

export interface SizedTraceResult {
  /** Records in the trace, in the response (the caps), whether it was truncated. */
  readonly records: number;
  readonly returned: number;
  readonly truncated: boolean;
  readonly agents: number;
  readonly ms: Summary;
}

/** Adds the sized traces that are missing (idempotent); with `vacuum`, VACUUM ANALYZE when any was added. */
export async function ensureSizedTraces(url: string, log: (msg: string) => void, vacuum = true): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const teams = (await c.query<{ t: string }>(`SELECT DISTINCT team_id AS t FROM agent_registry WHERE team_id <> '' ORDER BY 1`)).rows.map((r) => r.t);
    let next = 0;
    let made = 0;
    for (const { records, traces } of SIZED_TRACES) {
      const perTrace = records > 8000 ? 2 : 1;
      for (let k = 0; k < traces; k++) {
        const id = sizedTraceId(records, k);
        const own = teams.slice(next, next + perTrace);
        next += perTrace;
        if (own.length < perTrace) {
          log(`sized traces: ${id} left out (${teams.length} teams)`);
          continue;
        }
        const have = Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM log_entries WHERE trace_id = $1 AND trace_id <> ''`, [id])).rows[0]!.n);
        if (have > 0) continue;
        // The team's workflow rows, newest first; a small database (--quick) may not have enough.
        const r = await c.query(
          `INSERT INTO log_entries (id, seq, trace_id, timestamp, level, source, intent, message, context, team_id, subject, received_at)
           SELECT gen_random_uuid(), nextval('log_entries_seq'), $1, timestamp, level, source, intent, message, context, team_id, subject, received_at
             FROM (SELECT * FROM log_entries
                    WHERE trace_id <> '' AND trace_id NOT LIKE 'bench-%' AND team_id = ANY($2::text[])
                    ORDER BY "timestamp" DESC, seq DESC LIMIT $3) s`,
          [id, own, records],
        );
        if (r.rowCount !== records) {
          await c.query(`DELETE FROM log_entries WHERE trace_id = $1 AND trace_id <> ''`, [id]);
          log(`sized traces: ${id} left out (${r.rowCount} workflow rows in ${own.join(', ')})`);
          continue;
        }
        made++;
      }
    }
    if (made > 0) log(`sized traces: ${made} added`);
    if (made > 0 && vacuum) await c.query('VACUUM ANALYZE log_entries');
  } finally {
    await c.end();
  }
}

/** `rounds` GetTrace calls of every sized trace the database has (after one warm-up call each), sizes interleaved. */
export async function getTraceBySize(client: ReturnType<typeof makeClients>[number], url: string, rounds: number): Promise<Record<string, SizedTraceResult>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const ids: { records: number; id: string }[] = [];
  try {
    for (const { records, traces } of SIZED_TRACES) {
      for (let k = 0; k < traces; k++) {
        const id = sizedTraceId(records, k);
        const have = Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM log_entries WHERE trace_id = $1 AND trace_id <> ''`, [id])).rows[0]!.n);
        if (have === records) ids.push({ records, id });
      }
    }
  } finally {
    await c.end();
  }
  const ms = new Map<number, number[]>();
  const shape = new Map<number, { returned: number; truncated: boolean; agents: number }>();
  for (let round = -1; round < rounds; round++) {
    for (const { records, id } of ids) {
      const t = nowMs();
      const res = await getTrace(client, id);
      const took = nowMs() - t;
      if (round < 0) {
        shape.set(records, { returned: res.records.length, truncated: res.truncated, agents: res.agents.length });
        continue;
      }
      if (!ms.has(records)) ms.set(records, []);
      ms.get(records)!.push(took);
    }
  }
  const out: Record<string, SizedTraceResult> = {};
  for (const { records } of SIZED_TRACES) {
    const got = ms.get(records);
    if (got !== undefined) out[String(records)] = { records, ...shape.get(records)!, ms: summarize(got) };
  }
  return out;
}
