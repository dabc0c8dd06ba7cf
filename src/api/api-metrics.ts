// API metrics shared by both ports (grpc-js on GRPC_PORT; Connect and gRPC-Web on HTTP_PORT).
// Labels are bounded: method is one of the MemoryService methods, protocol one of grpc,
// connect, grpc-web, code a canonical status name (snake_case, as Connect spells them).
import { counter, gauge, histogram } from '../metrics.js';

export type ApiProtocol = 'grpc' | 'connect' | 'grpc-web';

const requests = counter(
  'mycelis_memory_api_requests_total',
  'MemoryService calls finished, by method, protocol and status code (streams count when they end).',
  ['method', 'protocol', 'code'],
);
const latency = histogram(
  'mycelis_memory_api_request_duration_seconds',
  'MemoryService call duration (for streams: until the stream ended), by method and protocol.',
  ['method', 'protocol'],
  [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
);
const streamsOpen = gauge('mycelis_memory_api_streams_open', 'Open server streams (StreamLogs, WatchRegistry), by protocol.', ['protocol']);

// gRPC canonical codes by number (grpc-js status and Connect Code share the numbering).
const CODE_NAMES = [
  'ok',
  'canceled',
  'unknown',
  'invalid_argument',
  'deadline_exceeded',
  'not_found',
  'already_exists',
  'permission_denied',
  'resource_exhausted',
  'failed_precondition',
  'aborted',
  'out_of_range',
  'unimplemented',
  'internal',
  'unavailable',
  'data_loss',
  'unauthenticated',
] as const;

export function codeName(code: number): string {
  return CODE_NAMES[code] ?? 'unknown';
}

// Every label combination a dashboard expects exists from the start (at zero).
for (const protocol of ['grpc', 'connect', 'grpc-web'] as const) streamsOpen.set({ protocol }, 0);

/** Times one call; `end` is idempotent (the first outcome wins). */
export interface CallTimer {
  end(code: number): void;
}

export function startCall(method: string, protocol: ApiProtocol): CallTimer {
  const started = process.hrtime.bigint();
  let done = false;
  return {
    end(code: number): void {
      if (done) return;
      done = true;
      requests.inc({ method, protocol, code: codeName(code) });
      latency.observe({ method, protocol }, Number(process.hrtime.bigint() - started) / 1e9);
    },
  };
}

/** Counts an open stream; the returned function closes it (idempotent). */
export function openStream(protocol: ApiProtocol): () => void {
  streamsOpen.inc({ protocol });
  let closed = false;
  return () => {
    if (closed) return;
    closed = true;
    streamsOpen.dec({ protocol });
  };
}
