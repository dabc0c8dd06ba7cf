// Retention (DESIGN 4, 5): deletes log rows older than LOG_RETENTION (by event time) and dead letters
// older than DEAD_LETTER_RETENTION, in small batches (short transactions, a yield between them) so it
// never holds locks long enough to slow ingest. Off when both retentions are "forever".
import { setImmediate as yieldTurn } from 'node:timers/promises';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { counter } from '../metrics.js';
import type { Database } from './database.js';

const deleted = counter('mycelis_memory_retention_deleted_total', 'Rows deleted by retention', ['table']);

export interface RetentionOptions {
  intervalMs?: number;
  batchSize?: number;
}

const LOG_DELETE_SQL = `
DELETE FROM log_entries WHERE id IN (
  SELECT id FROM log_entries WHERE timestamp < now() - make_interval(secs => $1::double precision / 1000) LIMIT $2)`;
const REJECT_DELETE_SQL = `
DELETE FROM ingest_rejects WHERE id IN (
  SELECT id FROM ingest_rejects WHERE received_at < now() - make_interval(secs => $1::double precision / 1000) LIMIT $2)`;

export class Retention {
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = true;
  private stopRequested = false;

  constructor(
    private readonly db: Database,
    private readonly config: Pick<Config, 'logRetentionMs' | 'deadLetterRetentionMs'>,
    logger: Logger,
    opts: RetentionOptions = {},
  ) {
    this.log = logger.child({ component: 'retention' });
    this.intervalMs = opts.intervalMs ?? 60_000;
    this.batchSize = opts.batchSize ?? 5_000;
  }

  start(): void {
    if (this.config.logRetentionMs === null && this.config.deadLetterRetentionMs === null) return;
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
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'retention pass failed; will retry'))
        .finally(() => {
          this.running = undefined;
          this.schedule(this.intervalMs);
        });
    }, ms);
    this.timer.unref();
  }

  /** One pass over both tables. Returns how many rows were deleted. */
  async runOnce(): Promise<{ logs: number; rejects: number }> {
    const logs = this.config.logRetentionMs === null ? 0 : await this.sweep(LOG_DELETE_SQL, this.config.logRetentionMs, 'log_entries');
    const rejects =
      this.config.deadLetterRetentionMs === null
        ? 0
        : await this.sweep(REJECT_DELETE_SQL, this.config.deadLetterRetentionMs, 'ingest_rejects');
    if (logs + rejects > 0) this.log.info({ logs, rejects }, 'retention deleted old rows');
    return { logs, rejects };
  }

  private async sweep(sql: string, ageMs: number, table: string): Promise<number> {
    let total = 0;
    for (;;) {
      // Each statement is its own short transaction (autocommit on a pooled connection).
      const res = await this.db.pool.query(sql, [ageMs, this.batchSize]);
      const n = res.rowCount ?? 0;
      total += n;
      if (n > 0) deleted.inc({ table }, n);
      if (n < this.batchSize || this.stopRequested) return total;
      await yieldTurn();
    }
  }
}
