// Reads of one trace (GetTrace): every row with a trace id, in event-time order (timestamp, then seq:
// the workflow as it happened, not as it was committed), bounded by a count and by bytes.
//
// The byte bound is applied in SQL, so a trace of 10,000 rows that each carry a 1 MiB context never
// travels to this process whole: a running sum of the rows' stored sizes (pg_column_size, which reads a
// TOASTed value's header, not the value) marks the rows that start within the budget, and only those
// have their message and context converted to text. Rows past it come back as their light columns
// only, so the caller knows the trace was cut there.
//
// `trace_id <> ''` is repeated in every WHERE: it lets the planner use the partial index idx_logs_trace
// (trace_id) WHERE trace_id <> '' also for generic plans of these parameterized statements - which
// they are: both are prepared once per connection (named). A trace has no time bound, so every
// partition is planned: afresh that was about 1 ms of a 5 ms median GetTrace with the 12 partitions of
// a default install, and grows with LOG_RETENTION; the generic plan (after PostgreSQL's first five
// custom ones) is the same index scan per partition whatever the trace.
import { cancellableQuery, toRow, type PoolHolder, type RawRow, type StoredLogRow } from './log-reader.js';

export interface TraceRows {
  /** The first rows of the trace, in event-time order. */
  readonly rows: StoredLogRow[];
  /** True when the trace has rows after `rows` (the count or the byte bound cut it). */
  readonly more: boolean;
}

/** One agent's part in a whole trace (TraceReader.agents). Times in µs. */
export interface TraceAgentRow {
  readonly agentId: string;
  readonly teamId: string;
  readonly records: number;
  readonly errors: number;
  readonly firstUs: number;
  readonly lastUs: number;
}

const us = (col: string): string => `(extract(epoch FROM ${col}) * 1000000)::bigint::text`;

/** $1 the trace id, $2 rows at most, $3 the stored-byte budget. */
export const TRACE_ROWS_SQL = `SELECT x.id::text AS id, x.seq::text AS seq_text, x.trace_id, ${us('x.timestamp')} AS ts_us, x.level, x.source, x.intent,
              CASE WHEN x.within THEN coalesce(x.message, '') ELSE '' END AS message,
              CASE WHEN x.within THEN x.context::text END AS context,
              x.team_id, x.subject, ${us('x.received_at')} AS received_us, x.within
         FROM (
           SELECT l.id, l.seq, l.trace_id, l.timestamp, l.level, l.source, l.intent, l.message, l.context, l.team_id,
                  l.subject, l.received_at,
                  sum(coalesce(pg_column_size(l.context), 0) + coalesce(pg_column_size(l.message), 0)) OVER w
                    - coalesce(pg_column_size(l.context), 0) - coalesce(pg_column_size(l.message), 0) < $3::bigint AS within
             FROM log_entries l
            WHERE l.trace_id = $1::text AND l.trace_id <> ''
           WINDOW w AS (ORDER BY l.timestamp, l.seq ROWS UNBOUNDED PRECEDING)
            ORDER BY l.timestamp, l.seq
            LIMIT $2
         ) x
        ORDER BY x.timestamp, x.seq`;

type TraceRaw = RawRow & { within: boolean };

export class TraceReader {
  constructor(private readonly db: PoolHolder) {}

  /**
   * The first rows of a trace by (timestamp, seq): at most `maxRows`, and only those that start within
   * `maxStoredBytes` of stored message and context (the first row always comes back).
   */
  async rows(traceId: string, maxRows: number, maxStoredBytes: number, signal?: AbortSignal): Promise<TraceRows> {
    const raw = await cancellableQuery<TraceRaw>(
      this.db,
      TRACE_ROWS_SQL,
      [traceId, maxRows + 1, maxStoredBytes],
      signal,
      'trace read',
      'mycelis_memory_trace_rows',
    );
    const rows: StoredLogRow[] = [];
    let more = false;
    for (const r of raw) {
      if (!r.within || rows.length === maxRows) {
        more = true;
        break;
      }
      rows.push(toRow(r));
    }
    return { rows, more };
  }

  /** Every agent of the whole trace, in order of its first row (timestamp, then seq). */
  async agents(traceId: string, signal?: AbortSignal): Promise<TraceAgentRow[]> {
    const raw = await cancellableQuery<{ source: string; team: string | null; n: number; errors: number; first_us: string; last_us: string }>(
      this.db,
      `SELECT source, (array_agg(team_id ORDER BY timestamp DESC, seq DESC) FILTER (WHERE team_id <> ''))[1] AS team,
              count(*)::int AS n, (count(*) FILTER (WHERE level IN ('ERROR', 'FATAL')))::int AS errors,
              ${us('min(timestamp)')} AS first_us, ${us('max(timestamp)')} AS last_us
         FROM log_entries
        WHERE trace_id = $1::text AND trace_id <> ''
        GROUP BY source
        ORDER BY min(timestamp), (array_agg(seq ORDER BY timestamp, seq))[1]`,
      [traceId],
      signal,
      'trace agents',
      'mycelis_memory_trace_agents',
    );
    return raw.map((r) => ({
      agentId: r.source,
      teamId: r.team ?? '',
      records: r.n,
      errors: r.errors,
      firstUs: Number(r.first_us),
      lastUs: Number(r.last_us),
    }));
  }
}
