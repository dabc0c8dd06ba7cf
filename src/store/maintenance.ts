// Store upkeep (DESIGN 4, 5): one pass at start and then every RETENTION_INTERVAL.
//  1. Partitions: log_entries has partitions from what the stream can still redeliver (STREAM_MAX_AGE
//     back) to three intervals ahead, so ingest never writes into a range without one.
//  2. LOG_RETENTION: partitions whose whole range is older than the cutoff are detached and dropped
//     (no row is deleted one by one, nothing is left for vacuum); only rows in the default partition
//     (and in the legacy partition an upgrade made of the old table, until it expires whole) are
//     deleted, in small batches. Retention is exact to the partition interval: a row lives at most
//     LOG_RETENTION plus one interval.
//  3. DEAD_LETTER_RETENTION: dead letters (few, spread over time) are deleted in small batches.
// Every statement is its own short transaction: ingest and open streams never wait long for it. A
// pass that fails (database down, a lock not granted in time) is logged and retried on the next one.
import { setImmediate as yieldTurn } from 'node:timers/promises';
import type { Logger } from '../logger.js';
import { counter, gauge } from '../metrics.js';
import type { Database } from './database.js';
import { sqlstateOf } from './errors.js';
import {
  countRowsUpTo,
  dropDetachedLeftovers,
  dropLogPartitions,
  ensureLogPartitions,
  isPartitioned,
  listLogPartitions,
  retentionAction,
  trimPartition,
  type PartitionSpec,
} from './partitions.js';

const deleted = counter('mycelis_memory_retention_deleted_total', 'Rows deleted one by one by retention (default/legacy partition, dead letters)', ['table']);
const dropped = counter('mycelis_memory_retention_partitions_dropped_total', 'Log partitions dropped whole by retention');
const created = counter('mycelis_memory_log_partitions_created_total', 'Log partitions created ahead of ingest');
const partitionsGauge = gauge('mycelis_memory_log_partitions', 'Partitions of log_entries (the default partition included)');
const defaultRows = gauge('mycelis_memory_log_default_partition_rows', `Rows in the default partition (counted up to ${100_000}): events outside every partition's range`);
const passFailures = counter('mycelis_memory_maintenance_failures_total', 'Maintenance passes that failed (retried on the next one)');

const DEFAULT_ROWS_CAP = 100_000;
/** Expired partitions detached per transaction (one short pause of ingest for many days at once). */
const DETACH_PER_TRANSACTION = 50;
const DEAD_LETTER_DELETE_SQL = `
DELETE FROM ingest_rejects WHERE id IN (
  SELECT id FROM ingest_rejects WHERE received_at < $1 LIMIT $2)`;

export interface MaintenanceConfig {
  /** null = keep forever. */
  readonly logRetentionMs: number | null;
  readonly deadLetterRetentionMs: number | null;
  readonly partitions: PartitionSpec;
}

export interface MaintenanceOptions {
  /** Time between passes (RETENTION_INTERVAL). */
  intervalMs?: number;
  /** Rows per DELETE of the batched deletes. */
  batchSize?: number;
  /** How long a DETACH or ATTACH waits for its lock before the pass gives up on it (retried next pass). */
  lockTimeoutMs?: number;
  /** The clock (tests move it). */
  now?: () => number;
}

export interface PassResult {
  readonly created: string[];
  readonly dropped: string[];
  /** Rows deleted one by one from the default/legacy partition. */
  readonly trimmed: number;
  readonly rejects: number;
  /** Where the pass spent its time (ms): partitions ahead, dropping, row-by-row trims, dead letters. */
  readonly ms: { readonly partitions: number; readonly drop: number; readonly trim: number; readonly deadLetters: number };
}

export class StoreMaintenance {
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly lockTimeoutMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = true;
  /** Set by stop(): a pass in progress ends its loops early. */
  private stopRequested = false;

  constructor(
    private readonly db: Database,
    private readonly config: MaintenanceConfig,
    logger: Logger,
    opts: MaintenanceOptions = {},
  ) {
    this.log = logger.child({ component: 'maintenance' });
    this.intervalMs = opts.intervalMs ?? 60_000;
    this.batchSize = opts.batchSize ?? 5_000;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 1_000;
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    this.stopped = false;
    this.stopRequested = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopRequested = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.runOnce()
        .catch((err: unknown) => {
          passFailures.inc();
          this.log.warn({ err: (err as Error).message }, 'maintenance pass failed; will retry');
        })
        .finally(() => {
          this.running = undefined;
          this.schedule(this.intervalMs);
        });
    }, ms);
    this.timer.unref();
  }

  /** One pass: partitions ahead, then retention of the log and of dead letters. */
  async runOnce(): Promise<PassResult> {
    const pool = this.db.pool;
    const nowMs = this.now();
    const ms = { partitions: 0, drop: 0, trim: 0, deadLetters: 0 };
    const result = { created: [] as string[], dropped: [] as string[], trimmed: 0, rejects: 0, ms };
    let t = Date.now();
    const lap = (): number => {
      const now = Date.now();
      const d = now - t;
      t = now;
      return d;
    };
    const partitioned = await isPartitioned(pool);
    if (partitioned) {
      // A lock not granted in time (readers of the default partition) only postpones the partitions
      // ahead to the next pass (they are made days early); retention still runs.
      try {
        const ensured = await ensureLogPartitions(pool, this.config.partitions, {
          nowMs,
          retentionMs: this.config.logRetentionMs,
          lockTimeoutMs: this.lockTimeoutMs,
          log: this.log,
        });
        result.created = ensured.created;
        created.inc(ensured.created.length);
      } catch (err) {
        if (sqlstateOf(err) !== '55P03') throw err;
        this.log.warn({ err: (err as Error).message }, 'log partitions not created (lock not granted in time); next pass tries again');
      }
      const leftovers = await dropDetachedLeftovers(pool);
      if (leftovers.length > 0) this.log.info({ tables: leftovers }, 'dropped partitions detached by an earlier pass');
    }
    ms.partitions = lap();
    if (this.config.logRetentionMs !== null) {
      const cutoffMs = nowMs - this.config.logRetentionMs;
      // Only a partitioned log has retention by partition: migrations (004) always run before this.
      if (partitioned) {
        const parts = await listLogPartitions(pool);
        const expired = parts.filter((p) => retentionAction(p, cutoffMs) === 'drop').map((p) => p.name);
        for (let i = 0; i < expired.length && !this.stopRequested; i += DETACH_PER_TRANSACTION) {
          const some = expired.slice(i, i + DETACH_PER_TRANSACTION);
          if (!(await this.dropWithRetries(some))) break;
          result.dropped.push(...some);
          dropped.inc(some.length);
        }
        ms.drop = lap();
        for (const p of parts) {
          if (this.stopRequested) break;
          if (retentionAction(p, cutoffMs) === 'trim') {
            result.trimmed += await this.sweep((limit) => trimPartition(pool, p.name, cutoffMs, limit), 'log_entries');
          }
        }
        ms.trim = lap();
      }
    }
    if (this.config.deadLetterRetentionMs !== null) {
      const cutoff = new Date(nowMs - this.config.deadLetterRetentionMs);
      result.rejects = await this.sweep(async (limit) => (await pool.query(DEAD_LETTER_DELETE_SQL, [cutoff, limit])).rowCount ?? 0, 'ingest_rejects');
      ms.deadLetters = lap();
    }
    if (partitioned) await this.observe();
    if (result.dropped.length + result.trimmed + result.rejects > 0) {
      this.log.info({ droppedPartitions: result.dropped, trimmedRows: result.trimmed, deadLetters: result.rejects, ms }, 'retention pass');
    }
    return result;
  }

  /** Detach (bounded wait for its lock, a few tries with a pause between) and drop. */
  private async dropWithRetries(names: string[]): Promise<boolean> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const t0 = Date.now();
      if (await dropLogPartitions(this.db.pool, names, this.lockTimeoutMs)) {
        this.log.info({ partitions: names, attempt, ms: Date.now() - t0 }, 'expired log partitions dropped');
        return true;
      }
      this.log.debug({ partitions: names, attempt }, 'detach waited too long for its lock; retrying');
      await new Promise((r) => setTimeout(r, 200 * attempt).unref());
    }
    this.log.warn({ partitions: names }, 'could not detach expired partitions (log_entries busy); the next pass tries again');
    return false;
  }

  /** Repeats a batched delete until a batch comes back short; each DELETE is its own transaction. */
  private async sweep(deleteBatch: (limit: number) => Promise<number>, table: string): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await deleteBatch(this.batchSize);
      total += n;
      if (n > 0) deleted.inc({ table }, n);
      if (n < this.batchSize || this.stopRequested) return total;
      await yieldTurn();
    }
  }

  private async observe(): Promise<void> {
    const parts = await listLogPartitions(this.db.pool);
    partitionsGauge.set(parts.length);
    const def = parts.find((p) => p.isDefault);
    if (!def) return;
    const n = await countRowsUpTo(this.db.pool, def.name, DEFAULT_ROWS_CAP);
    defaultRows.set(n);
    if (n >= DEFAULT_ROWS_CAP) {
      this.log.warn({ partition: def.name, rows: `>= ${n}` }, 'many rows sit in the default partition (event times outside every partition): check producer clocks or backfills');
    }
  }
}
