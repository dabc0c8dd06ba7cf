// Opaque, versioned, base64url positions handed to clients.
//
// - A stream cursor encodes a global commit position (`seq`): "every record with seq <= this has been
//   considered". It is valid on any replica, because seq is assigned in commit order by the database.
// - A page token encodes a keyset position plus a hash of the request it belongs to (filter, time
//   range, registry filters), so reusing it with another request is detected (AIP-158).
//
// Both carry a short checksum: a truncated or edited value is rejected as malformed rather than
// silently resuming somewhere else. The checksum is not a secret (cursors are not credentials).
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { InvalidArgumentError } from '../errors.js';

// Version 2: the checksum is a CRC-32 (a cursor is made for every record a stream sends, and a
// sha256 per record was a visible share of the live fan-out's CPU). Version 1 (sha256) still decodes,
// so cursors saved before an upgrade resume.
const CURSOR_VERSION = 2;
const CURSOR_V1 = 1;
const CURSOR_DOMAIN = crc32('mycelis-cursor');
const CURSOR_BYTES = 1 + 8 + 4;
const TOKEN_VERSION = 1;

function checksum(domain: string, body: Uint8Array, n: number): Buffer {
  return createHash('sha256').update(domain).update(body).digest().subarray(0, n);
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

// One buffer for every cursor made (the string is the result; nothing keeps the bytes).
const cursorBytes = Buffer.alloc(CURSOR_BYTES);
const cursorBody = cursorBytes.subarray(0, 9);

export function encodeCursor(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`cursor seq out of range: ${seq}`);
  cursorBytes[0] = CURSOR_VERSION;
  // seq < 2^53: high and low 32-bit halves, big-endian (the same bytes as writeBigUInt64BE).
  cursorBytes.writeUInt32BE(Math.floor(seq / 0x100000000), 1);
  cursorBytes.writeUInt32BE(seq >>> 0, 5);
  cursorBytes.writeUInt32BE(crc32(cursorBody, CURSOR_DOMAIN), 9);
  return cursorBytes.toString('base64url');
}

/** Decodes a stream cursor; `field` names the request field in the error. */
export function decodeCursor(cursor: string, field: string): number {
  const bad = (why: string): InvalidArgumentError => new InvalidArgumentError(field, `malformed cursor (${why})`);
  if (cursor.length > 64 || !BASE64URL.test(cursor)) throw bad('not a cursor this service issued');
  const buf = Buffer.from(cursor, 'base64url');
  if (buf.length !== CURSOR_BYTES) throw bad('wrong length');
  const version = buf.readUInt8(0);
  if (version === CURSOR_VERSION) {
    if (crc32(buf.subarray(0, 9), CURSOR_DOMAIN) !== buf.readUInt32BE(9)) throw bad('checksum mismatch');
  } else if (version === CURSOR_V1) {
    if (!checksum('mycelis-cursor', buf.subarray(0, 9), 4).equals(buf.subarray(9))) throw bad('checksum mismatch');
  } else {
    throw bad(`unsupported version ${version}`);
  }
  const seq = buf.readBigUInt64BE(1);
  if (seq > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('position out of range');
  return Number(seq);
}

/** A stable hash of a request's filtering parameters (callers pass already-normalized values). */
export function requestHash(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 16);
}

export type TokenKind = 'logs' | 'registry' | 'search';

/** Seals a page token: kind + request hash + keyset position. */
export function encodePageToken(kind: TokenKind, hash: string, position: Record<string, string | number | null>): string {
  const body = Buffer.from(JSON.stringify({ v: TOKEN_VERSION, k: kind, h: hash, p: position }), 'utf8');
  return Buffer.concat([body, checksum('mycelis-page-token', body, 8)]).toString('base64url');
}

/**
 * Opens a page token of `kind` issued for a request with hash `hash`. Malformed or tampered tokens
 * and tokens of another request are InvalidArgumentError on `field`.
 */
export function decodePageToken(kind: TokenKind, token: string, hash: string, field: string): Record<string, unknown> {
  const bad = (why: string): InvalidArgumentError => new InvalidArgumentError(field, why);
  if (token.length > 2048 || !BASE64URL.test(token)) throw bad('malformed page token');
  const buf = Buffer.from(token, 'base64url');
  if (buf.length <= 8) throw bad('malformed page token');
  const body = buf.subarray(0, buf.length - 8);
  if (!checksum('mycelis-page-token', body, 8).equals(buf.subarray(buf.length - 8))) throw bad('malformed page token (checksum mismatch)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new InvalidArgumentError(field, 'malformed page token', { cause: err });
  }
  const t = parsed as { v?: unknown; k?: unknown; h?: unknown; p?: unknown };
  if (t === null || typeof t !== 'object' || t.v !== TOKEN_VERSION) throw bad('unsupported page token version');
  if (t.k !== kind) throw bad('page token belongs to another method');
  if (t.h !== hash) throw bad('page token was issued for a different filter; start again without a page token');
  if (t.p === null || typeof t.p !== 'object') throw bad('malformed page token');
  return t.p as Record<string, unknown>;
}
