// Tells the API when new rows are committed (DESIGN 3.2, 6: live tails). Two feeds:
//  - the in-process BatchWriter (immediately after its COMMIT), and
//  - in postgres mode, a DEDICATED pg.Client (never pooled: a pooled connection would lose its LISTEN
//    when recycled) on LISTEN mycelis_memory_commits, so commits of other replicas arrive too.
// Because seq order is commit order, a notification ending at lastSeq means every seq <= lastSeq is
// committed. Listeners therefore only need the high-water mark: ranges at or below what was already
// emitted are dropped (our own commits arrive twice: in process and back through NOTIFY). After the
// LISTEN connection is re-established, commits may have been missed, so the current head is emitted.
import pg from 'pg';
import type { Logger } from '../logger.js';
import { counter } from '../metrics.js';
import { COMMITS_CHANNEL, type BatchWriter, type CommitRange } from './batch-writer.js';
import type { Database } from './database.js';
import { backoffMs } from './errors.js';

const listenReconnects = counter('mycelis_memory_store_listen_reconnects_total', 'LISTEN connection re-established');

export class CommitNotifier {
  private readonly log: Logger;
  private readonly listeners = new Set<(c: CommitRange) => void>();
  private highWater = 0;
  private unsubscribeWriter: (() => void) | undefined;
  private client: pg.Client | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempts = 0;
  private running = false;

  constructor(
    private readonly db: Database,
    private readonly writer: BatchWriter | null,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'commit-notifier' });
  }

  /**
   * cb hears {firstSeq, lastSeq} whenever the committed head advances, and every commit of this
   * process's writer with its rows (`committed`), even when NOTIFY announced the range first.
   * Returns an unsubscribe.
   */
  onCommit(cb: (c: CommitRange) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** The greatest committed seq (0 when the log is empty). */
  async head(): Promise<number> {
    const res = await this.db.pool.query<{ head: string }>('SELECT COALESCE(max(seq), 0)::text AS head FROM log_entries');
    return Number(res.rows[0]!.head);
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    if (this.writer) this.unsubscribeWriter = this.writer.onCommit((c) => this.emit(c));
    try {
      this.highWater = Math.max(this.highWater, await this.head());
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not read the committed head at start');
    }
    if (this.db.kind === 'postgres') await this.connect();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.unsubscribeWriter?.();
    this.unsubscribeWriter = undefined;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const c = this.client;
    this.client = undefined;
    if (c) await c.end().catch(() => undefined);
  }

  private emit(c: CommitRange): void {
    // A range already announced is dropped, except this process's own commit with its rows: its
    // NOTIFY (or a poll) may have announced the range first, and the rows still spare a read.
    if (c.lastSeq <= this.highWater && !c.committed) return;
    this.highWater = Math.max(this.highWater, c.lastSeq);
    for (const l of this.listeners) {
      try {
        l(c);
      } catch (err) {
        this.log.error({ err }, 'commit listener threw');
      }
    }
  }

  /** Connects the LISTEN client; on failure schedules a retry. Never throws. */
  private async connect(): Promise<void> {
    if (!this.running) return;
    const client = new pg.Client({ connectionString: this.db.url, keepAlive: true, application_name: 'mycelis-memory-listen' });
    let failed = false;
    const onLost = (err?: Error): void => {
      if (failed) return;
      failed = true;
      if (this.client === client) this.client = undefined;
      client.end().catch(() => undefined);
      if (!this.running) return;
      this.log.warn({ err: err?.message }, 'LISTEN connection lost; reconnecting');
      this.scheduleReconnect();
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (msg) => {
      if (msg.channel !== COMMITS_CHANNEL || !msg.payload) return;
      const m = /^(\d+):(\d+)(?::([0-9a-f]+))?$/.exec(msg.payload);
      if (!m) return;
      // Our own writer's commit: announced in process with its rows (a commit whose outcome the
      // writer never learned, its connection lost at COMMIT, is found by the hub's head poll).
      if (m[3] !== undefined && m[3] === this.writer?.instanceId) return;
      this.emit({ firstSeq: Number(m[1]), lastSeq: Number(m[2]) });
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${COMMITS_CHANNEL}`);
    } catch (err) {
      onLost(err as Error);
      return;
    }
    if (!this.running || failed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    if (this.attempts > 0) {
      listenReconnects.inc();
      this.log.info({ attempts: this.attempts }, 'LISTEN connection re-established');
      // Commits may have happened while we were not listening.
      try {
        const head = await this.head();
        this.emit({ firstSeq: head, lastSeq: head });
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'could not read the committed head after reconnect');
      }
    }
    this.attempts = 0;
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || !this.running) return;
    this.attempts++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, backoffMs(this.attempts));
  }
}
