// The batching core shared by both ingest modes: delivered messages -> batches -> normalize ->
// one writer transaction per batch -> ack.
//
// Invariants kept here:
// - ACK ONLY AFTER COMMIT: a batch's messages (its rows, its dead letters and its excluded subjects)
//   are acked only once writer.write() has resolved, i.e. its transaction committed. A crash before
//   that leaves them unacked in JetStream, and redelivery is harmless (deterministic ids, ON CONFLICT).
// - Commits never overlap and happen in batch order: batch k+1 is handed to the writer only after
//   batch k's write resolved. Decoding of batch k+1 runs ahead while k commits, so at most two batches
//   are in flight; what the process holds in all (queue and batches) is bounded by the puller's credit
//   in messages and bytes (pull-consumer.ts).
// - A batch is bounded by messages (INGEST_BATCH_SIZE) and by bytes (the memory budget's batch share,
//   INGEST_BATCH_BYTES); a single message larger than the byte bound is a batch of its own.
// - Every message is finished exactly once: acked after its commit, handed back (nak: redelivered at
//   once, to this process or another) when a stop abandons its commit, or left to JetStream's
//   redelivery after ACK_WAIT when its commit failed for a reason a retry would not fix.
// - No per-message awaits: push() is synchronous, acks are fire-and-forget publishes.
// - While the writer retries (PostgreSQL down), every delivered message we hold is touched with
//   working() so its ack_wait restarts and JetStream does not redeliver it elsewhere.
import type { Logger } from '../logger.js';
import type { LogRow, RegistryEvent, RejectReason, RejectRow } from '../domain/types.js';
import { FORMATS, normalizeMessage, type Format, type IncomingMessage } from '../domain/normalize.js';
import { counter, gauge, histogram } from '../metrics.js';
import type { BatchWriter, CommitResult, RowOrigin } from '../store/batch-writer.js';

export const ingestMetrics = {
  received: counter('mycelis_memory_ingest_messages_received_total', 'Messages received from NATS', ['mode']),
  byFormat: counter(
    'mycelis_memory_ingest_messages_total',
    'Messages read, by the format they were read as (protobuf, proto_json, signal, telemetry, mission_event, json, text; none: no format) and result (row, dead_letter); excluded subjects are not read',
    ['format', 'result'],
  ),
  stored: counter('mycelis_memory_ingest_rows_stored_total', 'Rows inserted into log_entries'),
  duplicates: counter('mycelis_memory_ingest_duplicates_total', 'Valid messages whose row already existed (redelivery, replay, audit copy)'),
  deadLetters: counter('mycelis_memory_ingest_dead_letters_total', 'Messages written to ingest_rejects', ['reason']),
  stripped: counter('mycelis_memory_ingest_stripped_characters_total', 'NUL characters and lone surrogates stripped before writing'),
  excluded: counter('mycelis_memory_ingest_excluded_total', 'Messages on NATS_EXCLUDE_SUBJECTS, acked and not stored'),
  dropped: counter('mycelis_memory_ingest_dropped_total', 'Messages dropped because the core-mode buffer was full'),
  batches: counter('mycelis_memory_ingest_batches_total', 'Batches committed'),
  batchSize: histogram('mycelis_memory_ingest_batch_size', 'Messages per committed batch', [], [1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000]),
  commitSeconds: histogram('mycelis_memory_ingest_commit_seconds', 'Time from handing a batch to the writer until it committed (includes retries)'),
  lag: gauge('mycelis_memory_ingest_consumer_lag', 'Messages in the stream not yet delivered to the consumer (num_pending)'),
  ackPending: gauge('mycelis_memory_ingest_ack_pending', 'Messages delivered but not yet acked (num_ack_pending)'),
  errors: counter('mycelis_memory_ingest_errors_total', 'Ingest errors (fetch, consumer, commit)', ['kind']),
  lastCommit: gauge('mycelis_memory_ingest_last_commit_timestamp_seconds', 'Wall time of the last committed batch'),
  heldBytes: gauge(
    'mycelis_memory_ingest_held_bytes',
    'Bytes of delivered messages the ingest holds: queued (not yet in a batch) and in batches being decoded or committed (bounded by the memory budget\'s ingest share)',
    ['stage'],
  ),
  batchBytes: histogram('mycelis_memory_ingest_batch_bytes', 'Bytes of messages per committed batch', [], [1e3, 1e4, 1e5, 1e6, 2e6, 4e6, 8e6, 16e6, 32e6, 64e6]),
  redelivered: counter('mycelis_memory_ingest_redelivered_total', 'JetStream messages delivered more than once (after a crash, ACK_WAIT, or a hand-back)'),
  handedBack: counter('mycelis_memory_ingest_handed_back_total', 'JetStream messages handed back (nak) for immediate redelivery: arrived during a stop, or their commit was abandoned at the stop deadline'),
};

/** A message delivered by NATS, waiting for its batch to commit. */
export interface PendingMessage {
  readonly incoming: IncomingMessage;
  /** Its size as delivered (what the batch and the held bytes count). */
  readonly bytes: number;
  /** Acknowledge (JetStream) — called only after the batch committed. No-op in core mode. */
  ack(): void;
  /** Hand back for immediate redelivery (JetStream nak). No-op in core mode. */
  nak(): void;
  /** Give up on it without an answer: JetStream redelivers it after ACK_WAIT. No-op in core mode. */
  leave(): void;
  /** Restart the ack timer while the batch waits for the database. No-op in core mode. */
  working(): void;
}

/** The part of the store's BatchWriter this module uses (tests may pass a BatchWriter directly). */
export type IngestWriter = Pick<BatchWriter, 'write'>;

export interface PipelineOptions {
  readonly writer: IngestWriter;
  readonly logger: Logger;
  readonly mode: 'jetstream' | 'core';
  readonly batchSize: number;
  /** Bytes per batch (a single larger message is a batch alone). */
  readonly batchBytes: number;
  readonly batchWaitMs: number;
  readonly isExcluded: (subject: string) => boolean;
  readonly isLogEntrySubject: (subject: string) => boolean;
  readonly maxEventBytes: number;
  /**
   * Every this long, touch every held message with working() (JetStream: a third of ack_wait) -
   * queued, decoded or committing - independent of the writer's backoff, which may exceed ack_wait.
   * One timer for the pipeline's life, not one per commit: a message queued behind several commits
   * each shorter than this was never touched, and waited out ACK_WAIT (redelivered, and dead-lettered
   * twice, with 1 MiB messages on a loaded host). 0 = never.
   */
  readonly workingEveryMs: number;
}

interface MutableBatch {
  rows: LogRow[];
  rejects: RejectRow[];
  registry: RegistryEvent[];
  /** The original message of rows[i], for a row PostgreSQL rejects. */
  originOf: (index: number) => RowOrigin | undefined;
  /** registry[k] came from rows[registryRows[k]]. */
  registryRows: number[];
}

interface Prepared {
  readonly batch: MutableBatch;
  readonly msgs: PendingMessage[];
  readonly bytes: number;
  readonly excluded: number;
  readonly stripped: number;
  /** Rows, then dead letters, per format (FORMAT_INDEX): counted once the batch commits. */
  readonly formats: Uint32Array;
}

/** Longest stretch the decoding of a batch keeps the event loop (see IngestPipeline.prepare). */
const PREPARE_SLICE_MS = 2;
const yieldToIo = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const FORMAT_INDEX = new Map<Format, number>(FORMATS.map((f, i) => [f, i]));

/** What a commit stored, as the metrics count it. */
type Outcome = Pick<CommitResult, 'inserted' | 'duplicates' | 'rejectedByReason'>;
const NOTHING_WRITTEN: Outcome = { inserted: 0, duplicates: 0, rejectedByReason: new Map() };

/**
 * A counter incremented per message and added to its metric once per turn of the event loop: NATS
 * hands a socket read's messages over in one synchronous run, and prom-client hashes the labels on
 * every inc() of a labelled child (about 1 µs a message, measured in the drain's profile). A scrape
 * runs in a later turn, so it never sees a count that is behind.
 */
export class TickCounter {
  private n = 0;
  private scheduled = false;
  private readonly flush = (): void => {
    this.scheduled = false;
    const n = this.n;
    this.n = 0;
    if (n > 0) this.metric.inc(n);
  };
  constructor(private readonly metric: { inc(n: number): void }) {}
  inc(): void {
    this.n++;
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flush);
    }
  }
}

/** Logs at most once per interval, with how many were suppressed in between. */
export class RateLimitedLog {
  private last = 0;
  private suppressed = 0;
  constructor(private readonly intervalMs: number) {}
  /** Calls emit(suppressedSinceLast) when allowed. */
  maybe(emit: (suppressed: number) => void): void {
    const now = Date.now();
    if (now - this.last >= this.intervalMs) {
      this.last = now;
      const s = this.suppressed;
      this.suppressed = 0;
      emit(s);
    } else {
      this.suppressed++;
    }
  }
}

export class IngestPipeline {
  private readonly log: Logger;
  private queue: PendingMessage[] = [];
  private queueBytes = 0;
  /** Bytes of the batches cut and not yet finished. */
  private batchedBytes = 0;
  private queueHeadSinceMs = 0;
  private wake: (() => void) | null = null;
  /** A commit is running (batches wait behind it, up to batchWaitMs). */
  private committing = false;
  /** Size of the last batch cut (a full one means load: keep filling batches). */
  private lastCut = 0;
  /** When the last batch was cut (Date.now()). */
  private lastCutAtMs = 0;
  private stopping = false;
  private readonly abort = new AbortController();
  /** Batches decoded or committing, for working(). */
  private readonly held = new Set<PendingMessage[]>();
  private loop: Promise<void> | null = null;
  private readonly retryLog = new RateLimitedLog(10_000);
  /** Counts every message NATS handed us (including those core mode then drops). */
  readonly received: TickCounter;
  lastCommitAt: Date | null = null;
  /** Messages finished by a commit (acked) so far. */
  committedMessages = 0;

  constructor(private readonly opts: PipelineOptions) {
    this.log = opts.logger.child({ component: `ingest-${opts.mode}` });
    this.received = new TickCounter(ingestMetrics.received.labels(opts.mode));
  }

  /** Messages delivered and not yet in a batch. */
  get queued(): number {
    return this.queue.length;
  }

  /** Bytes of the messages delivered and not yet in a batch. */
  get queuedBytes(): number {
    return this.queueBytes;
  }

  /** Bytes of every message held: queued and in batches being decoded or committed. */
  get heldBytes(): number {
    return this.queueBytes + this.batchedBytes;
  }

  /** Synchronous; safe to call from a NATS callback. */
  push(m: PendingMessage): void {
    if (this.queue.length === 0) this.queueHeadSinceMs = Date.now();
    this.queue.push(m);
    this.queueBytes += m.bytes;
    if (this.wake && (this.queue.length >= this.opts.batchSize || this.queueBytes >= this.opts.batchBytes || this.queue.length === 1)) {
      const w = this.wake;
      this.wake = null;
      w();
    }
  }

  start(): void {
    if (this.loop) return;
    const every = this.opts.workingEveryMs;
    const heartbeat = every > 0 ? setInterval(() => {
      if (this.queue.length > 0 || this.held.size > 0) this.touchAll();
    }, every) : undefined;
    heartbeat?.unref();
    this.loop = this.run()
      .catch((err: unknown) => {
        // run() handles its own errors; reaching here is a bug, but never an unhandled rejection.
        this.log.error({ err }, 'ingest pipeline stopped unexpectedly');
      })
      .finally(() => clearInterval(heartbeat));
  }

  /** Commits what it holds (queue and batches), acks it, then stops. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeUp();
    await this.loop;
  }

  /** Abandons a blocked commit (the writer's retries): what it holds is handed back (nak). */
  abortWrites(): void {
    this.abort.abort();
    this.stopping = true;
    this.wakeUp();
  }

  /** Restarts the ack timer of every delivered message we hold (queue, decoded, committing). */
  touchAll(): void {
    for (const msgs of this.held) for (const m of msgs) m.working();
    for (const m of this.queue) m.working();
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /**
   * A batch is cut when it is full, or at the latest `batchWaitMs` after its first message, or - on a
   * lightly loaded stream (the previous batch was not full) - as soon as no commit is running and
   * half of `batchWaitMs` has passed since the previous batch was cut. Messages that arrive while a
   * commit runs accumulate behind it (group commit), so batches grow with the load; once they are
   * full, batching is exactly as before (full or batchWaitMs).
   *
   * Why the half: a commit has a fixed cost (its round trips, the commit lock, the registry read and
   * upsert of its agents, COMMIT) in Node and in PostgreSQL. Cut whenever no commit ran, a paced
   * 5,000 events/s went in as ~110 commits a second of ~45 events, and those fixed costs were half of
   * the CPU per event - CPU the fan-out and the queries had not. At most one light-load commit per
   * 25 ms (the default) adds at most 25 ms to an event's wait, about 10 on average.
   */
  private async waitForBatch(): Promise<void> {
    for (;;) {
      if (this.queue.length >= this.opts.batchSize || this.queueBytes >= this.opts.batchBytes) return;
      if (this.stopping) return;
      let spacing = Number.POSITIVE_INFINITY;
      if (this.queue.length > 0 && !this.committing && this.lastCut < this.opts.batchSize) {
        spacing = this.lastCutAtMs + this.opts.batchWaitMs / 2 - Date.now();
        if (spacing <= 0) return;
      }
      let timer: NodeJS.Timeout | undefined;
      const woken = new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      if (this.queue.length > 0) {
        const left = this.queueHeadSinceMs + this.opts.batchWaitMs - Date.now();
        if (left <= 0) {
          this.wake = null;
          return;
        }
        timer = setTimeout(() => this.wakeUp(), Math.min(left, spacing));
      }
      await woken;
      if (timer) clearTimeout(timer);
    }
  }

  private async run(): Promise<void> {
    // The previous batch's write: commits stay serialized and in order.
    let written: Promise<void> = Promise.resolve();
    // Commits whose acks may still be going out.
    const finishing = new Set<Promise<void>>();
    for (;;) {
      await this.waitForBatch();
      if (this.queue.length === 0) {
        if (this.stopping) break;
        continue;
      }
      if (this.abort.signal.aborted) break;
      const { msgs, bytes } = this.cut();
      this.lastCut = msgs.length;
      this.lastCutAtMs = Date.now();
      if (this.queue.length > 0) this.queueHeadSinceMs = Date.now();
      this.held.add(msgs);
      this.batchedBytes += bytes;
      this.reportHeld();
      const prepared = await this.prepare(msgs, bytes);
      // Commits stay serialized and in order: wait for the previous batch's write before this one's.
      await written;
      this.committing = true;
      const c = this.commit(prepared);
      written = c.written.then(() => {
        this.committing = false;
        // A batch waiting behind this commit may go now.
        this.wakeUp();
      });
      finishing.add(c.done);
      void c.done.then(() => finishing.delete(c.done));
    }
    await written;
    await Promise.all(finishing);
    // Aborted: what never made it into a batch goes back to JetStream at once.
    if (this.queue.length > 0) {
      const left = this.queue;
      this.queue = [];
      this.queueBytes = 0;
      for (const m of left) m.nak();
      ingestMetrics.handedBack.inc(left.length);
      this.log.warn({ messages: left.length }, 'shutdown handed back messages it could not commit in time');
    }
    this.reportHeld();
  }

  /**
   * The next batch from the head of the queue: up to batchSize messages and batchBytes bytes, and
   * always at least one message (one larger than batchBytes is committed alone).
   */
  private cut(): { msgs: PendingMessage[]; bytes: number } {
    const q = this.queue;
    const maxN = Math.min(this.opts.batchSize, q.length);
    let n = 0;
    let bytes = 0;
    while (n < maxN) {
      const b = q[n]!.bytes;
      if (n > 0 && bytes + b > this.opts.batchBytes) break;
      bytes += b;
      n++;
    }
    const msgs = n === q.length ? q.splice(0) : q.splice(0, n);
    this.queueBytes -= bytes;
    return { msgs, bytes };
  }

  private reportHeld(): void {
    ingestMetrics.heldBytes.labels('queued').set(this.queueBytes);
    ingestMetrics.heldBytes.labels('batches').set(this.batchedBytes);
  }

  /**
   * Normalizes a cut batch. It runs while the previous batch commits, on the same thread as that
   * commit's round trips to PostgreSQL: done in one go (5,000 messages: 30-120 ms), it held back the
   * commit's next statement for as long, and PostgreSQL sat idle. So it yields to I/O every
   * PREPARE_SLICE_MS, and the commit's statements go out as their answers arrive.
   */
  private async prepare(msgs: PendingMessage[], bytes: number): Promise<Prepared> {
    const rowSources: IncomingMessage[] = [];
    const originOf = (i: number): RowOrigin | undefined => {
      const m = rowSources[i];
      return m && { payload: m.data, headers: headersRecord(m.headers), streamName: m.streamName, streamCreatedUs: m.streamCreatedUs, streamSeq: m.streamSeq };
    };
    const batch: MutableBatch = { rows: [], rejects: [], registry: [], originOf, registryRows: [] };
    let excluded = 0;
    let stripped = 0;
    const formats = new Uint32Array(2 * FORMATS.length);
    const normalizeOpts = { isLogEntrySubject: this.opts.isLogEntrySubject, maxEventBytes: this.opts.maxEventBytes };
    let sliceStart = performance.now();
    for (let i = 0; i < msgs.length; i++) {
      if ((i & 63) === 63 && performance.now() - sliceStart >= PREPARE_SLICE_MS) {
        await yieldToIo();
        sliceStart = performance.now();
      }
      const incoming = msgs[i]!.incoming;
      if (this.opts.isExcluded(incoming.subject)) {
        excluded++;
        continue;
      }
      let reject: RejectRow;
      try {
        const r = normalizeMessage(incoming, normalizeOpts);
        formats[FORMAT_INDEX.get(r.format)! + (r.ok ? 0 : FORMATS.length)]!++;
        if (r.ok) {
          batch.rows.push(r.row);
          // Kept so a row PostgreSQL rejects is dead-lettered with its original bytes.
          rowSources.push(incoming);
          if (r.registry) {
            batch.registry.push(r.registry);
            batch.registryRows.push(batch.rows.length - 1);
          }
          stripped += r.stripped;
          continue;
        }
        reject = r.reject;
      } catch (err) {
        // A normalizer bug must not block the stream: the message becomes a dead letter.
        ingestMetrics.errors.labels('normalize').inc();
        formats[FORMAT_INDEX.get('none')! + FORMATS.length]!++;
        reject = {
          subject: incoming.subject,
          headers: headersRecord(incoming.headers),
          payload: incoming.data,
          reason: 'decode_error',
          detail: `normalizer failed: ${(err as Error).message ?? String(err)}`,
          streamName: incoming.streamName,
          streamCreatedUs: incoming.streamCreatedUs,
          streamSeq: incoming.streamSeq,
          receivedAtUs: incoming.receivedAtUs,
        };
      }
      batch.rejects.push(reject);
    }
    return { batch, msgs, bytes, excluded, stripped, formats };
  }

  /**
   * Writes a batch, then acks (or hands back, or leaves) its messages. `written` resolves when the write
   * has (committed or failed: the next batch may be written), `done` once the messages are answered;
   * neither rejects.
   */
  private commit(p: Prepared): { written: Promise<void>; done: Promise<void> } {
    let markWritten!: () => void;
    const written = new Promise<void>((resolve) => (markWritten = resolve));
    return { written, done: this.writeAndAnswer(p, markWritten) };
  }

  private async writeAndAnswer(p: Prepared, markWritten: () => void): Promise<void> {
    const { batch, msgs } = p;
    const started = performance.now();
    try {
      let outcome: Outcome = NOTHING_WRITTEN;
      if (batch.rows.length > 0 || batch.rejects.length > 0 || batch.registry.length > 0) {
        const onRetry = (attempt: number, err: unknown): void => {
          this.touchAll();
          ingestMetrics.errors.labels('commit_retry').inc();
          this.retryLog.maybe((suppressed) =>
            this.log.warn({ err, attempt, suppressed, messages: msgs.length }, 'database unavailable; batch held unacked, retrying'),
          );
        };
        outcome = await this.opts.writer.write(batch, { signal: this.abort.signal, onRetry });
      }
      markWritten();
      // The next batch's first statements go out before this one's acks (5,000 publishes: ~10 ms
      // that PostgreSQL would otherwise wait through).
      await yieldToIo();
      // Committed: now, and only now, ack every message of the batch.
      for (const m of msgs) m.ack();
      this.committedMessages += msgs.length;
      this.record(p, outcome, started);
    } catch (err) {
      if (this.abort.signal.aborted) {
        // Handed back at once: another replica (or this one after its restart) takes them now, not
        // after ACK_WAIT. Whether this commit reached PostgreSQL or not, a redelivery stores nothing twice.
        for (const m of msgs) m.nak();
        ingestMetrics.handedBack.inc(msgs.length);
        this.log.warn({ messages: msgs.length }, 'shutdown abandoned an uncommitted batch; handed back for redelivery');
      } else {
        // Not retryable here (a bug, or a failure the writer does not retry): JetStream redelivers it
        // after ACK_WAIT, which also paces the next attempt.
        for (const m of msgs) m.leave();
        ingestMetrics.errors.labels('commit').inc();
        this.log.error({ err, messages: msgs.length }, 'batch failed to commit; left unacked for redelivery after ACK_WAIT');
      }
    } finally {
      markWritten();
      this.held.delete(msgs);
      this.batchedBytes -= p.bytes;
      this.reportHeld();
    }
  }

  private record(p: Prepared, outcome: Outcome, started: number): void {
    ingestMetrics.batches.inc();
    ingestMetrics.batchSize.observe(p.msgs.length);
    ingestMetrics.batchBytes.observe(p.bytes);
    ingestMetrics.commitSeconds.observe((performance.now() - started) / 1000);
    ingestMetrics.stored.inc(outcome.inserted);
    ingestMetrics.duplicates.inc(outcome.duplicates);
    if (p.stripped > 0) ingestMetrics.stripped.inc(p.stripped);
    if (p.excluded > 0) ingestMetrics.excluded.inc(p.excluded);
    // The dead letters this commit stored, db_rejected rows included; a redelivered message whose dead
    // letter was stored before is not counted again.
    for (const [reason, n] of outcome.rejectedByReason) ingestMetrics.deadLetters.labels(reason).inc(n);
    for (let i = 0; i < FORMATS.length; i++) {
      if (p.formats[i]! > 0) ingestMetrics.byFormat.labels(FORMATS[i]!, 'row').inc(p.formats[i]);
      if (p.formats[FORMATS.length + i]! > 0) ingestMetrics.byFormat.labels(FORMATS[i]!, 'dead_letter').inc(p.formats[FORMATS.length + i]);
    }
    this.lastCommitAt = new Date();
    ingestMetrics.lastCommit.set(Date.now() / 1000);
  }
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
function headersRecord(h: ReadonlyMap<string, string> | undefined): Readonly<Record<string, string>> {
  return h && h.size > 0 ? Object.fromEntries(h) : NO_HEADERS;
}
