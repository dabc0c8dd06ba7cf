// Deterministic row ids (DESIGN 3.2): the same event always gets the same id, so redelivery, replays
// and the router's swarm.audit.trace copy (identical bytes) hit ON CONFLICT DO NOTHING instead of making
// a second row.
//
// Layout is UUIDv7 (RFC 9562): 48-bit event-time milliseconds, version 7, variant 10, and the remaining
// 74 bits from a SHA-256 of the identity key, so the primary-key index stays append-mostly.
// The time prefix comes only from the message itself (its raw timestamp), never from arrival or server
// time, which differ between the original and its audit copy; a message without a timestamp uses the
// stream's time for that position (stable across redelivery of the same stream message).
//
// Beyond DESIGN 3.2's three rules: a mission event (DESIGN 3.1.1) is identified by its
// mission_event_id, as an envelope by its id; and a dead letter replayed by `mycelis-memory dead-letters
// replay` carries a Mycelis-Replay-Of header naming the message it came from, so a message without an
// id or timestamp is the same row however often it is replayed (the replay's own stream position is new
// each time).

import { Buffer } from 'node:buffer';
import { hash, randomBytes } from 'node:crypto';

import type { Timestamp } from '../gen/google/protobuf/timestamp.js';

/** Which identity rule produced an id (exposed for tests and metrics). */
export type IdentityKind = 'envelope_id' | 'mission_event_id' | 'payload_hash' | 'replay_origin' | 'stream_position' | 'random';

/** What a replayed dead letter says about its origin (the Mycelis-Replay-Of header). */
export interface ReplayOrigin {
  /** ingest_rejects.id of the dead letter replayed. */
  readonly deadLetterId: string;
  /** Its stream sequence (0 in core mode or when unknown). */
  readonly streamSeq: number;
  /** When it was first received, µs. */
  readonly receivedUs: number;
}

export interface IdentityInput {
  /** MsgEnvelope.id ('' when absent, and always '' for LogEntry). */
  readonly envelopeId: string;
  /** A mission event's mission_event_id ('' otherwise). */
  readonly missionEventId?: string;
  /** Set when the message is a replayed dead letter. */
  readonly replayOf?: ReplayOrigin | null;
  /** The source exactly as sent (source_agent_id / agent_id / source), before any fallback. */
  readonly sourceAsSent: string;
  /** The message's own timestamp, raw (undefined when unset). */
  readonly timestamp: Timestamp | undefined;
  /** The payload bytes as received. */
  readonly payload: Uint8Array;
  readonly streamName: string;
  readonly streamCreatedUs: number;
  /** 0 in core mode. */
  readonly streamSeq: number;
  /** NATS server time (JetStream: the stored time of that stream position), µs. */
  readonly serverTimeUs: number;
}

export function deriveRowId(input: IdentityInput): { id: string; kind: IdentityKind } {
  const ts = input.timestamp;
  if (input.envelopeId !== '') {
    // The raw seconds and nanos, not a millisecond Date: a reused id with a new timestamp is a new event.
    const key = keyOf('env', input.sourceAsSent, input.envelopeId, ts?.seconds ?? '', String(ts?.nanos ?? ''));
    return { id: uuidV7(timestampMs(ts), hash('sha256', key, 'hex')), kind: 'envelope_id' };
  }
  const missionId = input.missionEventId ?? '';
  if (missionId !== '') {
    // No timestamp to take the time prefix from: 0, so every copy has the same id.
    return { id: uuidV7(0, hash('sha256', keyOf('mission', input.sourceAsSent, missionId), 'hex')), kind: 'mission_event_id' };
  }
  if (ts !== undefined) {
    return { id: uuidV7(timestampMs(ts), hash('sha256', input.payload, 'hex')), kind: 'payload_hash' };
  }
  const timeMs = Math.floor(input.serverTimeUs / 1000);
  const origin = input.replayOf;
  if (origin) {
    // Two dead letters of one message (a redelivery that failed twice) share its stream sequence and
    // bytes; without a sequence, the dead letter itself is the identity.
    const key =
      origin.streamSeq > 0
        ? keyOf('replay-seq', String(origin.streamSeq), hash('sha256', input.payload, 'hex'))
        : keyOf('replay-dl', origin.deadLetterId);
    return { id: uuidV7(Math.floor(origin.receivedUs / 1000), hash('sha256', key, 'hex')), kind: 'replay_origin' };
  }
  if (input.streamSeq > 0) {
    const key = keyOf('stream', input.streamName, String(input.streamCreatedUs), String(input.streamSeq));
    return { id: uuidV7(timeMs, hash('sha256', key, 'hex')), kind: 'stream_position' };
  }
  // Core mode, no id and no timestamp: nothing identifies the message, so copies cannot be recognised.
  return { id: uuidV7(timeMs, randomBytes(16).toString('hex')), kind: 'random' };
}

/** Length-prefixed fields, so no two different tuples share a key. */
function keyOf(...parts: string[]): string {
  let key = '';
  for (const p of parts) key += `${p.length}:${p}`;
  return key;
}

const MAX_MS = 2 ** 48 - 1;

/** The raw timestamp in ms for the UUID prefix, clamped to the 48 bits of the layout. */
function timestampMs(ts: Timestamp | undefined): number {
  if (ts === undefined) return 0;
  const ms = Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
  return clampMs(ms);
}

function clampMs(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) return 0;
  return ms > MAX_MS ? MAX_MS : Math.floor(ms);
}

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
const VARIANT_NIBBLE = Buffer.from('89ab', 'latin1');
/** Where the 12 hex digits of the time go in the 36 characters (the dash at 8 skipped). */
const TIME_AT = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12] as const;
/** One id at a time is laid out here (synchronous, not reentrant); the dashes and the version are fixed. */
const UUID = Buffer.alloc(36);
for (const at of [8, 13, 18, 23]) UUID[at] = 0x2d; // '-'
UUID[14] = 0x37; // '7'

/**
 * UUIDv7 layout from a millisecond time and a hex digest (at least 19 hex digits): 48 bits of time,
 * version 7, 12 hash bits, variant 10, 62 hash bits.
 *
 * Per row, so its characters are written into one scratch buffer and read out as one flat string (the
 * slices and the template it was built from cost three times as long and left a tree of pieces).
 */
export function uuidV7(ms: number, hashHex: string): string {
  const t = clampMs(ms);
  let lo = t % 0x1000000;
  let hi = (t - lo) / 0x1000000;
  for (let i = 11; i >= 6; i--) {
    UUID[TIME_AT[i]!] = HEX_DIGITS[lo & 15]!;
    lo >>>= 4;
  }
  for (let i = 5; i >= 0; i--) {
    UUID[TIME_AT[i]!] = HEX_DIGITS[hi & 15]!;
    hi >>>= 4;
  }
  UUID[15] = hashHex.charCodeAt(0);
  UUID[16] = hashHex.charCodeAt(1);
  UUID[17] = hashHex.charCodeAt(2);
  UUID[19] = VARIANT_NIBBLE[parseInt(hashHex.charAt(3), 16) & 0x3]!;
  UUID[20] = hashHex.charCodeAt(4);
  UUID[21] = hashHex.charCodeAt(5);
  UUID[22] = hashHex.charCodeAt(6);
  for (let i = 0; i < 12; i++) UUID[24 + i] = hashHex.charCodeAt(7 + i);
  return UUID.toString('latin1', 0, 36);
}
