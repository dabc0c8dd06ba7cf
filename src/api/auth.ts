// Bearer-token check for MemoryService calls, transport-free (the gRPC and Connect adapters both call
// it with the raw `authorization` header). Tokens are compared as SHA-256 digests with
// crypto.timingSafeEqual (equal lengths, so neither content nor length leaks through timing), every
// configured token is compared (no early exit), the token is case-sensitive, the scheme "Bearer" is
// not. Tokens never appear in errors or logs.
import { createHash, timingSafeEqual } from 'node:crypto';
import { UnauthenticatedError } from '../errors.js';

export type Authenticator = (authorization: string | undefined) => void;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** With no tokens configured, every call is allowed. Otherwise throws UnauthenticatedError. */
export function createAuthenticator(tokens: readonly string[]): Authenticator {
  const digests = tokens.filter((t) => t.length > 0).map(digest);
  if (digests.length === 0) return () => undefined;
  return (authorization) => {
    if (authorization === undefined || authorization === '') {
      throw new UnauthenticatedError('missing authorization: expected "authorization: Bearer <token>"');
    }
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m) throw new UnauthenticatedError('malformed authorization: expected "Bearer <token>"');
    const presented = digest(m[1]!);
    let ok = false;
    for (const d of digests) ok = timingSafeEqual(d, presented) || ok;
    if (!ok) throw new UnauthenticatedError('invalid bearer token');
  };
}
