// gRPC clients of the service under test (grpc-js, the generated ts-proto client).
import { credentials, type ClientReadableStream } from '@grpc/grpc-js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import {
  AgentStatus,
  MemoryServiceClient,
  type GetRegistryRequest,
  type GetRegistryResponse,
  type GetTraceResponse,
  type LogFilter,
  StreamLogsRequest,
  type QueryLogsRequest,
  type QueryLogsResponse,
  type SearchLogsRequest,
  type SearchLogsResponse,
  type StreamLogsResponse,
} from '../src/gen/mycelis/memory/v1/memory.js';
import { nowMs, type Samples } from './lib.js';

export function makeClients(address: string, channels: number): MemoryServiceClient[] {
  const out: MemoryServiceClient[] = [];
  for (let i = 0; i < channels; i++) {
    // A private subchannel pool per client: separate HTTP/2 connections, ~100 streams each.
    // A 4 MiB receive window (HTTP/2's default is 64 KiB): an unfiltered tail of a burst receives
    // megabytes per second, and with the default window the service waits on WINDOW_UPDATEs from
    // this busy process - the tail lags, overflows its queue and falls back to database reads. The
    // README recommends the same for high-volume clients.
    out.push(new MemoryServiceClient(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc-node.flow_control_window': 4 << 20 }));
  }
  return out;
}

export const emptyFilter = (): LogFilter => ({ agentIds: [], teamIds: [], levels: [], intents: [], traceId: '' });

/**
 * What a fan-out tail needs from a StreamLogsResponse: each record's event time (ms). Read straight
 * from the wire (records = 1 -> LogRecord.entry = 3 -> LogEntry.timestamp = 1 -> seconds/nanos),
 * skipping everything else: the 1,000 tails run in the bench process on the same 2 cores as the
 * service, and a full decode of every delivery (Struct contexts) cost about as much CPU as the
 * service spent delivering (bench/README.md).
 */
export interface LightResponse {
  readonly eventMs: number[];
}

function fieldBytes(buf: Uint8Array, field: number): Uint8Array | null {
  const r = new BinaryReader(buf);
  let found: Uint8Array | null = null;
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === field && wt === WireType.LengthDelimited) found = r.bytes();
    else r.skip(wt, no);
  }
  return found;
}

export function decodeLight(buf: Uint8Array): LightResponse {
  const eventMs: number[] = [];
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 1 || wt !== WireType.LengthDelimited) {
      r.skip(wt, no);
      continue;
    }
    const entry = fieldBytes(r.bytes(), 3);
    const ts = entry ? fieldBytes(entry, 1) : null;
    let seconds = 0;
    let nanos = 0;
    if (ts) {
      const t = new BinaryReader(ts);
      while (t.pos < t.len) {
        const [tn, tw] = t.tag();
        if (tn === 1) seconds = Number(t.int64());
        else if (tn === 2) nanos = t.int32();
        else t.skip(tw, tn);
      }
    }
    eventMs.push(seconds * 1000 + nanos / 1e6);
  }
  return { eventMs };
}

/** A StreamLogs call whose responses are decoded by decodeLight. */
export function streamLogsLight(client: MemoryServiceClient, filter: LogFilter): ClientReadableStream<LightResponse> {
  return client.makeServerStreamRequest<StreamLogsRequest, LightResponse>(
    '/mycelis.memory.v1.MemoryService/StreamLogs',
    (req) => Buffer.from(StreamLogsRequest.encode(req).finish()),
    (buf) => decodeLight(buf),
    { filter, afterCursor: '', tail: 0 },
  );
}

export interface LightTail {
  readonly call: ClientReadableStream<LightResponse>;
  received: number;
  readonly ready: Promise<void>;
  error: Error | null;
  cancel(): void;
}

/** openTail with decodeLight: for the many fan-out tails. */
export function openLightTail(client: MemoryServiceClient, filter: LogFilter, samples: Samples, recording: () => boolean): LightTail {
  const call = streamLogsLight(client, filter);
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  const tail: LightTail = { call, received: 0, ready, error: null, cancel: () => call.cancel() };
  call.on('data', (res: LightResponse) => {
    readyResolve();
    const now = nowMs();
    const rec = recording();
    for (const ms of res.eventMs) {
      tail.received++;
      if (rec && ms > 0) samples.push(now - ms);
    }
  });
  call.on('error', (err: Error & { code?: number }) => {
    if (err.code !== 1) tail.error = err;
    readyResolve();
  });
  call.on('end', () => readyResolve());
  return tail;
}

export interface Tail {
  readonly call: ClientReadableStream<StreamLogsResponse>;
  received: number;
  /** Resolves on the first response (the service sends a keepalive/cursor when attached). */
  readonly ready: Promise<void>;
  error: Error | null;
  cancel(): void;
}

/**
 * A live StreamLogs tail. Each record's latency is receive time minus the record's event timestamp
 * (set to the publish time by the paced publisher); recorded only while `recording()` is true.
 */
export function openTail(client: MemoryServiceClient, filter: LogFilter, samples: Samples, recording: () => boolean): Tail {
  const call = client.streamLogs({ filter, afterCursor: '', tail: 0 });
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  const tail: Tail = {
    call,
    received: 0,
    ready,
    error: null,
    cancel: () => call.cancel(),
  };
  call.on('data', (res: StreamLogsResponse) => {
    readyResolve();
    const now = nowMs();
    const rec = recording();
    for (const r of res.records) {
      tail.received++;
      const ts = r.entry?.timestamp;
      if (rec && ts) samples.push(now - (Number(ts.seconds) * 1000 + ts.nanos / 1e6));
    }
  });
  call.on('error', (err: Error & { code?: number }) => {
    // 1 = CANCELLED: our own cancel at the end.
    if (err.code !== 1) tail.error = err;
    readyResolve();
  });
  call.on('end', () => readyResolve());
  return tail;
}

export function getRegistry(client: MemoryServiceClient, req: Partial<GetRegistryRequest>): Promise<GetRegistryResponse> {
  const full: GetRegistryRequest = { teamIds: [], statuses: [], pageSize: 0, pageToken: '', ...req };
  return new Promise((resolve, reject) => {
    client.getRegistry(full, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

/**
 * One call of the reads phase's GetRegistry mix, by `shape` (0-3): the default page, `team`'s, one
 * status's (BUSY), two pages of 100 (the second by the first's token).
 */
export async function registryMixCall(client: MemoryServiceClient, shape: number, team: string): Promise<void> {
  if (shape === 0) await getRegistry(client, {});
  else if (shape === 1) await getRegistry(client, { teamIds: [team] });
  else if (shape === 2) await getRegistry(client, { statuses: [AgentStatus.AGENT_STATUS_BUSY] });
  else {
    const r = await getRegistry(client, { pageSize: 100 });
    await getRegistry(client, { pageSize: 100, pageToken: r.nextPageToken });
  }
}

/** The whole registry, `pageSize` agents a page; returns how many agents it listed. */
export async function wholeRegistry(client: MemoryServiceClient, pageSize: number): Promise<number> {
  let token = '';
  let n = 0;
  do {
    const r = await getRegistry(client, { pageSize, pageToken: token });
    n += r.agents.length;
    token = r.nextPageToken;
  } while (token !== '');
  return n;
}

export function queryLogs(client: MemoryServiceClient, req: Partial<QueryLogsRequest>): Promise<QueryLogsResponse> {
  const full: QueryLogsRequest = { filter: emptyFilter(), pageSize: 0, pageToken: '', since: undefined, until: undefined, ...req };
  return new Promise((resolve, reject) => {
    client.queryLogs(full, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

export function getTrace(client: MemoryServiceClient, traceId: string): Promise<GetTraceResponse> {
  return new Promise((resolve, reject) => {
    client.getTrace({ traceId }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

export function searchLogs(client: MemoryServiceClient, req: Partial<SearchLogsRequest> & { query: string }): Promise<SearchLogsResponse> {
  const full: SearchLogsRequest = { filter: emptyFilter(), pageSize: 0, pageToken: '', since: undefined, until: undefined, order: 0, ...req };
  return new Promise((resolve, reject) => {
    client.searchLogs(full, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}
