// The native gRPC transport (@grpc/grpc-js): a thin adapter over MemoryCore.
// - Auth (src/api/auth.ts) on every MemoryService call; health and reflection stay open.
// - Client cancellation and deadlines become the CallContext's signal/deadline, which cancel database
//   queries and release streams.
// - Server-stream writes respect backpressure BY BYTES: grpc-js's server stream is an object-mode
//   Writable, so write() says false only after 16 queued responses - 16 x 1 MB of records per stream,
//   held in the process whatever the client reads. A stream instead waits until its responses not yet
//   handed to HTTP/2 (their write callbacks) are under STREAM_WRITE_BYTES (or it is cancelled); the
//   stream's own bounded queue absorbs the rest (src/api/stream-hub.ts). Connect's adapter already
//   waits on every write (connect-node's write() awaits the callback or 'drain').
// - Errors are mapped in one place (src/api/status.ts).
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { CancelledError, InvalidArgumentError } from '../errors.js';
import {
  MemoryServiceService,
  type GetRegistryRequest,
  type GetRegistryResponse,
  type GetTraceRequest,
  type GetTraceResponse,
  type MemoryServiceServer,
  type QueryLogsRequest,
  type QueryLogsResponse,
  type SearchLogsRequest,
  type SearchLogsResponse,
} from '../gen/mycelis/memory/v1/memory.js';
import { LogReader, type PoolHolder } from '../store/log-reader.js';
import { createAuthenticator } from './auth.js';
import type { CallContext, MemoryCore } from './core.js';
import { ApiHealth, healthServiceDefinition } from './health.js';
import { addReflection, loadDescriptorIndex } from './reflection.js';
import { toServiceError } from './status.js';
import { releaseBytes } from '../release-bytes.js';

/**
 * Bytes of responses one server stream may have written and not yet handed to HTTP/2 (which holds
 * at most its flow-control window more). One response (up to the hub's 1 MB batch) always goes.
 */
export const STREAM_WRITE_BYTES = 256 * 1024;
import { openStream, startCall } from './api-metrics.js';

export interface GrpcServerDeps {
  readonly config: Config;
  readonly core: MemoryCore;
  readonly logger: Logger;
  /** Readiness/liveness; when absent one is built on a database probe (of `db`, else the core's). */
  readonly health?: ApiHealth | undefined;
  readonly db?: PoolHolder | undefined;
}

export interface RunningGrpcServer {
  readonly port: number;
  readonly health: ApiHealth;
  shutdown(timeoutMs?: number): Promise<void>;
}

interface CallLike {
  readonly metadata: grpc.Metadata;
  getDeadline(): grpc.Deadline;
  getPeer(): string;
  on(event: 'cancelled', cb: () => void): unknown;
}

function callContext(call: CallLike): { ctx: CallContext; controller: AbortController } {
  const controller = new AbortController();
  call.on('cancelled', () => controller.abort(new CancelledError('the client cancelled the call')));
  const d = call.getDeadline();
  const deadline = d instanceof Date ? d.getTime() : Number.isFinite(d) ? d : undefined;
  return { ctx: { signal: controller.signal, deadline, peer: call.getPeer() }, controller };
}

function authorizationOf(md: grpc.Metadata): string | undefined {
  const values = md.get('authorization');
  // Two authorization headers are ambiguous: treat as missing.
  if (values.length !== 1) return undefined;
  const v = values[0];
  return typeof v === 'string' ? v : undefined;
}

export async function startGrpcServer(deps: GrpcServerDeps): Promise<RunningGrpcServer> {
  const { config, core } = deps;
  const log = deps.logger.child({ component: 'grpc-server' });
  const authenticate = createAuthenticator(config.api.apiTokens);
  const probeReader = deps.db ? new LogReader(deps.db) : core.logReader;
  const health =
    deps.health ??
    new ApiHealth({ probe: (signal) => probeReader.probeReady(signal), intervalMs: 5000 }, deps.logger);
  const ownsHealth = deps.health === undefined;
  if (ownsHealth) await health.start();

  const unary =
    <Req, Res>(method: string, fn: (req: Req, ctx: CallContext) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      const { ctx } = callContext(call);
      const timer = startCall(method, 'grpc');
      (async () => {
        authenticate(authorizationOf(call.metadata));
        return fn(decoded(call.request), ctx);
      })().then(
        (res) => {
          timer.end(grpc.status.OK);
          callback(null, res);
        },
        (err: unknown) => {
          const e = toServiceError(err, log, method);
          timer.end(e.code ?? grpc.status.UNKNOWN);
          callback(e);
        },
      );
    };

  /**
   * A server stream whose core generator yields already-encoded response messages. With `owned`, each
   * response is the stream's alone (core.streamLogsEncoded): once grpc-js has copied it into its frame
   * and HTTP/2 took that (the write callback), its memory is released at once rather than at the next
   * collection (src/release-bytes.ts).
   */
  const serverStream =
    <Req, Res>(method: string, open: (req: Req, ctx: CallContext) => AsyncGenerator<Buffer, void, undefined>, owned = false) =>
    (call: grpc.ServerWritableStream<Req, Res>): void => {
      const { ctx, controller } = callContext(call);
      const cancelled = controller.signal;
      // Bytes written and not yet handed to HTTP/2; a waiter resumes when they fall to the bound.
      let unsent = 0;
      let resume: (() => void) | null = null;
      const written = (bytes: Buffer) => (): void => {
        unsent -= bytes.length;
        if (owned) releaseBytes(bytes);
        if (unsent <= STREAM_WRITE_BYTES && resume) {
          const r = resume;
          resume = null;
          r();
        }
      };
      const sentOrCancel = (): Promise<void> =>
        new Promise<void>((resolve) => {
          const done = (): void => {
            resume = null;
            cancelled.removeEventListener('abort', done);
            resolve();
          };
          resume = done;
          cancelled.addEventListener('abort', done, { once: true });
        });
      const timer = startCall(method, 'grpc');
      let closeGauge: (() => void) | undefined;
      (async () => {
        authenticate(authorizationOf(call.metadata));
        closeGauge = openStream('grpc');
        // `for await` + break calls return() on the generator, so its finally releases the stream
        // even when the client vanished while a write was blocked.
        for await (const bytes of open(decoded(call.request), ctx)) {
          if (cancelled.aborted) break;
          // Pre-encoded response bytes: the definition's responseSerialize passes Buffers through.
          unsent += bytes.length;
          // The callback runs once grpc-js has framed the response and HTTP/2 took it (or on error,
          // when the call is ending anyway).
          call.write(bytes as unknown as Res, written(bytes));
          if (unsent > STREAM_WRITE_BYTES) await sentOrCancel();
          if (cancelled.aborted) break;
        }
      })().then(
        () => {
          closeGauge?.();
          timer.end(cancelled.aborted ? grpc.status.CANCELLED : grpc.status.OK);
          if (!cancelled.aborted) call.end();
        },
        (err: unknown) => {
          closeGauge?.();
          if (cancelled.aborted) {
            timer.end(grpc.status.CANCELLED);
            return;
          }
          const e = toServiceError(err, log, method);
          timer.end(e.code ?? grpc.status.UNKNOWN);
          call.emit('error', e);
        },
      );
    };

  const impl: MemoryServiceServer = {
    streamLogs: serverStream('StreamLogs', (req, ctx) => core.streamLogsEncoded(req, ctx), true),
    getRegistry: unary<GetRegistryRequest, GetRegistryResponse>('GetRegistry', (req, ctx) => core.getRegistry(req, ctx)),
    queryLogs: unary<QueryLogsRequest, QueryLogsResponse>('QueryLogs', (req, ctx) => core.queryLogs(req, ctx)),
    // GetTrace and SearchLogs: pre-encoded bytes (the definition's responseSerialize passes Buffers through).
    getTrace: unary<GetTraceRequest, GetTraceResponse>('GetTrace', (req, ctx) => core.getTraceEncoded(req, ctx) as unknown as Promise<GetTraceResponse>),
    watchRegistry: serverStream('WatchRegistry', (req, ctx) => core.watchRegistryEncoded(req, ctx)),
    searchLogs: unary<SearchLogsRequest, SearchLogsResponse>('SearchLogs', (req, ctx) => core.searchLogsEncoded(req, ctx) as unknown as Promise<SearchLogsResponse>),
  };

  const server = new grpc.Server({ 'grpc.max_send_message_length': 16 * 1024 * 1024 });
  const memoryDefinition = tolerantDefinition(MemoryServiceService);
  server.addService(memoryDefinition, impl);
  health.implementation.addToServer(server);
  // Reflection describes every service on this port: ours, health, and itself (both versions).
  addReflection(server, loadDescriptorIndex(), deps.logger, [memoryDefinition, healthServiceDefinition]);

  let credentials: grpc.ServerCredentials;
  if (config.api.tlsCertFile && config.api.tlsKeyFile) {
    credentials = grpc.ServerCredentials.createSsl(null, [
      { cert_chain: readFileSync(config.api.tlsCertFile), private_key: readFileSync(config.api.tlsKeyFile) },
    ]);
  } else {
    credentials = grpc.ServerCredentials.createInsecure();
  }
  const host = config.api.host.includes(':') && !config.api.host.startsWith('[') ? `[${config.api.host}]` : config.api.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${config.api.grpcPort}`, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  log.info({ port, tls: Boolean(config.api.tlsCertFile), auth: config.api.apiTokens.length > 0 }, 'gRPC server listening');

  let stopping: Promise<void> | undefined;
  const shutdown = (timeoutMs = Math.min(config.shutdownTimeoutMs, 10_000)): Promise<void> => {
    stopping ??= (async () => {
      health.setShuttingDown();
      // Streams first: each gets a final response carrying its cursor, then ends.
      await core.closeStreams(timeoutMs / 2);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn('gRPC graceful shutdown timed out; forcing');
          server.forceShutdown();
          resolve();
        }, timeoutMs / 2);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      if (ownsHealth) health.stop();
      core.close();
      log.info('gRPC server stopped');
    })();
    return stopping;
  };
  return { port, health, shutdown };
}

// Responses: a Buffer is taken as the already-encoded message (see serverStream); anything else is
// serialized by the generated function.
// grpc-js answers INTERNAL when a request deserializer throws. Undecodable request bytes are the
// client's mistake, not ours (DESIGN 6: our decoding never produces INTERNAL): the deserializer
// keeps the failure instead, and the handler, after authentication, answers INVALID_ARGUMENT.
const UNDECODABLE = Symbol('undecodable request');
interface Undecodable {
  readonly [UNDECODABLE]: { readonly type: string; readonly err: unknown };
}

function tolerantDefinition<D extends grpc.ServiceDefinition>(def: D): D {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(def) as [string, grpc.MethodDefinition<unknown, unknown>][]) {
    const type = m.path.slice(m.path.lastIndexOf('/') + 1) + 'Request';
    out[name] = {
      ...m,
      // Streams write responses the core already encoded (shared record bytes): pass Buffers through.
      responseSerialize: (value: unknown): Buffer => (Buffer.isBuffer(value) ? value : m.responseSerialize(value)),
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return m.requestDeserialize(bytes);
        } catch (err) {
          return { [UNDECODABLE]: { type, err } } satisfies Undecodable;
        }
      },
    };
  }
  return out as D;
}

function decoded<Req>(req: Req): Req {
  if (typeof req === 'object' && req !== null && UNDECODABLE in req) {
    const { type, err } = (req as Undecodable)[UNDECODABLE];
    throw new InvalidArgumentError('request', `not a valid ${type} protobuf message (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  return req;
}
