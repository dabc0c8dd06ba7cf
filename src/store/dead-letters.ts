// Dead letters (ingest_rejects, DESIGN 4): read with filters, and mark as replayed. The operator CLI
// (`mycelis-memory dead-letters list|replay`) is the only user. Every filter is a bound parameter:
// no SQL text is ever built from input.
import type pg from 'pg';

export interface DeadLetterFilter {
  /** Exact reasons (decode_error, too_deep, db_rejected, …); empty = any. */
  readonly reasons?: readonly string[];
  /** NATS subject pattern with `*` and `>` wildcards; undefined = any. */
  readonly subject?: string | undefined;
  /** Only these ids; empty = any. */
  readonly ids?: readonly string[];
  /** received_at >= since (ms since epoch). */
  readonly sinceMs?: number | undefined;
  /** received_at < until (ms since epoch). */
  readonly untilMs?: number | undefined;
  /** true: only replayed; false: only never replayed; undefined: both. */
  readonly replayed?: boolean | undefined;
  /** Id order, oldest first; at most this many. */
  readonly limit: number;
  /** Only ids greater than this (paging). */
  readonly afterId?: string | undefined;
  /** Only ids up to and including this one (a snapshot: rows added later are not listed). */
  readonly throughId?: string | undefined;
}

export interface DeadLetter {
  /** bigserial, as a decimal string. */
  readonly id: string;
  readonly receivedAt: Date;
  /** received_at in µs since the epoch (exact; a Date keeps only ms). */
  readonly receivedAtUs: number;
  readonly subject: string;
  readonly headers: Record<string, string>;
  readonly payload: Buffer;
  readonly reason: string;
  readonly detail: string;
  readonly sqlstate: string | null;
  readonly streamSeq: string;
  readonly replayedAt: Date | null;
}

/** NATS subject pattern -> anchored POSIX regex (tokens escaped; `*` one token, `>` the rest). */
export function subjectPatternToRegex(pattern: string): string {
  const tokens = pattern.split('.');
  const parts = tokens.map((t, i) => {
    if (t === '>' && i === tokens.length - 1) return '.+';
    if (t === '*') return '[^.]+';
    return t.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&');
  });
  return `^${parts.join('\\.')}$`;
}

// ORDER BY names the table's column: the text output `id` would sort "1000" before "999", and paging by
// `id > last` would then skip rows.
const LIST_SQL = `
SELECT id::text, received_at, (extract(epoch FROM received_at) * 1000000)::bigint::text AS received_us, subject, headers, payload, reason, detail, sqlstate, stream_seq::text, replayed_at
FROM ingest_rejects
WHERE (cardinality($1::text[]) = 0 OR reason = ANY($1::text[]))
  AND ($2::text IS NULL OR subject ~ $2::text)
  AND (cardinality($3::bigint[]) = 0 OR id = ANY($3::bigint[]))
  AND ($4::timestamptz IS NULL OR received_at >= $4::timestamptz)
  AND ($5::timestamptz IS NULL OR received_at < $5::timestamptz)
  AND ($6::boolean IS NULL OR (replayed_at IS NOT NULL) = $6::boolean)
  AND ($7::bigint IS NULL OR id > $7::bigint)
  AND ($9::bigint IS NULL OR id <= $9::bigint)
ORDER BY ingest_rejects.id
LIMIT $8`;

interface DeadLetterRow {
  id: string;
  received_at: Date;
  received_us: string;
  subject: string;
  headers: Record<string, string> | null;
  payload: Buffer;
  reason: string;
  detail: string;
  sqlstate: string | null;
  stream_seq: string;
  replayed_at: Date | null;
}

export async function listDeadLetters(pool: pg.Pool, f: DeadLetterFilter): Promise<DeadLetter[]> {
  const res = await pool.query<DeadLetterRow>(LIST_SQL, [
    f.reasons ?? [],
    f.subject === undefined ? null : subjectPatternToRegex(f.subject),
    f.ids ?? [],
    f.sinceMs === undefined ? null : new Date(f.sinceMs),
    f.untilMs === undefined ? null : new Date(f.untilMs),
    f.replayed ?? null,
    f.afterId ?? null,
    f.limit,
    f.throughId ?? null,
  ]);
  return res.rows.map((r) => ({
    id: r.id,
    receivedAt: r.received_at,
    receivedAtUs: Number(r.received_us),
    subject: r.subject,
    headers: r.headers ?? {},
    payload: r.payload,
    reason: r.reason,
    detail: r.detail,
    sqlstate: r.sqlstate,
    streamSeq: r.stream_seq,
    replayedAt: r.replayed_at,
  }));
}

/** The newest dead letter's id ('0' when there is none): the upper end of a replay's snapshot. */
export async function newestDeadLetterId(pool: pg.Pool): Promise<string> {
  const res = await pool.query<{ id: string }>('SELECT coalesce(max(id), 0)::text AS id FROM ingest_rejects');
  return res.rows[0]!.id;
}

/** Sets replayed_at = now() on these ids; returns how many rows were marked. */
export async function markReplayed(pool: pg.Pool, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const res = await pool.query('UPDATE ingest_rejects SET replayed_at = now() WHERE id = ANY($1::bigint[])', [ids]);
  return res.rowCount ?? 0;
}
