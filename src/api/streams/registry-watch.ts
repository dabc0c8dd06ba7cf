// The live side of WatchRegistry: ONE registry view per process, shared by every watcher.
//
// While anyone watches, the hub holds the registry in memory (one row per agent) and keeps it current:
// - Commits, on any replica: each commit notification (in process, or LISTEN/NOTIFY from other
//   replicas; src/store/commit-notifier.ts), and a poll every few seconds as a safety net, makes the
//   hub read the agents written since the last revision it read (agent_registry.rev, migration 005:
//   taken under the commit lock, so revision order is commit order and `rev > head` never misses a
//   commit). One read serves every watcher; reads coalesce while one is in flight.
// - Silence: every agent that is not OFFLINE sits in a DeadlineHeap keyed on last_seen +
//   AGENT_OFFLINE_AFTER, with one timer for the earliest deadline. When it fires, the agents past their
//   deadline go OFFLINE: O(log n) per agent that went silent, never a scan of all of them. The clock is
//   the database's (an offset measured on every read), as GetRegistry's as_of is.
//
// A change (src/domain/registry-watch.ts) is encoded once into a RegistryChange and appended to ONE
// shared change log, bounded by bytes. Watchers do not have queues: each keeps a position in the log and
// reads at its own pace, filtering as it reads. The hub never waits for a watcher, so a slow one cannot
// slow ingest, the hub or the others. A watcher whose position fell out of the log (it was too slow)
// gets RESET, a fresh snapshot and LIVE, and continues from there.
//
// A snapshot is taken from the hub's view in the same synchronous step that fixes the watcher's
// position in the log, so the snapshot plus the changes after it are exactly the registry's history:
// no change is missed or repeated at the hand-over.
import type { Logger } from '../../logger.js';
import { CancelledError, UnavailableError } from '../../errors.js';
import { counter, gauge } from '../../metrics.js';
import { DeadlineHeap } from '../../domain/deadline-heap.js';
import {
  changeConcerns,
  changedFields,
  effectiveStatus,
  offlineDeadlineUs,
  viewMatches,
  type AgentView,
  type ChangeField,
  type WatchFilter,
} from '../../domain/registry-watch.js';
import { nowUs, usToTimestamp } from '../../domain/time.js';
import { Agent, AgentStatus, RegistryChange, RegistryChange_Kind } from '../../gen/mycelis/memory/v1/memory.js';
import type { RegistryReader, RegistryRow } from '../../store/registry-reader.js';
import { statusToProto } from '../queries/registry.js';

/** What the hub needs from src/store/commit-notifier.ts. */
export interface CommitTrigger {
  onCommit(cb: () => void): () => void;
}

export interface RegistryWatchOptions {
  readonly offlineAfterMs: number;
  /** A KEEPALIVE is sent when a watcher was sent nothing for this long. */
  readonly keepaliveMs: number;
  /** Bytes of encoded changes the shared log keeps for watchers that are behind. */
  readonly logBytes: number;
  /** Safety-net read of the registry (lost notifications), ms. */
  readonly pollMs?: number;
  /** Rows per read of changed agents. */
  readonly readPage?: number;
  /** How long the view stays loaded after the last watcher left (a page reload need not reload it). */
  readonly lingerMs?: number;
  /** Agents per SNAPSHOT message. */
  readonly snapshotPage?: number;
}

export interface WatchRequest extends WatchFilter {
  readonly snapshot: boolean;
}

const watchersGauge = gauge('mycelis_memory_api_registry_watchers', 'Open WatchRegistry streams.');
const agentsGauge = gauge('mycelis_memory_api_registry_watch_agents', 'Agents in the registry view WatchRegistry keeps in memory (0 while nobody watches).');
const logBytesGauge = gauge('mycelis_memory_api_registry_watch_log_bytes', 'Bytes of registry changes held for watchers that are behind.');
const resetsCounter = counter('mycelis_memory_api_registry_watch_resets_total', 'Watchers that fell behind the change log and were sent a fresh snapshot.');
const changesCounter = counter('mycelis_memory_api_registry_changes_total', 'Registry changes WatchRegistry observed, by cause (a commit, or silence past AGENT_OFFLINE_AFTER).', ['cause']);
const commitChanges = changesCounter.labels({ cause: 'commit' });
const silenceChanges = changesCounter.labels({ cause: 'silence' });

/** An agent of the view: immutable except for its lazily encoded snapshot element. */
interface ViewAgent extends AgentView {
  /** `tag(4, LEN) varint(len) Agent`: one element of RegistryChange.snapshot, encoded on first use. */
  element?: Uint8Array;
}

interface Side {
  readonly teamId: string;
  readonly effective: string;
}

interface LogEntry {
  readonly bytes: Buffer;
  readonly before: Side | null;
  readonly after: Side;
}

/** Memory an entry holds beyond its bytes (objects, array slot), for the byte bound. */
const ENTRY_OVERHEAD = 160;

/** The shared change log: appended by the hub, read by every watcher at its own position. */
class ChangeLog {
  private entries: LogEntry[] = [];
  private start = 0;
  /** Sequence number of entries[start]. */
  firstSeq = 0;
  /** Sequence number the next appended entry gets. */
  nextSeq = 0;
  bytes = 0;

  constructor(private readonly maxBytes: number) {}

  append(e: LogEntry): void {
    this.entries.push(e);
    this.nextSeq++;
    this.bytes += e.bytes.length + ENTRY_OVERHEAD;
    // Past the bound the oldest go (the newest always stays): watchers still behind them start over.
    while (this.bytes > this.maxBytes && this.nextSeq - this.firstSeq > 1) {
      const old = this.entries[this.start]!;
      this.entries[this.start] = undefined as unknown as LogEntry;
      this.start++;
      this.firstSeq++;
      this.bytes -= old.bytes.length + ENTRY_OVERHEAD;
    }
    if (this.start > 1024 && this.start * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.start);
      this.start = 0;
    }
  }

  get(seq: number): LogEntry {
    return this.entries[this.start + (seq - this.firstSeq)]!;
  }
}

class Watcher {
  /** The next log entry to read. */
  position = 0;
  private waker: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  failure: Error | null = null;

  constructor(readonly filter: WatchRequest) {}

  wake(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const w = this.waker;
    this.waker = null;
    w?.();
  }

  /** Resolves on wake() or after `ms`. */
  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waker = resolve;
      this.timer = setTimeout(() => this.wake(), ms);
    });
  }
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

function metaObject(text: string | null): Agent['meta'] {
  if (text === null) return undefined;
  const v = JSON.parse(text) as unknown;
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

export function agentOf(v: AgentView): Agent {
  return {
    agentId: v.agentId,
    teamId: v.teamId,
    status: statusToProto(v.effective),
    reportedStatus: statusToProto(v.reported),
    lastSeen: usToTimestamp(v.lastSeenUs),
    meta: metaObject(v.metaText),
    lastErrorSummary: v.lastErrorSummary,
    statusAt: v.statusAtUs === null ? undefined : usToTimestamp(v.statusAtUs),
  };
}

function snapshotElement(a: ViewAgent): Uint8Array {
  if (a.element === undefined) {
    const body = Agent.encode(agentOf(a)).finish();
    const head = Buffer.from([0x22, ...varint(body.length)]); // field 4 (snapshot), LEN
    a.element = Buffer.concat([head, body]);
  }
  return a.element;
}

function control(kind: RegistryChange_Kind, atUs: number): Buffer {
  return Buffer.from(
    RegistryChange.encode({
      agent: undefined,
      previousStatus: AgentStatus.AGENT_STATUS_UNSPECIFIED,
      kind,
      snapshot: [],
      observedAt: usToTimestamp(atUs),
      changedFields: [],
      previousTeamId: '',
    }).finish(),
  );
}

/** One SNAPSHOT message: the header fields, then the agents' pre-encoded elements (a repeated field concatenates). */
function snapshotMessage(agents: readonly ViewAgent[], atUs: number): Buffer {
  const parts: Uint8Array[] = [control(RegistryChange_Kind.KIND_SNAPSHOT, atUs)];
  for (const a of agents) parts.push(snapshotElement(a));
  return Buffer.concat(parts);
}

function changeMessage(prev: ViewAgent | undefined, next: ViewAgent, fields: readonly ChangeField[], atUs: number): Buffer {
  return Buffer.from(
    RegistryChange.encode({
      agent: agentOf(next),
      previousStatus: prev === undefined ? AgentStatus.AGENT_STATUS_UNSPECIFIED : statusToProto(prev.effective),
      kind: RegistryChange_Kind.KIND_CHANGE,
      snapshot: [],
      observedAt: usToTimestamp(atUs),
      changedFields: [...fields],
      previousTeamId: prev === undefined ? '' : prev.teamId,
    }).finish(),
  );
}

const MAX_SNAPSHOT_BYTES = 1024 * 1024;

export class RegistryWatchHub {
  private state: 'stopped' | 'loading' | 'running' = 'stopped';
  private loading: Promise<void> | null = null;
  private readonly view = new Map<string, ViewAgent>();
  /** The view's agent ids in order, for snapshots (rebuilt only when an agent is added). */
  private sortedIds: string[] | null = null;
  private readonly heap = new DeadlineHeap<string>();
  private log: ChangeLog;
  private readonly watchers = new Set<Watcher>();
  private head = 0;
  /** Database clock minus local clock, µs. */
  private clockOffsetUs = 0;
  private unsubscribe: (() => void) | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private offlineTimer: NodeJS.Timeout | null = null;
  private offlineTimerAt = Number.NaN;
  private lingerTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private pumping = false;
  private again = false;
  private closed = false;
  private readonly log_: Logger;
  private readonly offlineAfterUs: number;
  private readonly readPage: number;
  private readonly snapshotPage: number;

  constructor(
    private readonly reader: RegistryReader,
    private readonly commits: CommitTrigger,
    private readonly opts: RegistryWatchOptions,
    logger: Logger,
  ) {
    this.log_ = logger.child({ component: 'registry-watch' });
    this.offlineAfterUs = opts.offlineAfterMs * 1000;
    this.readPage = opts.readPage ?? 1000;
    this.snapshotPage = opts.snapshotPage ?? 500;
    this.log = new ChangeLog(opts.logBytes);
  }

  /**
   * What the hub holds now (the numbers its gauges show for the process), and how many changes the
   * slowest watcher has yet to read (a watcher its transport blocks stops reading: this grows).
   */
  get stats(): { readonly watchers: number; readonly agents: number; readonly logBytes: number; readonly behind: number } {
    let behind = 0;
    for (const w of this.watchers) behind = Math.max(behind, this.log.nextSeq - w.position);
    return { watchers: this.watchers.size, agents: this.view.size, logBytes: this.log.bytes, behind };
  }

  /** The database's clock, as measured on the latest reads. */
  private dbNowUs(): number {
    return nowUs() + this.clockOffsetUs;
  }

  /**
   * One watcher: optionally a snapshot (SNAPSHOT pages), then LIVE, then the changes that concern it,
   * KEEPALIVE when quiet, and RESET + a fresh snapshot whenever it fell behind. Yields encoded
   * RegistryChange messages. Returns when `signal` or `closing` aborts; releases everything in
   * `finally` (transports call return() on the generator when the client goes away mid-write).
   */
  async *watch(req: WatchRequest, signal: AbortSignal, closing: AbortSignal): AsyncGenerator<Buffer, void, undefined> {
    await this.acquire(signal);
    if (this.state !== 'running') throw new UnavailableError('the registry view is not available (database unavailable)');
    const w = new Watcher(req);
    this.watchers.add(w);
    watchersGauge.set(this.watchers.size);
    const onAbort = (): void => w.wake();
    signal.addEventListener('abort', onAbort);
    closing.addEventListener('abort', onAbort);
    const done = (): boolean => signal.aborted || closing.aborted;
    try {
      // The position and the snapshot are taken together, with no await in between.
      w.position = this.log.nextSeq;
      let pending: ViewAgent[] | null = req.snapshot ? this.capture(req) : null;
      let atUs = this.dbNowUs();
      let reset = false;
      let lastSent = performance.now();
      for (;;) {
        if (pending !== null) {
          if (reset) yield control(RegistryChange_Kind.KIND_RESET, atUs);
          for (const page of this.pages(pending)) {
            if (done()) return;
            yield snapshotMessage(page, atUs);
          }
          pending = null;
        }
        if (done()) return;
        yield control(RegistryChange_Kind.KIND_LIVE, atUs);
        lastSent = performance.now();

        // Live: read the log from our position until we fall behind it.
        for (;;) {
          if (done()) return;
          if (w.failure) throw w.failure;
          if (w.position < this.log.firstSeq) break;
          if (w.position < this.log.nextSeq) {
            const e = this.log.get(w.position);
            w.position++;
            if (changeConcerns(req, e.before, e.after)) {
              yield e.bytes;
              lastSent = performance.now();
            }
            continue;
          }
          const quietMs = performance.now() - lastSent;
          if (quietMs >= this.opts.keepaliveMs) {
            yield control(RegistryChange_Kind.KIND_KEEPALIVE, this.dbNowUs());
            lastSent = performance.now();
            continue;
          }
          await w.wait(this.opts.keepaliveMs - quietMs);
        }

        // Fell behind: start over from a snapshot taken now.
        resetsCounter.inc();
        w.position = this.log.nextSeq;
        pending = this.capture(req);
        atUs = this.dbNowUs();
        reset = true;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      closing.removeEventListener('abort', onAbort);
      w.wake();
      this.watchers.delete(w);
      watchersGauge.set(this.watchers.size);
      if (this.watchers.size === 0) this.linger();
    }
  }

  /** Ends every watcher (their streams end normally) and unloads the view. */
  close(): void {
    this.closed = true;
    for (const w of this.watchers) w.wake();
    this.stop();
  }

  // ---- the view -------------------------------------------------------------------------------

  /** The agents a request's snapshot holds, in agent id order. */
  private capture(f: WatchFilter): ViewAgent[] {
    this.sortedIds ??= [...this.view.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: ViewAgent[] = [];
    for (const id of this.sortedIds) {
      const a = this.view.get(id)!;
      if (viewMatches(f, a.teamId, a.effective)) out.push(a);
    }
    return out;
  }

  private *pages(agents: readonly ViewAgent[]): Generator<ViewAgent[]> {
    let i = 0;
    while (i < agents.length) {
      const page: ViewAgent[] = [];
      let bytes = 0;
      while (i < agents.length && page.length < this.snapshotPage) {
        const b = snapshotElement(agents[i]!).length;
        if (page.length > 0 && bytes + b > MAX_SNAPSHOT_BYTES) break;
        bytes += b;
        page.push(agents[i]!);
        i++;
      }
      yield page;
    }
  }

  private async acquire(signal: AbortSignal): Promise<void> {
    if (this.closed) throw new UnavailableError('the registry watch is closed');
    if (this.lingerTimer !== null) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
    if (this.state === 'running') return;
    this.loading ??= this.load().finally(() => {
      this.loading = null;
    });
    const loading = this.loading;
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(new CancelledError('cancelled while loading the registry', { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      loading.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  private async load(): Promise<void> {
    this.state = 'loading';
    // Subscribe before reading: a commit during the load triggers a read after it.
    this.unsubscribe = this.commits.onCommit(() => this.pump());
    try {
      const t0 = nowUs();
      const read = await this.reader.loadAll();
      this.measureClock(read.nowUs, t0, nowUs());
      if (this.closed) throw new UnavailableError('the registry watch is closed');
      const now = this.dbNowUs();
      for (const row of read.rows) {
        const v = this.toView(row, now);
        this.view.set(v.agentId, v);
        if (v.effective !== 'OFFLINE') this.heap.set(v.agentId, offlineDeadlineUs(v.lastSeenUs, this.offlineAfterUs));
      }
      this.head = read.head;
      agentsGauge.set(this.view.size);
      this.state = 'running';
      const pollMs = this.opts.pollMs ?? Math.max(500, Math.min(this.opts.keepaliveMs, 2000));
      this.pollTimer = setInterval(() => this.pump(), pollMs);
      this.pollTimer.unref();
      this.armOfflineTimer();
      if (this.again) this.pump();
      this.log_.debug({ agents: this.view.size, head: this.head }, 'registry view loaded');
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Unloads the view (no watchers left, or closing). */
  private stop(): void {
    this.state = 'stopped';
    this.unsubscribe?.();
    this.unsubscribe = null;
    for (const t of [this.pollTimer, this.offlineTimer, this.lingerTimer, this.retryTimer]) if (t !== null) clearTimeout(t);
    this.pollTimer = this.offlineTimer = this.lingerTimer = this.retryTimer = null;
    this.offlineTimerAt = Number.NaN;
    this.view.clear();
    this.sortedIds = null;
    this.heap.clear();
    this.log = new ChangeLog(this.opts.logBytes);
    this.head = 0;
    agentsGauge.set(0);
    logBytesGauge.set(0);
  }

  private linger(): void {
    if (this.state !== 'running' || this.lingerTimer !== null) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      if (this.watchers.size === 0) this.stop();
    }, this.opts.lingerMs ?? 30_000);
    this.lingerTimer.unref();
  }

  private measureClock(dbUs: number, t0: number, t1: number): void {
    // Reads slower than this say little about the offset (the statement time is anywhere in them).
    if (dbUs > 0 && (t1 - t0 < 50_000 || this.clockOffsetUs === 0)) this.clockOffsetUs = dbUs - (t0 + t1) / 2;
  }

  private toView(row: RegistryRow, now: number): ViewAgent {
    return {
      agentId: row.agentId,
      teamId: row.teamId,
      reported: row.reportedStatus,
      effective: effectiveStatus(row.reportedStatus, row.lastSeenUs, now, this.offlineAfterUs),
      lastSeenUs: row.lastSeenUs,
      statusAtUs: row.statusAtUs,
      metaText: row.metaText,
      lastErrorSummary: row.lastErrorSummary,
    };
  }

  private append(prev: ViewAgent | undefined, next: ViewAgent, fields: readonly ChangeField[], atUs: number): void {
    this.log.append({
      bytes: changeMessage(prev, next, fields, atUs),
      before: prev === undefined ? null : { teamId: prev.teamId, effective: prev.effective },
      after: { teamId: next.teamId, effective: next.effective },
    });
  }

  private wakeAll(): void {
    logBytesGauge.set(this.log.bytes);
    for (const w of this.watchers) w.wake();
  }

  // ---- commits --------------------------------------------------------------------------------

  /** Reads what commits changed since `head`; one read at a time, later triggers coalesce into one more. */
  private pump(): void {
    if (this.state !== 'running') {
      this.again = true;
      return;
    }
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void this.drain().finally(() => {
      this.pumping = false;
    });
  }

  private async drain(): Promise<void> {
    try {
      do {
        this.again = false;
        for (;;) {
          const t0 = nowUs();
          const read = await this.reader.changedSince(this.head, this.readPage);
          if (this.state !== 'running') return;
          this.measureClock(read.nowUs, t0, nowUs());
          this.apply(read.rows);
          this.head = read.head;
          if (read.rows.length < this.readPage) break;
        }
      } while (this.again && this.state === 'running');
    } catch (err) {
      if (this.state !== 'running') return;
      if (err instanceof UnavailableError) {
        // The watchers' view can no longer follow the registry: end them UNAVAILABLE (their clients
        // reconnect and get a fresh snapshot once the database is back) and unload.
        this.log_.warn({ err: err.message }, 'registry read failed: database unavailable; ending watchers');
        for (const w of this.watchers) {
          w.failure = err;
          w.wake();
        }
        this.stop();
        return;
      }
      this.log_.warn({ err }, 'registry read failed; retrying');
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = null;
        this.pump();
      }, 1000);
      this.retryTimer.unref();
    }
  }

  /** Applies rows read from the registry: every agent whose watched fields changed becomes a change. */
  private apply(rows: readonly RegistryRow[]): void {
    if (rows.length === 0) return;
    const now = this.dbNowUs();
    let changed = 0;
    for (const row of rows) {
      const prev = this.view.get(row.agentId);
      const next = this.toView(row, now);
      const fields = changedFields(prev, next);
      // Always the new view: last_seen (a heartbeat) moves the snapshot's value and the deadline.
      this.view.set(next.agentId, next);
      if (prev === undefined) this.sortedIds = null;
      if (next.effective !== 'OFFLINE') this.heap.set(next.agentId, offlineDeadlineUs(next.lastSeenUs, this.offlineAfterUs));
      else this.heap.delete(next.agentId);
      if (fields.length > 0) {
        this.append(prev, next, fields, now);
        changed++;
      }
    }
    agentsGauge.set(this.view.size);
    this.armOfflineTimer();
    if (changed > 0) {
      commitChanges.inc(changed);
      this.wakeAll();
    }
  }

  // ---- silence --------------------------------------------------------------------------------

  private armOfflineTimer(): void {
    if (this.state !== 'running') return;
    const deadline = this.heap.peekDeadline();
    if (deadline === this.offlineTimerAt && this.offlineTimer !== null) return;
    if (this.offlineTimer !== null) clearTimeout(this.offlineTimer);
    this.offlineTimer = null;
    this.offlineTimerAt = Number.NaN;
    if (deadline === undefined) return;
    // OFFLINE once now > deadline: fire just past it (setTimeout caps near 24.8 days; re-armed then).
    const waitMs = Math.min(2 ** 31 - 1, Math.max(0, Math.floor((deadline - this.dbNowUs()) / 1000) + 1));
    this.offlineTimerAt = deadline;
    this.offlineTimer = setTimeout(() => this.expire(), waitMs);
    this.offlineTimer.unref();
  }

  /** Agents silent past the threshold go OFFLINE. */
  private expire(): void {
    this.offlineTimer = null;
    this.offlineTimerAt = Number.NaN;
    if (this.state !== 'running') return;
    const now = this.dbNowUs();
    let changed = 0;
    for (let id = this.heap.popBefore(now); id !== undefined; id = this.heap.popBefore(now)) {
      const prev = this.view.get(id);
      if (prev === undefined || prev.effective === 'OFFLINE') continue;
      const { element: _encoded, ...fields } = prev;
      const next: ViewAgent = { ...fields, effective: 'OFFLINE' };
      this.view.set(id, next);
      this.append(prev, next, ['status'], now);
      changed++;
    }
    this.armOfflineTimer();
    if (changed > 0) {
      silenceChanges.inc(changed);
      this.wakeAll();
    }
  }
}
