// gRPC clients of the service under test (grpc-js, the generated ts-proto client).
import { credentials, type ClientReadableStream } from '@grpc/grpc-js';
import {
  MemoryServiceClient,
  type GetRegistryRequest,
  type GetRegistryResponse,
  type LogFilter,
  type QueryLogsRequest,
  type QueryLogsResponse,
  type StreamLogsResponse,
} from '../src/gen/mycelis/memory/v1/memory.js';
import { nowMs, type Samples } from './lib.js';

export function makeClients(address: string, channels: number): MemoryServiceClient[] {
  const out: MemoryServiceClient[] = [];
  for (let i = 0; i < channels; i++) {
    // A private subchannel pool per client: separate HTTP/2 connections, ~100 streams each.
    out.push(new MemoryServiceClient(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  }
  return out;
}

export const emptyFilter = (): LogFilter => ({ agentIds: [], teamIds: [], levels: [], intents: [], traceId: '' });

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

export function queryLogs(client: MemoryServiceClient, req: Partial<QueryLogsRequest>): Promise<QueryLogsResponse> {
  const full: QueryLogsRequest = { filter: emptyFilter(), pageSize: 0, pageToken: '', since: undefined, until: undefined, ...req };
  return new Promise((resolve, reject) => {
    client.queryLogs(full, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}
