// Reads of log_entries for the API: set-based, parameterized, keyset-paged (no OFFSET, no SELECT *).
// Filter values are matched literally with `= ANY($n::text[])`; an absent filter is a NULL array.
//
// Every query runs on a dedicated pool client so that an aborted caller (client cancel, deadline)
// can cancel exactly its own statement with pg_cancel_backend(pid): the cancel is awaited before the
// client goes back to the pool, so it can never hit another caller's statement (a cancel that lands
// on an idle backend is discarded by PostgreSQL). The cancel is sent over a short-lived connection of
// its own, never through the pool: with every pooled client busy, a cancel waiting for a pool slot
// would deadlock with the very queries it is meant to stop. In embedded mode (PGlite, one shared
// backend session) no server-side cancel is sent: it would hit every caller.
import pg from 'pg';
import { usToIso } from '../domain/time.js';
import { CancelledError, UnavailableError } from '../errors.js';

/** What the readers need from the store: a pool. (src/store/database.ts's Database satisfies it.) */
export interface PoolHolder {
  readonly pool: pg.Pool;
  /** 'embedded' (PGlite: one shared backend session) disables server-side cancellation. */
  readonly kind?: 'postgres' | 'embedded';
}

/** A filter with every list already validated and normalized; empty list = no constraint. */
export interface LogRowFilter {
  readonly agentIds: readonly string[];
  readonly teamIds: readonly string[];
  /** Upper-case level names. */
  readonly levels: readonly string[];
  readonly intents: readonly string[];
  /** '' = no constraint. */
  readonly traceId: string;
}

export const NO_FILTER: LogRowFilter = Object.freeze({ agentIds: [], teamIds: [], levels: [], intents: [], traceId: '' });

/** One row as the API sees it. Times in µs since epoch. */
export interface StoredLogRow {
  readonly id: string;
  readonly seq: number;
  readonly traceId: string;
  readonly timestampUs: number;
  readonly level: string;
  readonly source: string;
  readonly intent: string;
  readonly message: string;
  /** Parsed context JSONB (null when the column is NULL). */
  readonly context: Record<string, unknown> | null;
  /** Length of the context's JSON text: a cheap size estimate for batching responses. */
  readonly approxBytes: number;
  readonly teamId: string;
  readonly subject: string;
  readonly receivedAtUs: number;
}

// Output names never shadow the columns ORDER BY uses (a text `seq` alias would sort "99" after "100").
// Exact integer µs: extract(epoch …) is numeric (exact) since PostgreSQL 14.
const COLUMNS = `id::text AS id, seq::text AS seq_text, trace_id, (extract(epoch FROM timestamp) * 1000000)::bigint::text AS ts_us,
  level, source, intent, coalesce(message, '') AS message, context::text AS context, team_id, subject,
  (extract(epoch FROM received_at) * 1000000)::bigint::text AS received_us`;

const TAIL_COLUMNS = 'id, seq_text, trace_id, ts_us, level, source, intent, message, context, team_id, subject, received_us';

// $1..$5 are always the filter.
export const FILTER_SQL = `($1::text[] IS NULL OR source = ANY($1::text[]))
  AND ($2::text[] IS NULL OR team_id = ANY($2::text[]))
  AND ($3::text[] IS NULL OR level = ANY($3::text[]))
  AND ($4::text[] IS NULL OR intent = ANY($4::text[]))
  AND ($5::text IS NULL OR trace_id = $5::text)`;

export function filterParams(f: LogRowFilter): unknown[] {
  const arr = (a: readonly string[]): string[] | null => (a.length === 0 ? null : [...a]);
  return [arr(f.agentIds), arr(f.teamIds), arr(f.levels), arr(f.intents), f.traceId === '' ? null : f.traceId];
}

/**
 * QueryLogs' page. The time bounds are timestamptz parameters compared with the partition key directly
 * (not through an expression), so the planner prunes partitions outside [since, until) and outside the
 * keyset position at plan time (node-postgres sends unnamed statements: planned with their values). The
 * redundant `timestamp <= after` lets the keyset position prune too; the row comparison alone cannot.
 */
export const QUERY_PAGE_SQL = `SELECT ${COLUMNS} FROM log_entries
  WHERE ${FILTER_SQL}
    AND ($6::timestamptz IS NULL OR "timestamp" >= $6::timestamptz)
    AND ($7::timestamptz IS NULL OR "timestamp" < $7::timestamptz)
    AND ($8::timestamptz IS NULL OR ("timestamp" <= $8::timestamptz AND ("timestamp", seq) < ($8::timestamptz, $9::bigint)))
  ORDER BY "timestamp" DESC, seq DESC LIMIT $10`;

export function queryPageParams(
  filter: LogRowFilter,
  opts: { sinceUs: number | null; untilUs: number | null; after: { timestampUs: number; seq: number } | null; limit: number },
): unknown[] {
  const ts = (us: number | null | undefined): string | null => (us === null || us === undefined ? null : usToIso(us));
  return [...filterParams(filter), ts(opts.sinceUs), ts(opts.untilUs), ts(opts.after?.timestampUs), opts.after?.seq ?? null, opts.limit];
}

/**
 * StreamLogs' reads go by seq, which no partition bound describes: every partition is searched through
 * its own seq index (or (source|team_id|level|intent, seq) with a filter) and the results merged in seq
 * order (Merge Append): one index descent per partition, no scan.
 */
export const READ_RANGE_SQL = `SELECT ${COLUMNS} FROM log_entries
  WHERE seq > $6::bigint AND ($7::bigint IS NULL OR seq <= $7::bigint) AND ${FILTER_SQL}
  ORDER BY seq ASC LIMIT $8`;

export const TAIL_SQL = `SELECT ${TAIL_COLUMNS} FROM (
    SELECT ${COLUMNS}, seq AS s FROM log_entries
     WHERE seq <= $6::bigint AND ${FILTER_SQL}
     ORDER BY seq DESC LIMIT $7
  ) last_n ORDER BY s ASC`;

export interface RawRow {
  id: string;
  seq_text: string;
  trace_id: string;
  ts_us: string;
  level: string;
  source: string;
  intent: string;
  message: string;
  context: string | null;
  team_id: string;
  subject: string;
  received_us: string;
}

export function toRow(r: RawRow): StoredLogRow {
  return {
    id: r.id,
    seq: Number(r.seq_text),
    traceId: r.trace_id,
    timestampUs: Number(r.ts_us),
    level: r.level,
    source: r.source,
    intent: r.intent,
    message: r.message,
    context: r.context === null ? null : (JSON.parse(r.context) as Record<string, unknown>),
    approxBytes: 200 + (r.context?.length ?? 0) + r.message.length,
    teamId: r.team_id,
    subject: r.subject,
    receivedAtUs: Number(r.received_us),
  };
}

// SQLSTATE classes meaning "the database cannot be reached / is going away".
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[1-4]|58)/;
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);

/** Converts a pg/network failure into the typed errors of src/errors.ts. */
export function classifyDbError(err: unknown, what: string): Error {
  if (err instanceof CancelledError || err instanceof UnavailableError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  const msg = typeof e?.message === 'string' ? e.message : '';
  if (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_CODES.has(code) || /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|pool.*(ended|after calling end)/i.test(msg)) {
    return new UnavailableError(`database unavailable during ${what}`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * Runs `text` on a dedicated client; when `signal` aborts, the statement is cancelled on the server
 * (pg_cancel_backend) and the call rejects with CancelledError.
 */
export async function cancellableQuery<R extends pg.QueryResultRow>(
  db: PoolHolder,
  text: string,
  values: unknown[],
  signal: AbortSignal | undefined,
  what: string,
  /**
   * A name makes it a statement prepared once per connection: for statements of fixed text whose best
   * plan does not depend on the values (see TRACE_ROWS_SQL), PostgreSQL stops planning them each time.
   */
  name?: string,
): Promise<R[]> {
  if (signal?.aborted) throw new CancelledError(`${what} cancelled`, { cause: signal.reason });
  const pool = db.pool;
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw classifyDbError(err, what);
  }
  if (signal?.aborted) {
    client.release();
    throw new CancelledError(`${what} cancelled`, { cause: signal.reason });
  }
  const pid = (client as unknown as { processID: number | null }).processID;
  let cancelling: Promise<unknown> | undefined;
  const onAbort = (): void => {
    if (pid === null || pid === undefined || db.kind === 'embedded') return;
    cancelling = cancelBackend(pool, pid);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let broken = false;
  try {
    const res = await client.query<R>(name !== undefined ? { name, text, values } : { text, values });
    return res.rows;
  } catch (err) {
    if (signal?.aborted) throw new CancelledError(`${what} cancelled`, { cause: err });
    const typed = classifyDbError(err, what);
    broken = typed instanceof UnavailableError;
    throw typed;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // The cancel must land (or fail) before the backend can serve someone else.
    if (cancelling) await cancelling;
    client.release(broken);
  }
}

async function cancelBackend(pool: pg.Pool, pid: number): Promise<void> {
  const options = (pool as unknown as { options: pg.ClientConfig }).options;
  const c = new pg.Client({ ...options, statement_timeout: 5000, connectionTimeoutMillis: 5000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query('SELECT pg_cancel_backend($1)', [pid]);
  } catch {
    // Best effort: the statement then ends at its statement_timeout.
  } finally {
    await c.end().catch(() => undefined);
  }
}

export interface SeqRange {
  /** Exclusive lower bound. */
  readonly afterSeq: number;
  /** Inclusive upper bound; undefined = no bound. */
  readonly upToSeq?: number | undefined;
}

export class LogReader {
  constructor(private readonly db: PoolHolder) {}

  /** Matching rows with afterSeq < seq <= upToSeq, ascending by seq, at most `limit`. */
  async readRange(filter: LogRowFilter, range: SeqRange, limit: number, signal?: AbortSignal): Promise<StoredLogRow[]> {
    const rows = await cancellableQuery<RawRow>(
      this.db,
      READ_RANGE_SQL,
      [...filterParams(filter), range.afterSeq, range.upToSeq ?? null, limit],
      signal,
      'log read',
    );
    return rows.map(toRow);
  }

  /** The last `n` matching rows with seq <= upToSeq, returned ascending by seq. */
  async tail(filter: LogRowFilter, n: number, upToSeq: number, signal?: AbortSignal): Promise<StoredLogRow[]> {
    if (n <= 0) return [];
    const rows = await cancellableQuery<RawRow>(
      this.db,
      TAIL_SQL,
      [...filterParams(filter), upToSeq, n],
      signal,
      'log tail',
    );
    return rows.map(toRow);
  }

  /**
   * One page newest first by (timestamp, seq) over [sinceUs, untilUs), strictly after the keyset
   * position `after` (the last row of the previous page).
   */
  async queryPage(
    filter: LogRowFilter,
    opts: { sinceUs: number | null; untilUs: number | null; after: { timestampUs: number; seq: number } | null; limit: number },
    signal?: AbortSignal,
  ): Promise<StoredLogRow[]> {
    const rows = await cancellableQuery<RawRow>(
      this.db,
      QUERY_PAGE_SQL,
      queryPageParams(filter, opts),
      signal,
      'log query',
    );
    return rows.map(toRow);
  }

  /** The newest committed seq (0 when the log is empty). Commits are serialized, so every seq below it is final. */
  async maxSeq(signal?: AbortSignal): Promise<number> {
    const rows = await cancellableQuery<{ m: string }>(this.db, 'SELECT coalesce(max(seq), 0)::text AS m FROM log_entries', [], signal, 'max seq');
    return Number(rows[0]?.m ?? 0);
  }

  /** Readiness: the database answers and the migrations the API needs (002: log_entries.seq) are applied. */
  async probeReady(signal?: AbortSignal): Promise<boolean> {
    const rows = await cancellableQuery<{ ok: boolean }>(
      this.db,
      `SELECT EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = 'log_entries' AND column_name = 'seq')
          AND to_regclass('agent_registry') IS NOT NULL AS ok`,
      [],
      signal,
      'readiness probe',
    );
    return rows[0]?.ok === true;
  }
}
