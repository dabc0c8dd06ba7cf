// The transport-free MemoryService: validation, reads, the live tail. The grpc-js server (and the
// Connect port) are thin adapters that build a CallContext, call these methods and map the typed
// errors of src/errors.ts to status codes (src/api/status.ts). Nothing here knows about a transport.
// The capabilities live beside it: queries/ (registry, logs, trace, search: one request, one answer) and
// streams/ (WatchRegistry's shared view); the live log's hub is stream-hub.ts.
import { setMaxListeners } from 'node:events';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { ResourceExhaustedError, ShuttingDownError } from '../errors.js';
import { gauge } from '../metrics.js';
import { LogReader, type PoolHolder } from '../store/log-reader.js';
import { RegistryReader } from '../store/registry-reader.js';
import { SearchReader } from '../store/search-reader.js';
import { TraceReader } from '../store/trace-reader.js';
import {
  type GetRegistryRequest,
  type GetRegistryResponse,
  type GetTraceRequest,
  type GetTraceResponse,
  RegistryChange as RegistryChangeFns,
  type RegistryChange,
  StreamLogsResponse as StreamLogsResponseFns,
  type QueryLogsRequest,
  type QueryLogsResponse,
  type SearchLogsRequest,
  type SearchLogsResponse,
  type StreamLogsRequest,
  type StreamLogsResponse,
  type WatchRegistryRequest,
} from '../gen/mycelis/memory/v1/memory.js';
import { encodeCursor } from './cursor.js';
import { encodeStreamResponse, toLogRecord } from './log-record.js';
import { queryLogs } from './queries/logs.js';
import { getRegistry } from './queries/registry.js';
import { searchLogs, searchLogsEncoded } from './queries/search.js';
import { getTrace, getTraceEncoded } from './queries/trace.js';
import { StreamHub, type CommitSource } from './stream-hub.js';
import { releaseBytes } from '../release-bytes.js';
import { RegistryWatchHub } from './streams/registry-watch.js';
import { validateGetRegistry, validateGetTrace, validateQueryLogs, validateSearchLogs, validateStreamLogs, validateWatchRegistry } from './validate.js';

export interface CallContext {
  /** Aborts when the client cancels or disconnects. */
  readonly signal: AbortSignal;
  /** Absolute deadline (ms since epoch), when the client set one. */
  readonly deadline?: number | undefined;
  readonly peer?: string | undefined;
}

export interface MemoryCoreDeps {
  readonly db: PoolHolder;
  readonly notifier: CommitSource;
  readonly config: Config;
  readonly logger: Logger;
  /** Bytes of changes WatchRegistry's shared log holds (default: the memory budget's watchBytes). */
  readonly registryWatchLogBytes?: number;
}

const openStreamsGauge = gauge('mycelis_memory_api_open_streams', 'Open server streams, StreamLogs and WatchRegistry (all transports; bounded by MAX_STREAMS).');


export { toLogRecord };

// Streams woken by the same fan-out answer with the same position: encode its cursor once.
let lastCursorSeq = -1;
let lastCursor = '';
function cursorOf(seq: number): string {
  if (seq !== lastCursorSeq) {
    lastCursor = encodeCursor(seq);
    lastCursorSeq = seq;
  }
  return lastCursor;
}

/** ctx.signal, also aborted at ctx.deadline. */
function callSignal(ctx: CallContext): AbortSignal {
  if (ctx.deadline === undefined || !Number.isFinite(ctx.deadline)) return ctx.signal;
  return AbortSignal.any([ctx.signal, AbortSignal.timeout(Math.max(0, ctx.deadline - Date.now()))]);
}

export class MemoryCore {
  readonly logReader: LogReader;
  private readonly registryReader: RegistryReader;
  private readonly traceReader: TraceReader;
  private readonly searchReader: SearchReader;
  private readonly hub: StreamHub;
  private readonly registryHub: RegistryWatchHub;
  private readonly config: Config;
  private readonly log: Logger;
  private openStreams = 0;
  private readonly closing = new AbortController();
  // Every waiting stream listens on `closing`: not a leak, so no listener limit.
  private readonly streamEnded = new Set<() => void>();

  /** Starts the shared stream hub (subscribes to commits; learns the head in the background). */
  constructor(deps: MemoryCoreDeps) {
    setMaxListeners(0, this.closing.signal);
    this.config = deps.config;
    this.log = deps.logger.child({ component: 'memory-core' });
    this.logReader = new LogReader(deps.db);
    this.registryReader = new RegistryReader(deps.db);
    this.traceReader = new TraceReader(deps.db);
    this.searchReader = new SearchReader(deps.db);
    this.registryHub = new RegistryWatchHub(
      this.registryReader,
      deps.notifier,
      { offlineAfterMs: deps.config.agentOfflineAfterMs, keepaliveMs: deps.config.api.keepaliveMs, logBytes: deps.registryWatchLogBytes ?? deps.config.memory.watchBytes },
      deps.logger,
    );
    this.hub = new StreamHub(
      this.logReader,
      deps.notifier,
      {
        bufferLimit: deps.config.api.streamBuffer,
        bufferBytes: deps.config.memory.streamBytes,
        handoverBytes: deps.config.memory.handoverBytes,
        keepaliveMs: deps.config.api.keepaliveMs,
      },
      deps.logger,
    );
    this.hub.start();
  }

  get openStreamCount(): number {
    return this.openStreams;
  }

  /** WatchRegistry's shared view: watchers, agents held, bytes of changes held, the slowest watcher's lag. */
  get registryWatchStats(): { readonly watchers: number; readonly agents: number; readonly logBytes: number; readonly behind: number } {
    return this.registryHub.stats;
  }

  async getRegistry(req: GetRegistryRequest, ctx: CallContext): Promise<GetRegistryResponse> {
    return getRegistry(this.registryReader, validateGetRegistry(req), this.config.agentOfflineAfterMs, callSignal(ctx));
  }

  async queryLogs(req: QueryLogsRequest, ctx: CallContext): Promise<QueryLogsResponse> {
    return queryLogs(this.logReader, validateQueryLogs(req), callSignal(ctx));
  }

  async getTrace(req: GetTraceRequest, ctx: CallContext): Promise<GetTraceResponse> {
    return getTrace(this.traceReader, validateGetTrace(req), callSignal(ctx));
  }

  /** GetTrace's response already encoded (the gRPC port: src/api/queries/trace.ts getTraceEncoded). */
  async getTraceEncoded(req: GetTraceRequest, ctx: CallContext): Promise<Buffer> {
    return getTraceEncoded(this.traceReader, validateGetTrace(req), callSignal(ctx));
  }

  async searchLogs(req: SearchLogsRequest, ctx: CallContext): Promise<SearchLogsResponse> {
    return searchLogs(this.searchReader, validateSearchLogs(req), callSignal(ctx));
  }

  /** SearchLogs' response already encoded (the gRPC port: src/api/queries/search.ts searchLogsEncoded). */
  async searchLogsEncoded(req: SearchLogsRequest, ctx: CallContext): Promise<Buffer> {
    return searchLogsEncoded(this.searchReader, validateSearchLogs(req), callSignal(ctx));
  }

  /**
   * The live tail. Yields batches of records in seq order; a response without records is a
   * keepalive. Ends after a final response carrying the cursor when the server shuts down; returns
   * when ctx.signal aborts. Transports must call return() on the generator when the client goes away
   * while a write is blocked, so the `finally` releases the stream's slot and subscription.
   */
  async *streamLogs(req: StreamLogsRequest, ctx: CallContext): AsyncGenerator<StreamLogsResponse, void, undefined> {
    for await (const bytes of this.streamLogsEncoded(req, ctx)) yield StreamLogsResponseFns.decode(bytes);
  }

  /**
   * streamLogs with every response already encoded (StreamLogsResponse wire bytes): the live records'
   * bytes are encoded once in the stream hub and shared by every stream that receives them. Each
   * response is a fresh buffer handed to the caller alone: a transport may release it (src/release-bytes.ts)
   * once it is written.
   */
  async *streamLogsEncoded(req: StreamLogsRequest, ctx: CallContext): AsyncGenerator<Buffer, void, undefined> {
    const v = validateStreamLogs(req);
    this.takeStreamSlot();
    const signal = callSignal(ctx);
    try {
      for await (const batch of this.hub.follow(v, signal, this.closing.signal)) {
        const bytes = encodeStreamResponse(batch.records, cursorOf(batch.position));
        // A database page's records were encoded for this stream alone and are now copied.
        if (batch.owned) for (const r of batch.records) releaseBytes(r.chunk);
        yield bytes;
      }
    } finally {
      this.releaseStreamSlot();
    }
  }

  /**
   * WatchRegistry: encoded RegistryChange messages (snapshot pages, LIVE, changes, keepalives, RESET;
   * src/api/streams/registry-watch.ts). Ends when the server shuts down; returns when ctx.signal
   * aborts. Transports call return() on the generator when the client goes away mid-write.
   */
  async *watchRegistryEncoded(req: WatchRegistryRequest, ctx: CallContext): AsyncGenerator<Buffer, void, undefined> {
    const v = validateWatchRegistry(req);
    this.takeStreamSlot();
    try {
      yield* this.registryHub.watch(v, callSignal(ctx), this.closing.signal);
    } finally {
      this.releaseStreamSlot();
    }
  }

  /** watchRegistryEncoded, decoded (in-process callers and tests). */
  async *watchRegistry(req: WatchRegistryRequest, ctx: CallContext): AsyncGenerator<RegistryChange, void, undefined> {
    for await (const bytes of this.watchRegistryEncoded(req, ctx)) yield RegistryChangeFns.decode(bytes);
  }

  /** One of MAX_STREAMS (StreamLogs and WatchRegistry together), or RESOURCE_EXHAUSTED. */
  private takeStreamSlot(): void {
    if (this.closing.signal.aborted) throw new ShuttingDownError();
    if (this.openStreams >= this.config.api.maxStreams) {
      throw new ResourceExhaustedError(`too many open streams (MAX_STREAMS=${this.config.api.maxStreams}); retry later`);
    }
    this.openStreams++;
    openStreamsGauge.inc();
  }

  private releaseStreamSlot(): void {
    this.openStreams--;
    openStreamsGauge.dec();
    if (this.openStreams === 0) for (const f of this.streamEnded) f();
  }

  /**
   * Shutdown, step one: every open stream sends a final response with its cursor and ends; new
   * streams are refused. Resolves when all streams ended or after `timeoutMs`.
   */
  async closeStreams(timeoutMs = 5000): Promise<void> {
    this.closing.abort(new ShuttingDownError());
    if (this.openStreams === 0) return;
    this.log.info({ openStreams: this.openStreams }, 'ending open streams');
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.streamEnded.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.streamEnded.add(done);
    });
  }

  /** Stops the hub (after closeStreams). */
  close(): void {
    this.closing.abort(new ShuttingDownError());
    this.hub.stop();
    this.registryHub.close();
  }
}
