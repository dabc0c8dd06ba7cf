// INGEST_MODE=jetstream (the default): a durable pull consumer feeding the batch pipeline.
//
// Messages arrive through PullConsumer (pull-consumer.ts) into the pipeline's queue, synchronously
// (no per-message promise). What the process holds - queue, batch being decoded, batch committing - is
// bounded by credit in messages (3 x INGEST_BATCH_SIZE) and bytes (the memory budget's ingest share):
// nothing is asked for that cannot be held, and nothing is acked that is not committed. A blocked
// commit (PostgreSQL down) therefore stops delivery.
// A graceful stop sends no new pull and lets the open ones end (at most PULL_EXPIRES_MS; whatever the
// server sent for them arrives, and is handed back with nak once they have ended - not at once, which
// would hand it straight back to the same pull and keep the server redelivering into a request that
// is about to expire, see pull-consumer.ts), commits and acks everything it held when the stop began,
// and hands back what it must abandon at the deadline (PostgreSQL down): nothing the process was
// delivered waits for ACK_WAIT. After a crash, the consumer's
// ack_wait (ACK_WAIT, 10 s) brings back what the dead process held; max_ack_pending leaves room for the
// windows of several processes, so a dead replica's messages never block the survivor meanwhile.
// The consume loop survives consumer/stream loss and NATS outages: it backs off, re-ensures the
// stream and consumer, and resumes; errors are logged rate-limited.
import { type JetStreamManager, type Msg, type MsgHdrs, type NatsConnection } from 'nats';
import type { IngestConfig } from '../config/config.js';
import type { Logger } from '../logger.js';
import type { IncomingMessage } from '../domain/normalize.js';
import { nowUs } from '../domain/time.js';
import { IngestPipeline, ingestMetrics, RateLimitedLog, type PendingMessage, type PipelineOptions } from './pipeline.js';
import { Credit, parseAckSubject, PullConsumer } from './pull-consumer.js';
import { ConsumerConfigMismatchError, ensureConsumer, ensureStream, maxHeldFor, StreamConfigMismatchError } from './stream-setup.js';

/** NATS headers -> a plain map; multi-valued headers joined by ", ". */
export function headersToMap(h: MsgHdrs | undefined): ReadonlyMap<string, string> | undefined {
  if (!h) return undefined;
  const out = new Map<string, string>();
  for (const [k, vs] of h) out.set(k, vs.join(', '));
  return out;
}

const LAG_REFRESH_MS = 5000;
/**
 * Pull requests expire after this long on the server. A second request is sent when the first is half
 * this old, so an idle stream costs two requests per period and a live request is always queued when
 * one expires (with a margin of half the period against a busy event loop); a stop waits for the open ones.
 */
const PULL_EXPIRES_MS = 2_000;
/** A request the server expired without a status is taken as ended this long after. */
const PULL_GRACE_MS = 1_000;

export interface JetStreamIngestLimits {
  /** Bytes of delivered messages the process may hold (the memory budget's ingest share). */
  readonly heldBytes: number;
  /** Bytes per batch. */
  readonly batchBytes: number;
}

export class JetStreamIngest {
  private readonly log: Logger;
  /** The logger this was given: the parts it starts (stream setup, the puller) name their own component. */
  private readonly rootLog: Logger;
  private readonly pipeline: IngestPipeline;
  private jsm: JetStreamManager | null = null;
  private streamCreatedUs = 0;
  private puller: PullConsumer | null = null;
  private readonly credit: Credit;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private lagTimer: NodeJS.Timeout | null = null;
  private sleepCancel: (() => void) | null = null;
  private readonly errorLog = new RateLimitedLog(10_000);
  lag: number | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly cfg: IngestConfig,
    limits: JetStreamIngestLimits,
    pipelineOpts: Omit<PipelineOptions, 'mode' | 'batchSize' | 'batchBytes' | 'batchWaitMs' | 'workingEveryMs'>,
    logger: Logger,
  ) {
    this.rootLog = logger;
    this.log = logger.child({ component: 'ingest-jetstream' });
    this.credit = new Credit(maxHeldFor(cfg.batchSize), limits.heldBytes);
    this.pipeline = new IngestPipeline({
      ...pipelineOpts,
      mode: 'jetstream',
      batchSize: cfg.batchSize,
      batchBytes: limits.batchBytes,
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

  /**
   * Stop fetching: no new pull, and the open one ends (what it brings is handed back); then commit and
   * ack what was held; a commit still blocked after abortAfterMs is abandoned and its messages handed back.
   */
  async stop(abortAfterMs: number): Promise<void> {
    this.stopping = true;
    if (this.lagTimer) clearInterval(this.lagTimer);
    this.sleepCancel?.();
    const heldAtStop = { messages: this.credit.messages, bytes: this.credit.bytes };
    await this.puller?.stop();
    // The pulls have ended: hand back what they brought during the stop (nothing more can come).
    const arrived = this.arrivedDuringStop.splice(0);
    for (const p of arrived) p.nak();
    if (arrived.length > 0) ingestMetrics.handedBack.inc(arrived.length);
    await this.loop;
    const committedBefore = this.committedAtStop();
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
    this.log.info(
      {
        atStop: {
          held: heldAtStop.messages,
          heldBytes: heldAtStop.bytes,
          arrivedDuringStop: this.handedBackAtStop,
          committed: this.committedAtStop() - committedBefore,
          stillHeld: this.credit.messages,
        },
      },
      'ingest stopped',
    );
  }

  /** Messages that arrived after the stop began (from the pulls that were open), handed back when those ended. */
  private readonly arrivedDuringStop: JsPending[] = [];
  private handedBackAtStop = 0;

  private committedAtStop(): number {
    return this.pipeline.committedMessages;
  }

  private async setup(): Promise<void> {
    this.jsm ??= await this.nc.jetstreamManager({ checkAPI: false });
    const stream = await ensureStream(this.jsm, this.cfg, this.rootLog);
    this.streamCreatedUs = stream.createdUs;
    await ensureConsumer(this.jsm, this.cfg, this.rootLog);
  }

  private onMessage(m: Msg, bytes: number): void {
    const info = parseAckSubject(m.reply ?? '');
    if (info === null) {
      // Not a JetStream delivery (nothing to ack): count it, never hold it.
      this.credit.release(bytes);
      ingestMetrics.errors.labels('deliver').inc();
      this.errorLog.maybe((suppressed) => this.log.error({ suppressed, subject: m.subject }, 'a pull delivered a message without a JetStream ack subject; ignored'));
      return;
    }
    // Holds the reply subject, not the Msg: nats.js' message object, its parse record and views die young.
    const pending = new JsPending(this.nc, m.reply!, bytes, this.credit);
    if (this.stopping) {
      // The open pulls are still ending: what they bring was not held when the stop began; it is
      // handed back once they have ended (stop()), so it cannot come straight back to them.
      this.handedBackAtStop++;
      this.arrivedDuringStop.push(pending);
      return;
    }
    this.pipeline.received.inc();
    if (info.deliveryCount > 1) ingestMetrics.redelivered.inc();
    try {
      pending.incoming = {
        subject: m.subject,
        data: ownBytes(m.data),
        headers: headersToMap(m.headers),
        streamName: this.cfg.streamName,
        streamCreatedUs: this.streamCreatedUs,
        streamSeq: info.streamSeq,
        serverTimeUs: Math.floor(info.timestampNanos / 1000),
        receivedAtUs: nowUs(),
      };
      this.pipeline.push(pending);
    } catch (err) {
      // Could not take it (e.g. unparseable headers): hand it back rather than hold it unseen.
      pending.nak();
      ingestMetrics.errors.labels('deliver').inc();
      this.errorLog.maybe((suppressed) => this.log.error({ err, suppressed, subject: m.subject }, 'could not take a delivered message; handed back'));
    }
  }

  private async consumeLoop(): Promise<void> {
    let attempt = 0;
    let needSetup = false;
    while (!this.stopping) {
      try {
        if (needSetup || this.jsm === null || this.streamCreatedUs === 0) await this.setup();
        needSetup = false;
        if (this.stopping) break;
        const puller = new PullConsumer(
          this.nc,
          this.credit,
          {
            stream: this.cfg.streamName,
            consumer: this.cfg.consumerName,
            expiresMs: PULL_EXPIRES_MS,
            graceMs: PULL_GRACE_MS,
            onMessage: (m, bytes) => this.onMessage(m, bytes),
          },
          this.rootLog,
        );
        this.puller = puller;
        puller.start();
        void this.refreshLag();
        const err = await puller.closed;
        this.puller = null;
        if (this.stopping) break;
        if (puller.requestsSent > 1) attempt = 0; // it worked for a while: start the backoff afresh
        throw err ?? new Error('the pull stopped');
      } catch (err) {
        if (this.stopping) break;
        needSetup = true;
        ingestMetrics.errors.labels('consume').inc();
        const delayMs = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6)) * (0.75 + Math.random() / 2);
        attempt++;
        this.errorLog.maybe((suppressed) => this.log.error({ err, attempt, suppressed, retryInMs: Math.round(delayMs) }, 'JetStream pull failed; retrying'));
        await this.sleep(delayMs);
      }
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

const ACK = new TextEncoder().encode('+ACK');
const NAK = new TextEncoder().encode('-NAK');
const WPI = new TextEncoder().encode('+WPI');

/**
 * A delivered JetStream message held until its batch commits (one object per message, no closures).
 * Finished exactly once - ack, nak or leave - which returns its credit. It keeps the ack subject, not
 * nats.js' Msg (whose parse record and byte views would otherwise live, and be copied by every young
 * collection, until the commit): the answer is published to the reply subject, which is what
 * Msg.respond() does.
 */
/**
 * A message's bytes, in a buffer of their own when they are a view of a much larger one. nats.js hands
 * out each payload as a view of the buffer its parser read it into, which for a large message is
 * grown by doubling: a held 512 KiB tool result kept about 1 MiB alive (36 held ones: 35 MB, twice
 * what the ingest share of the memory budget counts). One copy of a large payload frees the rest.
 */
export function ownBytes(data: Uint8Array): Uint8Array {
  if (data.byteLength < 64 * 1024 || data.buffer.byteLength <= data.byteLength + (data.byteLength >> 3)) return data;
  return data.slice();
}

class JsPending implements PendingMessage {
  incoming!: IncomingMessage;
  private finished = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly reply: string,
    readonly bytes: number,
    private readonly credit: Credit,
  ) {}

  ack(): void {
    this.finish(ACK);
  }

  nak(): void {
    this.finish(NAK);
  }

  leave(): void {
    this.finish(null);
  }

  working(): void {
    if (!this.finished) this.respond(WPI);
  }

  private finish(answer: Uint8Array | null): void {
    if (this.finished) return;
    this.finished = true;
    if (answer) this.respond(answer);
    this.credit.release(this.bytes);
  }

  private respond(answer: Uint8Array): void {
    try {
      this.nc.publish(this.reply, answer);
    } catch {
      // The connection is closed or draining: JetStream redelivers it after ACK_WAIT.
    }
  }
}
