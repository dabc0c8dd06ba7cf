// MemoryService for @connectrpc/connect (Connect and gRPC-Web on the HTTP port): a thin adapter over
// MemoryCore, mirroring src/api/grpc-server.ts (same auth, limits, error mapping, metrics).
//
// Types: connect-node v2 routes need a DescService, which ts-proto does not emit. We load it from the
// `buf build` FileDescriptorSet (src/gen/descriptors.binpb) and convert messages through the binary
// wire format: protobuf-es message -> toBinary -> ts-proto decode, and ts-proto encode -> fromBinary.
// The proto3 JSON form (field names, Timestamps, Structs, enums, int64 as strings) is therefore
// exactly protobuf-es', i.e. the canonical one. Stream responses (StreamLogs, WatchRegistry) come from
// the core already encoded (shared between streams) and are decoded once per response.
//
// Cancellation (STACK.md): when a client goes away while connect-node is blocked writing to it, the
// library never resumes or returns the handler's generator, so a `finally` in it would never run. We
// therefore call return() on the core's generator ourselves when the call's signal aborts, and do all
// bookkeeping (stream slot, gauges, metrics) in an idempotent release that the abort path also runs.
import { readFileSync } from 'node:fs';
import {
  createFileRegistry,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type Message,
} from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createContextKey, type ConnectRouter, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import {
  GetRegistryRequest,
  GetRegistryResponse,
  GetTraceRequest,
  GetTraceResponse,
  QueryLogsRequest,
  QueryLogsResponse,
  SearchLogsRequest,
  SearchLogsResponse,
  StreamLogsRequest,
  WatchRegistryRequest,
} from '../gen/mycelis/memory/v1/memory.js';
import { openStream, startCall, type ApiProtocol } from './api-metrics.js';
import { createAuthenticator } from './auth.js';
import type { CallContext, MemoryCore } from './core.js';
import { toConnectError } from './status.js';

export const MEMORY_SERVICE = 'mycelis.memory.v1.MemoryService';
const DEFAULT_DESCRIPTORS = new URL('../gen/descriptors.binpb', import.meta.url);

/** The MemoryService descriptor from the `buf build` descriptor set. */
export function loadMemoryServiceDesc(path: URL | string = DEFAULT_DESCRIPTORS): DescService {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(path)));
  const service = registry.getService(MEMORY_SERVICE);
  if (!service) throw new Error(`${String(path)} has no service ${MEMORY_SERVICE}: run npm run generate`);
  return service;
}

/** The client's address, passed from the Node request into handler contexts. */
export const peerKey = createContextKey<string | undefined>(undefined, { description: 'peer address' });

interface WireFns<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

/** protobuf-es message -> ts-proto object. */
export function fromEs<T>(desc: DescMessage, fns: WireFns<T>, message: Message): T {
  return fns.decode(toBinary(desc, message));
}

/** ts-proto object -> protobuf-es message. */
export function toEs<T>(desc: DescMessage, fns: WireFns<T>, value: T): Message {
  return fromBinary(desc, fns.encode(value).finish());
}

function protocolOf(ctx: HandlerContext): ApiProtocol {
  return ctx.protocolName === 'grpc-web' ? 'grpc-web' : ctx.protocolName === 'grpc' ? 'grpc' : 'connect';
}

function callContext(ctx: HandlerContext): CallContext {
  const remaining = ctx.timeoutMs();
  return {
    signal: ctx.signal,
    deadline: remaining === undefined ? undefined : Date.now() + remaining,
    peer: ctx.values.get(peerKey),
  };
}

function codeOf(err: unknown): number {
  return err instanceof ConnectError ? err.code : Code.Unknown;
}

export interface ConnectServiceDeps {
  readonly config: Config;
  readonly core: MemoryCore;
  readonly logger: Logger;
  readonly service?: DescService | undefined;
}

type Unary = (req: Message, ctx: HandlerContext) => Promise<Message>;
type ServerStreaming = (req: Message, ctx: HandlerContext) => AsyncIterable<Message>;

/** Registers MemoryService on a ConnectRouter. */
export function memoryServiceRoutes(deps: ConnectServiceDeps): (router: ConnectRouter) => void {
  const { core } = deps;
  const log = deps.logger.child({ component: 'connect-service' });
  const service = deps.service ?? loadMemoryServiceDesc();
  const authenticate = createAuthenticator(deps.config.api.apiTokens);
  const method = (name: string): DescMethod => {
    const m = service.methods.find((x) => x.name === name);
    if (!m) throw new Error(`descriptor of ${MEMORY_SERVICE} has no method ${name}`);
    return m;
  };
  const mGetRegistry = method('GetRegistry');
  const mQueryLogs = method('QueryLogs');
  const mGetTrace = method('GetTrace');
  const mStreamLogs = method('StreamLogs');
  const mWatchRegistry = method('WatchRegistry');
  const mSearchLogs = method('SearchLogs');

  const unary =
    <Req, Res>(m: DescMethod, reqFns: WireFns<Req>, resFns: WireFns<Res>, fn: (req: Req, ctx: CallContext) => Promise<Res>): Unary =>
    async (req, hctx) => {
      const timer = startCall(m.name, protocolOf(hctx));
      try {
        authenticate(hctx.requestHeader.get('authorization') ?? undefined);
        const res = await fn(fromEs(m.input, reqFns, req), callContext(hctx));
        const out = toEs(m.output, resFns, res);
        timer.end(0); // ok
        return out;
      } catch (err) {
        const ce = toConnectError(err, log, m.name);
        timer.end(codeOf(ce));
        throw ce;
      }
    };

  /** A server stream whose core generator yields already-encoded response messages. */
  const serverStream = <Req>(
    m: DescMethod,
    reqFns: WireFns<Req>,
    open: (req: Req, ctx: CallContext) => AsyncGenerator<Buffer, void, undefined>,
  ): ServerStreaming =>
    async function* (req, hctx) {
      const protocol = protocolOf(hctx);
      const timer = startCall(m.name, protocol);
      let inner: AsyncGenerator<Buffer, void, undefined> | undefined;
      let closeGauge: (() => void) | undefined;
      const release = (code: number): void => {
        timer.end(code);
        closeGauge?.();
        hctx.signal.removeEventListener('abort', onAbort);
      };
      // The leak fix: finish the core's generator (its finally frees the stream slot and its
      // subscription) even if connect-node never resumes this one.
      const onAbort = (): void => {
        inner?.return(undefined).catch(() => undefined);
        release(Code.Canceled);
      };
      try {
        authenticate(hctx.requestHeader.get('authorization') ?? undefined);
        inner = open(fromEs(m.input, reqFns, req), callContext(hctx));
        closeGauge = openStream(protocol);
        if (hctx.signal.aborted) {
          onAbort();
          return;
        }
        hctx.signal.addEventListener('abort', onAbort, { once: true });
        for (;;) {
          const next = await inner.next();
          if (next.done) break;
          if (hctx.signal.aborted) break;
          // The core's responses are already encoded (shared between streams).
          yield fromBinary(m.output, next.value);
        }
        release(hctx.signal.aborted ? Code.Canceled : 0);
      } catch (err) {
        if (hctx.signal.aborted) {
          release(Code.Canceled);
          return;
        }
        const ce = toConnectError(err, log, m.name);
        release(codeOf(ce));
        throw ce;
      } finally {
        // Normal path (the client read to the end, or connect-node returned us): finish the core's
        // generator too. A no-op when it already finished.
        await inner?.return(undefined).catch(() => undefined);
        release(hctx.signal.aborted ? Code.Canceled : 0);
      }
    };

  const impl = {
    getRegistry: unary(mGetRegistry, GetRegistryRequest, GetRegistryResponse, (r, c) => core.getRegistry(r, c)),
    queryLogs: unary(mQueryLogs, QueryLogsRequest, QueryLogsResponse, (r, c) => core.queryLogs(r, c)),
    getTrace: unary(mGetTrace, GetTraceRequest, GetTraceResponse, (r, c) => core.getTrace(r, c)),
    searchLogs: unary(mSearchLogs, SearchLogsRequest, SearchLogsResponse, (r, c) => core.searchLogs(r, c)),
    streamLogs: serverStream(mStreamLogs, StreamLogsRequest, (r, c) => core.streamLogsEncoded(r, c)),
    watchRegistry: serverStream(mWatchRegistry, WatchRegistryRequest, (r, c) => core.watchRegistryEncoded(r, c)),
  };
  // The descriptor comes from a registry at runtime, so its method map is untyped; the impls above
  // have the shapes connect expects for unary and server-streaming methods.
  return (router) => {
    router.service(service, impl as unknown as Partial<ServiceImpl<DescService>>);
  };
}
