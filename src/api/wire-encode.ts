// The live fan-out's record encoder: a stored row straight to the bytes of one
// `StreamLogsResponse.records` element (`tag(1, LEN) varint(len) LogRecord`), without building the
// ts-proto object graph (LogRecord -> LogEntry -> Struct.wrap's Value objects) first. Each record is
// encoded once and shared by every stream it goes to, but at tens of thousands of records per second
// the generic path (≈ 14 µs per record, half of it Struct.wrap) was a visible share of the service's
// CPU.
//
// Field numbers and types follow proto/mycelis/memory/v1/memory.proto, proto/mycelis/swarm/v1/
// swarm.proto and google/protobuf/{struct,timestamp}.proto; proto3 defaults are omitted exactly where
// ts-proto omits them, so `LogRecord.decode` of these bytes equals `toLogRecord(row)`
// (test/unit/api-wire-encode.test.ts checks that on realistic and edge-case rows). Struct map entries
// are written in sorted key order (protobuf's deterministic serialization), so a context gives the
// same bytes whatever its key order: a row handed over from memory and the same row read back from
// jsonb (which reorders keys) encode identically.
//
// Two passes: sizes (post-order, into a reused array: nested lengths and string byte lengths), then
// one exact-size Buffer written pre-order, reading the sizes back in the same order.

/**
 * Struct/ListValue levels an API response carries in `context_snapshot` (the context itself is level
 * 1). Each level is two or three nested protobuf messages, and common decoders stop at 100 nested
 * messages (ts-proto and protobuf-es by default, C++): a record nested deeper than this could not be
 * decoded by clients, and a stream would fail on it again after every reconnect. Deeper values are
 * replaced by TRUNCATED_VALUE in responses; the stored row keeps the whole context.
 */
export const MAX_CONTEXT_LEVELS = 32;
export const TRUNCATED_VALUE = `[truncated: nested deeper than ${MAX_CONTEXT_LEVELS} levels]`;

/** The row fields a record is made of (StoredLogRow has them). */
export interface EncodableRow {
  readonly id: string;
  readonly seq: number;
  readonly traceId: string;
  readonly timestampUs: number;
  readonly level: string;
  readonly source: string;
  readonly intent: string;
  readonly message: string;
  readonly context: unknown;
  readonly teamId: string;
  readonly subject: string;
  readonly receivedAtUs: number;
}

let sizes: number[] = [];
let sp = 0;

function push(n: number): number {
  sizes.push(n);
  return sizes.length - 1;
}

function varintLen(n: number): number {
  // n is a non-negative integer below 2^53.
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

/** Size of a LEN field (1-byte tag) whose body is `body` bytes. */
const lenField = (body: number): number => 1 + varintLen(body) + body;

/** UTF-8 length; short ASCII strings (most keys and values) without a call into Buffer. */
function utf8Len(s: string): number {
  const n = s.length;
  if (n > 64) return Buffer.byteLength(s, 'utf8');
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  return n;
}

function strSize(s: string): number {
  const b = utf8Len(s);
  push(b);
  return lenField(b);
}

// ---- sizes ----------------------------------------------------------------------------------------

// The sorted keys of each Struct, from the size pass to the write pass (same order).
let keyLists: string[][] = [];
let kp = 0;

function sortedKeys(o: object): string[] {
  const keys = Object.keys(o);
  if (keys.length > 1) keys.sort();
  keyLists.push(keys);
  return keys;
}

/** google.protobuf.Value body; `level` is the level of the Struct/ListValue holding it. */
function valueSize(v: unknown, level: number): number {
  if (v === null || v === undefined) return 2; // null_value = 1, varint 0
  switch (typeof v) {
    case 'number':
      return 9; // number_value = 2, fixed64
    case 'boolean':
      return 2; // bool_value = 4
    case 'string':
      return strSize(v); // string_value = 3
    case 'object': {
      if (level >= MAX_CONTEXT_LEVELS) return strSize(TRUNCATED_VALUE);
      const slot = push(0);
      const body = Array.isArray(v) ? listSize(v, level + 1) : structSize(v, level + 1);
      sizes[slot] = body;
      return lenField(body); // list_value = 6 / struct_value = 5
    }
    default:
      // Not JSON (bigint, function, symbol): what ts-proto's Value.wrap does not handle either; null.
      return 2;
  }
}

/** google.protobuf.ListValue body: repeated Value values = 1. */
function listSize(a: readonly unknown[], level: number): number {
  let total = 0;
  for (const el of a) {
    const slot = push(0);
    const v = valueSize(el, level);
    sizes[slot] = v;
    total += lenField(v);
  }
  return total;
}

/** google.protobuf.Struct body: map<string, Value> fields = 1 (entries: key = 1, value = 2). */
function structSize(o: object, level: number): number {
  let total = 0;
  for (const k of sortedKeys(o)) {
    const entrySlot = push(0);
    const keySize = strSize(k);
    const valueSlot = push(0);
    const v = valueSize((o as Record<string, unknown>)[k], level);
    sizes[valueSlot] = v;
    const entry = keySize + lenField(v);
    sizes[entrySlot] = entry;
    total += lenField(entry);
  }
  return total;
}

function timestampSize(us: number): number {
  const seconds = Math.floor(us / 1_000_000);
  const nanos = (us - seconds * 1_000_000) * 1000;
  return (seconds !== 0 ? 1 + int64Len(seconds) : 0) + (nanos !== 0 ? 1 + varintLen(nanos) : 0);
}

const int64Len = (n: number): number => (n < 0 ? 10 : varintLen(n));

// Tags of LogEntry's fields 1001-1003 (LEN): varint((field << 3) | 2).
const TAG_LEVEL = [0xca, 0x3e];
const TAG_SOURCE = [0xd2, 0x3e];
const TAG_MESSAGE = [0xda, 0x3e];

function optStrSize(s: string, tagLen = 1): number {
  if (s === '') return 0;
  const b = utf8Len(s);
  push(b);
  return tagLen + varintLen(b) + b;
}

function entrySize(r: EncodableRow): number {
  let n = lenField(timestampSize(r.timestampUs)); // timestamp = 1
  n += optStrSize(r.traceId); // trace_id = 2
  n += optStrSize(r.source); // agent_id = 3
  n += optStrSize(r.teamId); // team_id = 4
  n += optStrSize(r.intent); // intent = 6
  if (isStructLike(r.context)) {
    const slot = push(0);
    const body = structSize(r.context, 1);
    sizes[slot] = body;
    n += lenField(body); // context_snapshot = 7
  }
  n += optStrSize(r.level, 2); // level = 1001
  n += optStrSize(r.source, 2); // source = 1002
  n += optStrSize(r.message, 2); // message = 1003
  return n;
}

const isStructLike = (c: unknown): c is object => typeof c === 'object' && c !== null;

// ---- writing --------------------------------------------------------------------------------------

const EMPTY = Buffer.alloc(0);
let out: Buffer = EMPTY;
let pos = 0;

function writeVarint(n: number): void {
  while (n >= 0x80) {
    out[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[pos++] = n;
}

function writeInt64(n: number): void {
  if (n >= 0) {
    writeVarint(n);
    return;
  }
  // Two's complement over 64 bits: ten bytes.
  let b = BigInt.asUintN(64, BigInt(n));
  for (let i = 0; i < 9; i++) {
    out[pos++] = Number(b & 0x7fn) | 0x80;
    b >>= 7n;
  }
  out[pos++] = Number(b);
}

function writeStrBody(s: string): void {
  const b = sizes[sp++]!;
  writeVarint(b);
  if (b === s.length && b <= 64) {
    // ASCII (utf8Len found no code unit >= 0x80): bytes are the code units.
    for (let i = 0; i < b; i++) out[pos + i] = s.charCodeAt(i);
    pos += b;
  } else pos += out.write(s, pos, b, 'utf8');
}

function writeOptStr(tag: number | readonly number[], s: string): void {
  if (s === '') return;
  if (typeof tag === 'number') out[pos++] = tag;
  else for (const t of tag) out[pos++] = t;
  writeStrBody(s);
}

function writeValue(v: unknown, level: number): void {
  if (v === null || v === undefined) {
    out[pos++] = 0x08;
    out[pos++] = 0;
    return;
  }
  switch (typeof v) {
    case 'number':
      out[pos++] = 0x11;
      pos = out.writeDoubleLE(v, pos);
      return;
    case 'boolean':
      out[pos++] = 0x20;
      out[pos++] = v ? 1 : 0;
      return;
    case 'string':
      out[pos++] = 0x1a;
      writeStrBody(v);
      return;
    case 'object':
      if (level >= MAX_CONTEXT_LEVELS) {
        out[pos++] = 0x1a;
        writeStrBody(TRUNCATED_VALUE);
        return;
      }
      out[pos++] = Array.isArray(v) ? 0x32 : 0x2a;
      writeVarint(sizes[sp++]!);
      if (Array.isArray(v)) writeList(v, level + 1);
      else writeStruct(v, level + 1);
      return;
    default:
      out[pos++] = 0x08;
      out[pos++] = 0;
  }
}

function writeList(a: readonly unknown[], level: number): void {
  for (const el of a) {
    out[pos++] = 0x0a;
    writeVarint(sizes[sp++]!);
    writeValue(el, level);
  }
}

function writeStruct(o: object, level: number): void {
  for (const k of keyLists[kp++]!) {
    out[pos++] = 0x0a; // fields = 1
    writeVarint(sizes[sp++]!);
    out[pos++] = 0x0a; // key = 1
    writeStrBody(k);
    out[pos++] = 0x12; // value = 2
    writeVarint(sizes[sp++]!);
    writeValue((o as Record<string, unknown>)[k], level);
  }
}

function writeTimestamp(tag: number, us: number): void {
  const seconds = Math.floor(us / 1_000_000);
  const nanos = (us - seconds * 1_000_000) * 1000;
  out[pos++] = tag;
  writeVarint(timestampSize(us));
  if (seconds !== 0) {
    out[pos++] = 0x08;
    writeInt64(seconds);
  }
  if (nanos !== 0) {
    out[pos++] = 0x10;
    writeVarint(nanos);
  }
}

/**
 * `tag(1, LEN) varint(len) LogRecord` for one row with its cursor: the element a StreamLogsResponse's
 * `records` field is made of. Throws (and leaves no state behind) on a row that cannot be encoded.
 */
export function encodeRecordElement(r: EncodableRow, cursor: string): Buffer {
  sizes = sizes.length > 4096 ? [] : sizes; // do not keep a huge array alive after one big context
  sizes.length = 0;
  sp = 0;
  keyLists = keyLists.length > 1024 ? [] : keyLists;
  keyLists.length = 0;
  kp = 0;
  try {
    // Sizes, in the order the writer reads them back.
    const idSize = optStrSize(r.id);
    const cursorSize = optStrSize(cursor);
    const entrySlot = push(0);
    const entry = entrySize(r);
    sizes[entrySlot] = entry;
    const subjectSize = optStrSize(r.subject);
    const ingested = timestampSize(r.receivedAtUs);
    const seqSize = r.seq !== 0 ? 1 + int64Len(r.seq) : 0;
    const body = idSize + cursorSize + lenField(entry) + subjectSize + lenField(ingested) + seqSize;

    out = Buffer.allocUnsafe(lenField(body));
    pos = 0;
    out[pos++] = 0x0a; // StreamLogsResponse.records = 1
    writeVarint(body);
    writeOptStr(0x0a, r.id); // id = 1
    writeOptStr(0x12, cursor); // cursor = 2
    out[pos++] = 0x1a; // entry = 3
    writeVarint(sizes[sp++]!);
    writeTimestamp(0x0a, r.timestampUs); // LogEntry.timestamp = 1
    writeOptStr(0x12, r.traceId);
    writeOptStr(0x1a, r.source); // agent_id = 3
    writeOptStr(0x22, r.teamId);
    writeOptStr(0x32, r.intent);
    if (isStructLike(r.context)) {
      out[pos++] = 0x3a; // context_snapshot = 7
      writeVarint(sizes[sp++]!);
      writeStruct(r.context, 1);
    }
    writeOptStr(TAG_LEVEL, r.level);
    writeOptStr(TAG_SOURCE, r.source);
    writeOptStr(TAG_MESSAGE, r.message);
    writeOptStr(0x22, r.subject); // subject = 4
    writeTimestamp(0x2a, r.receivedAtUs); // ingested_at = 5
    if (r.seq !== 0) {
      out[pos++] = 0x30; // seq = 6
      writeInt64(r.seq);
    }
    if (pos !== out.length || sp !== sizes.length) {
      throw new Error(`record encoding: wrote ${pos} of ${out.length} bytes, read ${sp} of ${sizes.length} sizes`);
    }
    return out;
  } finally {
    out = EMPTY; // the buffer is the caller's now
  }
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
