// INGEST_MODE=core: the directive's plain subscription, made honest. Messages go into a bounded
// buffer (CORE_BUFFER_SIZE messages, and the memory budget's ingest bytes) in front of the same batch pipeline; when the buffer is full the message
// is dropped, counted in mycelis_memory_ingest_dropped_total and reported in a rate-limited log line
// (never a crash, never silent). There is no redelivery in this mode: a message dropped here, or in a
// batch that fails to commit, is gone; use JetStream mode where that matters.
import type { NatsConnection, Subscription } from 'nats';
import type { IngestConfig } from '../config/config.js';
import type { Logger } from '../logger.js';
import type { IncomingMessage } from '../domain/normalize.js';
import { nowUs } from '../domain/time.js';
import { IngestPipeline, ingestMetrics, type PipelineOptions } from './pipeline.js';
import { headersToMap, type JetStreamIngestLimits } from './jetstream-ingest.js';

const DROP_LOG_INTERVAL_MS = 10_000;
const noop = (): void => {};

export class CoreIngest {
  private readonly log: Logger;
  private readonly pipeline: IngestPipeline;
  private subs: Subscription[] = [];
  private droppedSinceLog = 0;
  private lastDropLog = 0;
  private dropTimer: NodeJS.Timeout | null = null;
  /** Identity of this process's arrivals: boot time + arrival counter (see onMessage). */
  private readonly bootUs = nowUs();
  private arrivals = 0;
  /** Total dropped by this instance (the metric is process-wide). */
  dropped = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly cfg: IngestConfig,
    private readonly limits: JetStreamIngestLimits,
    pipelineOpts: Omit<PipelineOptions, 'mode' | 'batchSize' | 'batchBytes' | 'batchWaitMs' | 'workingEveryMs'>,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'ingest-core' });
    this.pipeline = new IngestPipeline({
      ...pipelineOpts,
      mode: 'core',
      batchSize: cfg.batchSize,
      batchBytes: limits.batchBytes,
      batchWaitMs: cfg.batchWaitMs,
      workingEveryMs: 0,
    });
  }

  get lastCommitAt(): Date | null {
    return this.pipeline.lastCommitAt;
  }

  start(): void {
    this.pipeline.start();
    for (const subject of this.cfg.subjects) {
      this.subs.push(
        this.nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err) {
              ingestMetrics.errors.labels('subscription').inc();
              this.log.error({ err, subject }, 'subscription error');
              return;
            }
            this.pipeline.received.inc();
            // The buffer is bounded by messages and by the memory budget's ingest bytes.
            if (this.pipeline.queued >= this.cfg.coreBufferSize || this.pipeline.heldBytes + msg.data.length > this.limits.heldBytes) {
              this.drop();
              return;
            }
            const now = nowUs();
            this.arrivals++;
            // Core NATS has no stream: the "stream position" is this process's boot time and arrival
            // count, so messages without any identity of their own never collide with earlier ones
            // (even across restarts); arrival order breaks registry ties.
            const incoming: IncomingMessage = {
              subject: msg.subject,
              data: msg.data,
              headers: headersToMap(msg.headers),
              streamName: '',
              streamCreatedUs: this.bootUs,
              streamSeq: this.arrivals,
              serverTimeUs: now,
              receivedAtUs: now,
            };
            this.pipeline.push({ incoming, bytes: msg.data.length, ack: noop, nak: noop, leave: noop, working: noop });
          },
        }),
      );
    }
    this.log.info({ subjects: this.cfg.subjects, bufferSize: this.cfg.coreBufferSize }, 'core NATS ingest started (no redelivery: overflow is dropped and counted)');
  }

  private drop(): void {
    this.dropped++;
    this.droppedSinceLog++;
    ingestMetrics.dropped.inc();
    const now = Date.now();
    if (now - this.lastDropLog >= DROP_LOG_INTERVAL_MS) {
      this.flushDropLog();
    } else if (!this.dropTimer) {
      // Make sure the tail of a burst is reported too.
      this.dropTimer = setTimeout(() => this.flushDropLog(), DROP_LOG_INTERVAL_MS - (now - this.lastDropLog));
      this.dropTimer.unref();
    }
  }

  private flushDropLog(): void {
    if (this.dropTimer) clearTimeout(this.dropTimer);
    this.dropTimer = null;
    if (this.droppedSinceLog === 0) return;
    this.lastDropLog = Date.now();
    this.log.warn({ dropped: this.droppedSinceLog, totalDropped: this.dropped, bufferSize: this.cfg.coreBufferSize }, 'core ingest buffer full; messages dropped');
    this.droppedSinceLog = 0;
  }

  async stop(abortAfterMs: number): Promise<void> {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    const t = setTimeout(() => this.pipeline.abortWrites(), abortAfterMs);
    try {
      await this.pipeline.stop();
    } finally {
      clearTimeout(t);
      this.flushDropLog();
    }
  }
}
