// The MemoryService client shared by the operator commands (tail, trace, registry): one set of flags for the
// address, token and TLS, two transports with the same typed client (protobuf-es types from web/gen,
// the same ones the browser page uses):
// - native gRPC over HTTP/2 (default, --addr host:port, default 127.0.0.1:50051), h2c unless --tls/--ca;
// - Connect over HTTP/1.1 (--connect URL) against the HTTP port, https:// means TLS.
// Failures become CliErrors with the CLI's exit codes: cannot connect 3, unauthenticated 4, a bad flag
// value the server rejected (cursor, filter) 64, anything else 1.
import { readFileSync } from 'node:fs';
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { MemoryService } from '../../web/gen/mycelis/memory/v1/memory_pb.js';
import { CliError, type Command, UsageError } from './command.js';
import { EXIT } from './exit-codes.js';
import { describe, exitCodeFor } from './failure.js';

export const DEFAULT_GRPC_ADDR = '127.0.0.1:50051';

/** parseArgs options every client command accepts. */
export const CLIENT_FLAG_OPTIONS = {
  addr: { type: 'string' },
  connect: { type: 'string' },
  token: { type: 'string' },
  tls: { type: 'boolean' },
  ca: { type: 'string' },
} as const;

export const CLIENT_FLAGS_HELP = `Connection (the same for every client command):
      --addr HOST:PORT     the service's gRPC port (default ${DEFAULT_GRPC_ADDR})
      --connect URL        use the Connect protocol on the HTTP port instead, e.g. http://127.0.0.1:8080
                           (https:// means TLS)
      --token TOKEN        bearer token when the service has API_TOKENS (default $MYCELIS_TOKEN)
      --tls                TLS to --addr, verified against the system CAs
      --ca FILE            PEM CA bundle to verify the server with (implies --tls)`;

export interface ClientOptions {
  readonly protocol: 'grpc' | 'connect';
  /** Base URL the transport talks to. */
  readonly baseUrl: string;
  /** What to name in messages: "127.0.0.1:50051 (gRPC)". */
  readonly target: string;
  readonly token: string | undefined;
  readonly ca: Buffer | undefined;
}

export type MemoryClient = Client<typeof MemoryService>;

export interface ClientHandle {
  readonly client: MemoryClient;
  readonly options: ClientOptions;
  /** Closes the HTTP/2 session (gRPC); a no-op for Connect over HTTP/1.1. */
  close(): void;
}

/** Reads and checks the connection flags (token from --token, else MYCELIS_TOKEN). */
export function clientOptions(command: Command, values: Record<string, unknown>, env: Readonly<Record<string, string | undefined>>): ClientOptions {
  const addr = typeof values['addr'] === 'string' ? values['addr'] : undefined;
  const connectUrl = typeof values['connect'] === 'string' ? values['connect'] : undefined;
  const tokenFlag = typeof values['token'] === 'string' ? values['token'] : undefined;
  const caFile = typeof values['ca'] === 'string' ? values['ca'] : undefined;
  const tlsFlag = values['tls'] === true;
  if (addr !== undefined && connectUrl !== undefined) throw new UsageError('--addr and --connect exclude each other', command);

  const token = tokenFlag ?? (env['MYCELIS_TOKEN'] || undefined);
  if (token !== undefined && (token === '' || /\s/.test(token))) {
    throw new UsageError('the token (--token or MYCELIS_TOKEN) must be non-empty and without whitespace', command);
  }
  let ca: Buffer | undefined;
  if (caFile !== undefined) {
    try {
      ca = readFileSync(caFile);
    } catch (err) {
      throw new UsageError(`--ca: cannot read ${JSON.stringify(caFile)}: ${describe(err)}`, command, { cause: err });
    }
  }

  if (connectUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(connectUrl);
    } catch (err) {
      throw new UsageError(`--connect must be an http:// or https:// URL, got ${JSON.stringify(connectUrl)}`, command, { cause: err });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new UsageError(`--connect must be an http:// or https:// URL, got ${JSON.stringify(connectUrl)}`, command);
    }
    if ((tlsFlag || ca) && url.protocol === 'http:') url.protocol = 'https:';
    const baseUrl = url.toString().replace(/\/+$/, '');
    return { protocol: 'connect', baseUrl, target: `${baseUrl} (Connect)`, token, ca };
  }

  const hostPort = addr ?? DEFAULT_GRPC_ADDR;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(hostPort);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(`--addr must be HOST:PORT such as ${DEFAULT_GRPC_ADDR}, got ${JSON.stringify(hostPort)}`, command);
  }
  const scheme = tlsFlag || ca ? 'https' : 'http';
  return { protocol: 'grpc', baseUrl: `${scheme}://${hostPort}`, target: `${hostPort} (gRPC${scheme === 'https' ? ', TLS' : ''})`, token, ca };
}

export function createMemoryClient(opts: ClientOptions): ClientHandle {
  const interceptors: Interceptor[] = [];
  if (opts.token !== undefined) {
    const header = `Bearer ${opts.token}`;
    interceptors.push((next) => (req) => {
      req.header.set('authorization', header);
      return next(req);
    });
  }
  let transport: Transport;
  let close = (): void => undefined;
  if (opts.protocol === 'grpc') {
    // Pings find a dead connection under a quiet stream; the service itself sends a keepalive
    // response at least every KEEPALIVE_INTERVAL (15 s).
    const sessionManager = new Http2SessionManager(
      opts.baseUrl,
      { pingIntervalMs: 10_000, pingTimeoutMs: 10_000, idleConnectionTimeoutMs: 60_000 },
      opts.ca ? { ca: opts.ca } : undefined,
    );
    transport = createGrpcTransport({ baseUrl: opts.baseUrl, sessionManager, interceptors });
    close = () => sessionManager.abort();
  } else {
    transport = createConnectTransport({
      baseUrl: opts.baseUrl,
      httpVersion: '1.1',
      useBinaryFormat: true,
      interceptors,
      ...(opts.ca ? { nodeOptions: { ca: opts.ca } } : {}),
    });
  }
  return { client: createClient(MemoryService, transport), options: opts, close };
}

/** True for failures worth a reconnect: the service is down, restarting or unreachable right now. */
export function isTransient(err: unknown): boolean {
  const ce = ConnectError.from(err);
  if (ce.code === Code.Unavailable || ce.code === Code.ResourceExhausted || ce.code === Code.Aborted) return true;
  // A connection cut mid-stream surfaces from HTTP/2 or HTTP/1.1 as internal/unknown with a socket cause.
  if (ce.code === Code.Internal || ce.code === Code.Unknown) return exitCodeFor(err) === EXIT.CONNECT || /ECONNRESET|socket hang up|premature close|stream closed|GOAWAY|NGHTTP2|terminated/i.test(describe(err));
  return false;
}

/** The CLI error for a failed call: exit 3 when the service cannot be reached, 4 when it refuses the token. */
export function clientFailure(err: unknown, opts: ClientOptions, what: string): CliError {
  const ce = ConnectError.from(err);
  const detail = ce.rawMessage || describe(err);
  switch (ce.code) {
    case Code.Unauthenticated:
      return new CliError(
        `${what}: the service at ${opts.target} refused the credentials (${detail}); pass --token or set MYCELIS_TOKEN`,
        EXIT.UNAUTHENTICATED,
        { cause: err },
      );
    case Code.InvalidArgument:
    case Code.OutOfRange:
      return new CliError(`${what}: the service rejected the request: ${detail}`, EXIT.USAGE, { cause: err });
    case Code.NotFound:
      return new CliError(`${what}: ${detail}`, EXIT.FAILURE, { cause: err });
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return new CliError(`${what}: cannot connect to the service at ${opts.target}: ${describe(err)}`, EXIT.CONNECT, { cause: err });
    default:
      if (isTransient(err)) {
        return new CliError(`${what}: cannot connect to the service at ${opts.target}: ${describe(err)}`, EXIT.CONNECT, { cause: err });
      }
      return new CliError(`${what} failed (${Code[ce.code] ?? ce.code}) at ${opts.target}: ${detail}`, EXIT.FAILURE, { cause: err });
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
