// The HTTP port (HTTP_PORT, default 8080): MemoryService over Connect (JSON and binary; GET for the
// NO_SIDE_EFFECTS methods) and gRPC-Web via @connectrpc/connect-node, plus /healthz, /readyz and
// /metrics, with CORS from CORS_ORIGINS.
//
// Transports on one port:
// - cleartext: HTTP/1.1 (what browsers speak without TLS) and h2c. Node's http2 server only offers
//   HTTP/1.1 fallback over TLS, so a small sniffer looks at a connection's first bytes: the HTTP/2
//   client preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") goes to the h2 server, anything else to the
//   HTTP/1.1 server.
// - TLS (TLS_CERT_FILE/TLS_KEY_FILE): one http2 secure server with ALPN h2 and http/1.1.
// Native gRPC is served on GRPC_PORT (grpc-js), not here, so metrics' protocol labels stay
// unambiguous; a gRPC request to this port gets connect-node's "unsupported content type" (415).
//
// Shutdown: readiness turns 503, open streams get a final response with their cursor and end
// (MemoryCore.closeStreams), then `shutdownSignal` aborts whatever is left (clients see a proper
// error instead of connect-node's "incomplete envelope"), in-flight requests finish, idle
// connections close, and at the deadline the rest is destroyed.
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { Code, ConnectError, createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { metricsRegistry } from '../metrics.js';
import { memoryServiceRoutes, peerKey } from './connect-service.js';
import type { MemoryCore } from './core.js';
import { createCorsPolicy } from './cors.js';
import { loadWebAssets, writeHead } from './web-assets.js';

/** What /readyz needs to know about readiness (ApiHealth satisfies it). */
export interface Readiness {
  readonly isReady: boolean;
}

export interface HttpServerDeps {
  readonly config: Config;
  readonly core: MemoryCore;
  /** Readiness shared with the gRPC health service (src/api/health.ts ApiHealth). */
  readonly health: Readiness;
  /** NATS and ingest state for /readyz's body (src/ingest status()); absent when ingest is off. */
  readonly ingestStatus?: (() => object | undefined) | undefined;
  readonly logger: Logger;
}

export interface RunningHttpServer {
  readonly port: number;
  shutdown(timeoutMs?: number): Promise<void>;
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

function sendText(res: Res, status: number, body: string, contentType = 'text/plain; charset=utf-8', head = false): void {
  const buf = Buffer.from(body, 'utf8');
  writeHead(res, status, { 'content-type': contentType, 'content-length': String(buf.length), 'cache-control': 'no-store' });
  if (head) res.end();
  else res.end(buf);
}

export async function startHttpServer(deps: HttpServerDeps): Promise<RunningHttpServer> {
  const { config, core, health } = deps;
  const log = deps.logger.child({ component: 'http-server' });
  const cors = createCorsPolicy(config.api.corsOrigins);
  // The live page (web/, built by npm run build) at / and /assets/*.
  const webAssets = loadWebAssets(deps.logger);
  const shutdownController = new AbortController();
  let shuttingDown = false;

  const connectHandler = connectNodeAdapter({
    routes: memoryServiceRoutes({ config, core, logger: deps.logger }),
    grpc: false,
    grpcWeb: true,
    connect: true,
    shutdownSignal: shutdownController.signal,
    // Connect's default, stated: unknown JSON fields are ignored (clients may be newer than us).
    jsonOptions: { ignoreUnknownFields: true },
    readMaxBytes: MAX_REQUEST_BYTES,
    writeMaxBytes: MAX_RESPONSE_BYTES,
    contextValues: (req) => {
      const s = req.socket;
      return createContextValues().set(peerKey, s.remoteAddress ? `${s.remoteAddress}:${s.remotePort ?? 0}` : undefined);
    },
  });

  const readyBody = (): { status: number; body: string } => {
    const dbReady = health.isReady;
    const ready = dbReady && !shuttingDown;
    let ingest: object | undefined;
    try {
      ingest = deps.ingestStatus?.();
    } catch (err) {
      log.warn({ err }, 'ingest status failed');
    }
    const connected = ingest && 'connected' in ingest ? Boolean((ingest as { connected: unknown }).connected) : undefined;
    const body = {
      status: ready ? 'ready' : 'not ready',
      shuttingDown,
      // ApiHealth's probe: the database answers and the migrations the API needs are applied.
      database: shuttingDown ? 'unknown' : dbReady ? 'ok' : 'unavailable',
      // NATS never makes the service unready: history still serves.
      nats: config.ingest.mode === 'off' ? 'off' : connected === undefined ? 'unknown' : connected ? 'connected' : 'disconnected',
      ingest: ingest ?? { mode: config.ingest.mode },
      openStreams: core.openStreamCount,
    };
    return { status: ready ? 200 : 503, body: JSON.stringify(body) };
  };

  // In-flight requests (so shutdown can wait for them) and every socket (so it can end them).
  let inFlight = 0;
  let idleWaiter: (() => void) | undefined;
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();

  const onRequest = (req: Req, res: Res): void => {
    inFlight++;
    let counted = true;
    const done = (): void => {
      if (!counted) return;
      counted = false;
      inFlight--;
      if (inFlight === 0) idleWaiter?.();
    };
    res.once('close', done);
    res.once('finish', done);
    if (shuttingDown && 'shouldKeepAlive' in res) res.shouldKeepAlive = false;
    try {
      if (cors.handle(req.method, req.headers, res)) return;
      const path = (req.url ?? '/').split('?')[0];
      const head = req.method === 'HEAD';
      if (webAssets.handle(req.method, path ?? '/', req.headers, res)) return;
      if (path === '/healthz' || path === '/readyz' || path === '/metrics') {
        if (req.method !== 'GET' && !head) {
          res.setHeader('allow', 'GET, HEAD');
          sendText(res, 405, 'method not allowed\n');
          return;
        }
        if (path === '/healthz') {
          // Live = this process answers; a database outage must not restart the pod.
          sendText(res, 200, '{"status":"ok"}', 'application/json', head);
        } else if (path === '/readyz') {
          const r = readyBody();
          sendText(res, r.status, r.body, 'application/json', head);
        } else {
          metricsRegistry.metrics().then(
            (text) => sendText(res, 200, text, metricsRegistry.contentType, head),
            (err: unknown) => {
              log.error({ err }, 'metrics collection failed');
              sendText(res, 500, 'metrics collection failed\n');
            },
          );
        }
        return;
      }
      connectHandler(req, res);
    } catch (err) {
      log.error({ err }, 'request handler failed');
      if (!res.headersSent) sendText(res, 500, 'internal error\n');
      else res.destroy();
    }
  };

  const tls = config.api.tlsCertFile && config.api.tlsKeyFile ? { cert: readFileSync(config.api.tlsCertFile), key: readFileSync(config.api.tlsKeyFile) } : undefined;

  let listener: net.Server;
  let h1: http.Server | undefined;
  let h2: http2.Http2Server | http2.Http2SecureServer;
  if (tls) {
    const secure = http2.createSecureServer({ ...tls, allowHTTP1: true, ALPNProtocols: ['h2', 'http/1.1'] }, onRequest);
    h2 = secure;
    listener = secure;
    secure.on('connection', (s: net.Socket) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
  } else {
    const plainH2 = http2.createServer({}, onRequest);
    h2 = plainH2;
    h1 = http.createServer({}, onRequest);
    const h1Server = h1;
    listener = net.createServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      // Sniff: read until the bytes seen either diverge from the h2 preface or complete it.
      let seen: Buffer = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
        const n = Math.min(seen.length, H2_PREFACE.length);
        const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
        if (isPrefix && n < H2_PREFACE.length) return; // need more bytes
        socket.off('data', onData);
        socket.pause();
        socket.unshift(seen);
        if (isPrefix) {
          // The h2 session takes the bytes already buffered on the socket, then reads the handle
          // natively; resuming the JS stream here would steal frames from it.
          plainH2.emit('connection', socket);
        } else {
          h1Server.emit('connection', socket);
          socket.resume();
        }
      };
      socket.on('data', onData);
    });
  }
  h2.on('session', (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
    s.on('error', () => undefined);
  });
  h1?.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy(err);
  });

  const host = config.api.host;
  const port = await new Promise<number>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(config.api.httpPort, host, () => {
      listener.off('error', reject);
      const addr = listener.address();
      resolve(typeof addr === 'object' && addr ? addr.port : config.api.httpPort);
    });
  });
  listener.on('error', (err) => log.error({ err }, 'HTTP listener error'));
  log.info(
    { port, tls: Boolean(tls), auth: config.api.apiTokens.length > 0, corsOrigins: config.api.corsOrigins },
    'HTTP server listening (Connect, gRPC-Web, /healthz, /readyz, /metrics)',
  );

  /** Resolves when no request is in flight, or at `until` (ms since epoch). */
  const idle = (until: number): Promise<void> =>
    inFlight === 0
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.max(0, until - Date.now()));
          function done(): void {
            clearTimeout(timer);
            idleWaiter = undefined;
            resolve();
          }
          idleWaiter = done;
        });

  let stopping: Promise<void> | undefined;
  const shutdown = (timeoutMs = Math.min(config.shutdownTimeoutMs, 10_000)): Promise<void> => {
    stopping ??= (async () => {
      const deadline = Date.now() + timeoutMs;
      shuttingDown = true;
      listener.close();
      // Streams first: each gets a final response carrying its cursor, then ends.
      await core.closeStreams(timeoutMs / 2);
      // Let those final responses (and in-flight unary calls) reach the wire before anything is
      // aborted: aborting now would reset an h2 stream that is still writing its end-of-stream.
      await idle(deadline - timeoutMs / 4);
      shutdownController.abort(new ConnectError('the service is shutting down', Code.Unavailable));
      for (const s of sessions) s.close();
      h1?.closeIdleConnections();
      await idle(deadline);
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      log.info('HTTP server stopped');
    })();
    return stopping;
  };
  return { port, shutdown };
}
