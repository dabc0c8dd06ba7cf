// CORS for browsers calling the HTTP port (Connect-Web, gRPC-Web), from CORS_ORIGINS.
// - Exact origins only; `*` only when configured explicitly (then any origin is echoed back).
// - Allowed origin: the actual response carries Access-Control-Allow-Origin (the origin itself, with
//   Vary: Origin) and exposes the Connect/gRPC-Web headers a client must read; a preflight is answered
//   204 with the methods and request headers the protocols use (plus Authorization for API_TOKENS).
// - Disallowed origin (or none configured): no CORS headers at all; its preflight is refused with 403.
//   Its actual requests are still served (a non-browser client may send any Origin), but a browser
//   will not let the page read them.
import type { IncomingHttpHeaders } from 'node:http';

export const CORS_ALLOWED_METHODS = ['GET', 'POST'] as const;
export const CORS_ALLOWED_HEADERS = [
  'Content-Type',
  'Connect-Protocol-Version',
  'Connect-Timeout-Ms',
  'Connect-Accept-Encoding',
  'Connect-Content-Encoding',
  'Content-Encoding',
  'Accept-Encoding',
  'Grpc-Timeout',
  'Grpc-Message-Type',
  'X-Grpc-Web',
  'X-User-Agent',
  'Authorization',
] as const;
export const CORS_EXPOSED_HEADERS = [
  'Grpc-Status',
  'Grpc-Message',
  'Grpc-Status-Details-Bin',
  'Content-Encoding',
  'Connect-Content-Encoding',
  'Connect-Accept-Encoding',
  'Connect-Protocol-Version',
] as const;
const MAX_AGE_SECONDS = 7200;

interface ResponseLike {
  setHeader(name: string, value: string): unknown;
  writeHead(status: number, headers?: Record<string, string>): unknown;
  end(): unknown;
}

export interface CorsPolicy {
  /** Whether this origin may read responses. */
  allows(origin: string): boolean;
  /**
   * Applies the policy. Returns true when the request was fully answered (a preflight), false when
   * the caller should go on serving it (CORS headers, if any, are already set on the response).
   */
  handle(method: string | undefined, headers: IncomingHttpHeaders, res: ResponseLike): boolean;
}

export function createCorsPolicy(origins: readonly string[]): CorsPolicy {
  const any = origins.includes('*');
  // Origins compare case-insensitively in scheme and host; CORS_ORIGINS has no paths (config checks).
  const exact = new Set(origins.filter((o) => o !== '*').map((o) => o.toLowerCase()));
  const allows = (origin: string): boolean => origin !== 'null' && (any || exact.has(origin.toLowerCase()));
  return {
    allows,
    handle(method, headers, res) {
      const origin = typeof headers.origin === 'string' ? headers.origin : undefined;
      const preflight = method === 'OPTIONS' && headers['access-control-request-method'] !== undefined;
      if (origin === undefined) {
        if (preflight) {
          res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8' });
          res.end();
          return true;
        }
        return false;
      }
      if (!allows(origin)) {
        if (preflight) {
          res.writeHead(403, { vary: 'Origin' });
          res.end();
          return true;
        }
        res.setHeader('vary', 'Origin');
        return false;
      }
      res.setHeader('vary', 'Origin');
      if (preflight) {
        const requested = String(headers['access-control-request-method']).toUpperCase();
        if (!(CORS_ALLOWED_METHODS as readonly string[]).includes(requested)) {
          res.writeHead(403, {});
          res.end();
          return true;
        }
        res.writeHead(204, {
          'access-control-allow-origin': origin,
          'access-control-allow-methods': CORS_ALLOWED_METHODS.join(', '),
          'access-control-allow-headers': CORS_ALLOWED_HEADERS.join(', '),
          'access-control-max-age': String(MAX_AGE_SECONDS),
          'content-length': '0',
        });
        res.end();
        return true;
      }
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-expose-headers', CORS_EXPOSED_HEADERS.join(', '));
      return false;
    },
  };
}
