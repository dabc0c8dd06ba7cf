// The JetStream stream and durable pull consumer the ingest reads from (DESIGN 4).
//
// Invariants kept here:
// - A stream we create has no_ack: true. Without it the stream answers every core NATS request on a
//   captured subject with its own publish ack, and the swarm's request-reply breaks.
// - An existing stream is never changed: when its subjects, no_ack or storage differ from what we
//   need, start-up fails with StreamConfigMismatchError naming each difference.
// - The consumer acks explicitly, with ack_wait from config (ACK_WAIT, 10 s: what a crash costs; the
//   pipeline calls working() while a batch commits or is retried, so a slow commit or a long PostgreSQL
//   outage does not turn into redeliveries) and max_ack_pending = 4 x what one process holds
//   (maxHeldFor): a replica that dies holding its whole window, or one that is stopping, leaves the
//   survivor a full window of its own, so the dead one's messages cost their ACK_WAIT and nothing else.
import {
  AckPolicy,
  DeliverPolicy,
  NatsError,
  nanos,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from 'nats';
import type { IngestConfig } from '../config/config.js';
import type { Logger } from '../logger.js';

/** The existing stream does not have the settings the service needs. The service exits with it. */
export class StreamConfigMismatchError extends Error {
  override readonly name = 'StreamConfigMismatchError';
  constructor(
    readonly streamName: string,
    readonly differences: readonly string[],
  ) {
    super(
      `JetStream stream ${JSON.stringify(streamName)} exists with settings this service will not change: ${differences.join('; ')}. ` +
        'Fix the stream (e.g. `nats stream edit`) or point STREAM_NAME / NATS_SUBJECTS at a matching one.',
    );
  }
}

/** The existing durable consumer cannot be used as is (e.g. it does not ack explicitly). */
export class ConsumerConfigMismatchError extends Error {
  override readonly name = 'ConsumerConfigMismatchError';
  constructor(
    readonly consumerName: string,
    readonly differences: readonly string[],
  ) {
    super(
      `JetStream consumer ${JSON.stringify(consumerName)} exists with settings this service will not change: ${differences.join('; ')}. ` +
        'Delete it (it will be recreated) or set CONSUMER_NAME to another name.',
    );
  }
}

/** JetStream is unreachable or failed in a way a retry may fix. */
export class JetStreamSetupError extends Error {
  override readonly name = 'JetStreamSetupError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function isNotFound(err: unknown, what: 'stream' | 'consumer'): boolean {
  if (!(err instanceof NatsError)) return false;
  const code = err.api_error?.err_code;
  if (what === 'stream' && code === 10059) return true;
  if (what === 'consumer' && code === 10014) return true;
  return err.message === `${what} not found`;
}

/** Messages one process holds delivered and unacked: one batch committing, the next decoded, a third arriving. */
export function maxHeldFor(batchSize: number): number {
  return 3 * batchSize;
}

/**
 * max_ack_pending for a batch size: the windows of four processes (two replicas, a third during a
 * rolling update, and one that died), so the dead never block the living.
 */
export function maxAckPendingFor(batchSize: number): number {
  return 4 * maxHeldFor(batchSize);
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((x) => sb.has(x));
}

/** The differences between an existing stream and what the service needs; empty = usable. */
export function streamDifferences(existing: StreamConfig, cfg: IngestConfig): string[] {
  const diffs: string[] = [];
  const subjects = existing.subjects ?? [];
  if (!sameSet(subjects, cfg.subjects)) {
    diffs.push(`subjects are ${JSON.stringify(subjects)}, expected ${JSON.stringify(cfg.subjects)} (NATS_SUBJECTS)`);
  }
  if (existing.no_ack !== true) {
    diffs.push('no_ack is false, expected true (otherwise the stream answers core NATS requests and breaks request-reply)');
  }
  if (existing.storage !== StorageType.File) {
    diffs.push(`storage is ${String(existing.storage)}, expected file`);
  }
  return diffs;
}

export interface StreamSetup {
  readonly info: StreamInfo;
  /** Stream creation time, µs since epoch (part of the identity of messages without one). */
  readonly createdUs: number;
  readonly created: boolean;
}

/** Creates the stream when absent; verifies it when present (throws StreamConfigMismatchError). */
export async function ensureStream(jsm: JetStreamManager, cfg: IngestConfig, logger: Logger): Promise<StreamSetup> {
  const log = logger.child({ component: 'stream-setup' });
  let info: StreamInfo | undefined;
  let created = false;
  try {
    info = await jsm.streams.info(cfg.streamName);
  } catch (err) {
    if (!isNotFound(err, 'stream')) {
      throw new JetStreamSetupError(`cannot read JetStream stream ${cfg.streamName}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (info === undefined) {
    const want: Partial<StreamConfig> & { name: string } = {
      name: cfg.streamName,
      subjects: [...cfg.subjects],
      no_ack: true,
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      max_age: nanos(cfg.streamMaxAgeMs),
      max_bytes: cfg.streamMaxBytes,
      description: 'mycelis-memory: swarm traffic kept until it is committed to PostgreSQL',
    };
    try {
      info = await jsm.streams.add(want);
      created = true;
      log.info({ stream: cfg.streamName, subjects: cfg.subjects, maxAgeMs: cfg.streamMaxAgeMs, maxBytes: cfg.streamMaxBytes }, 'created JetStream stream');
    } catch (err) {
      // Another replica may have created it between our info and add: verify what is there.
      try {
        info = await jsm.streams.info(cfg.streamName);
      } catch {
        throw new JetStreamSetupError(`cannot create JetStream stream ${cfg.streamName}: ${(err as Error).message}`, { cause: err });
      }
    }
  }
  const diffs = streamDifferences(info.config, cfg);
  if (diffs.length > 0) throw new StreamConfigMismatchError(cfg.streamName, diffs);
  if (!created) {
    const maxAge = info.config.max_age;
    if (maxAge !== nanos(cfg.streamMaxAgeMs) || info.config.max_bytes !== cfg.streamMaxBytes) {
      log.warn(
        { stream: cfg.streamName, maxAgeNs: maxAge, maxBytes: info.config.max_bytes, wantMaxAgeMs: cfg.streamMaxAgeMs, wantMaxBytes: cfg.streamMaxBytes },
        'existing stream has other limits than STREAM_MAX_AGE/STREAM_MAX_BYTES; keeping its limits',
      );
    }
  }
  return { info, createdUs: isoToUs(info.created), created };
}

function wantedConsumer(cfg: IngestConfig): Partial<ConsumerConfig> & { durable_name: string } {
  const c: Partial<ConsumerConfig> & { durable_name: string } = {
    durable_name: cfg.consumerName,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(cfg.ackWaitMs),
    max_ack_pending: maxAckPendingFor(cfg.batchSize),
    deliver_policy: DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
    max_deliver: -1,
    description: 'mycelis-memory ingest',
  };
  // The stream captures exactly cfg.subjects (checked by ensureStream), so with several subjects no
  // filter is the same as filtering on all of them (filter_subjects needs NATS 2.10).
  if (cfg.subjects.length === 1) c.filter_subject = cfg.subjects[0]!;
  return c;
}

/** Creates the durable pull consumer when absent, updates its ack_wait/max_ack_pending when they differ. */
export async function ensureConsumer(jsm: JetStreamManager, cfg: IngestConfig, logger: Logger): Promise<ConsumerInfo> {
  const log = logger.child({ component: 'stream-setup' });
  const want = wantedConsumer(cfg);
  let info: ConsumerInfo | undefined;
  try {
    info = await jsm.consumers.info(cfg.streamName, cfg.consumerName);
  } catch (err) {
    if (!isNotFound(err, 'consumer')) {
      throw new JetStreamSetupError(`cannot read JetStream consumer ${cfg.consumerName}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (info === undefined) {
    try {
      info = await jsm.consumers.add(cfg.streamName, want);
      log.info({ stream: cfg.streamName, consumer: cfg.consumerName, maxAckPending: want.max_ack_pending, ackWaitMs: cfg.ackWaitMs }, 'created durable consumer');
      return info;
    } catch (err) {
      try {
        info = await jsm.consumers.info(cfg.streamName, cfg.consumerName);
      } catch {
        throw new JetStreamSetupError(`cannot create JetStream consumer ${cfg.consumerName}: ${(err as Error).message}`, { cause: err });
      }
    }
  }
  const diffs: string[] = [];
  if (info.config.ack_policy !== AckPolicy.Explicit) diffs.push(`ack_policy is ${info.config.ack_policy}, expected explicit`);
  if (info.config.deliver_subject) diffs.push('it is a push consumer, expected a pull consumer');
  if ((info.config.filter_subject ?? '') !== (want.filter_subject ?? '')) {
    diffs.push(`filter_subject is ${JSON.stringify(info.config.filter_subject ?? '')}, expected ${JSON.stringify(want.filter_subject ?? '')}`);
  }
  if (diffs.length > 0) throw new ConsumerConfigMismatchError(cfg.consumerName, diffs);
  if (info.config.ack_wait !== want.ack_wait || info.config.max_ack_pending !== want.max_ack_pending) {
    try {
      info = await jsm.consumers.update(cfg.streamName, cfg.consumerName, {
        ack_wait: want.ack_wait!,
        max_ack_pending: want.max_ack_pending!,
      });
      log.info({ consumer: cfg.consumerName, maxAckPending: want.max_ack_pending, ackWaitMs: cfg.ackWaitMs }, 'updated durable consumer');
    } catch (err) {
      log.warn({ err, consumer: cfg.consumerName }, 'could not update ack_wait/max_ack_pending of the existing consumer; using it as is');
    }
  }
  return info;
}

/** RFC 3339 with up to 9 fractional digits -> µs since epoch, without losing sub-millisecond digits. */
export function isoToUs(iso: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(iso);
  if (!m) {
    const ms = Date.parse(iso);
    return Number.isFinite(ms) ? ms * 1000 : 0;
  }
  const seconds = Date.parse(`${m[1]}${m[3]}`);
  const frac = (m[2] ?? '').padEnd(6, '0').slice(0, 6);
  return seconds * 1000 + Number(frac);
}
