// The live side of StreamLogs: ONE shared reader per process.
//
// On every commit notification the hub takes the newly committed rows (seq > head, ascending) once,
// and fans them out in memory to every attached subscriber whose filter matches. Rows committed by
// this process's own writer are handed over with the notification (CommittedRows: the rows, their
// seqs, and the newest seq committed before them), so they are not read back; rows of another
// replica (LISTEN/NOTIFY), or any range the hand-over does not cover, are read from the database in
// pages. `head` only moves forward, and the fan-out of a page and
// the move of `head` happen in one synchronous step, so a subscriber attaching at head H receives
// exactly the rows with seq > H and nothing at or below it.
//
// Invariants each stream keeps (DESIGN 6):
// - No gap, no duplicate at the hand-over: attach first (position H), read history from the database
//   up to H, then drain the live queue keeping only seq > cursor.
// - Records in seq order: history pages and the queue are both ascending, and every emitted batch
//   starts after the previous position.
// - A slow client never slows ingest or others: its queue is bounded in records (api.streamBuffer)
//   and in bytes (half the memory budget's streams share, for each stream and for all of them
//   together, a record queued for several streams counted once); on overflow the queue is dropped, the
//   subscriber detached, and the stream reads the database from its own cursor until it has caught
//   up, then attaches again. A queue that is empty always takes one record, however large.
// - Handed-over commits waiting for the hub are bounded in rows and in bytes (the budget's handover
//   share); past either the hub reads the range back from the database instead.
// - Catching up is shared, not repeated: while an unfiltered stream is attached or any stream is
//   catching up, the hub keeps the records of its latest fan-outs in a window (bounded in bytes,
//   complete: every committed row in (windowFrom, head]). A stream behind the hub (after an overflow,
//   or resuming by a cursor) takes its records from the window, encoded once for all of them, and
//   reads the database only for what the window no longer holds. Ten streams falling back under a
//   burst of 512 KiB tool results otherwise read, parse and encode the same rows ten times (each read
//   turns 512 KiB of jsonb back into text in PostgreSQL: ~10 ms a row, in the server ingest commits to).
//   Behind the window, database pages are shared too: an unfiltered page read for one stream is kept
//   (encoded, a complete range (after, position]) within the pages allowance while streams use it, and
//   a stream at a cursor inside it takes its records there; streams at the same cursor join one read.
// - Database pages of streams are bounded together: a read takes its page's estimated bytes from one
//   allowance (half the streams share, at least two full pages) until its records are encoded, so ten
//   streams reading 4 MiB pages at once cannot hold ten pages, their text, parsed JSON and encodings;
//   shared pages kept count in the same allowance (a read makes room by dropping the oldest).
import { setMaxListeners } from 'node:events';
import type { Logger } from '../logger.js';
import { CancelledError, OutOfRangeError, UnavailableError } from '../errors.js';
import { counter, gauge } from '../metrics.js';
import type { LogRow } from '../domain/types.js';
import type { CommittedRows } from '../store/batch-writer.js';
import { NO_FILTER, type LogReader, type LogRowFilter, type StoredLogRow } from '../store/log-reader.js';
import { toWireRecord, type WireRecord } from './log-record.js';

/** What the hub needs from src/store/commit-notifier.ts. */
export interface CommitSource {
  onCommit(cb: (c: { firstSeq: number; lastSeq: number; committed?: CommittedRows }) => void): () => void;
}

export interface StreamHubOptions {
  /** Records one subscriber may queue before it falls back to the database. */
  readonly bufferLimit: number;
  /**
   * The streams share of the memory budget (default: unbounded): half of it bounds the bytes (encoded
   * records) one subscriber, and all of them together, may queue; the recent window holds all of it.
   */
  readonly bufferBytes?: number;
  /** Bytes of handed-over commits the hub holds before it reads them from the database instead (default: unbounded). */
  readonly handoverBytes?: number;
  /** A keepalive is sent when nothing was sent for this long. */
  readonly keepaliveMs: number;
  /** Rows per database page (history, fallback and the hub's own reads). */
  readonly pageSize?: number;
  /** Upper bounds of one response. */
  readonly maxRecordsPerBatch?: number;
  readonly maxBytesPerBatch?: number;
}

/** One step of a stream: records (possibly none = keepalive) and the position after them. */
export interface StreamBatch {
  readonly records: WireRecord[];
  /** Every matching record with seq <= position has been delivered. */
  readonly position: number;
  /** True for the last batch of a stream ended by the server (shutdown). */
  readonly final?: boolean;
  /**
   * The records were encoded for this stream alone (its database pages, not the shared window or
   * queue): once copied into a response their bytes may be released (src/release-bytes.ts).
   */
  readonly owned?: boolean;
}

export interface FollowRequest {
  readonly filter: LogRowFilter;
  readonly afterSeq: number | null;
  readonly tail: number;
}

const subscribersGauge = gauge('mycelis_memory_api_stream_subscribers', 'Streams attached to the live fan-out of the stream hub.');
// These two change with every response of every stream: read when /metrics is scraped.
gauge('mycelis_memory_api_stream_buffered_records', 'Records queued in memory for live streams.', [], function () {
  this.set(bufferedTotal);
});
const highWaterGauge = gauge('mycelis_memory_api_stream_buffer_high_water', 'Largest queue any live stream has held (bounded by STREAM_BUFFER).');
gauge(
  'mycelis_memory_api_stream_buffered_bytes',
  'Bytes of encoded records queued in memory for live streams, all streams together (a record queued for several streams counted once); bounded by the memory budget\'s streams share.',
  [],
  function () {
    this.set(bufferedBytes);
  },
);
const handoverBytesGauge = gauge(
  'mycelis_memory_api_stream_handover_bytes',
  'Bytes of committed rows handed from the writer to the stream hub and not yet fanned out; bounded by the memory budget\'s handover share.',
);
const fallbacksCounter = counter('mycelis_memory_api_stream_fallbacks_total', 'Live streams whose queue overflowed and fell back to reading the database.');
const hubRowsCounter = counter(
  'mycelis_memory_api_stream_hub_rows_total',
  'Committed rows the stream hub fanned out, by where it got them: handed over by this process\'s writer, or read from the database.',
  ['source'],
);
const hubRowsHanded = hubRowsCounter.labels({ source: 'handed' });
const hubRowsRead = hubRowsCounter.labels({ source: 'database' });
const catchupCounter = counter(
  'mycelis_memory_api_stream_catchup_rows_total',
  'Records streams behind the hub (after an overflow, or resuming by a cursor) took from the hub\'s recent window, read from the database, or took from a page read for another stream (shared).',
  ['source'],
);
const catchupWindow = catchupCounter.labels({ source: 'window' });
const catchupDatabase = catchupCounter.labels({ source: 'database' });
const catchupShared = catchupCounter.labels({ source: 'shared' });
const sharedBytesGauge = gauge('mycelis_memory_api_stream_shared_page_bytes', 'Bytes of encoded database pages kept for streams reading the same rows (within the stream pages allowance).');
const windowBytesGauge = gauge('mycelis_memory_api_stream_window_bytes', 'Bytes of encoded records in the stream hub\'s recent window (bounded by the memory budget\'s streams share).');
const pageWaitCounter = counter('mycelis_memory_api_stream_page_waits_total', 'Database page reads of streams that waited for the pages allowance.');
const coalesceGauge = gauge('mycelis_memory_api_stream_coalesce_seconds', 'How long the stream hub gathers commits into one fan-out (wider while the process is saturated).');
const hubHeadGauge = gauge('mycelis_memory_api_stream_hub_head_seq', 'The newest seq the stream hub has fanned out.');

/** A shared page no stream used for this long is dropped. */
const SHARED_PAGE_MS = 1000;
/** A signal that never aborts: a shared read is not any one stream's to cancel. */
const NEVER = new AbortController().signal;
setMaxListeners(0, NEVER); // every shared read waiting for the pages allowance listens to it

const MAX_COALESCE_MS = 50;
/** The longest a saturated process gathers commits into one fan-out (the delivery latency it trades). */
const MAX_SATURATED_COALESCE_MS = 250;
/** Handed-over rows the hub holds while it is busy; past this it reads the range from the database. */
const MAX_PENDING_ROWS = 50_000;

/** A row handed over by this process's writer (its context still JSON text, parsed only if a stream takes it). */
interface HandedRow {
  readonly seq: number;
  readonly row: LogRow;
  readonly source: string;
  readonly teamId: string;
  readonly level: string;
  readonly intent: string;
  readonly traceId: string;
}
type HubRow = StoredLogRow | HandedRow;

/** A handed-over commit waiting for the hub: its rows are exactly the committed rows in (prevSeq, lastSeq]. */
interface PendingCommit {
  readonly prevSeq: number;
  readonly lastSeq: number;
  readonly rows: CommittedRows;
  /** About what its rows take in memory (their text). */
  readonly bytes: number;
}

/** A database page of every row in (after, position], encoded, that several streams may take. */
interface SharedPage {
  readonly after: number;
  readonly position: number;
  readonly records: WireRecord[];
  readonly bytes: number;
  /** performance.now() of its latest use. */
  usedAt: number;
}

/** About what a handed-over commit holds: its rows' message and context text, and a little per row. */
function committedBytes(c: CommittedRows): number {
  let b = 0;
  for (const r of c.rows) b += 200 + r.message.length + r.context.length;
  return b;
}

function wireOf(r: HubRow): WireRecord {
  if (!('row' in r)) return toWireRecord(r);
  const x = r.row;
  // The same values the database gives back: µs precision, the context as parsed JSON.
  return toWireRecord({
    id: x.id,
    seq: r.seq,
    traceId: x.traceId,
    timestampUs: Math.trunc(x.timestampUs),
    level: x.level,
    source: x.source,
    intent: x.intent,
    message: x.message,
    context: JSON.parse(x.context) as Record<string, unknown> | null,
    approxBytes: 200 + x.context.length + x.message.length,
    teamId: x.teamId,
    subject: x.subject,
    receivedAtUs: Math.trunc(x.receivedAtUs),
  });
}

let bufferHighWater = 0;
// Records queued over all subscribers (its gauge reads it when /metrics is scraped).
let bufferedTotal = 0;
// Bytes of the distinct records queued over all subscribers (how many queues hold a record: its
// `queues` count; a field of the record rather than a Map from record to count, which cost a hash
// lookup and insert per delivery and reallocated its table as queues filled and drained).
let bufferedBytes = 0;
let bufferedBytesHighWater = 0;
function enqueued(r: WireRecord): void {
  if (r.queues++ === 0) {
    bufferedBytes += r.chunk.length;
    if (bufferedBytes > bufferedBytesHighWater) bufferedBytesHighWater = bufferedBytes;
  }
}
function dequeued(r: WireRecord): void {
  if (r.queues > 0 && --r.queues === 0) bufferedBytes -= r.chunk.length;
}
/**
 * The size of the rows lately seen (a maximum decaying by 1/1000 a row): database pages are cut to
 * PAGE_BYTES by it. A page of 1,000 rows of 512 KiB tool results is half a gigabyte of strings, which
 * a stream falling back after its byte bound, or the hub after the hand-over's, read at once and ran
 * V8 out of heap (10 tails of 512 KiB records). 1 MiB: a stream holds its page's records while it
 * sends them, so ten streams catching up hold ten pages (with 4 MiB pages that was 40 MB of records,
 * and as much again in their text and parsed JSON while a page is read); 1,000 rows of 1 KiB still
 * make one page.
 */
let rowBytes = 1024;
const PAGE_BYTES = 1024 * 1024;
function sawRow(bytes: number): void {
  rowBytes = Math.max(bytes, rowBytes * 0.999, 256);
}
function sawRows(rows: readonly StoredLogRow[]): void {
  for (const r of rows) sawRow(r.approxBytes);
}

/** Bytes of records queued for live streams (each record once), now and at most so far (for tests). */
export function streamBufferedBytes(): { now: number; highWater: number } {
  return { now: bufferedBytes, highWater: bufferedBytesHighWater };
}

/** The largest queue any stream of this process has held. */
export function streamBufferHighWater(): number {
  return bufferHighWater;
}

/** Filter fields of a row (StoredLogRow and WireRecord both have them). */
interface Filterable {
  readonly source: string;
  readonly teamId: string;
  readonly level: string;
  readonly intent: string;
  readonly traceId: string;
}

export function rowMatches(f: LogRowFilter, r: Filterable): boolean {
  return (
    (f.agentIds.length === 0 || f.agentIds.includes(r.source)) &&
    (f.teamIds.length === 0 || f.teamIds.includes(r.teamId)) &&
    (f.levels.length === 0 || f.levels.includes(r.level)) &&
    (f.intents.length === 0 || f.intents.includes(r.intent)) &&
    (f.traceId === '' || f.traceId === r.traceId)
  );
}

/**
 * What a queue or the window leaves in a slot it has moved past (they compact only now and then): the
 * record itself would otherwise stay reachable until then - up to 1,024 of them, 512 MB of 512 KiB
 * tool results.
 */
const TAKEN: WireRecord = { seq: -1, source: '', teamId: '', level: '', intent: '', traceId: '', chunk: new Uint8Array(0), queues: 0 };

/** What take() returns from an empty queue (never written to). */
const NOTHING: WireRecord[] = [];

/** A filter that matches every row. */
function matchesAll(f: LogRowFilter): boolean {
  return f.agentIds.length === 0 && f.teamIds.length === 0 && f.levels.length === 0 && f.intents.length === 0 && f.traceId === '';
}

class Subscriber {
  /** Shared WireRecords (never copies), ascending by seq; `qHead` is the first not yet taken. */
  queue: WireRecord[] = [];
  private qHead = 0;
  overflowed = false;
  /** Counted in the hub's catchingUp since its overflow, until its stream takes the count over (or ends). */
  catchUpCounted = false;
  /** Set when the database became unreachable: the stream ends with this error (UNAVAILABLE). */
  failure: Error | null = null;
  /** Records pushed during the current fan-out (to wake once and count once). */
  added = 0;
  /** Hub head at the last fan-out this subscriber took part in. */
  position: number;
  private waker: (() => void) | null = null;

  /** Bytes of the records in this queue. */
  bytes = 0;

  constructor(
    readonly filter: LogRowFilter,
    readonly attachedAt: number,
    private readonly limit: number,
    private readonly limitBytes: number,
  ) {
    this.position = attachedAt;
  }

  get length(): number {
    return this.queue.length - this.qHead;
  }

  /** Called by the hub during a fan-out. Returns false when this push overflowed the queue (queue dropped). */
  push(r: WireRecord): boolean {
    const n = this.queue.length - this.qHead;
    const size = r.chunk.length;
    // Past the count, or past the bytes of this queue or of all queues (a record not yet queued
    // anywhere adds its bytes) - but an empty queue takes one record, however large.
    if (n >= this.limit || (n > 0 && (this.bytes + size > this.limitBytes || (r.queues === 0 && bufferedBytes + size > this.limitBytes)))) {
      // Everything queued goes, including this fan-out's pushes (which the hub counts in at its end).
      bufferedTotal -= n;
      for (let i = this.qHead; i < this.queue.length; i++) dequeued(this.queue[i]!);
      this.queue = [];
      this.qHead = 0;
      this.added = 0;
      this.bytes = 0;
      this.overflowed = true;
      return false;
    }
    this.queue.push(r);
    this.bytes += size;
    enqueued(r);
    this.added++;
    return true;
  }

  take(maxRecords: number, maxBytes: number): WireRecord[] {
    const q = this.queue;
    const start = this.qHead;
    if (start === q.length) return NOTHING;
    let i = start;
    let bytes = 0;
    while (i < q.length && i - start < maxRecords) {
      const b = q[i]!.chunk.length;
      if (i > start && bytes + b > maxBytes) break;
      bytes += b;
      i++;
    }
    let out: WireRecord[];
    if (start === 0 && i === q.length) {
      // All of it (the common case: a wake takes what the fan-outs queued): the queue array itself
      // becomes the batch, no copy.
      out = q;
    } else {
      out = q.slice(start, i);
      for (let k = start; k < i; k++) q[k] = TAKEN;
    }
    for (const r of out) {
      this.bytes -= r.chunk.length;
      dequeued(r);
    }
    if (i === q.length) {
      this.queue = [];
      this.qHead = 0;
    } else if (i > 1024 && i * 2 > q.length) {
      this.queue = q.slice(i);
      this.qHead = 0;
    } else {
      this.qHead = i;
    }
    bufferedTotal -= out.length;
    return out;
  }

  release(): void {
    const n = this.queue.length - this.qHead;
    if (n > 0) {
      bufferedTotal -= n;
      for (let i = this.qHead; i < this.queue.length; i++) dequeued(this.queue[i]!);
    }
    this.bytes = 0;
    this.queue = [];
    this.qHead = 0;
    this.wake();
  }

  wake(): void {
    const w = this.waker;
    this.waker = null;
    w?.();
  }

  private timer: NodeJS.Timeout | null = null;

  /**
   * Resolves on new data/overflow, after `ms`, or on wake() (the stream wakes it when one of its
   * signals aborts). One timer per subscriber, restarted by each wait: it fires only when `ms` passed
   * since the latest wait began, and then wakes whatever wait is pending (none: no-op).
   */
  wait(ms: number, signals: readonly AbortSignal[]): Promise<void> {
    if (this.length > 0 || this.overflowed || this.failure) return Promise.resolve();
    for (const s of signals) if (s.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.waker = resolve;
      if (this.timer === null) this.timer = setTimeout(() => this.wake(), ms);
      else this.timer.refresh();
    });
  }

  /** Stops the keepalive timer (the stream is done with this subscriber). */
  dispose(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

/**
 * Subscribers indexed by their most selective constraint, so a row is checked only against the
 * subscribers that could match it: trace id, else agent ids (one entry per id; a row has one source,
 * so a subscriber is visited at most once per row), else team ids, else the rest (level/intent-only
 * and unfiltered streams).
 */
class SubscriberIndex {
  readonly byTrace = new Map<string, Set<Subscriber>>();
  readonly byAgent = new Map<string, Set<Subscriber>>();
  readonly byTeam = new Map<string, Set<Subscriber>>();
  readonly rest = new Set<Subscriber>();

  add(s: Subscriber): void {
    for (const [map, key] of this.slots(s)) {
      if (!map) {
        this.rest.add(s);
        continue;
      }
      let set = map.get(key);
      if (!set) map.set(key, (set = new Set()));
      set.add(s);
    }
  }

  delete(s: Subscriber): void {
    for (const [map, key] of this.slots(s)) {
      if (!map) {
        this.rest.delete(s);
        continue;
      }
      const set = map.get(key);
      if (!set) continue;
      set.delete(s);
      if (set.size === 0) map.delete(key);
    }
  }

  private slots(s: Subscriber): [Map<string, Set<Subscriber>> | null, string][] {
    const f = s.filter;
    if (f.traceId !== '') return [[this.byTrace, f.traceId]];
    if (f.agentIds.length > 0) return [...new Set(f.agentIds)].map((a) => [this.byAgent, a] as [Map<string, Set<Subscriber>>, string]);
    if (f.teamIds.length > 0) return [...new Set(f.teamIds)].map((t) => [this.byTeam, t] as [Map<string, Set<Subscriber>>, string]);
    return [[null, '']];
  }
}

export class StreamHub {
  private head = -1;
  private target = 0;
  private pumping = false;
  private stopped = false;
  private readonly subs = new Set<Subscriber>();
  private readonly index = new SubscriberIndex();
  /** Subscribers that received records in the current fan-out. */
  private readonly touched: Subscriber[] = [];
  /** Handed-over commits not yet fanned out, in commit order. */
  private pending: PendingCommit[] = [];
  private pendingRows = 0;
  private pendingBytes = 0;
  /** When the hub last read rows to fan out (performance.now()). */
  private lastWakeAt = Number.NEGATIVE_INFINITY;
  /** Streams with records queued since they were last woken. */
  private readonly unwoken = new Set<Subscriber>();
  private wakeTimer: NodeJS.Timeout | null = null;
  /** Event-loop utilization since the previous fan-out, smoothed (0..1): how saturated this process is. */
  private busy = 0;
  private eluMark = performance.eventLoopUtilization();
  private pushed = 0;
  private unsubscribe: (() => void) | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private polling = false;
  /**
   * Set while the database is unreachable (a read of the hub failed UNAVAILABLE): open streams end
   * UNAVAILABLE, so their clients learn of the outage and resume by cursor (here or on another
   * replica), and new streams are refused until a read succeeds again.
   */
  private unavailable: UnavailableError | null = null;
  private readyWaiters: (() => void)[] = [];
  private readonly log: Logger;
  private readonly pageSize: number;
  private readonly maxRecords: number;
  private readonly maxBytes: number;
  private readonly bufferBytes: number;
  private readonly handoverBytes: number;
  /**
   * The recent window: wire records of the latest fan-outs, ascending by seq, from index wStart; it
   * holds EVERY committed row with windowFrom < seq <= head (a fan-out that does not encode every row
   * empties it and moves windowFrom to the new head).
   */
  private window: WireRecord[] = [];
  private wStart = 0;
  private windowFrom = 0;
  private windowBytes = 0;
  private readonly windowLimit: number;
  /** Bytes queued for live streams, each queue and all together: half the streams share, so a stream that overflows is still inside the window. */
  private readonly queueBytes: number;
  /** Streams behind the hub reading the window or the database (kept window while > 0). */
  private catchingUp = 0;
  /** Unfiltered subscribers attached (every row is encoded for them anyway). */
  private unfiltered = 0;
  /** The pages allowance: bytes of stream database pages being read and encoded now, and of shared pages kept. */
  private pageBytesInUse = 0;
  private readonly pageAllowance: number;
  private readonly pageWaiters: (() => void)[] = [];
  /**
   * Shared pages: unfiltered database pages streams read lately (catching up, or resuming by cursor),
   * each the complete range (after, position], oldest first, kept within the pages allowance while
   * used. Streams close behind each other take their records here instead of reading and encoding
   * the same rows again; two streams at the same cursor share one read (`reading`).
   */
  private shared: SharedPage[] = [];
  private sharedBytes = 0;
  private readonly reading = new Map<number, Promise<SharedPage>>();
  private sharedTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly reader: LogReader,
    private readonly commits: CommitSource,
    private readonly opts: StreamHubOptions,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'stream-hub' });
    this.pageSize = opts.pageSize ?? 1000;
    this.maxRecords = opts.maxRecordsPerBatch ?? 500;
    this.maxBytes = opts.maxBytesPerBatch ?? 1_000_000;
    this.bufferBytes = opts.bufferBytes ?? Number.POSITIVE_INFINITY;
    this.handoverBytes = opts.handoverBytes ?? Number.POSITIVE_INFINITY;
    // Unbounded budgets (tests, embedded) keep a window as large as a default pod's.
    this.windowLimit = Number.isFinite(this.bufferBytes) ? this.bufferBytes : 16 * 1024 * 1024;
    this.queueBytes = this.bufferBytes / 2;
    this.pageAllowance = Math.max(2 * PAGE_BYTES, Number.isFinite(this.bufferBytes) ? this.bufferBytes / 2 : 0);
  }

  /** Rows per database page: pageSize, fewer when rows are large (PAGE_BYTES a page). */
  private pageRows(): number {
    return Math.max(1, Math.min(this.pageSize, Math.floor(PAGE_BYTES / rowBytes)));
  }

  /** Subscribes to commits and learns the current head (retrying in the background while the database is down). */
  start(): void {
    if (this.unsubscribe || this.stopped) return;
    this.unsubscribe = this.commits.onCommit((c) => {
      if (c.committed) this.hold(c.committed, c.lastSeq);
      this.advance(c.lastSeq);
    });
    // Safety net for notifications lost while a LISTEN connection reconnects: poll the head.
    const pollMs = Math.max(500, Math.min(this.opts.keepaliveMs, 5000));
    this.pollTimer = setInterval(() => {
      // One poll at a time: a slow database (a lock on log_entries) must not pile up pool connections.
      if (this.head < 0 || this.pumping || this.polling) return;
      this.polling = true;
      this.reader
        .maxSeq()
        .then(
          (m) => {
            this.setAvailable();
            this.advance(m);
          },
          (err: unknown) => {
            this.log.debug({ err }, 'head poll failed');
            if (err instanceof UnavailableError) this.setUnavailable(err);
          },
        )
        .finally(() => {
          this.polling = false;
        });
    }, pollMs);
    this.pollTimer.unref();
    void this.init();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    this.unwoken.clear();
    for (const s of this.subs) {
      s.release();
      s.dispose();
      this.index.delete(s);
    }
    this.subs.clear();
    this.unfiltered = 0;
    this.windowReset(this.head);
    this.evictShared(0);
    if (this.sharedTimer !== null) clearInterval(this.sharedTimer);
    this.sharedTimer = null;
    subscribersGauge.set(0);
  }

  /** No stream attached and none catching up: committed rows need not be read, held or fanned out. */
  private get idle(): boolean {
    return this.subs.size === 0 && this.catchingUp === 0;
  }

  /** The newest seq fanned out (-1 before the first successful read). */
  get headSeq(): number {
    return this.head;
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  private async init(): Promise<void> {
    try {
      const m = await this.reader.maxSeq();
      if (this.stopped) return;
      this.head = Math.max(this.head, m);
      this.target = Math.max(this.target, m);
      this.windowReset(this.head);
      hubHeadGauge.set(this.head);
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const w of waiters) w();
      this.log.debug({ head: this.head }, 'stream hub ready');
      void this.pump();
    } catch (err) {
      this.log.warn({ err }, 'stream hub cannot read the log head yet; retrying');
      this.retryTimer = setTimeout(() => void this.init(), 1000);
      this.retryTimer.unref();
    }
  }

  private setUnavailable(cause: UnavailableError): void {
    if (this.unavailable || this.stopped) return;
    this.unavailable = new UnavailableError('database unavailable: resume with the last cursor', { cause });
    this.log.warn({ streams: this.subs.size }, 'database unavailable: ending live streams (clients resume by cursor)');
    for (const s of this.subs) {
      s.failure = this.unavailable;
      s.wake();
    }
  }

  private setAvailable(): void {
    if (!this.unavailable) return;
    this.unavailable = null;
    this.log.info('database available again: accepting streams');
  }

  /**
   * How long streams with queued records wait to be woken together. Each wake costs one response
   * (framing, a socket write) however few records it carries: with many streams, at most one wake
   * per subscribers/20 ms (1,000 streams: 50 ms; one stream: none). When the process is saturated
   * (event-loop utilization above 1/2, as under a burst with many tails), the window widens up to
   * 250 ms, so fan-out work grows with the number of streams rather than with the commit rate and
   * ingest keeps its share of the CPU; deliveries then come in fewer, larger responses.
   */
  private coalesceMs(): number {
    const base = Math.min(MAX_COALESCE_MS, this.subs.size / 20);
    if (base < 1) return base;
    const load = Math.max(0, (this.busy - 0.5) * 2);
    const ms = Math.min(MAX_SATURATED_COALESCE_MS, base + (MAX_SATURATED_COALESCE_MS - base) * load * load);
    coalesceGauge.set(ms / 1000);
    return ms;
  }

  private scheduleWake(): void {
    if (this.unwoken.size === 0 || this.wakeTimer !== null) return;
    const wait = this.coalesceMs() - (performance.now() - this.lastWakeAt);
    if (wait < 1) this.wakeAll();
    else this.wakeTimer = setTimeout(() => this.wakeAll(), wait);
  }

  private wakeAll(): void {
    if (this.wakeTimer !== null) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    this.lastWakeAt = performance.now();
    this.sampleBusy();
    for (const s of this.unwoken) s.wake();
    this.unwoken.clear();
  }

  private sampleBusy(): void {
    const now = performance.eventLoopUtilization();
    const d = performance.eventLoopUtilization(now, this.eluMark);
    this.eluMark = now;
    // Smoothed over a few fan-outs (windows are 1-250 ms: one sample alone is noise).
    if (d.idle + d.active >= 1) this.busy = this.busy * 0.7 + d.utilization * 0.3;
  }

  /** Keeps a handed-over commit for the next fan-out (only while someone is listening, and bounded). */
  private hold(rows: CommittedRows, lastSeq: number): void {
    if (this.idle || lastSeq <= this.head || rows.rows.length === 0) return;
    const bytes = committedBytes(rows);
    if (this.pendingRows + rows.rows.length > MAX_PENDING_ROWS || (this.pending.length > 0 && this.pendingBytes + bytes > this.handoverBytes)) {
      // Far behind: the database has it all; the hand-over resumes once the hub has caught up.
      this.dropAllPending();
      return;
    }
    this.pending.push({ prevSeq: rows.prevSeq, lastSeq, rows, bytes });
    this.pendingRows += rows.rows.length;
    this.pendingBytes += bytes;
    handoverBytesGauge.set(this.pendingBytes);
  }

  private dropAllPending(): void {
    this.pending = [];
    this.pendingRows = 0;
    this.pendingBytes = 0;
    handoverBytesGauge.set(0);
  }

  /**
   * The rows after head that handed-over commits cover, and the head after them: contiguous commits
   * whose prevSeq <= head (nothing committed between head and their rows). null when the next range
   * must come from the database.
   */
  private takeHanded(): { rows: HandedRow[]; newHead: number } | null {
    let head = this.head;
    const out: HandedRow[] = [];
    while (this.pending.length > 0) {
      const p = this.pending[0]!;
      if (p.lastSeq <= head) {
        this.dropPending();
        continue;
      }
      if (p.prevSeq > head) break; // a commit we were not handed lies between: read it
      const { rows, seqs } = p.rows;
      for (let i = 0; i < rows.length; i++) {
        const seq = seqs[i]!;
        if (seq <= head) continue;
        const row = rows[i]!;
        out.push({ seq, row, source: row.source, teamId: row.teamId, level: row.level, intent: row.intent, traceId: row.traceId });
      }
      head = p.lastSeq;
      this.dropPending();
      if (out.length >= this.pageSize * 5) break;
    }
    return head > this.head ? { rows: out, newHead: head } : null;
  }

  private dropPending(): void {
    const p = this.pending.shift();
    if (p) {
      this.pendingRows -= p.rows.rows.length;
      this.pendingBytes -= p.bytes;
      handoverBytesGauge.set(this.pendingBytes);
    }
  }

  private advance(seq: number): void {
    if (seq > this.target) this.target = seq;
    if (this.head >= 0 && this.target > this.head) void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    try {
      while (!this.stopped && this.target > this.head) {
        const upTo = this.target;
        if (this.idle) {
          // Nobody to fan out to: move head without reading the rows back (ingest would otherwise pay
          // a full read and JSON parse of every committed row). A stream attaching later starts at
          // the new head and reads everything up to it from the database itself.
          this.dropAllPending();
          this.fanOut([], upTo);
          continue;
        }
        const handed = this.takeHanded();
        if (handed) {
          hubRowsHanded.inc(handed.rows.length);
          this.fanOut(handed.rows, handed.newHead);
          continue;
        }
        // Read up to the next handed-over commit (or everything notified so far).
        const readTo = this.pending.length > 0 ? Math.min(upTo, this.pending[0]!.prevSeq) : upTo;
        const page = this.pageRows();
        const rows = await this.reader.readRange(NO_FILTER, { afterSeq: this.head, upToSeq: readTo }, page);
        if (this.stopped) return;
        sawRows(rows);
        // Rows up to `readTo` are committed (notifications and max(seq) only report commits), so a
        // short page means the whole range has been read.
        this.setAvailable();
        const newHead = rows.length === page ? rows[rows.length - 1]!.seq : readTo;
        hubRowsRead.inc(rows.length);
        if (newHead > this.head) this.fanOut(rows, newHead);
      }
    } catch (err) {
      this.log.warn({ err }, 'stream hub read failed; retrying');
      if (err instanceof UnavailableError) this.setUnavailable(err);
      this.retryTimer = setTimeout(() => void this.pump(), 1000);
      this.retryTimer.unref();
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Synchronous: offers rows to every matching subscriber and moves head, with no await in between.
   * Each row is checked only against the subscribers its index slots name, and converted and encoded
   * once (on its first match); every matching subscriber queues the same WireRecord.
   */
  private fanOut(rows: readonly HubRow[], newHead: number): void {
    // The window is kept while every row is encoded anyway (an unfiltered stream) or a stream behind
    // the hub needs it; otherwise it is emptied (it must hold every row of its range or none).
    const keep = this.unfiltered > 0 || this.catchingUp > 0;
    if (this.subs.size > 0 || keep) {
      const touched = this.touched;
      const idx = this.index;
      this.pushed = 0;
      for (const row of rows) {
        sawRow('row' in row ? 200 + row.row.context.length + row.row.message.length : row.approxBytes);
        let wire: WireRecord | null = null;
        if (row.traceId !== '') wire = this.offer(idx.byTrace.get(row.traceId), row, wire);
        wire = this.offer(idx.byAgent.get(row.source), row, wire);
        wire = this.offer(idx.byTeam.get(row.teamId), row, wire);
        wire = this.offer(idx.rest, row, wire);
        if (keep) this.windowPush(wire ?? wireOf(row));
      }
      bufferedTotal += this.pushed;
      for (const s of touched) {
        if (s.overflowed) continue;
        s.added = 0;
        if (s.length > bufferHighWater) {
          bufferHighWater = s.length;
          highWaterGauge.set(bufferHighWater);
        }
      }
      for (const s of this.subs) {
        if (s.overflowed) {
          if (matchesAll(s.filter)) this.unfiltered--;
          // It will catch up from its cursor: keep the window complete from now on (its stream may
          // not run again before the next fan-out).
          this.catchingUp++;
          s.catchUpCounted = true;
          this.subs.delete(s);
          this.index.delete(s);
          this.unwoken.delete(s);
          fallbacksCounter.inc();
          s.wake();
        } else {
          s.position = newHead;
        }
      }
      // Queue now, respond later: each wake costs one response (framing, a socket write) however few
      // records it carries, so streams are woken together once per coalescing window - except a
      // stream whose queue is half full, in records or in bytes, which is woken at once (the window
      // never overflows a queue: 250 ms of 512 KiB tool results is more than the byte bound).
      const early = this.opts.bufferLimit / 2;
      const earlyBytes = this.queueBytes / 2;
      for (const s of touched) {
        if (s.overflowed) continue; // detached above, already woken
        if (s.length >= early || s.bytes >= earlyBytes || bufferedBytes >= earlyBytes) {
          this.unwoken.delete(s);
          s.wake();
        } else this.unwoken.add(s);
      }
      touched.length = 0;
      this.scheduleWake();
    }
    if (!keep) this.windowReset(newHead);
    windowBytesGauge.set(this.windowBytes);
    subscribersGauge.set(this.subs.size);
    this.head = newHead;
    hubHeadGauge.set(newHead);
  }

  private windowPush(r: WireRecord): void {
    this.window.push(r);
    this.windowBytes += r.chunk.length;
    // Oldest out first; the newest record stays, however large.
    while (this.windowBytes > this.windowLimit && this.window.length - this.wStart > 1) {
      const old = this.window[this.wStart]!;
      this.window[this.wStart++] = TAKEN;
      this.windowBytes -= old.chunk.length;
      this.windowFrom = old.seq;
    }
    if (this.wStart > 1024 && this.wStart * 2 > this.window.length) {
      this.window = this.window.slice(this.wStart);
      this.wStart = 0;
    }
  }

  private windowReset(head: number): void {
    if (this.window.length > 0) {
      this.window = [];
      this.wStart = 0;
      this.windowBytes = 0;
    }
    this.windowFrom = head;
  }

  /**
   * The records of (after, upTo] matching `filter`, from the window, cut like a response, and the
   * position they reach; null when the window no longer holds the rows right after `after`.
   * upTo <= head (the window is complete up to head).
   */
  private fromWindow(filter: LogRowFilter, after: number, upTo: number): StreamBatch | null {
    if (after < this.windowFrom) return null;
    const w = this.window;
    let lo = this.wStart;
    let hi = w.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (w[mid]!.seq <= after) lo = mid + 1;
      else hi = mid;
    }
    const out: WireRecord[] = [];
    let bytes = 0;
    let position = upTo;
    for (let i = lo, scanned = 0; i < w.length; i++, scanned++) {
      const r = w[i]!;
      if (r.seq > upTo) break;
      if (scanned >= 10_000) {
        position = w[i - 1]!.seq; // a long run of rows the filter skips: go on in the next step
        break;
      }
      if (!rowMatches(filter, r)) continue;
      if (out.length >= this.maxRecords || (out.length > 0 && bytes + r.chunk.length > this.maxBytes)) {
        position = out[out.length - 1]!.seq;
        break;
      }
      out.push(r);
      bytes += r.chunk.length;
    }
    catchupWindow.inc(out.length);
    return { records: out, position };
  }

  /**
   * Waits until a stream's database page of about `bytes` fits in the pages allowance (a page always
   * fits when no other is being read), takes it, and returns its release.
   */
  private async pageSlot(bytes: number, signal: AbortSignal): Promise<() => void> {
    const want = Math.min(bytes, this.pageAllowance);
    // Shared pages are a cache: they make room for a read before it waits.
    this.evictShared(this.pageAllowance - this.pageBytesInUse - want);
    while (this.pageBytesInUse > 0 && this.pageBytesInUse + this.sharedBytes + want > this.pageAllowance && !signal.aborted && !this.stopped) {
      pageWaitCounter.inc();
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.pageWaiters.push(done);
        signal.addEventListener('abort', done, { once: true });
      });
      this.evictShared(this.pageAllowance - this.pageBytesInUse - want);
    }
    this.pageBytesInUse += want;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.pageBytesInUse -= want;
      const waiters = this.pageWaiters.splice(0);
      for (const w of waiters) w();
    };
  }

  /**
   * The records of (after, upTo] matching `filter` from a shared page holding the rows right after
   * `after`, cut like responses; null when no shared page does.
   */
  private fromShared(filter: LogRowFilter, after: number, upTo: number): { batches: StreamBatch[]; position: number } | null {
    for (const p of this.shared) {
      if (p.after <= after && after < p.position) {
        p.usedAt = performance.now();
        return this.sliceShared(p, filter, after, upTo);
      }
    }
    return null;
  }

  /** The records of a shared page after `after`, up to `upTo`, matching `filter`, cut like responses. */
  private sliceShared(p: SharedPage, filter: LogRowFilter, after: number, upTo: number, read = false): { batches: StreamBatch[]; position: number } {
    const position = Math.min(p.position, upTo);
    const records = p.records.filter((r) => r.seq > after && r.seq <= position && rowMatches(filter, r));
    if (!read) catchupShared.inc(records.length);
    return { batches: this.cut(records, position, false), position };
  }

  /**
   * Reads the unfiltered page after `after` (up to `upTo`) for every stream that wants it: a read
   * already under way from the same cursor is joined, not repeated. Not cancelled by any one stream
   * (others may wait for it); a stream that goes away stops waiting.
   */
  private async readShared(after: number, upTo: number, signal: AbortSignal): Promise<{ page: SharedPage; read: boolean }> {
    let p = this.reading.get(after);
    const read = p === undefined;
    if (!p) {
      const page = this.pageRows();
      p = this.withinPages(page * rowBytes, NEVER, async () => {
        const rows = await this.reader.readRange(NO_FILTER, { afterSeq: after, upToSeq: upTo }, page);
        sawRows(rows);
        catchupDatabase.inc(rows.length);
        const records = rows.map(toWireRecord);
        let bytes = 0;
        for (const r of records) bytes += r.chunk.length;
        const shared: SharedPage = { after, position: rows.length === page ? rows[rows.length - 1]!.seq : upTo, records, bytes, usedAt: performance.now() };
        return shared;
      }).then((shared) => {
        // Its slot is released: the page now takes room as a shared page.
        this.keepShared(shared);
        return shared;
      });
      const reading = p;
      this.reading.set(after, reading);
      void reading.then(
        () => this.reading.delete(after),
        () => this.reading.delete(after),
      );
    }
    if (signal.aborted) throw new CancelledError('the stream was cancelled');
    let onAbort: (() => void) | undefined;
    try {
      const page = await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          onAbort = () => reject(new CancelledError('the stream was cancelled', { cause: signal.reason }));
          signal.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
      return { page, read };
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  /** Keeps a page for other streams, within what the pages allowance leaves (the oldest go first). */
  private keepShared(p: SharedPage): void {
    if (this.stopped || p.records.length === 0) return;
    this.shared.push(p);
    this.sharedBytes += p.bytes;
    this.evictShared(this.pageAllowance - this.pageBytesInUse);
    this.sharedTimer ??= setInterval(() => this.expireShared(), SHARED_PAGE_MS);
    this.sharedTimer.unref();
  }

  /** Drops the oldest shared pages until they take at most `room` bytes. */
  private evictShared(room: number): void {
    while (this.sharedBytes > Math.max(0, room) && this.shared.length > 0) {
      const old = this.shared.shift()!;
      this.sharedBytes -= old.bytes;
    }
    sharedBytesGauge.set(this.sharedBytes);
  }

  /** Drops shared pages no stream used lately (the timer stops with the last of them). */
  private expireShared(): void {
    const old = performance.now() - SHARED_PAGE_MS;
    const kept = this.shared.filter((p) => p.usedAt >= old);
    if (kept.length !== this.shared.length) {
      this.shared = kept;
      this.sharedBytes = kept.reduce((n, p) => n + p.bytes, 0);
      sharedBytesGauge.set(this.sharedBytes);
    }
    if (this.shared.length === 0 && this.sharedTimer !== null) {
      clearInterval(this.sharedTimer);
      this.sharedTimer = null;
    }
  }

  /** One database page of a stream (within the pages allowance), encoded and cut into responses. */
  private async readPage(filter: LogRowFilter, after: number, upTo: number, signal: AbortSignal): Promise<{ batches: StreamBatch[]; position: number; full: boolean }> {
    const kept = this.fromShared(filter, after, upTo);
    if (kept) return { ...kept, full: kept.position < upTo };
    if (matchesAll(filter)) {
      const { page, read } = await this.readShared(after, upTo, signal);
      const { batches, position } = this.sliceShared(page, filter, after, upTo, read);
      return { batches, position, full: position < upTo };
    }
    const page = this.pageRows();
    return this.withinPages(page * rowBytes, signal, async () => {
      const rows = await this.reader.readRange(filter, { afterSeq: after, upToSeq: upTo }, page, signal);
      sawRows(rows);
      catchupDatabase.inc(rows.length);
      const full = rows.length === page;
      const position = full ? rows[rows.length - 1]!.seq : upTo;
      return { batches: this.chunks(rows, position), position, full };
    });
  }

  /** Runs `read` (a database read and its encoding) holding about `bytes` of the pages allowance. */
  private async withinPages<T>(bytes: number, signal: AbortSignal, read: () => Promise<T>): Promise<T> {
    const release = await this.pageSlot(bytes, signal);
    try {
      return await read();
    } finally {
      release();
    }
  }

  /** Queues `row` on the matching subscribers of `set`; encodes it on the first match. Returns its wire form, if made. */
  private offer(set: Set<Subscriber> | undefined, row: HubRow, wire: WireRecord | null): WireRecord | null {
    if (set === undefined) return wire;
    for (const s of set) {
      if (s.overflowed || !rowMatches(s.filter, row)) continue;
      wire ??= wireOf(row);
      if (s.added === 0) this.touched.push(s);
      if (s.push(wire)) this.pushed++;
    }
    return wire;
  }

  private async waitReady(signal: AbortSignal): Promise<void> {
    if (this.head >= 0) return;
    if (this.stopped) throw new UnavailableError('the stream hub is stopped');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new UnavailableError('the log is not readable yet (database unavailable)'));
      }, 5000);
      const onAbort = (): void => {
        cleanup();
        reject(new CancelledError('cancelled while waiting for the database', { cause: signal.reason }));
      };
      const onReady = (): void => {
        cleanup();
        resolve();
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.readyWaiters = this.readyWaiters.filter((w) => w !== onReady);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.readyWaiters.push(onReady);
    });
  }

  private attach(filter: LogRowFilter): Subscriber {
    const s = new Subscriber(filter, this.head, this.opts.bufferLimit, this.queueBytes);
    this.subs.add(s);
    this.index.add(s);
    if (matchesAll(filter)) this.unfiltered++;
    subscribersGauge.set(this.subs.size);
    return s;
  }

  private detach(s: Subscriber): void {
    if (this.subs.has(s) && matchesAll(s.filter)) this.unfiltered--;
    this.subs.delete(s);
    this.index.delete(s);
    this.unwoken.delete(s);
    s.dispose();
    s.release();
    subscribersGauge.set(this.subs.size);
  }

  /** A stream's own database rows (history, catch-up), encoded and cut into responses. */
  private chunks(rows: StoredLogRow[], endPosition: number): StreamBatch[] {
    return this.cut(rows.map(toWireRecord), endPosition, true);
  }

  /** Records cut into responses; the last carries `endPosition`. `owned`: the records are this stream's alone. */
  private cut(records: WireRecord[], endPosition: number, owned: boolean): StreamBatch[] {
    const out: StreamBatch[] = [];
    let i = 0;
    while (i < records.length) {
      let n = 0;
      let bytes = 0;
      while (i + n < records.length && n < this.maxRecords) {
        const b = records[i + n]!.chunk.length;
        if (n > 0 && bytes + b > this.maxBytes) break;
        bytes += b;
        n++;
      }
      const part = records.slice(i, i + n);
      i += n;
      out.push({ records: part, position: i === records.length ? endPosition : part[part.length - 1]!.seq, owned });
    }
    return out;
  }

  /**
   * Follows the log for one stream: history (tail or after a cursor), then live, falling back to the
   * database whenever the live queue overflows. Ends (after a final batch carrying the position)
   * when `closing` aborts; returns silently when `signal` aborts. Releases everything in `finally`.
   */
  async *follow(req: FollowRequest, signal: AbortSignal, closing: AbortSignal): AsyncGenerator<StreamBatch, void, undefined> {
    await this.waitReady(signal);
    if (this.unavailable) {
      // The database decides: still down -> UNAVAILABLE (typed by the reader); back -> serve.
      await this.reader.maxSeq(signal);
      this.setAvailable();
    }
    let sub: Subscriber | null = this.attach(req.filter);
    const signals = [signal, closing];
    // Registered once per stream (not per wait): an abort wakes whichever subscriber is current.
    const onAbort = (): void => sub?.wake();
    signal.addEventListener('abort', onAbort);
    closing.addEventListener('abort', onAbort);
    try {
      let cursor: number;
      let sentAny = false;
      if (req.afterSeq !== null) {
        if (req.afterSeq > sub.attachedAt) {
          // Maybe another replica's newer commit that this hub has not read yet; the database decides.
          const newest = await this.reader.maxSeq(signal);
          if (req.afterSeq > newest) {
            throw new OutOfRangeError('after_cursor', 'cursor is beyond the newest committed record');
          }
        }
        cursor = req.afterSeq;
      } else if (req.tail > 0) {
        const at = sub.attachedAt;
        const batches = await this.withinPages(Math.min(req.tail, this.pageSize) * rowBytes, signal, async () => this.chunks(await this.reader.tail(req.filter, req.tail, at, signal), at));
        for (const b of batches) {
          yield b;
          sentAny = true;
        }
        cursor = sub.attachedAt;
      } else {
        cursor = sub.attachedAt;
      }

      for (;;) {
        // History (or catch-up after a fallback) up to where this subscriber attached.
        while (cursor < sub.attachedAt) {
          if (signal.aborted) return;
          if (closing.aborted) {
            yield { records: [], position: cursor, final: true };
            return;
          }
          const fromWindow = this.fromWindow(req.filter, cursor, sub.attachedAt);
          if (fromWindow) {
            if (fromWindow.records.length > 0) {
              yield fromWindow;
              sentAny = true;
            }
            cursor = fromWindow.position;
            continue;
          }
          const { batches, position } = await this.readPage(req.filter, cursor, sub.attachedAt, signal);
          for (const b of batches) {
            yield b;
            sentAny = true;
          }
          cursor = position;
        }
        if (!sentAny) {
          // Tell the client where it stands right away (and flush response headers).
          yield { records: [], position: Math.max(cursor, sub.position) };
          sentAny = true;
        }

        // Live.
        for (;;) {
          if (signal.aborted) return;
          if (closing.aborted) {
            yield { records: [], position: Math.max(cursor, sub.position), final: true };
            return;
          }
          if (sub.failure) throw sub.failure;
          if (sub.overflowed) break;
          let records = sub.take(this.maxRecords, this.maxBytes);
          if (records.length > 0 && records[0]!.seq <= cursor) records = records.filter((r) => r.seq > cursor);
          if (records.length > 0) {
            const pos = sub.length === 0 ? Math.max(records[records.length - 1]!.seq, sub.position) : records[records.length - 1]!.seq;
            cursor = pos;
            yield { records, position: pos };
            continue;
          }
          await sub.wait(this.opts.keepaliveMs, signals);
          if (sub.length === 0 && !sub.overflowed && !signal.aborted && !closing.aborted) {
            // Keepalive. With the queue empty, every match up to the subscriber's position was sent.
            cursor = Math.max(cursor, sub.position);
            yield { records: [], position: cursor };
          }
        }

        // Overflow: the queue is gone; catch up from our own cursor - from the hub's window while it
        // still holds the rows after it, else from the database - until we are close to the hub,
        // then attach again (the catch-up above closes the remaining gap). Counted as catching up
        // from the moment of the detach (no fan-out in between), so the window stays complete.
        if (!sub.catchUpCounted) this.catchingUp++; // (an overflow always counts it; kept for safety)
        sub.catchUpCounted = false;
        this.detach(sub);
        sub = null;
        try {
          for (;;) {
            if (signal.aborted) return;
            if (closing.aborted) {
              yield { records: [], position: cursor, final: true };
              return;
            }
            const upTo = this.head;
            if (upTo <= cursor) break;
            const fromWindow = this.fromWindow(req.filter, cursor, upTo);
            if (fromWindow) {
              if (fromWindow.records.length > 0) yield fromWindow;
              cursor = fromWindow.position;
              continue;
            }
            const { batches, position, full } = await this.readPage(req.filter, cursor, upTo, signal);
            for (const b of batches) yield b;
            cursor = position;
            if (!full) break;
          }
        } finally {
          this.catchingUp--;
        }
        sub = this.attach(req.filter);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      closing.removeEventListener('abort', onAbort);
      if (sub?.catchUpCounted) {
        sub.catchUpCounted = false;
        this.catchingUp--;
      }
      if (sub) this.detach(sub);
    }
  }
}
