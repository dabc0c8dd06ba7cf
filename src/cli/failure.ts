// Maps a failure to the CLI's exit codes by walking its cause chain: connection problems (NATS,
// PostgreSQL, the service) are 3, refused credentials 4, everything else 1.
import { UnauthenticatedError, UnavailableError } from '../errors.js';
import { EXIT, type ExitCode } from './exit-codes.js';

const CONNECT_ERRNOS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE']);
// nats.js ErrorCode values meaning the server was not reachable.
const NATS_CONNECT = new Set(['CONNECTION_REFUSED', 'CONNECTION_TIMEOUT', 'CONNECTION_CLOSED', 'DISCONNECT']);
const NATS_AUTH = new Set(['AUTHORIZATION_VIOLATION', 'AUTHENTICATION_EXPIRED', 'AUTHENTICATION_TIMEOUT', 'PERMISSIONS_VIOLATION']);

function* causes(err: unknown): Generator<unknown> {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e !== undefined && e !== null && !seen.has(e)) {
    seen.add(e);
    yield e;
    if (e instanceof AggregateError) for (const inner of e.errors) yield inner;
    e = (e as { cause?: unknown }).cause;
  }
}

export function exitCodeFor(err: unknown): ExitCode {
  for (const e of causes(err)) {
    if (e instanceof UnauthenticatedError) return EXIT.UNAUTHENTICATED;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (NATS_AUTH.has(code)) return EXIT.UNAUTHENTICATED;
      // PostgreSQL: 28xxx invalid authorization; 08xxx connection exceptions; 57P03 cannot connect now.
      if (/^28[0-9A-Z]{3}$/.test(code)) return EXIT.UNAUTHENTICATED;
      if (CONNECT_ERRNOS.has(code) || NATS_CONNECT.has(code) || /^08[0-9A-Z]{3}$/.test(code) || code === '57P03') return EXIT.CONNECT;
    }
  }
  for (const e of causes(err)) if (e instanceof UnavailableError) return EXIT.CONNECT;
  return EXIT.FAILURE;
}

/** The innermost useful message, e.g. "connect ECONNREFUSED 127.0.0.1:5999", for one-line reports. */
export function describe(err: unknown): string {
  const msgs: string[] = [];
  for (const e of causes(err)) {
    const m = e instanceof Error ? e.message : String(e);
    if (m && !msgs.some((x) => x.includes(m))) msgs.push(m);
  }
  return msgs.join(': ') || 'unknown error';
}
