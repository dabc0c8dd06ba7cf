// The transport-free MemoryService: validation, reads, the live tail. The grpc-js server (and the
// Connect port) are thin adapters that build a CallContext, call these methods and map the typed
// errors of src/errors.ts to status codes (src/api/status.ts). Nothing here knows about a transport.
import { setMaxListeners } from 'node:events';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { ResourceExhaustedError, ShuttingDownError } from '../errors.js';
import { gauge } from '../metrics.js';
import { usToTimestamp } from '../domain/time.js';
import { LogReader, type PoolHolder } from '../store/log-reader.js';
import { RegistryReader } from '../store/registry-reader.js';
import {
  AgentStatus,
  type Agent,
  type GetRegistryRequest,
  type GetRegistryResponse,
  StreamLogsResponse as StreamLogsResponseFns,
  type QueryLogsRequest,
  type QueryLogsResponse,
  type StreamLogsRequest,
  type StreamLogsResponse,
} from '../gen/mycelis/memory/v1/memory.js';
import { encodeCursor, encodePageToken } from './cursor.js';
import { encodeStreamResponse, toLogRecord } from './log-record.js';
import { StreamHub, type CommitSource } from './stream-hub.js';
import { validateGetRegistry, validateQueryLogs, validateStreamLogs } from './validate.js';

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
}

const openStreamsGauge = gauge('mycelis_memory_api_open_streams', 'Open StreamLogs calls (all transports).');

const STATUS_TO_PROTO: Readonly<Record<string, AgentStatus>> = {
  IDLE: AgentStatus.AGENT_STATUS_IDLE,
  BUSY: AgentStatus.AGENT_STATUS_BUSY,
  OFFLINE: AgentStatus.AGENT_STATUS_OFFLINE,
  ERROR: AgentStatus.AGENT_STATUS_ERROR,
};

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
  private readonly hub: StreamHub;
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
    this.hub = new StreamHub(
      this.logReader,
      deps.notifier,
      { bufferLimit: deps.config.api.streamBuffer, keepaliveMs: deps.config.api.keepaliveMs },
      deps.logger,
    );
    this.hub.start();
  }

  get openStreamCount(): number {
    return this.openStreams;
  }

  async getRegistry(req: GetRegistryRequest, ctx: CallContext): Promise<GetRegistryResponse> {
    const v = validateGetRegistry(req);
    const page = await this.registryReader.page(
      {
        teamIds: v.teamIds,
        statuses: v.statuses,
        afterAgentId: v.afterAgentId,
        limit: v.pageSize + 1,
        asOfUs: v.asOfUs,
        offlineAfterMs: this.config.agentOfflineAfterMs,
      },
      callSignal(ctx),
    );
    const more = page.agents.length > v.pageSize;
    const agents = more ? page.agents.slice(0, v.pageSize) : page.agents;
    const out: Agent[] = agents.map((a) => ({
      agentId: a.agentId,
      teamId: a.teamId,
      status: STATUS_TO_PROTO[a.effectiveStatus] ?? AgentStatus.AGENT_STATUS_UNSPECIFIED,
      reportedStatus: STATUS_TO_PROTO[a.reportedStatus] ?? AgentStatus.AGENT_STATUS_UNSPECIFIED,
      lastSeen: usToTimestamp(a.lastSeenUs),
      meta: a.meta ?? undefined,
      lastErrorSummary: a.lastErrorSummary,
      statusAt: a.statusAtUs === null ? undefined : usToTimestamp(a.statusAtUs),
    }));
    const last = agents[agents.length - 1];
    return {
      agents: out,
      nextPageToken: more && last ? encodePageToken('registry', v.hash, { a: last.agentId, t: page.asOfUs }) : '',
      asOf: usToTimestamp(page.asOfUs),
    };
  }

  async queryLogs(req: QueryLogsRequest, ctx: CallContext): Promise<QueryLogsResponse> {
    const v = validateQueryLogs(req);
    const rows = await this.logReader.queryPage(
      v.filter,
      { sinceUs: v.sinceUs, untilUs: v.untilUs, after: v.after, limit: v.pageSize + 1 },
      callSignal(ctx),
    );
    const more = rows.length > v.pageSize;
    const page = more ? rows.slice(0, v.pageSize) : rows;
    const last = page[page.length - 1];
    return {
      records: page.map(toLogRecord),
      nextPageToken: more && last ? encodePageToken('logs', v.hash, { t: last.timestampUs, s: last.seq }) : '',
    };
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
   * bytes are encoded once in the stream hub and shared by every stream that receives them.
   */
  async *streamLogsEncoded(req: StreamLogsRequest, ctx: CallContext): AsyncGenerator<Buffer, void, undefined> {
    const v = validateStreamLogs(req);
    if (this.closing.signal.aborted) throw new ShuttingDownError();
    if (this.openStreams >= this.config.api.maxStreams) {
      throw new ResourceExhaustedError(`too many open streams (MAX_STREAMS=${this.config.api.maxStreams}); retry later`);
    }
    this.openStreams++;
    openStreamsGauge.inc();
    const signal = callSignal(ctx);
    try {
      for await (const batch of this.hub.follow(v, signal, this.closing.signal)) {
        yield encodeStreamResponse(batch.records, cursorOf(batch.position));
      }
    } finally {
      this.openStreams--;
      openStreamsGauge.dec();
      if (this.openStreams === 0) for (const f of this.streamEnded) f();
    }
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
  }
}
