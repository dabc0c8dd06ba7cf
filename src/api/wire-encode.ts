// The live fan-out's record encoder: a stored row straight to the bytes of one
// `StreamLogsResponse.records` element (`tag(1, LEN) varint(len) LogRecord`), without building the
// ts-proto object graph (LogRecord -> LogEntry -> Struct.wrap's Value objects) first. Each record is
// encoded once and shared by every stream it goes to, but at tens of thousands of records per second
// the generic path (≈ 14 µs per record, half of it Struct.wrap) was a visible share of the service's
// CPU.
//
// Field numbers and types follow proto/mycelis/memory/v1/memory.proto, proto/mycelis/swarm/v1/
// swarm.proto and google/protobuf/{struct,timestamp}.proto; proto3 defaults are omitted exactly where
// ts-proto omits them (empty strings, zero seq/seconds/nanos, an empty map key), so `LogRecord.decode`
// of these bytes equals `toLogRecord(row)` (test/unit/api-log-record.test.ts). Struct map entries are
// written in sorted key order (as protobuf's deterministic serialization does), so a context gives the
// same bytes whatever its key order: a row handed over from memory and the same row read back from
// jsonb (which reorders keys) encode identically.
//
// The record is written BACKWARDS, from its end towards its start (into a slab, below): a
// nested message's length is then known (it has just been written) when its length prefix is
// written in front of it, so one pass over the row suffices (no size pass, no size bookkeeping).
// Fields therefore appear in this file in reverse field order.

import type { StoredLogRow } from '../store/log-reader.js';
import { markSole, releaseBytes } from '../release-bytes.js';

/**
 * Struct/ListValue levels an API response carries in `context_snapshot` (the context itself is level
 * 1). Each level is two or three nested protobuf messages, and common decoders stop at 100 nested
 * messages (ts-proto and protobuf-es by default, C++): a record nested deeper than this could not be
 * decoded by clients, and a stream would fail on it again after every reconnect. Deeper values are
 * replaced by TRUNCATED_VALUE in responses; the stored row keeps the whole context.
 */
export const MAX_CONTEXT_LEVELS = 32;
export const TRUNCATED_VALUE = `[truncated: nested deeper than ${MAX_CONTEXT_LEVELS} levels]`;

/** The row fields a record is made of: a stored row, its context any parsed JSON value. */
export type EncodableRow = Omit<StoredLogRow, 'context' | 'approxBytes'> & { readonly context: unknown };

// Records are written into slabs, each record backwards from where the previous one began, and handed
// out as views of their slab: no copy. A slab lives as long as any record in it (like Buffer's own
// 8 KiB pool); a record that outgrows what is left of one moves to the end of a new slab. A record
// larger than half a slab gets a slab of its own, sized to what it needs plus GROWN_HEADROOM for the
// fields still to come, and is handed out as a view of it when it wasted at most GROWN_HEADROOM
// (else copied into a buffer of its own size, the grown slab released at once).
const SLAB_BYTES = 32 * 1024;
/**
 * Room a slab grown for a large record leaves in front of what it must hold: the record's remaining
 * fields (ids, level, source, timestamps, the context's other entries) usually fit, so a 512 KiB
 * tool result is one allocation of ~544 KiB. (Doubling made it a 2 MiB slab and a 512 KiB copy per
 * encoding: with 10 streams catching up from the database, 4.8 GB of the 10 GB of large buffers the
 * 1,000 x 512 KiB run allocated; bench/README.md, issue 13 fourth pass.)
 */
const GROWN_HEADROOM = 32 * 1024;

let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
/** slab[0, free) holds no record handed out: the next record may be written there. */
let free = slab.length;
/** The record being written is slab[p, recordEnd). */
let p = 0;
let recordEnd = 0;
/** The record being written has had a slab grown for it (a second growth doubles: amortized O(n)). */
let grew = false;

/**
 * How many bytes of this record are written so far. Nested messages remember this (not p) where they
 * end: moving to a new slab moves the written bytes, but not their distance from the record's end.
 */
const written = (): number => recordEnd - p;

/** Makes room for `n` more bytes in front of p: a new slab, with what is written moved to its end. */
function room(n: number): void {
  if (p >= n) return;
  const used = recordEnd - p;
  const need = used + n;
  let size: number;
  if (2 * need <= SLAB_BYTES) size = SLAB_BYTES;
  else if (grew) size = Math.max(2 * need, need + GROWN_HEADROOM);
  else size = need + GROWN_HEADROOM;
  if (size > SLAB_BYTES) grew = true;
  const next = Buffer.allocUnsafeSlow(size);
  slab.copy(next, size - used, p, recordEnd);
  slab = next;
  recordEnd = size;
  p = size - used;
  free = p;
}

// Room for the longest tag + varint put in front of a body: a 2-byte tag and a 10-byte varint.
const PREFIX_MAX = 12;

/** Bytes of varint(n), n a non-negative integer below 2^53. */
export function varintLen(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let len = 4;
  n = Math.floor(n / 0x10000000);
  while (n > 0) {
    len++;
    n = Math.floor(n / 0x80);
  }
  return len;
}

/** varint(n) in front of p; n is a non-negative integer below 2^53. Needs PREFIX_MAX bytes of room. */
function putVarint(n: number): void {
  if (n < 0x80) {
    slab[--p] = n;
    return;
  }
  const len = varintLen(n);
  p -= len;
  let q = p;
  // Bit operations are 32-bit: above 2^31 divide instead.
  while (n >= 0x80000000) {
    slab[q++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  while (n >= 0x80) {
    slab[q++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  slab[q] = n;
}

/** An int64 varint: negative values are their 64-bit two's complement (ten bytes). */
function putInt64(n: number): void {
  if (n >= 0) {
    putVarint(n);
    return;
  }
  // Only timestamps before 1970 get here.
  let b = BigInt.asUintN(64, BigInt(n));
  p -= 10;
  for (let i = 0; i < 9; i++) {
    slab[p + i] = Number(b & 0x7fn) | 0x80;
    b >>= 7n;
  }
  slab[p + 9] = Number(b);
}

// Strings up to this many code units are tried as ASCII in JS (most keys and values); longer ones,
// and any with a code unit >= 0x80, go through Buffer (one native call each for length and copy).
const ASCII_LOOP_MAX = 128;

/** The UTF-8 bytes of s in front of p; returns their number. */
function putString(s: string): number {
  const n = s.length;
  if (n <= ASCII_LOOP_MAX) {
    room(n);
    const start = p - n;
    for (let i = n - 1; i >= 0; i--) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return putUtf8(s); // overwrites what this loop wrote
      slab[start + i] = c;
    }
    p = start;
    return n;
  }
  return putUtf8(s);
}

function putUtf8(s: string): number {
  // byteLength and write agree on lone surrogates (3 bytes each, written as U+FFFD).
  const b = Buffer.byteLength(s, 'utf8');
  room(b);
  p -= b;
  const w = slab.write(s, p, b, 'utf8');
  if (w !== b) throw new RangeError(`record encoding: wrote ${w} of ${b} UTF-8 bytes`);
  return b;
}

/** A string field with a one-byte tag; the empty string (the proto3 default) is omitted. */
function putStringField(tag: number, s: string): void {
  if (s === '') return;
  const b = putString(s);
  room(PREFIX_MAX);
  putVarint(b);
  slab[--p] = tag;
}

/** A string field with a two-byte tag (LogEntry's fields 1001-1003). */
function putStringField2(tag0: number, tag1: number, s: string): void {
  if (s === '') return;
  const b = putString(s);
  room(PREFIX_MAX);
  putVarint(b);
  slab[--p] = tag1;
  slab[--p] = tag0;
}

/** Length prefix and one-byte tag in front of a message body begun when `mark` bytes were written. */
function putMessageHeader(tag: number, mark: number): void {
  room(PREFIX_MAX);
  putVarint(written() - mark);
  slab[--p] = tag;
}

/** google.protobuf.Timestamp {seconds = 1 (int64), nanos = 2 (int32)} as field `tag`, from µs. */
function putTimestamp(tag: number, us: number): void {
  const end = written();
  const seconds = Math.floor(us / 1_000_000);
  const nanos = (us - seconds * 1_000_000) * 1000; // 0 <= nanos < 1e9: floor keeps it non-negative
  room(2 * PREFIX_MAX);
  if (nanos !== 0) {
    putVarint(nanos);
    slab[--p] = 0x10;
  }
  if (seconds !== 0) {
    putInt64(seconds);
    slab[--p] = 0x08;
  }
  putMessageHeader(tag, end);
}

// ---- google.protobuf.Struct from parsed JSON ------------------------------------------------------

/**
 * Sorts map keys in place by UTF-16 code units (Array.prototype.sort's order); small maps by insertion.
 * Protobuf's deterministic order is bytewise UTF-8, which differs only between U+E000-U+FFFF and astral
 * characters; what matters here is that one context always gets one order.
 */
function sortKeys(keys: string[]): void {
  const n = keys.length;
  if (n > 12) {
    keys.sort();
    return;
  }
  for (let i = 1; i < n; i++) {
    const k = keys[i]!;
    let j = i - 1;
    while (j >= 0 && keys[j]! > k) {
      keys[j + 1] = keys[j]!;
      j--;
    }
    keys[j + 1] = k;
  }
}

/**
 * The body of a google.protobuf.Value: null_value = 1 (enum), number_value = 2 (double),
 * string_value = 3, bool_value = 4, struct_value = 5, list_value = 6. `level` is the level of the
 * Struct/ListValue holding it.
 */
function putValue(v: unknown, level: number): void {
  switch (typeof v) {
    case 'string': {
      const b = putString(v);
      room(PREFIX_MAX);
      putVarint(b);
      slab[--p] = 0x1a;
      return;
    }
    case 'number':
      room(9);
      p -= 8;
      slab.writeDoubleLE(v, p);
      slab[--p] = 0x11;
      return;
    case 'boolean':
      room(2);
      slab[--p] = v ? 1 : 0;
      slab[--p] = 0x20;
      return;
    case 'object': {
      if (v === null) {
        room(2);
        slab[--p] = 0; // NULL_VALUE
        slab[--p] = 0x08;
        return;
      }
      if (level >= MAX_CONTEXT_LEVELS) {
        putValue(TRUNCATED_VALUE, level);
        return;
      }
      const end = written();
      if (Array.isArray(v)) {
        putList(v, level + 1);
        putMessageHeader(0x32, end);
      } else {
        putStruct(v, level + 1);
        putMessageHeader(0x2a, end);
      }
      return;
    }
    case 'undefined':
      // ts-proto's Value.wrap(undefined) is a Value with no kind: an empty body. Not JSON, so
      // reachable only from a hand-built context (an undefined map value is skipped in putStruct).
      return;
    default:
      // Not JSON either; ts-proto's Value.wrap throws on these too.
      throw new TypeError(`record encoding: a context holds a ${typeof v}, which a Struct cannot`);
  }
}

/** google.protobuf.ListValue body: repeated Value values = 1. */
function putList(a: readonly unknown[], level: number): void {
  for (let i = a.length - 1; i >= 0; i--) {
    const end = written();
    putValue(a[i], level);
    putMessageHeader(0x0a, end);
  }
}

/** google.protobuf.Struct body: map<string, Value> fields = 1, entries {key = 1, value = 2}. */
function putStruct(o: object, level: number): void {
  const keys = Object.keys(o);
  sortKeys(keys);
  for (let i = keys.length - 1; i >= 0; i--) {
    const k = keys[i]!;
    const v = (o as Record<string, unknown>)[k];
    if (v === undefined) continue; // as ts-proto's Struct.encode
    const entryEnd = written();
    putValue(v, level);
    putMessageHeader(0x12, entryEnd); // value = 2
    if (k !== '') putStringField(0x0a, k); // key = 1
    putMessageHeader(0x0a, entryEnd); // fields = 1
  }
}

// ---- the record -----------------------------------------------------------------------------------

/**
 * `tag(1, LEN) varint(len) LogRecord` for one row with its cursor: the element a StreamLogsResponse's
 * `records` field is made of. The returned Buffer is a view of a shared slab: read it, copy it, never
 * write to it. If a row cannot be encoded this throws, and nothing of it reaches another record.
 */
export function encodeRecordElement(r: EncodableRow, cursor: string): Buffer {
  // Below the last record handed out: what a record that threw half-way left there is overwritten.
  recordEnd = free;
  p = free;
  grew = false;

  // LogRecord, fields 6 down to 1.
  if (r.seq !== 0) {
    room(PREFIX_MAX);
    putInt64(r.seq);
    slab[--p] = 0x30; // seq = 6 (int64)
  }
  putTimestamp(0x2a, r.receivedAtUs); // ingested_at = 5
  putStringField(0x22, r.subject); // subject = 4

  // entry = 3: mycelis.swarm.v1.LogEntry, fields 1003 down to 1 (5, 8, 9, 10 are never set here).
  const entryEnd = written();
  putStringField2(0xda, 0x3e, r.message); // message = 1003
  putStringField2(0xd2, 0x3e, r.source); // source = 1002
  putStringField2(0xca, 0x3e, r.level); // level = 1001
  const context = r.context;
  if (typeof context === 'object' && context !== null) {
    const contextEnd = written();
    putStruct(context, 1);
    putMessageHeader(0x3a, contextEnd); // context_snapshot = 7
  }
  putStringField(0x32, r.intent); // intent = 6
  putStringField(0x22, r.teamId); // team_id = 4
  putStringField(0x1a, r.source); // agent_id = 3
  putStringField(0x12, r.traceId); // trace_id = 2
  putTimestamp(0x0a, r.timestampUs); // timestamp = 1
  putMessageHeader(0x1a, entryEnd);

  putStringField(0x12, cursor); // cursor = 2
  putStringField(0x0a, r.id); // id = 1

  putMessageHeader(0x0a, 0); // StreamLogsResponse.records = 1
  if (slab.length > SLAB_BYTES) {
    // A slab grown for this record holds no other (a record moves to a new slab whole, and nothing
    // is written below it: free = 0, the next record starts a normal slab). Handed out as is when it
    // wasted little; else the record gets a buffer of its own size and the grown slab (which would be
    // kept whole by any view for as long as a stream or the hub's window holds the record) is
    // released now.
    free = 0;
    if (slab.length - (recordEnd - p) <= GROWN_HEADROOM) {
      const own = slab.subarray(p, recordEnd);
      markSole(own);
      return own;
    }
    const out = Buffer.allocUnsafeSlow(recordEnd - p);
    slab.copy(out, 0, p, recordEnd);
    const grown = slab;
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    free = slab.length;
    releaseBytes(grown);
    return out;
  }
  const out = slab.subarray(p, recordEnd);
  free = p;
  return out;
}

/**
 * The context as API responses carry it: values nested deeper than MAX_CONTEXT_LEVELS replaced by
 * TRUNCATED_VALUE (the same rule as the encoder above). Returns the input itself when nothing is that
 * deep (the common case: no copy).
 */
export function capContextDepth<T>(context: T): T {
  return tooDeep(context, 1) ? (capped(context, 1) as T) : context;
}

function tooDeep(v: unknown, level: number): boolean {
  if (typeof v !== 'object' || v === null) return false;
  if (level > MAX_CONTEXT_LEVELS) return true;
  for (const x of Array.isArray(v) ? v : Object.values(v)) if (tooDeep(x, level + 1)) return true;
  return false;
}

function capped(v: unknown, level: number): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (level > MAX_CONTEXT_LEVELS) return TRUNCATED_VALUE;
  if (Array.isArray(v)) return v.map((x) => capped(x, level + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = capped(x, level + 1);
  return out;
}
