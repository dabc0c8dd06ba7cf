// Partitions of log_entries (DESIGN 5): the log is partitioned by range on the event time (`timestamp`),
// one partition per LOG_PARTITION_INTERVAL (a day by default), aligned to the Unix epoch in UTC, plus
// a DEFAULT partition for event times no other partition covers (clock skew, old backfills), and, in
// a database upgraded in place, log_entries_legacy: the old table attached whole (004). Every
// statement that lists, creates, detaches or drops a partition, or deletes expired rows from one, is in
// this file.
//
// pg_partman is the usual tool for this, but the pgvector/pgvector image the manifests deploy has no
// pg_partman, PGlite (the embedded default) cannot load it, and Debian ships it only as a separate
// package; what we need is small: create ahead, drop behind, the same on all three.
//
// Invariants kept here:
//  - A partition is created as a plain table and then ATTACHed: ATTACH takes SHARE UPDATE EXCLUSIVE on
//    log_entries (CREATE TABLE … PARTITION OF would take ACCESS EXCLUSIVE and stop every reader).
//  - Creation runs under the writer's commit lock (pg_advisory_xact_lock, src/store/batch-writer.ts), so
//    no batch is inserting while the partition map changes: rows of the new range that were already in
//    the default partition move into the new partition in the same transaction, keeping id and seq,
//    and a redelivered copy of such an event then meets it there (ON CONFLICT) instead of landing in
//    the default partition a second time.
//  - A partition is dropped only when its whole range is older than the retention cutoff. It is
//    DETACHed first, under the commit lock too (so the detach never waits for a batch while holding up
//    readers), with a short ACCESS EXCLUSIVE on log_entries bounded by lock_timeout and retried
//    (DETACH … CONCURRENTLY would take less, but PostgreSQL refuses it while a default partition
//    exists), renamed log_entries_dropping_*, and dropped in a separate transaction, so deleting its
//    files never holds a lock on log_entries. A rename left by a crash between the two is dropped on
//    the next pass.
import pg from 'pg';
import type { Logger } from '../logger.js';
import { COMMIT_LOCK_KEY } from './batch-writer.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

export interface PartitionSpec {
  /** Length of one partition; whole hours dividing a day, or whole days. */
  readonly intervalMs: number;
  /** Partitions cover event times this far back (what the stream can still redeliver)… */
  readonly behindMs: number;
  /** …and this far ahead of now (created ahead, so ingest never waits for one). */
  readonly aheadMs: number;
}

/** The defaults: LOG_PARTITION_INTERVAL 1d, STREAM_MAX_AGE 7d. */
export const DEFAULT_PARTITION_SPEC: PartitionSpec = Object.freeze({ intervalMs: DAY_MS, behindMs: 7 * DAY_MS, aheadMs: 3 * DAY_MS });

/**
 * The spec the service runs with: partitions back as far as the stream can still redeliver (so a backlog
 * after an outage lands in partitions, not in the default one) and three intervals ahead.
 */
export function partitionSpecFor(intervalMs: number, streamMaxAgeMs: number): PartitionSpec {
  return { intervalMs, behindMs: Math.max(intervalMs, streamMaxAgeMs), aheadMs: 3 * intervalMs };
}

/** One partition of log_entries as the catalog describes it. Bounds in ms since epoch; null = unbounded. */
export interface LogPartition {
  readonly name: string;
  readonly isDefault: boolean;
  /** null: MINVALUE (the legacy partition) or the default partition. */
  readonly fromMs: number | null;
  /** null: MAXVALUE or the default partition. */
  readonly toMs: number | null;
}

export interface Range {
  readonly fromMs: number;
  readonly toMs: number;
}

const floorTo = (ms: number, step: number): number => Math.floor(ms / step) * step;

/**
 * The ranges to create so that partitions cover [now - behind, now + ahead] on the interval grid, minus
 * what existing partitions already cover (an interval changed since, or the legacy partition, leave
 * partial ranges: those are created as the gaps they are). Ranges wholly before `notBeforeMs` (the
 * retention cutoff) are not created. Pure.
 */
export function rangesToCreate(nowMs: number, spec: PartitionSpec, existing: readonly LogPartition[], notBeforeMs: number | null): Range[] {
  const step = spec.intervalMs;
  const start = floorTo(nowMs - spec.behindMs, step);
  const end = floorTo(nowMs + spec.aheadMs, step) + step;
  const out: Range[] = [];
  for (let t = start; t < end; t += step) {
    for (const r of uncovered({ fromMs: t, toMs: t + step }, existing)) if (notBeforeMs === null || r.toMs > notBeforeMs) out.push(r);
  }
  return out;
}

/** The parts of `range` no existing (non-default) partition covers. Pure. */
export function uncovered(range: Range, existing: readonly LogPartition[]): Range[] {
  let pieces: Range[] = [range];
  for (const p of existing) {
    if (p.isDefault) continue;
    const lo = p.fromMs ?? -Infinity;
    const hi = p.toMs ?? Infinity;
    pieces = pieces.flatMap((r) => {
      if (hi <= r.fromMs || lo >= r.toMs) return [r];
      const left: Range[] = lo > r.fromMs ? [{ fromMs: r.fromMs, toMs: lo }] : [];
      const right: Range[] = hi < r.toMs ? [{ fromMs: hi, toMs: r.toMs }] : [];
      return [...left, ...right];
    });
  }
  return pieces;
}

/** log_entries_p20261205 for a range starting at midnight UTC, log_entries_p20261205_0600 otherwise. */
export function partitionName(fromMs: number): string {
  const iso = new Date(fromMs).toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const day = iso.slice(0, 10).replaceAll('-', '');
  const hhmm = iso.slice(11, 16).replace(':', '');
  return `log_entries_p${day}${hhmm === '0000' ? '' : `_${hhmm}`}`;
}

/** The partition a retention pass handles: dropped whole, trimmed row by row, or kept. Pure. */
export function retentionAction(p: LogPartition, cutoffMs: number): 'drop' | 'trim' | 'keep' {
  if (p.isDefault) return 'trim';
  if (p.toMs !== null && p.toMs <= cutoffMs) return 'drop';
  // Unbounded below (the legacy partition) or above: expired rows can sit in a partition that will
  // not expire whole for a long time.
  if (p.fromMs === null || p.toMs === null) return p.fromMs === null || p.fromMs < cutoffMs ? 'trim' : 'keep';
  return 'keep';
}

type Queryable = Pick<pg.PoolClient, 'query'>;

// The bound is printed in the session's TimeZone/DateStyle and read back in the same statement.
const LIST_SQL = `
SELECT c.relname AS name, b.expr = 'DEFAULT' AS is_default,
       CASE WHEN m.r IS NULL OR m.r[1] = 'MINVALUE' THEN NULL
            ELSE (extract(epoch FROM btrim(m.r[1], '''')::timestamptz) * 1000)::bigint::text END AS from_ms,
       CASE WHEN m.r IS NULL OR m.r[2] = 'MAXVALUE' THEN NULL
            ELSE (extract(epoch FROM btrim(m.r[2], '''')::timestamptz) * 1000)::bigint::text END AS to_ms
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS expr) b
CROSS JOIN LATERAL (SELECT regexp_match(b.expr, '^FOR VALUES FROM \\((.*)\\) TO \\((.*)\\)$') AS r) m
WHERE i.inhparent = to_regclass('log_entries')
ORDER BY 3 NULLS FIRST, 1`;

/** Whether log_entries is partitioned (false before migration 004). */
export async function isPartitioned(q: Queryable): Promise<boolean> {
  const res = await q.query<{ p: boolean }>(`SELECT coalesce((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('log_entries')), false) AS p`);
  return res.rows[0]?.p === true;
}

export async function listLogPartitions(q: Queryable): Promise<LogPartition[]> {
  const res = await q.query<{ name: string; is_default: boolean; from_ms: string | null; to_ms: string | null }>(LIST_SQL);
  return res.rows.map((r) => ({
    name: r.name,
    isDefault: r.is_default,
    fromMs: r.from_ms === null ? null : Number(r.from_ms),
    toMs: r.to_ms === null ? null : Number(r.to_ms),
  }));
}

const isClient = (db: pg.Pool | pg.PoolClient): db is pg.PoolClient => typeof (db as pg.PoolClient).release === 'function';
const ident = (name: string): string => pg.escapeIdentifier(name);
const tsLiteral = (ms: number): string => pg.escapeLiteral(new Date(ms).toISOString());

/** Insertable columns of log_entries (generated columns, such as a future search vector, excluded). */
const COLUMNS_SQL = `
SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS cols FROM pg_attribute
WHERE attrelid = 'log_entries'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''`;

export interface EnsureOptions {
  readonly nowMs?: number;
  /** Retention: no partition is created for a range wholly older than now - retention. */
  readonly retentionMs?: number | null;
  /** How long to wait for a lock (the default partition's readers) before giving up until the next pass. */
  readonly lockTimeoutMs?: number;
  readonly log?: Logger;
}

export interface EnsureResult {
  readonly created: string[];
  /** Rows moved from the default partition into partitions created for their range. */
  readonly adopted: number;
}

/**
 * Creates the partitions [now - behind, now + ahead] still lacks, one transaction each, under the commit
 * lock. Rows of a new range already in the default partition move into it. Idempotent; safe to run from
 * several processes at once (each re-reads the partition map under the lock).
 */
export async function ensureLogPartitions(
  db: pg.Pool | pg.PoolClient,
  spec: PartitionSpec,
  opts: EnsureOptions = {},
): Promise<EnsureResult> {
  const nowMs = opts.nowMs ?? Date.now();
  const notBefore = opts.retentionMs === null || opts.retentionMs === undefined ? null : nowMs - opts.retentionMs;
  const created: string[] = [];
  let adopted = 0;
  if (!(await isPartitioned(db))) return { created, adopted };
  const wanted = rangesToCreate(nowMs, spec, await listLogPartitions(db), notBefore);
  for (const range of wanted) {
    // A pool: one connection per range. A client (migrate holds one under its advisory lock; the
    // embedded store has a single connection): that one.
    const client = isClient(db) ? db : await db.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      // The commit lock first, without a timeout (it waits for one batch); then a bounded wait for the
      // default partition's readers.
      await client.query('SELECT pg_advisory_xact_lock($1)', [COMMIT_LOCK_KEY]);
      await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(opts.lockTimeoutMs ?? 2000))}`);
      // Another process may have created it meanwhile: recompute this range against the map as it is now.
      const now = await listLogPartitions(client);
      const pieces = uncovered(range, now);
      const defaultPartition = now.find((p) => p.isDefault)?.name;
      for (const r of pieces) {
        const name = partitionName(r.fromMs);
        await client.query(`CREATE TABLE ${ident(name)} (LIKE log_entries INCLUDING ALL EXCLUDING INDEXES)`);
        if (defaultPartition !== undefined) {
          const cols = (await client.query<{ cols: string }>(COLUMNS_SQL)).rows[0]!.cols;
          const moved = await client.query(
            `WITH moved AS (DELETE FROM ${ident(defaultPartition)} WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING ${cols})
             INSERT INTO ${ident(name)} (${cols}) SELECT ${cols} FROM moved`,
            [new Date(r.fromMs), new Date(r.toMs)],
          );
          adopted += moved.rowCount ?? 0;
          if ((moved.rowCount ?? 0) > 0) opts.log?.info({ partition: name, rows: moved.rowCount }, 'rows moved from the default partition');
        }
        await client.query(`ALTER TABLE log_entries ATTACH PARTITION ${ident(name)} FOR VALUES FROM (${tsLiteral(r.fromMs)}) TO (${tsLiteral(r.toMs)})`);
        created.push(name);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => {
        broken = e as Error;
      });
      // Partitions created in this call stay (each committed on its own); this range is retried next pass.
      throw err;
    } finally {
      if (!isClient(db)) client.release(broken);
    }
  }
  if (created.length > 0) opts.log?.info({ created, adopted }, 'log partitions created');
  return { created, adopted };
}

const DROPPING_PREFIX = 'log_entries_dropping_';

/**
 * Detaches partitions in one transaction and drops each afterwards in a transaction of its own that
 * locks only the detached table. The detach first takes the commit lock (waiting for the batch being
 * committed, without queueing readers behind a table lock meanwhile), then ACCESS EXCLUSIVE on
 * log_entries, waiting at most lockTimeoutMs for readers; ingest pauses only for the catalog change.
 * Returns false when a lock was not granted in time (nothing changed; try again later).
 */
export async function dropLogPartitions(pool: pg.Pool, names: readonly string[], lockTimeoutMs: number): Promise<boolean> {
  if (names.length === 0) return true;
  const detached = names.map((n) => DROPPING_PREFIX + n.replace(/^log_entries_/, ''));
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [COMMIT_LOCK_KEY]);
    await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))}`);
    for (let i = 0; i < names.length; i++) {
      await client.query(`ALTER TABLE log_entries DETACH PARTITION ${ident(names[i]!)}`);
      await client.query(`ALTER TABLE ${ident(names[i]!)} RENAME TO ${ident(detached[i]!)}`);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch((e: unknown) => {
      broken = e as Error;
    });
    if ((err as { code?: string }).code === '55P03') return false; // lock_not_available
    throw err;
  } finally {
    client.release(broken);
  }
  for (const d of detached) await pool.query(`DROP TABLE IF EXISTS ${ident(d)}`);
  return true;
}

/** Drops partitions detached by an earlier pass that stopped before dropping them. Returns their names. */
export async function dropDetachedLeftovers(pool: pg.Pool): Promise<string[]> {
  const res = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c
      WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
        AND c.relkind = 'r' AND NOT c.relispartition AND starts_with(c.relname, $1)`,
    [DROPPING_PREFIX],
  );
  for (const r of res.rows) await pool.query(`DROP TABLE IF EXISTS ${ident(r.name)}`);
  return res.rows.map((r) => r.name);
}

/** Deletes at most `limit` rows older than cutoff from one partition (the default or legacy one). */
export async function trimPartition(pool: pg.Pool, name: string, cutoffMs: number, limit: number): Promise<number> {
  const t = ident(name);
  const res = await pool.query(
    `DELETE FROM ${t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${t} WHERE "timestamp" < $1 LIMIT $2))`,
    [new Date(cutoffMs), limit],
  );
  return res.rowCount ?? 0;
}

/** Rows in a partition, counted up to `cap` (a cheap bound for the default partition's gauge). */
export async function countRowsUpTo(pool: pg.Pool, name: string, cap: number): Promise<number> {
  const res = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM (SELECT 1 FROM ${ident(name)} LIMIT $1) s`, [cap]);
  return Number(res.rows[0]!.n);
}
