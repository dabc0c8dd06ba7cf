// The only code that writes log rows (DESIGN 3.2, 4, 5). One transaction per batch:
//
//   BEGIN                             -- these in one round trip (begin())
//   pg_advisory_xact_lock(K)          -- serializes commits, also across replicas
//   allocate seq range (inside lock)  -- so seq order = commit order: a reader polling seq > last never
//                                        sees a lower seq commit after a higher one
//   [SAVEPOINT rows]                  -- careful attempts only, see below
//   rows whose id may already sit in another partition: looked up by id (rare; see atRisk below)
//   rows: COPY (postgres) | INSERT … unnest … ON CONFLICT DO NOTHING (embedded, fallback)
//   dead letters (batch.rejects + rows PostgreSQL rejected), set-based, ON CONFLICT DO NOTHING: a
//                                        JetStream message's dead letter is stored once (migration 008)
//   registry: read stored states, foldRegistry, one unnest upsert
//   NOTIFY mycelis_memory_commits '<first>:<last>'   -- delivered on commit, in commit order
//   COMMIT (with the NOTIFY, one round trip), then in-process listeners
//
// A batch's first attempt is optimistic: no savepoint around its rows or its registry upsert (three
// round trips fewer a commit, each a wake-up of both processes: at a paced 5,000 events/s a commit
// carries about 100 events, and these fixed costs were half the CPU per event). Should PostgreSQL
// refuse anything in it - a row's value (a data error), a copy of a stored row (23505), an agent state
// - the transaction is rolled back whole, nothing of it is visible, and the batch is at once written
// again carefully: rows and the registry upsert each under a savepoint, so a duplicate takes the
// ON CONFLICT path and only the offending rows or agent states are split out (dead-lettered or
// skipped). Its seq range from the first attempt is left unused (a hole, as the seqs of duplicates).
//
// Transient failures (connection loss, serialization failure, deadlock) retry the whole batch with
// backoff until it commits or the caller aborts: nothing is lost, and a retry after an unknown COMMIT
// outcome only meets its own rows as duplicates (ON CONFLICT DO NOTHING), never stores them twice.
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { foldRegistry } from '../domain/registry-fold.js';
import { usToIso } from '../domain/time.js';
import type { AgentState, LogRow, RegistryEvent, RejectReason, RejectRow, ReportedStatus } from '../domain/types.js';
import { CancelledError } from '../errors.js';
import type { Logger } from '../logger.js';
import { counter, histogram } from '../metrics.js';
import type { Database } from './database.js';
import { pgTextArray } from './pg-array.js';
import { backoffMs, isConnectionError, isDataError, isRetryable, sleep, sqlstateOf, StoreError } from './errors.js';
import { releaseBytes } from '../release-bytes.js';

/** pg_advisory_xact_lock key that serializes every batch commit ('mcmt'). */
export const COMMIT_LOCK_KEY = 0x6d636d74;
export const COMMITS_CHANNEL = 'mycelis_memory_commits';

/** Where a row came from, so a row PostgreSQL rejects is dead-lettered with its original bytes. */
export interface RowOrigin {
  readonly payload: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly streamName: string;
  readonly streamCreatedUs: number;
  readonly streamSeq: number;
}

export interface WriteBatch {
  readonly rows: readonly LogRow[];
  readonly rejects: readonly RejectRow[];
  readonly registry: readonly RegistryEvent[];
  /**
   * Optional: the raw message of rows[index] (for db_rejected dead letters). A lookup, not a map built
   * per batch: it is needed only when PostgreSQL rejects a row, and a per-row entry would be held
   * across every commit.
   */
  readonly originOf?: (index: number) => RowOrigin | undefined;
  /**
   * Optional: registry[k] was derived from rows[registryRows[k]]. A row PostgreSQL rejects is
   * dead-lettered and takes its registry event with it (without this, every event is folded).
   */
  readonly registryRows?: readonly number[];
}

/**
 * How the rows went in: `copy` (COPY, no duplicates), `insert` (unnest … ON CONFLICT; embedded or
 * useCopy false), `duplicate_fallback` (COPY hit a unique violation and the batch was redone with
 * ON CONFLICT DO NOTHING: the duplicate fast path of DESIGN 3.2), `bisect` (PostgreSQL rejected some
 * rows; the batch was split to find them), `none` (no rows).
 */
export type RowsPath = 'copy' | 'insert' | 'duplicate_fallback' | 'bisect' | 'none';

export interface CommitResult {
  inserted: number;
  duplicates: number;
  /**
   * Dead letters stored by this commit (batch.rejects plus db_rejected rows), not counting those
   * already stored (rejectDuplicates).
   */
  rejected: number;
  /** The stored dead letters by reason (sums to rejected). */
  rejectedByReason: ReadonlyMap<RejectReason, number>;
  /**
   * Dead letters not stored because the same JetStream message's dead letter already was: a
   * redelivery after a commit whose ack did not reach the server (crash, ACK_WAIT, two replicas).
   */
  rejectDuplicates: number;
  /** Range of seq assigned to inserted rows (may contain holes); 0,0 if no row was inserted. */
  firstSeq: number;
  lastSeq: number;
  agentsUpdated: number;
  attempts: number;
  rowsPath: RowsPath;
}

export interface CommitRange {
  firstSeq: number;
  lastSeq: number;
  /**
   * In process only: the rows this commit inserted, so the live fan-out need not read them back.
   * Absent when not known cheaply (rows bisected after a PostgreSQL rejection) and on LISTEN/NOTIFY.
   */
  committed?: CommittedRows;
}

/** What one transaction inserted, as its commit made them visible. */
export interface CommittedRows {
  /**
   * The greatest seq committed before this transaction (read under the commit lock). Every row with
   * a seq in (prevSeq, lastSeq] belongs to this transaction: later commits allocate above lastSeq.
   */
  readonly prevSeq: number;
  /** The inserted rows, ascending by seq, and their seqs (same length). */
  readonly rows: readonly LogRow[];
  readonly seqs: readonly number[];
}

export interface WriteOptions {
  signal?: AbortSignal;
  onRetry?: (attempt: number, err: unknown) => void;
}

const rowsInserted = counter('mycelis_memory_store_rows_inserted_total', 'Log rows inserted');
const rowsDuplicate = counter('mycelis_memory_store_rows_duplicate_total', 'Log rows skipped as already stored');
const rejectsWritten = counter('mycelis_memory_store_rejects_total', 'Dead letters written, by reason', ['reason']);
const rejectsDuplicate = counter('mycelis_memory_store_rejects_duplicate_total', 'Dead letters skipped as already stored (a redelivered message)');
const batchPaths = counter('mycelis_memory_store_batches_total', 'Committed batches, by row write path', ['path']);
const commitSeconds = histogram('mycelis_memory_store_batch_commit_seconds', 'Time to commit one batch (one attempt)');
const registrySkipped = counter('mycelis_memory_store_registry_rejected_total', 'Agent states PostgreSQL rejected (the rows were stored or dead-lettered; the registry skipped that agent)');
const retries = counter('mycelis_memory_store_write_retries_total', 'Batch write attempts retried after a transient error');
const carefulWrites = counter(
  'mycelis_memory_store_careful_writes_total',
  'Batches written again under savepoints after their optimistic attempt met a copy of a stored row (duplicate), a row PostgreSQL refused (rows) or an agent state it refused (registry)',
  ['why'],
);
const lookedUp = counter(
  'mycelis_memory_store_rows_looked_up_by_id_total',
  'Rows whose timestamp is not their id\'s (replaced by server time: clock skew, no timestamp) or near the 5-minute limit, looked up in every partition before writing',
);

const COPY_SQL =
  'COPY log_entries (id, seq, trace_id, timestamp, level, source, intent, message, context, team_id, subject, received_at) FROM STDIN';

/** First size of the COPY buffer (about 1,000 typical rows); it grows as batches need. */
const COPY_BUFFER_BYTES = 1 << 20;
/**
 * A grown buffer is kept for reuse up to this size (a default batch of 5,000 rows needs about 5 MiB).
 * A batch of large messages (8 MiB of 512 KiB tool results) grows one to 16 MiB: that one is not kept
 * (it was, for the life of the process).
 */
const COPY_BUFFER_KEEP_BYTES = 8 << 20;

// No conflict target: the key is (id, timestamp) since migration 004 (id alone before it), and this
// statement collapses copies on either.
const INSERT_SQL = `
WITH ins AS (
  INSERT INTO log_entries (id, seq, trace_id, timestamp, level, source, intent, message, context, team_id, subject, received_at)
  SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
                       $8::text[], $9::jsonb[], $10::text[], $11::text[], $12::timestamptz[])
  ON CONFLICT DO NOTHING
  RETURNING seq
)
SELECT count(*)::int AS n, COALESCE(min(seq), 0)::text AS first, COALESCE(max(seq), 0)::text AS last,
       COALESCE(array_agg(seq ORDER BY seq), '{}')::text AS seqs
FROM ins`;

// The payloads go as binary parameters, one each ($8, $9, ...), gathered by ARRAY[...]: node-postgres
// sends a Buffer parameter as binary, but a Buffer inside an array parameter as hex text that
// PostgreSQL parses back - 2x the bytes on the wire and 2-3x the commit time for 1 MiB payloads
// (250 hostile 1 MiB messages took 19 s of commits). At most REJECTS_PER_STATEMENT rows a statement
// (PostgreSQL takes at most 65,535 parameters).
//
// No conflict target: the one unique key besides the id is ingest_rejects_message (migration 008),
// (stream_name, stream_created_at, stream_seq) of JetStream dead letters, so a redelivered message
// whose dead letter is stored already (from an earlier batch or earlier in this one) is skipped.
// What went in is counted by reason, so commit results and metrics count only stored dead letters.
// Before migration 008 (a replica of this version running while an older schema is upgraded), the
// table has neither the stream columns nor the key: the dead letters go in without them.
const REJECTS_PER_STATEMENT = 4096;
const rejectsSql = (k: number, pre008: boolean): string => {
  const stream = pre008 ? { cols: '', arrays: '' } : { cols: 'stream_name, stream_created_at, ', arrays: ' $8::text[], $9::timestamptz[],' };
  const first = pre008 ? 8 : 10;
  return `
WITH ins AS (
  INSERT INTO ingest_rejects (received_at, subject, headers, reason, detail, sqlstate, stream_seq, ${stream.cols}payload)
  SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], $7::bigint[],${stream.arrays}
    ARRAY[${Array.from({ length: k }, (_, i) => `$${i + first}`).join(',')}]::bytea[])
  ON CONFLICT DO NOTHING
  RETURNING reason
)
SELECT reason, count(*)::int AS n FROM ins GROUP BY reason`;
};

const NO_REJECTS: ReadonlyMap<RejectReason, number> = new Map();

const usExpr = (col: string): string => `COALESCE((extract(epoch FROM ${col}) * 1000000)::bigint, 0)::text`;

const REGISTRY_SELECT_TEMPLATE = `
SELECT agent_id, team_id, status,
       (extract(epoch FROM last_seen) * 1000000)::bigint::text AS last_seen_us,
       ${usExpr('status_at')} AS status_at_us, status_seq::text, meta, __META_AT__ AS meta_at, last_error_summary,
       ${usExpr('status_set_at')} AS status_set_at_us, status_set_seq::text,
       ${usExpr('team_at')} AS team_at_us, team_seq::text,
       ${usExpr('last_error_at')} AS last_error_at_us, last_error_seq::text
FROM agent_registry WHERE agent_id = ANY($1::text[])`;
/** Before migration 007 (a replica of this version running while an older schema is upgraded): no meta_at. */
const REGISTRY_SELECT_SQL = REGISTRY_SELECT_TEMPLATE.replace('__META_AT__', 'meta_at');
const REGISTRY_SELECT_SQL_PRE007 = REGISTRY_SELECT_TEMPLATE.replace('__META_AT__', 'NULL::jsonb');

const REGISTRY_UPSERT_SQL = `
INSERT INTO agent_registry (agent_id, team_id, status, last_seen, meta, last_error_summary, status_at, status_seq,
                            status_set_at, status_set_seq, team_at, team_seq, last_error_at, last_error_seq, meta_at, updated_at)
SELECT a, t, s, ls, m, e, sa, sq, ssa, ssq, ta, tq, ea, eq, ma, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::text[], $7::timestamptz[], $8::bigint[],
            $9::timestamptz[], $10::bigint[], $11::timestamptz[], $12::bigint[], $13::timestamptz[], $14::bigint[], $15::jsonb[])
  AS u(a, t, s, ls, m, e, sa, sq, ssa, ssq, ta, tq, ea, eq, ma)
ON CONFLICT (agent_id) DO UPDATE SET
  team_id = EXCLUDED.team_id, status = EXCLUDED.status, last_seen = EXCLUDED.last_seen, meta = EXCLUDED.meta, meta_at = EXCLUDED.meta_at,
  last_error_summary = EXCLUDED.last_error_summary, status_at = EXCLUDED.status_at,
  status_seq = EXCLUDED.status_seq, status_set_at = EXCLUDED.status_set_at, status_set_seq = EXCLUDED.status_set_seq,
  team_at = EXCLUDED.team_at, team_seq = EXCLUDED.team_seq, last_error_at = EXCLUDED.last_error_at,
  last_error_seq = EXCLUDED.last_error_seq, updated_at = now()`;
const REGISTRY_UPSERT_SQL_PRE007 = `
INSERT INTO agent_registry (agent_id, team_id, status, last_seen, meta, last_error_summary, status_at, status_seq,
                            status_set_at, status_set_seq, team_at, team_seq, last_error_at, last_error_seq, updated_at)
SELECT a, t, s, ls, m, e, sa, sq, ssa, ssq, ta, tq, ea, eq, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::text[], $7::timestamptz[], $8::bigint[],
            $9::timestamptz[], $10::bigint[], $11::timestamptz[], $12::bigint[], $13::timestamptz[], $14::bigint[])
  AS u(a, t, s, ls, m, e, sa, sq, ssa, ssq, ta, tq, ea, eq)
ON CONFLICT (agent_id) DO UPDATE SET
  team_id = EXCLUDED.team_id, status = EXCLUDED.status, last_seen = EXCLUDED.last_seen, meta = EXCLUDED.meta,
  last_error_summary = EXCLUDED.last_error_summary, status_at = EXCLUDED.status_at,
  status_seq = EXCLUDED.status_seq, status_set_at = EXCLUDED.status_set_at, status_set_seq = EXCLUDED.status_set_seq,
  team_at = EXCLUDED.team_at, team_seq = EXCLUDED.team_seq, last_error_at = EXCLUDED.last_error_at,
  last_error_seq = EXCLUDED.last_error_seq, updated_at = now()`;

const STATUSES = new Set<string>(['IDLE', 'BUSY', 'OFFLINE', 'ERROR']);

/** agent_registry.meta_at as the fold takes it: key -> [event time µs, stream seq]; anything else is dropped. */
function metaTimes(raw: Record<string, unknown> | null): Record<string, readonly [number, number]> {
  const out: Record<string, readonly [number, number]> = {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return out;
  for (const [key, v] of Object.entries(raw)) {
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && typeof v[1] === 'number') {
      // Assignment but for `__proto__` (it would set the prototype): defineProperty per key made every
      // agent's object slow, a thousand of them per batch.
      if (key === '__proto__') Object.defineProperty(out, key, { value: [v[0], v[1]], enumerable: true, writable: true, configurable: true });
      else out[key] = [v[0], v[1]];
    }
  }
  return out;
}

/** timestamptz text for COPY and arrays; outside JS Date's range, a value PostgreSQL itself rejects (22007). */
function tsText(us: number): string {
  if (!Number.isFinite(us) || Math.abs(us) > 8.64e18) return `invalid-timestamp-${String(us)}`;
  return usToIso(Math.trunc(us));
}

const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIAL_G = /[\\\n\r\t]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
function copyEscape(s: string): string {
  return COPY_SPECIAL.test(s) ? s.replace(COPY_SPECIAL_G, (c) => COPY_ESCAPES[c]!) : s;
}

/**
 * The COPY text of `rows` (but those in `skip`), seq from `firstSeq`, written into `buf` (grown by
 * doubling when a line does not fit). `buf` is given up: when outgrown it is released at once
 * (src/release-bytes.ts); use the returned one. Exported for the bench's per-stage profile.
 */
export function encodeCopyRows(rows: readonly LogRow[], firstSeq: number, skip: ReadonlySet<number> | null, buf: Buffer): { buf: Buffer; at: number } {
  let at = 0;
  for (let i = 0; i < rows.length; i++) {
    if (skip !== null && skip.has(i)) continue;
    const r = rows[i]!;
    const line =
      // id (a UUID) and level (one of the Level names) never contain COPY specials.
      `${r.id}\t${firstSeq + i}\t${copyEscape(r.traceId)}\t${tsText(r.timestampUs)}\t${r.level}\t` +
      `${copyEscape(r.source)}\t${copyEscape(r.intent)}\t${copyEscape(r.message)}\t${copyEscape(r.context)}\t` +
      `${copyEscape(r.teamId)}\t${copyEscape(r.subject)}\t${tsText(r.receivedAtUs)}\n`;
    // UTF-8 is at most 3 bytes per UTF-16 unit; counted exactly only when that bound does not fit
    // (a 512 KiB line would otherwise ask for 1.5 MiB more).
    if (at + line.length * 3 > buf.length) {
      const need = at + Buffer.byteLength(line, 'utf8');
      if (need > buf.length) {
        const grown = Buffer.allocUnsafe(Math.max(need, buf.length * 2));
        buf.copy(grown, 0, 0, at);
        releaseBytes(buf);
        buf = grown;
      }
    }
    at += buf.write(line, at);
  }
  return { buf, at };
}

/** Whether `table` has `column` (a migration this version can run before may not have added it yet). */
async function hasColumn(client: pg.PoolClient, table: string, column: string): Promise<boolean> {
  const res = await client.query('SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped', [table, column]);
  return res.rowCount === 1;
}

/**
 * An optimistic attempt met something only the careful path handles (a row or an agent state
 * PostgreSQL refused, a copy of a stored row): its transaction was rolled back; write again carefully.
 */
class CarefulNeeded extends Error {
  constructor(readonly why: 'duplicate' | 'rows' | 'registry', cause: unknown) {
    // The cause's message stays out of this one: isRetryable() reads messages.
    super(`optimistic batch write declined (${why})`, { cause });
  }
}

/** What a transaction inserted, for the fan-out: the rows of `stored` (ascending seqs allocated from seqs.firstSeq). */
function committedOf(rows: readonly LogRow[], seqs: Seqs, stored: readonly number[]): CommittedRows {
  return { prevSeq: seqs.prevSeq, rows: stored.length === rows.length ? rows : stored.map((q) => rows[q - seqs.firstSeq]!), seqs: stored };
}

/** The outcome of a COPY of `rows` but those in `skip` (copies stored elsewhere). */
function copiedOutcome(rows: readonly LogRow[], seqs: Seqs, skip: ReadonlySet<number> | null): RowsOutcome {
  const stored: number[] = [];
  for (let i = 0; i < rows.length; i++) if (skip === null || !skip.has(i)) stored.push(seqs.firstSeq + i);
  const k = stored.length;
  return {
    inserted: k,
    duplicates: rows.length - k,
    firstSeq: k > 0 ? stored[0]! : 0,
    lastSeq: k > 0 ? stored[k - 1]! : 0,
    dbRejected: [],
    rejectedIndexes: [],
    path: 'copy',
    committed: committedOf(rows, seqs, stored),
  };
}

/** The session's prepared statement for the newest committed seq (begin()). */
const PREV_SEQ_STATEMENT = 'mycelis_memory_prev_seq';
/**
 * Connections that hold PREV_SEQ_STATEMENT. The statement belongs to the connection, not to a writer:
 * several writers over one pool (the service's one, a test's, the bench's) share what is prepared.
 */
const prevSeqPrepared = new WeakSet<pg.PoolClient>();

/** A batch's seqs (firstSeq on), and the newest seq committed before it. */
interface Seqs {
  readonly firstSeq: number;
  readonly prevSeq: number;
}

interface RowsOutcome {
  inserted: number;
  duplicates: number;
  firstSeq: number;
  lastSeq: number;
  dbRejected: RejectRow[];
  /** Indexes in batch.rows of the rows in dbRejected. */
  rejectedIndexes: number[];
  path: RowsPath;
  committed?: CommittedRows;
}

/** The batch's registry events without those derived from rows PostgreSQL rejected. */
function registryOfStoredRows(batch: WriteBatch, rejectedIndexes: readonly number[]): readonly RegistryEvent[] {
  const from = batch.registryRows;
  if (rejectedIndexes.length === 0 || from === undefined) return batch.registry;
  const rejected = new Set(rejectedIndexes);
  return batch.registry.filter((_, k) => !rejected.has(from[k]!));
}

/**
 * Exactly once across partitions. log_entries' key is (id, timestamp) (a partitioned table's unique key
 * must contain the partition key), so ON CONFLICT and COPY's unique violation only see a copy stored
 * under the same timestamp. That holds for every row whose timestamp is the one its id was derived from:
 * the id is a UUIDv7 whose prefix is that time (src/domain/identity.ts), so copies share id, timestamp
 * and partition. It fails only where normalize replaced the event's timestamp by the NATS server time
 * (unset, before 2000, more than 5 minutes ahead; DESIGN 3.1): the router's swarm.audit.trace copy is
 * another stream message with another server time, so the same id arrives with another timestamp. Such
 * rows (the id's prefix is not the row's millisecond) are looked up by id in every partition before they
 * are written, as are rows close to the 5-minute limit (an earlier copy may have been replaced, a later
 * one not: a few ms of routing decide). Both are rare; a batch without them costs one pass over its ids.
 */
const NEAR_FUTURE_US = 4 * 60 * 1_000_000;

/** The millisecond prefix of a UUIDv7, or -1 for another version. */
export function uuidV7Ms(id: string): number {
  if (id.charCodeAt(14) !== 0x37 /* '7' */) return -1;
  return parseInt(id.slice(0, 8), 16) * 65536 + parseInt(id.slice(9, 13), 16);
}

function atRisk(r: LogRow): boolean {
  return uuidV7Ms(r.id) !== Math.floor(r.timestampUs / 1000) || r.timestampUs > r.receivedAtUs + NEAR_FUTURE_US;
}

const FIND_IDS_SQL = 'SELECT id::text AS id FROM log_entries WHERE id = ANY($1::uuid[])';

/** '{1,2,3}' (PostgreSQL's text form of a bigint[]) -> numbers. */
function parseSeqArray(text: string): number[] {
  return text.length <= 2 ? [] : text.slice(1, -1).split(',').map(Number);
}

export class BatchWriter {
  private readonly log: Logger;
  private readonly useCopy: boolean;
  private readonly listeners = new Set<(c: CommitRange) => void>();
  /**
   * Tags this writer's NOTIFY payloads ('<first>:<last>:<id>'), so this process's LISTEN connection
   * can tell its own commits (announced in process, with their rows) from other replicas'.
   */
  readonly instanceId = randomBytes(6).toString('hex');
  /** COPY text of the last batch, reused (see copyRows). */
  private copyBuffer: Buffer | null = null;
  /** Whether agent_registry.meta_at exists (migration 007); asked again on each registry write until it does. */
  private hasMetaAt = false;
  /** Whether ingest_rejects has its identity (migration 008); asked again on each dead-letter write until it does. */
  private hasRejectIdentity = false;

  constructor(
    private readonly db: Database,
    logger: Logger,
    opts: { useCopy?: boolean } = {},
  ) {
    this.log = logger.child({ component: 'batch-writer' });
    // COPY through the PGlite socket kills the embedded database (STACK.md): never there.
    this.useCopy = db.kind === 'embedded' ? false : (opts.useCopy ?? true);
  }

  /** Listeners hear each committed seq range after COMMIT, in commit order. Returns an unsubscribe. */
  onCommit(listener: (c: CommitRange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async write(batch: WriteBatch, opts: WriteOptions = {}): Promise<CommitResult> {
    let careful = false;
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw new CancelledError('batch write cancelled', { cause: opts.signal.reason });
      try {
        const committed: { rows?: CommittedRows } = {};
        const result = await this.attempt(batch, attempt, committed, careful);
        if (result.lastSeq > 0) this.emit({ firstSeq: result.firstSeq, lastSeq: result.lastSeq, ...(committed.rows ? { committed: committed.rows } : {}) });
        return result;
      } catch (err) {
        if (err instanceof CarefulNeeded) {
          // Not a failure: the same attempt again, at once, under savepoints.
          carefulWrites.inc({ why: err.why });
          careful = true;
          attempt--;
          continue;
        }
        if (!isRetryable(err)) {
          if (err instanceof StoreError) throw err;
          throw new StoreError(`batch write failed: ${(err as Error).message}`, { cause: err });
        }
        retries.inc();
        this.log.warn({ attempt, err: (err as Error).message, sqlstate: sqlstateOf(err) }, 'batch write failed; retrying');
        opts.onRetry?.(attempt, err);
        try {
          await sleep(backoffMs(attempt), opts.signal);
        } catch (abortReason) {
          throw new CancelledError('batch write cancelled while retrying', { cause: abortReason ?? err });
        }
      }
    }
  }

  private emit(c: CommitRange): void {
    for (const l of this.listeners) {
      try {
        l(c);
      } catch (err) {
        this.log.error({ err }, 'commit listener threw');
      }
    }
  }

  private async attempt(batch: WriteBatch, attempt: number, committed: { rows?: CommittedRows }, careful: boolean): Promise<CommitResult> {
    const client = await this.db.pool.connect();
    const endTimer = commitSeconds.startTimer();
    let destroy: Error | undefined;
    try {
      const seqs = await this.begin(client, batch.rows.length, careful);
      const rows: RowsOutcome =
        seqs !== null
          ? careful
            ? await this.writeRows(client, batch, seqs)
            : await this.writeRowsOptimistic(client, batch, seqs)
          : { inserted: 0, duplicates: 0, firstSeq: 0, lastSeq: 0, dbRejected: [], rejectedIndexes: [], path: 'none' };
      const rejects = rows.dbRejected.length > 0 ? [...batch.rejects, ...rows.dbRejected] : batch.rejects;
      const stored = rejects.length > 0 ? await this.writeRejects(client, rejects) : NO_REJECTS;
      const registry = registryOfStoredRows(batch, rows.rejectedIndexes);
      const agentsUpdated = registry.length > 0 ? await this.writeRegistry(client, registry, careful) : 0;
      // The notification and COMMIT in one round trip (the simple query protocol: literals, all ours).
      await client.query(
        rows.inserted > 0 && this.db.kind === 'postgres'
          ? `SELECT pg_notify('${COMMITS_CHANNEL}', '${rows.firstSeq}:${rows.lastSeq}:${this.instanceId}'); COMMIT`
          : 'COMMIT',
      );
      endTimer();
      if (rows.committed) committed.rows = rows.committed;
      rowsInserted.inc(rows.inserted);
      if (rows.duplicates > 0) rowsDuplicate.inc(rows.duplicates);
      let rejected = 0;
      for (const [reason, n] of stored) {
        rejectsWritten.inc({ reason }, n);
        rejected += n;
      }
      if (rejected < rejects.length) rejectsDuplicate.inc(rejects.length - rejected);
      batchPaths.inc({ path: rows.path });
      return {
        inserted: rows.inserted,
        duplicates: rows.duplicates,
        rejected,
        rejectedByReason: stored,
        rejectDuplicates: rejects.length - rejected,
        firstSeq: rows.firstSeq,
        lastSeq: rows.lastSeq,
        agentsUpdated,
        attempts: attempt,
        rowsPath: rows.path,
      };
    } catch (err) {
      if (isConnectionError(err)) destroy = err as Error;
      else {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          destroy = rollbackErr as Error;
        }
      }
      throw err;
    } finally {
      client.release(destroy ?? false);
    }
  }

  /**
   * BEGIN, the commit lock and, for n > 0 rows, their n seqs and the savepoint the rows go in under, in
   * one round trip: every round trip waits for a turn of an event loop that is decoding the next batch
   * meanwhile, and PostgreSQL with it. The seqs are allocated inside the lock, so ranges are handed out
   * in commit order; prev is the newest committed seq before this transaction (what the live fan-out
   * needs to hand this batch's rows over without reading them back; see CommittedRows). Several
   * statements take the simple query protocol, which takes no parameters: n and the key are integers of
   * ours, written into the text. The savepoint only for a careful attempt.
   */
  private async begin(client: pg.PoolClient, n: number, careful: boolean): Promise<Seqs | null> {
    if (!Number.isSafeInteger(n) || n < 0) throw new StoreError(`invalid row count ${n}`);
    const lock = `BEGIN; SELECT pg_advisory_xact_lock(${COMMIT_LOCK_KEY})`;
    if (n === 0) {
      await client.query(lock);
      return null;
    }
    await this.preparePrevSeq(client);
    const results = (await client.query(
      `${lock}; SELECT setval('log_entries_seq', nextval('log_entries_seq') + ${n} - 1)::text AS last; ` +
        `EXECUTE ${PREV_SEQ_STATEMENT}${careful ? '; SAVEPOINT rows' : ''}`,
    )) as unknown as pg.QueryResult<{ last: string; prev: string }>[];
    const lastSeq = Number(results[2]!.rows[0]!.last);
    return { firstSeq: lastSeq - n + 1, prevSeq: Number(results[3]!.rows[0]!.prev) };
  }

  /**
   * max(seq) over every partition, prepared once per connection: planned afresh it cost 1.3-1.7 ms of
   * PostgreSQL's CPU a commit with the 12 partitions of a default install (more with more), the
   * prepared generic plan 0.06-0.13 ms. Partitions created or dropped later invalidate the plan, and
   * PostgreSQL plans again by itself.
   */
  private async preparePrevSeq(client: pg.PoolClient): Promise<void> {
    if (prevSeqPrepared.has(client)) return;
    try {
      await client.query(`PREPARE ${PREV_SEQ_STATEMENT} AS SELECT COALESCE(max(seq), 0)::text AS prev FROM log_entries`);
    } catch (err) {
      if (sqlstateOf(err) !== '42P05') throw err; // duplicate_prepared_statement: it is there already
    }
    prevSeqPrepared.add(client);
  }

  /**
   * Rows in, with no savepoint (an optimistic attempt): anything PostgreSQL refuses aborts the
   * transaction, and the batch goes to the careful path (CarefulNeeded).
   */
  private async writeRowsOptimistic(client: pg.PoolClient, batch: WriteBatch, seqs: Seqs): Promise<RowsOutcome> {
    const rows = batch.rows;
    const n = rows.length;
    const { firstSeq } = seqs;
    const skip = await this.storedElsewhere(client, rows);
    try {
      if (this.useCopy) {
        await this.copyRows(client, rows, firstSeq, skip);
        return copiedOutcome(rows, seqs, skip);
      }
      const { seqs: stored, ...r } = await this.insertRows(client, rows, firstSeq, 0, n, skip);
      return { ...r, dbRejected: [], rejectedIndexes: [], path: 'insert', committed: committedOf(rows, seqs, stored) };
    } catch (err) {
      if (sqlstateOf(err) === '23505') throw new CarefulNeeded('duplicate', err);
      if (isDataError(err)) throw new CarefulNeeded('rows', err);
      throw err;
    }
  }

  /** Rows in (inside the savepoint `rows` begin() opened); returns what went in and which rows PostgreSQL rejected (to dead-letter). */
  private async writeRows(client: pg.PoolClient, batch: WriteBatch, seqs: Seqs): Promise<RowsOutcome> {
    const rows = batch.rows;
    const n = rows.length;
    const { firstSeq } = seqs;
    const inserted = (stored: readonly number[]): CommittedRows => committedOf(rows, seqs, stored);

    // Copies stored under another timestamp (another partition), found by id: never written again.
    const skip = await this.storedElsewhere(client, rows);

    if (this.useCopy) {
      try {
        await this.copyRows(client, rows, firstSeq, skip);
        await client.query('RELEASE SAVEPOINT rows');
        return copiedOutcome(rows, seqs, skip);
      } catch (err) {
        const state = sqlstateOf(err);
        if (state !== '23505' && !isDataError(err)) throw err;
        await client.query('ROLLBACK TO SAVEPOINT rows');
        if (state === '23505') {
          // The duplicate fast path: only a batch that met a copy of a stored row pays for ON CONFLICT.
          try {
            const { seqs, ...r } = await this.insertRows(client, rows, firstSeq, 0, n, skip);
            await client.query('RELEASE SAVEPOINT rows');
            return { ...r, dbRejected: [], rejectedIndexes: [], path: 'duplicate_fallback', committed: inserted(seqs) };
          } catch (err2) {
            if (!isDataError(err2)) throw err2;
            await client.query('ROLLBACK TO SAVEPOINT rows');
          }
        }
      }
    } else {
      try {
        const { seqs, ...r } = await this.insertRows(client, rows, firstSeq, 0, n, skip);
        await client.query('RELEASE SAVEPOINT rows');
        return { ...r, dbRejected: [], rejectedIndexes: [], path: 'insert', committed: inserted(seqs) };
      } catch (err) {
        if (!isDataError(err)) throw err;
        await client.query('ROLLBACK TO SAVEPOINT rows');
      }
    }
    // Some row is unacceptable to PostgreSQL: bisect under savepoints, dead-letter only the offenders.
    const out: RowsOutcome = { inserted: 0, duplicates: 0, firstSeq: 0, lastSeq: 0, dbRejected: [], rejectedIndexes: [], path: 'bisect' };
    await this.bisect(client, batch, firstSeq, 0, n, out, skip);
    await client.query('RELEASE SAVEPOINT rows');
    return out;
  }

  private async bisect(
    client: pg.PoolClient,
    batch: WriteBatch,
    firstSeq: number,
    from: number,
    to: number,
    out: RowsOutcome,
    skip: ReadonlySet<number> | null,
  ): Promise<void> {
    await client.query('SAVEPOINT part');
    try {
      const r = await this.insertRows(client, batch.rows, firstSeq, from, to, skip);
      await client.query('RELEASE SAVEPOINT part');
      out.inserted += r.inserted;
      out.duplicates += r.duplicates;
      if (r.inserted > 0) {
        out.firstSeq = out.firstSeq === 0 ? r.firstSeq : Math.min(out.firstSeq, r.firstSeq);
        out.lastSeq = Math.max(out.lastSeq, r.lastSeq);
      }
      return;
    } catch (err) {
      if (!isDataError(err)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT part');
      await client.query('RELEASE SAVEPOINT part');
      if (to - from === 1) {
        out.dbRejected.push(this.rejectFor(batch, from, err));
        out.rejectedIndexes.push(from);
        return;
      }
    }
    const mid = from + Math.ceil((to - from) / 2);
    await this.bisect(client, batch, firstSeq, from, mid, out, skip);
    await this.bisect(client, batch, firstSeq, mid, to, out, skip);
  }

  private rejectFor(batch: WriteBatch, index: number, err: unknown): RejectRow {
    const row = batch.rows[index]!;
    const origin = batch.originOf?.(index);
    const state = sqlstateOf(err);
    this.log.warn({ rowId: row.id, subject: row.subject, sqlstate: state, err: (err as Error).message }, 'row rejected by PostgreSQL; dead-lettered');
    return {
      subject: row.subject,
      headers: origin?.headers ?? {},
      // Without the original bytes, the normalized row itself (JSON) is what can be inspected or replayed.
      payload: origin?.payload ?? Buffer.from(JSON.stringify(row), 'utf8'),
      reason: 'db_rejected',
      detail: `row ${row.id}: ${(err as Error).message}`,
      sqlstate: state,
      streamName: origin?.streamName ?? '',
      streamCreatedUs: origin?.streamCreatedUs ?? 0,
      streamSeq: origin?.streamSeq ?? 0,
      receivedAtUs: row.receivedAtUs,
    };
  }

  /**
   * Indexes of rows already stored under another timestamp (see atRisk), or a second copy of one in
   * this batch; null when the batch has no row at risk (the common case: no query).
   */
  private async storedElsewhere(client: pg.PoolClient, rows: readonly LogRow[]): Promise<Set<number> | null> {
    let risky: number[] | null = null;
    for (let i = 0; i < rows.length; i++) if (atRisk(rows[i]!)) (risky ??= []).push(i);
    if (risky === null) return null;
    lookedUp.inc(risky.length);
    const skip = new Set<number>();
    const seen = new Map<string, number>();
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      const t = seen.get(r.id);
      if (t === undefined) seen.set(r.id, r.timestampUs);
      else if (t !== r.timestampUs) skip.add(i); // same timestamp: ON CONFLICT sees it
    }
    const found = await client.query<{ id: string }>(FIND_IDS_SQL, [risky.map((i) => rows[i]!.id)]);
    if (found.rows.length > 0) {
      const stored = new Set(found.rows.map((r) => r.id));
      for (const i of risky) if (stored.has(rows[i]!.id)) skip.add(i);
    }
    return skip.size > 0 ? skip : null;
  }

  private async copyRows(client: pg.PoolClient, rows: readonly LogRow[], firstSeq: number, skip: ReadonlySet<number> | null): Promise<void> {
    // Each row's line goes straight into one buffer (no per-row strings kept for a final join); the
    // buffer grows by doubling when a line might not fit (UTF-8: at most 3 bytes per UTF-16 unit).
    // It is reused by the next batch only after a COPY that completed: PostgreSQL answered, so the
    // socket holds none of it. After a failure the next batch starts a fresh one.
    const { buf, at } = encodeCopyRows(rows, firstSeq, skip, this.copyBuffer ?? Buffer.allocUnsafe(COPY_BUFFER_BYTES));
    this.copyBuffer = null;
    const stream = client.query(copyFrom(COPY_SQL));
    stream.end(buf.subarray(0, at));
    await finished(stream);
    // Kept for the next batch unless one unusually large batch grew it far past the usual size; then
    // its memory goes back now (PostgreSQL answered: the socket holds none of it).
    if (buf.length <= COPY_BUFFER_KEEP_BYTES) this.copyBuffer = buf;
    else releaseBytes(buf);
  }

  private async insertRows(
    client: pg.PoolClient,
    rows: readonly LogRow[],
    firstSeq: number,
    from: number,
    to: number,
    skip: ReadonlySet<number> | null,
  ): Promise<{ inserted: number; duplicates: number; firstSeq: number; lastSeq: number; seqs: number[] }> {
    let k = to - from;
    if (skip !== null) for (let i = from; i < to; i++) if (skip.has(i)) k--;
    const ids = new Array<string>(k);
    const seqs = new Array<string>(k);
    const traces = new Array<string>(k);
    const times = new Array<string>(k);
    const levels = new Array<string>(k);
    const sources = new Array<string>(k);
    const intents = new Array<string>(k);
    const messages = new Array<string>(k);
    const contexts = new Array<string>(k);
    const teams = new Array<string>(k);
    const subjects = new Array<string>(k);
    const received = new Array<string>(k);
    for (let i = 0, at = from; at < to; at++) {
      if (skip !== null && skip.has(at)) continue;
      const r = rows[at]!;
      ids[i] = r.id;
      seqs[i] = String(firstSeq + at);
      traces[i] = r.traceId;
      times[i] = tsText(r.timestampUs);
      levels[i] = r.level;
      sources[i] = r.source;
      intents[i] = r.intent;
      messages[i] = r.message;
      contexts[i] = r.context;
      teams[i] = r.teamId;
      subjects[i] = r.subject;
      received[i] = tsText(r.receivedAtUs);
      i++;
    }
    if (k === 0) return { inserted: 0, duplicates: to - from, firstSeq: 0, lastSeq: 0, seqs: [] };
    const res = await client.query<{ n: number; first: string; last: string; seqs: string }>(INSERT_SQL, [
      ids, seqs, traces, times, levels, sources, intents, messages, contexts, teams, subjects, received,
    ]);
    const row = res.rows[0]!;
    return { inserted: row.n, duplicates: to - from - row.n, firstSeq: Number(row.first), lastSeq: Number(row.last), seqs: parseSeqArray(row.seqs) };
  }

  /** Writes the dead letters not stored yet; returns how many went in, by reason. */
  private async writeRejects(client: pg.PoolClient, all: readonly RejectRow[]): Promise<Map<RejectReason, number>> {
    if (!this.hasRejectIdentity) {
      this.hasRejectIdentity = await hasColumn(client, 'ingest_rejects', 'stream_created_at');
    }
    const stored = new Map<RejectReason, number>();
    for (let from = 0; from < all.length; from += REJECTS_PER_STATEMENT) {
      await this.writeRejectChunk(client, all.slice(from, from + REJECTS_PER_STATEMENT), stored);
    }
    return stored;
  }

  private async writeRejectChunk(client: pg.PoolClient, rejects: readonly RejectRow[], stored: Map<RejectReason, number>): Promise<void> {
    const k = rejects.length;
    const received = new Array<string>(k);
    const subjects = new Array<string>(k);
    const headers = new Array<string>(k);
    const payloads = new Array<Buffer>(k);
    const reasons = new Array<string>(k);
    const details = new Array<string>(k);
    const states = new Array<string | null>(k);
    const streamNames = new Array<string>(k);
    const streamsCreated = new Array<string | null>(k);
    const streamSeqs = new Array<string>(k);
    for (let i = 0; i < k; i++) {
      const r = rejects[i]!;
      received[i] = tsText(r.receivedAtUs);
      subjects[i] = r.subject;
      headers[i] = JSON.stringify(r.headers);
      payloads[i] = Buffer.from(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength);
      reasons[i] = r.reason;
      details[i] = r.detail;
      states[i] = r.sqlstate ?? null;
      streamNames[i] = r.streamName;
      streamsCreated[i] = r.streamCreatedUs > 0 ? tsText(r.streamCreatedUs) : null;
      streamSeqs[i] = String(r.streamSeq);
    }
    const res = await client.query<{ reason: RejectReason; n: number }>(
      rejectsSql(k, !this.hasRejectIdentity),
      this.hasRejectIdentity
        ? [received, subjects, headers, reasons, details, states, streamSeqs, streamNames, streamsCreated, ...payloads]
        : [received, subjects, headers, reasons, details, states, streamSeqs, ...payloads],
    );
    for (const { reason, n } of res.rows) stored.set(reason, (stored.get(reason) ?? 0) + n);
  }

  /** Reads the batch's agents in one query, folds, upserts the result in one statement. */
  private async writeRegistry(client: pg.PoolClient, events: readonly RegistryEvent[], careful: boolean): Promise<number> {
    const agentIds = [...new Set(events.map((e) => e.agentId))];
    if (!this.hasMetaAt) {
      this.hasMetaAt = await hasColumn(client, 'agent_registry', 'meta_at');
    }
    const res = await client.query<{
      agent_id: string;
      team_id: string;
      status: string;
      last_seen_us: string;
      status_at_us: string;
      status_seq: string;
      meta: Record<string, unknown> | null;
      meta_at: Record<string, unknown> | null;
      last_error_summary: string | null;
      status_set_at_us: string;
      status_set_seq: string;
      team_at_us: string;
      team_seq: string;
      last_error_at_us: string;
      last_error_seq: string;
    }>(this.hasMetaAt ? REGISTRY_SELECT_SQL : REGISTRY_SELECT_SQL_PRE007, [pgTextArray(agentIds)]);
    const stored = new Map<string, AgentState>();
    for (const r of res.rows) {
      stored.set(r.agent_id, {
        agentId: r.agent_id,
        teamId: r.team_id,
        status: (STATUSES.has(r.status) ? r.status : 'IDLE') as ReportedStatus,
        lastSeenUs: Number(r.last_seen_us),
        statusAtUs: Number(r.status_at_us),
        statusSeq: Number(r.status_seq),
        meta: r.meta !== null && typeof r.meta === 'object' && !Array.isArray(r.meta) ? r.meta : {},
        metaAt: metaTimes(r.meta_at),
        lastErrorSummary: r.last_error_summary,
        statusSetAtUs: Number(r.status_set_at_us),
        statusSetSeq: Number(r.status_set_seq),
        teamAtUs: Number(r.team_at_us),
        teamSeq: Number(r.team_seq),
        lastErrorAtUs: Number(r.last_error_at_us),
        lastErrorSeq: Number(r.last_error_seq),
      });
    }
    const next = foldRegistry(stored, events);
    // Unchanged agents (an old event that moved nothing) are not rewritten.
    const changed = next.filter((s) => stored.get(s.agentId) !== s);
    if (changed.length === 0) return 0;
    if (careful) return this.upsertStates(client, changed);
    try {
      await this.upsertStatement(client, changed);
      return changed.length;
    } catch (err) {
      if (isDataError(err)) throw new CarefulNeeded('registry', err);
      throw err;
    }
  }

  /**
   * One upsert for all states. A state PostgreSQL cannot hold (e.g. an agent id too long for the
   * primary key's btree, 54000) must not fail the batch - its rows are committed or dead-lettered
   * already: on a data error the states are split under savepoints and only the offenders are
   * skipped (logged, counted). Returns how many states were written.
   */
  private async upsertStates(client: pg.PoolClient, states: readonly AgentState[]): Promise<number> {
    await client.query('SAVEPOINT registry');
    try {
      await this.upsertStatement(client, states);
      await client.query('RELEASE SAVEPOINT registry');
      return states.length;
    } catch (err) {
      if (!isDataError(err)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT registry');
      await client.query('RELEASE SAVEPOINT registry');
      if (states.length === 1) {
        registrySkipped.inc();
        this.log.warn(
          { agentId: states[0]!.agentId.slice(0, 200), sqlstate: sqlstateOf(err), err: (err as Error).message },
          'agent state rejected by PostgreSQL; registry not updated for this agent',
        );
        return 0;
      }
    }
    const mid = Math.ceil(states.length / 2);
    return (await this.upsertStates(client, states.slice(0, mid))) + (await this.upsertStates(client, states.slice(mid)));
  }

  private async upsertStatement(client: pg.PoolClient, changed: readonly AgentState[]): Promise<void> {
    const k = changed.length;
    const ids = new Array<string>(k);
    const teams = new Array<string>(k);
    const statuses = new Array<string>(k);
    const lastSeen = new Array<string>(k);
    const metas = new Array<string>(k);
    const metaAts = new Array<string>(k);
    const errors = new Array<string | null>(k);
    const statusAt = new Array<string | null>(k);
    const statusSeq = new Array<string>(k);
    const statusSetAt = new Array<string | null>(k);
    const statusSetSeq = new Array<string>(k);
    const teamAt = new Array<string | null>(k);
    const teamSeq = new Array<string>(k);
    const errorAt = new Array<string | null>(k);
    const errorSeq = new Array<string>(k);
    for (let i = 0; i < k; i++) {
      const s = changed[i]!;
      ids[i] = s.agentId;
      teams[i] = s.teamId;
      statuses[i] = s.status;
      lastSeen[i] = tsText(s.lastSeenUs);
      metas[i] = JSON.stringify(s.meta);
      metaAts[i] = JSON.stringify(s.metaAt);
      errors[i] = s.lastErrorSummary;
      // 0 µs (or less) is "none": stored as NULL, read back as 0 (usExpr).
      statusAt[i] = s.statusAtUs > 0 ? tsText(s.statusAtUs) : null;
      statusSeq[i] = String(s.statusSeq);
      statusSetAt[i] = s.statusSetAtUs > 0 ? tsText(s.statusSetAtUs) : null;
      statusSetSeq[i] = String(s.statusSetSeq);
      teamAt[i] = s.teamAtUs > 0 ? tsText(s.teamAtUs) : null;
      teamSeq[i] = String(s.teamSeq);
      errorAt[i] = s.lastErrorAtUs > 0 ? tsText(s.lastErrorAtUs) : null;
      errorSeq[i] = String(s.lastErrorSeq);
    }
    // The arrays as PostgreSQL's literal text, written here in one pass each (the text pg would make).
    const params = [ids, teams, statuses, lastSeen, metas, errors, statusAt, statusSeq, statusSetAt, statusSetSeq, teamAt, teamSeq, errorAt, errorSeq].map(pgTextArray);
    if (this.hasMetaAt) await client.query(REGISTRY_UPSERT_SQL, [...params, pgTextArray(metaAts)]);
    else await client.query(REGISTRY_UPSERT_SQL_PRE007, params);
  }
}
