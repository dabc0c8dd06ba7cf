// INGEST_MODE=jetstream (the default): a durable pull consumer feeding the batch pipeline.
//
// Messages arrive through consume()'s callback (synchronous, no per-message promise) into the
// pipeline's queue; JetStream caps what is delivered-but-unacked at max_ack_pending (2 x batch), so
// memory stays bounded and a blocked commit (PostgreSQL down) stops delivery: nothing is fetched
// that cannot be held, and nothing is acked that is not committed.
// The consume loop survives consumer/stream loss and NATS outages: it backs off, re-ensures the
// stream and consumer, and resumes; errors are logged rate-limited.
import type { ConsumerMessages, JetStreamManager, JsMsg, MsgHdrs, NatsConnection } from 'nats';
import { ConsumerEvents } from 'nats';
import type { IngestConfig } from '../config/config.js';
import type { Logger } from '../logger.js';
import type { IncomingMessage } from '../domain/normalize.js';
import { nowUs } from '../domain/time.js';
import { IngestPipeline, ingestMetrics, RateLimitedLog, type PendingMessage, type PipelineOptions } from './pipeline.js';
import { ConsumerConfigMismatchError, ensureConsumer, ensureStream, StreamConfigMismatchError } from './stream-setup.js';

/** NATS headers -> a plain map; multi-valued headers joined by ", ". */
export function headersToMap(h: MsgHdrs | undefined): ReadonlyMap<string, string> | undefined {
  if (!h) return undefined;
  const out = new Map<string, string>();
  for (const [k, vs] of h) out.set(k, vs.join(', '));
  return out;
}

const LAG_REFRESH_MS = 5000;

export class JetStreamIngest {
  private readonly log: Logger;
  private readonly pipeline: IngestPipeline;
  private jsm: JetStreamManager | null = null;
  private streamCreatedUs = 0;
  private messages: ConsumerMessages | null = null;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private lagTimer: NodeJS.Timeout | null = null;
  private sleepCancel: (() => void) | null = null;
  private readonly errorLog = new RateLimitedLog(10_000);
  lag: number | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly cfg: IngestConfig,
    pipelineOpts: Omit<PipelineOptions, 'mode' | 'batchSize' | 'batchWaitMs' | 'workingEveryMs'>,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'ingest-jetstream' });
    this.pipeline = new IngestPipeline({
      ...pipelineOpts,
      mode: 'jetstream',
      batchSize: cfg.batchSize,
      batchWaitMs: cfg.batchWaitMs,
      // ack_wait must outlast any wait for the database: refresh it at a third of its length.
      workingEveryMs: Math.max(200, Math.floor(cfg.ackWaitMs / 3)),
    });
  }

  get lastCommitAt(): Date | null {
    return this.pipeline.lastCommitAt;
  }

  /**
   * Ensures stream and consumer, then starts consuming. A stream or consumer with incompatible
   * settings throws (the service refuses to start); a transient JetStream error is logged and
   * retried in the background.
   */
  async start(): Promise<void> {
    try {
      await this.setup();
    } catch (err) {
      if (err instanceof StreamConfigMismatchError || err instanceof ConsumerConfigMismatchError) throw err;
      ingestMetrics.errors.labels('setup').inc();
      this.log.warn({ err }, 'JetStream not ready; will keep retrying');
    }
    this.pipeline.start();
    this.loop = this.consumeLoop();
    this.lagTimer = setInterval(() => void this.refreshLag(), LAG_REFRESH_MS);
    this.lagTimer.unref();
  }

  /** Stop fetching, commit and ack what was delivered; abandons a commit still blocked after abortAfterMs. */
  async stop(abortAfterMs: number): Promise<void> {
    this.stopping = true;
    if (this.lagTimer) clearInterval(this.lagTimer);
    this.sleepCancel?.();
    try {
      this.messages?.stop();
    } catch {
      // already stopped
    }
    await this.loop;
    const t = setTimeout(() => this.pipeline.abortWrites(), abortAfterMs);
    try {
      await this.pipeline.stop();
    } finally {
      clearTimeout(t);
    }
    // Acks are buffered publishes: make sure they reached the server before we report stopped.
    if (!this.nc.isClosed()) {
      await this.nc.flush().catch((err: unknown) => this.log.warn({ err }, 'could not flush acks at stop; unacked messages will be redelivered'));
    }
  }

  private async setup(): Promise<void> {
    this.jsm ??= await this.nc.jetstreamManager({ checkAPI: false });
    const stream = await ensureStream(this.jsm, this.cfg, this.log);
    this.streamCreatedUs = stream.createdUs;
    await ensureConsumer(this.jsm, this.cfg, this.log);
  }

  private onMessage(m: JsMsg): void {
    this.pipeline.received.inc();
    const info = m.info;
    const incoming: IncomingMessage = {
      subject: m.subject,
      data: m.data,
      headers: headersToMap(m.headers),
      streamName: info.stream,
      streamCreatedUs: this.streamCreatedUs,
      streamSeq: info.streamSequence,
      serverTimeUs: Math.floor(info.timestampNanos / 1000),
      receivedAtUs: nowUs(),
    };
    this.pipeline.push(new JsPending(incoming, m));
  }

  private async consumeLoop(): Promise<void> {
    let attempt = 0;
    let needSetup = false;
    while (!this.stopping) {
      try {
        if (needSetup || this.jsm === null || this.streamCreatedUs === 0) await this.setup();
        needSetup = false;
        const consumer = await this.nc.jetstream().consumers.get(this.cfg.streamName, this.cfg.consumerName);
        if (this.stopping) break;
        const messages = await consumer.consume({
          max_messages: this.cfg.batchSize,
          expires: 30_000,
          callback: (m) => {
            // A throw here would stop nats.js's consumer: count it and leave the message unacked.
            try {
              this.onMessage(m);
            } catch (err) {
              ingestMetrics.errors.labels('deliver').inc();
              this.errorLog.maybe((suppressed) => this.log.error({ err, suppressed, subject: m.subject }, 'could not take a delivered message; it will be redelivered'));
            }
          },
        });
        this.messages = messages;
        if (this.stopping) messages.stop(); // stop() ran while consume() was being set up
        void this.watchConsumer(messages);
        void this.refreshLag();
        const closed = await messages.closed();
        this.messages = null;
        if (this.stopping) break;
        throw closed instanceof Error ? closed : new Error('consumer stopped delivering');
      } catch (err) {
        if (this.stopping) break;
        needSetup = true;
        ingestMetrics.errors.labels('consume').inc();
        const delayMs = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6)) * (0.75 + Math.random() / 2);
        attempt++;
        this.errorLog.maybe((suppressed) => this.log.error({ err, attempt, suppressed, retryInMs: Math.round(delayMs) }, 'JetStream consume failed; retrying'));
        await this.sleep(delayMs);
      }
    }
  }

  private async watchConsumer(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const s of await messages.status()) {
        if (s.type === ConsumerEvents.ConsumerNotFound || s.type === ConsumerEvents.StreamNotFound || s.type === ConsumerEvents.ConsumerDeleted) {
          // Let the consume loop re-create what is missing instead of polling forever.
          messages.stop(new Error(`JetStream ${s.type}`));
          return;
        }
      }
    } catch {
      // status iterator ends with the consumer
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.sleepCancel = done;
    });
  }

  private async refreshLag(): Promise<void> {
    if (!this.jsm || this.nc.isClosed()) return;
    try {
      const ci = await this.jsm.consumers.info(this.cfg.streamName, this.cfg.consumerName);
      this.lag = ci.num_pending;
      ingestMetrics.lag.set(ci.num_pending);
      ingestMetrics.ackPending.set(ci.num_ack_pending);
    } catch {
      // NATS down or consumer missing: the consume loop reports it.
    }
  }

  /** Test/ops hook: refresh the lag gauge now. */
  async lagNow(): Promise<number | null> {
    await this.refreshLag();
    return this.lag;
  }
}

/** A delivered JetStream message held until its batch commits (one object per message, no closures). */
class JsPending implements PendingMessage {
  constructor(
    readonly incoming: IncomingMessage,
    private readonly m: JsMsg,
  ) {}

  ack(): void {
    this.m.ack();
  }

  working(): void {
    this.m.working();
  }
}
