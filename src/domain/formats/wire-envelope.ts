// The ingest fast path (issue 17): a MsgEnvelope's protobuf bytes -> its row facts and its context JSON
// in one pass over the wire, without building the ts-proto object graph (and its Struct objects) only
// to walk it again for the JSON. ts-proto's types stay the domain's interface: this reader answers only
// for the plain, well-formed envelope that nearly all traffic is, and returns null for anything else —
// then normalize.ts takes the reference path (decodeBinary -> checkV1 -> contextV1 -> factsV1), which
// decides rows, dead letters and reasons. So its one obligation: where it returns a result, that result
// is exactly the reference's (test/unit/domain-wire-envelope.test.ts checks it on generated, fixture
// and hostile messages, byte for byte, through normalizeMessage).
//
// It returns null (reference path) for: an unknown field or a known one with another wire type, a field
// or oneof member given twice (ts-proto: last wins), groups, tag 0, a length past its message's end,
// varints longer than the values need, negative or out-of-range int32/int64/enum values, bool varints
// other than 0/1, a NUL character anywhere (it would be stripped and counted), invalid UTF-8, a missing
// or empty payload (BINARY, no_payload), a Struct key given twice, "__proto__" or one that is an array
// index (a JS object orders those first), Struct numbers that are -0, NaN or ±Infinity, Values with two
// kinds, and Structs nested deeper than FAST_MAX_DEPTH.

import type { Timestamp } from '../../gen/google/protobuf/timestamp.js';
import { eventRegistryFacts, normalizeLevel } from './facts.js';
import type { Facts } from './facts.js';
import { decodeUtf8Strict } from './json-value.js';
import { quote, timestampToRfc3339 } from './proto-json.js';

/** Deeper Structs take the reference path (which bounds them at 64 and names too_deep). */
export const FAST_MAX_DEPTH = 32;

export interface FastEnvelope {
  readonly facts: Facts;
  readonly context: string;
}

// The message being read: module state, the reader is synchronous and not reentrant.
let b: Uint8Array = new Uint8Array(0);
let pos = 0;
let view: Buffer = Buffer.alloc(0);
// The last string read: as is, and as JSON.
let str = '';
let strJson = '';

const BAIL = { bail: true };

/** The envelope's facts and context, or null: the caller must take the reference path. */
export function readEnvelopeFast(data: Uint8Array): FastEnvelope | null {
  b = data;
  pos = 0;
  // NATS hands over Buffers (views of the socket's reads): no second view per message then.
  view = data instanceof Buffer ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  try {
    return envelope(data.length);
  } catch (err) {
    if (err === BAIL) return null;
    throw err;
  } finally {
    b = EMPTY;
    view = EMPTY_BUF;
  }
}
const EMPTY = new Uint8Array(0);
const EMPTY_BUF = Buffer.alloc(0);

// ---------------------------------------------------------------------------------------------
// Wire primitives

/** A varint of at most 4 bytes (< 2^28): tags, lengths, enums, bools. Longer ones bail. */
function small(): number {
  let x = b[pos++]!;
  if (x < 0x80) return x;
  x &= 0x7f;
  let c = b[pos++]!;
  x |= (c & 0x7f) << 7;
  if (c < 0x80) return x;
  c = b[pos++]!;
  x |= (c & 0x7f) << 14;
  if (c < 0x80) return x;
  c = b[pos++]!;
  x |= (c & 0x7f) << 21;
  if (c < 0x80 && pos <= b.length) return x;
  throw BAIL;
}

/** A non-negative varint below 2^49 (a Timestamp's seconds up to year 9999 and beyond). */
function uint49(): number {
  let x = 0;
  let mul = 1;
  for (let i = 0; i < 7; i++) {
    const c = b[pos++];
    if (c === undefined) throw BAIL;
    x += (c & 0x7f) * mul;
    if (c < 0x80) return x;
    mul *= 128;
  }
  throw BAIL;
}

/** Length of a length-delimited field; its end must lie within `end`. */
function len(end: number): number {
  const n = small();
  if (pos > end || n > end - pos) throw BAIL;
  return pos + n;
}

/** A string field: sets `str` and `strJson` (quoted as proto-json.ts quotes). */
function string(end: number): void {
  const stop = len(end);
  const start = pos;
  let plain = true;
  for (let i = start; i < stop; i++) {
    const c = b[i]!;
    if (c >= 0x80) {
      nonAscii(start, stop);
      return;
    }
    if (c < 0x20 || c === 0x22 || c === 0x5c) {
      if (c === 0) throw BAIL; // NUL: the reference strips and counts it
      plain = false;
    }
  }
  pos = stop;
  str = stop === start ? '' : view.toString('latin1', start, stop);
  strJson = plain ? '"' + str + '"' : JSON.stringify(str);
}

const NO_COUNT = { stripped: 0 };

function nonAscii(start: number, stop: number): void {
  let s: string;
  try {
    s = decodeUtf8Strict(b.subarray(start, stop));
  } catch {
    throw BAIL; // invalid UTF-8: the reference's decode_error
  }
  if (s.includes('\u0000')) throw BAIL;
  pos = stop;
  str = s;
  // Strict UTF-8 holds no lone surrogates and (checked) no NUL: quote() strips nothing here.
  strJson = quote(s, NO_COUNT);
}

/** Skips to `stop` after a nested message was read: it must end exactly there. */
function endAt(stop: number): void {
  if (pos !== stop) throw BAIL;
}

// ---------------------------------------------------------------------------------------------
// MsgEnvelope (swarm.proto) — fields rendered in declaration order, as proto-json.ts envelopeToJson.

const MESSAGE_TYPE_NAMES = [
  '"MESSAGE_TYPE_UNSPECIFIED"',
  '"MESSAGE_TYPE_EVENT"',
  '"MESSAGE_TYPE_TEXT"',
  '"MESSAGE_TYPE_BINARY"',
  '"MESSAGE_TYPE_TOOL_CALL"',
  '"MESSAGE_TYPE_TOOL_RESULT"',
];

const F_ID = 1;
const F_TS = 2;
const F_SOURCE = 4;
const F_TYPE = 8;
const F_PAYLOAD = 16;
const F_TRACE = 32;
const F_SPAN = 64;
const F_TEAM = 128;
const F_CTX = 256;

function envelope(end: number): FastEnvelope {
  let seen = 0;
  let id = '';
  let idJson = '';
  let source = '';
  let sourceJson = '';
  let trace = '';
  let traceJson = '';
  let span = '';
  let spanJson = '';
  let team = '';
  let teamJson = '';
  let type = 0;
  let timestamp: Timestamp | undefined;
  let tsJson = '';
  let ctxJson = '';
  let payloadKey = '';
  let payloadJson = '';
  const f: Facts = {
    intent: 'binary',
    message: '',
    level: 'INFO',
    sourceAsSent: '',
    team: '',
    traceId: '',
    timestamp: undefined,
    envelopeId: '',
    missionEventId: '',
    status: null,
    meta: null,
    errorText: null,
    dataError: null,
  };
  while (pos < end) {
    const tag = small();
    let bit: number;
    switch (tag) {
      case 10: // id
        bit = F_ID;
        string(end);
        id = str;
        idJson = strJson;
        break;
      case 18: {
        // timestamp
        bit = F_TS;
        const stop = len(end);
        timestamp = readTimestamp(stop);
        const text = timestampToRfc3339(timestamp.seconds, timestamp.nanos);
        if (text === null) throw BAIL; // out of range: the reference keeps its raw fields
        tsJson = '"' + text + '"';
        break;
      }
      case 26: // source_agent_id
        bit = F_SOURCE;
        string(end);
        source = str;
        sourceJson = strJson;
        break;
      case 32: // type
        bit = F_TYPE;
        type = small();
        if (type > 0x7fffffff) throw BAIL;
        break;
      case 42: // event
        bit = F_PAYLOAD;
        payloadKey = 'event';
        payloadJson = eventPayload(len(end), f);
        break;
      case 50: // text
        bit = F_PAYLOAD;
        payloadKey = 'text';
        payloadJson = textPayload(len(end), f);
        break;
      case 58: // tool_call
        bit = F_PAYLOAD;
        payloadKey = 'tool_call';
        payloadJson = toolCallPayload(len(end), f);
        break;
      case 66: // tool_result
        bit = F_PAYLOAD;
        payloadKey = 'tool_result';
        payloadJson = toolResultPayload(len(end), f);
        break;
      case 82: // trace_id
        bit = F_TRACE;
        string(end);
        trace = str;
        traceJson = strJson;
        break;
      case 90: // span_id
        bit = F_SPAN;
        string(end);
        span = str;
        spanJson = strJson;
        break;
      case 114: // team_id
        bit = F_TEAM;
        string(end);
        team = str;
        teamJson = strJson;
        break;
      case 122: {
        // swarm_context
        bit = F_CTX;
        const stop = len(end);
        ctxJson = struct(stop, 0, null);
        break;
      }
      default:
        throw BAIL;
    }
    if ((seen & bit) !== 0) throw BAIL;
    seen |= bit;
  }
  if (pos !== end) throw BAIL;
  // No payload (BINARY or no_payload) and empty payloads (no_payload) are the reference's to judge.
  if (payloadJson === '') throw BAIL;
  f.sourceAsSent = source;
  f.team = team;
  f.traceId = trace;
  f.timestamp = timestamp;
  f.envelopeId = id;
  // One expression: no closure per message, and the pieces joined in one place.
  const context =
    '{' +
    (id !== '' ? '"id":' + idJson + ',' : '') +
    (timestamp !== undefined ? '"timestamp":' + tsJson + ',' : '') +
    (source !== '' ? '"source_agent_id":' + sourceJson + ',' : '') +
    (type !== 0 ? '"type":' + (MESSAGE_TYPE_NAMES[type] ?? String(type)) + ',' : '') +
    '"' + payloadKey + '":' + payloadJson +
    (trace !== '' ? ',"trace_id":' + traceJson : '') +
    (span !== '' ? ',"span_id":' + spanJson : '') +
    (team !== '' ? ',"team_id":' + teamJson : '') +
    ((seen & F_CTX) !== 0 ? ',"swarm_context":' + ctxJson : '') +
    '}';
  return { facts: f, context };
}

function readTimestamp(stop: number): Timestamp {
  let seconds = 0;
  let nanos = 0;
  let seen = 0;
  while (pos < stop) {
    const tag = small();
    if (tag === 8 && (seen & 1) === 0) {
      seconds = uint49();
      seen |= 1;
    } else if (tag === 16 && (seen & 2) === 0) {
      nanos = uint49();
      if (nanos > 0x7fffffff) throw BAIL;
      seen |= 2;
    } else throw BAIL;
  }
  endAt(stop);
  return { seconds: String(seconds), nanos };
}

function eventPayload(stop: number, f: Facts): string {
  let seen = 0;
  let type = '';
  let typeJson = '';
  let stream = '';
  let streamJson = '';
  let dataJson = '';
  const data: DataFacts = { level: undefined, status: undefined, errors: undefined };
  while (pos < stop) {
    const tag = small();
    let bit: number;
    if (tag === 10) {
      bit = 1;
      string(stop);
      type = str;
      typeJson = strJson;
    } else if (tag === 18) {
      bit = 2;
      string(stop);
      stream = str;
      streamJson = strJson;
    } else if (tag === 26) {
      bit = 4;
      dataJson = struct(len(stop), 0, data);
    } else throw BAIL;
    if ((seen & bit) !== 0) throw BAIL;
    seen |= bit;
  }
  endAt(stop);
  if (seen === 0 || (type === '' && stream === '' && (seen & 4) === 0)) throw BAIL; // empty: no_payload
  f.intent = type;
  f.message = type;
  if ((seen & 4) !== 0) {
    // What envelopeFacts reads from the ts-proto data object, from the same values: the top-level
    // level, status and error strings; meta (heartbeat/status events) is the whole data, which the
    // JSON just rendered holds exactly (no NUL, no -0/NaN/Infinity, no special keys: checked above).
    f.level = normalizeLevel(data.level) ?? 'INFO';
    eventRegistryFacts(f, type, needsMeta(type) ? (JSON.parse(dataJson) as Record<string, unknown>) : dataObject(data));
  } else {
    eventRegistryFacts(f, type, undefined);
  }
  let out = '{';
  if (type !== '') out += '"event_type":' + typeJson;
  if (stream !== '') out += (out.length === 1 ? '' : ',') + '"stream_id":' + streamJson;
  if ((seen & 4) !== 0) out += (out.length === 1 ? '' : ',') + '"data":' + dataJson;
  return out + '}';
}

const STATUS_EVENTS = new Set(['heartbeat', 'agent.heartbeat', 'status', 'agent.status']);
const needsMeta = (eventType: string): boolean => STATUS_EVENTS.has(eventType.trim().toLowerCase());

/** The top-level data values envelopeFacts/eventRegistryFacts read, when they are strings. */
interface DataFacts {
  level: string | undefined;
  status: string | undefined;
  errors: Record<string, string> | undefined;
}
const ERROR_KEYS = new Set(['error_message', 'error', 'last_error']);

function dataObject(d: DataFacts): Record<string, unknown> {
  const o: Record<string, unknown> = d.errors !== undefined ? { ...d.errors } : {};
  if (d.status !== undefined) o['status'] = d.status;
  return o;
}

function textPayload(stop: number, f: Facts): string {
  let seen = 0;
  const v = ['', '', '', ''];
  const j = ['', '', '', ''];
  while (pos < stop) {
    const tag = small();
    const field = tag >>> 3;
    if ((tag & 7) !== 2 || field < 1 || field > 4) throw BAIL;
    const bit = 1 << field;
    if ((seen & bit) !== 0) throw BAIL;
    seen |= bit;
    string(stop);
    v[field - 1] = str;
    j[field - 1] = strJson;
  }
  endAt(stop);
  const [content, recipient, intent, contextId] = v as [string, string, string, string];
  if (content === '' && recipient === '' && intent === '' && contextId === '') throw BAIL; // no_payload
  f.intent = intent !== '' ? intent : 'text';
  f.message = content;
  let out = '{';
  const keys = ['content', 'recipient_id', 'intent', 'context_id'];
  for (let i = 0; i < 4; i++) if (v[i] !== '') out += (out.length === 1 ? '"' : ',"') + keys[i]! + '":' + j[i]!;
  return out + '}';
}

function toolCallPayload(stop: number, f: Facts): string {
  let seen = 0;
  let callId = '';
  let callJson = '';
  let tool = '';
  let toolJson = '';
  let argsJson = '';
  while (pos < stop) {
    const tag = small();
    let bit: number;
    if (tag === 10) {
      bit = 1;
      string(stop);
      callId = str;
      callJson = strJson;
    } else if (tag === 18) {
      bit = 2;
      string(stop);
      tool = str;
      toolJson = strJson;
    } else if (tag === 26) {
      bit = 4;
      argsJson = struct(len(stop), 0, null);
    } else throw BAIL;
    if ((seen & bit) !== 0) throw BAIL;
    seen |= bit;
  }
  endAt(stop);
  if (callId === '' && tool === '' && (seen & 4) === 0) throw BAIL; // no_payload
  f.intent = 'tool_call';
  f.message = tool;
  f.status = 'BUSY';
  let out = '{';
  if (callId !== '') out += '"call_id":' + callJson;
  if (tool !== '') out += (out.length === 1 ? '' : ',') + '"tool_name":' + toolJson;
  if ((seen & 4) !== 0) out += (out.length === 1 ? '' : ',') + '"arguments":' + argsJson;
  return out + '}';
}

function toolResultPayload(stop: number, f: Facts): string {
  let seen = 0;
  let callId = '';
  let callJson = '';
  let resultJson = '';
  let isError = false;
  let errorMessage = '';
  let errorJson = '';
  while (pos < stop) {
    const tag = small();
    let bit: number;
    if (tag === 10) {
      bit = 1;
      string(stop);
      callId = str;
      callJson = strJson;
    } else if (tag === 18) {
      bit = 2;
      resultJson = struct(len(stop), 0, null);
    } else if (tag === 24) {
      bit = 4;
      const v = small();
      if (v > 1) throw BAIL;
      isError = v === 1;
    } else if (tag === 34) {
      bit = 8;
      string(stop);
      errorMessage = str;
      errorJson = strJson;
    } else throw BAIL;
    if ((seen & bit) !== 0) throw BAIL;
    seen |= bit;
  }
  endAt(stop);
  if (callId === '' && (seen & 2) === 0 && !isError && errorMessage === '') throw BAIL; // no_payload
  f.intent = 'tool_result';
  f.message = isError ? errorMessage : callId;
  f.level = isError ? 'ERROR' : 'INFO';
  f.status = isError ? 'ERROR' : 'IDLE';
  if (isError && errorMessage !== '') f.errorText = errorMessage;
  let out = '{';
  if (callId !== '') out += '"call_id":' + callJson;
  if ((seen & 2) !== 0) out += (out.length === 1 ? '' : ',') + '"result":' + resultJson;
  if (isError) out += (out.length === 1 ? '' : ',') + '"is_error":true';
  if (errorMessage !== '') out += (out.length === 1 ? '' : ',') + '"error_message":' + errorJson;
  return out + '}';
}

// ---------------------------------------------------------------------------------------------
// google.protobuf.Struct / Value / ListValue -> JSON, as ts-proto's objects rendered by proto-json.ts

/** An array index as a JS object orders it (first, ascending): "0", "1", …, "4294967294". */
const INDEX_LIKE = /^(?:0|[1-9]\d{0,9})$/;

/** A Struct ending at `stop`; `depth` as renderValue counts it (the top Struct is 0). */
function struct(stop: number, depth: number, top: DataFacts | null): string {
  if (depth >= FAST_MAX_DEPTH) throw BAIL;
  let out = '{';
  const keys: string[] = [];
  let keySet: Set<string> | null = null;
  while (pos < stop) {
    if (small() !== 10) throw BAIL; // fields (map entry)
    const entryEnd = len(stop);
    let key = '';
    let keyJson = '""';
    let valueJson: string | undefined;
    let valueStr: string | undefined;
    let seen = 0;
    while (pos < entryEnd) {
      const tag = small();
      if (tag === 10 && (seen & 1) === 0) {
        string(entryEnd);
        key = str;
        keyJson = strJson;
        seen |= 1;
      } else if (tag === 18 && (seen & 2) === 0) {
        valueJson = value(len(entryEnd), depth + 1);
        valueStr = valueString;
        seen |= 2;
      } else throw BAIL;
    }
    endAt(entryEnd);
    if (valueJson === undefined) continue; // no value, or a Value without a kind: ts-proto drops the entry
    if (key === '__proto__' || INDEX_LIKE.test(key)) throw BAIL;
    // A key given twice: ts-proto keeps the last value at the first position.
    if (keySet !== null) {
      if (keySet.has(key)) throw BAIL;
      keySet.add(key);
    } else {
      if (keys.includes(key)) throw BAIL;
      keys.push(key);
      if (keys.length > 16) keySet = new Set(keys);
    }
    if (top !== null && valueStr !== undefined) noteTop(top, key, valueStr);
    out += (out.length === 1 ? '' : ',') + keyJson + ':' + valueJson;
  }
  endAt(stop);
  return out + '}';
}

// The raw string of the Value value() just read, or undefined when it was of another kind.
let valueString: string | undefined;

/** A Value ending at `stop`, as JSON; undefined when it has no kind (ts-proto's unwrap gives undefined). */
function value(stop: number, depth: number): string | undefined {
  let json: string | undefined;
  let s: string | undefined;
  if (pos < stop) {
    const tag = small();
    switch (tag) {
      case 8: // null_value
        small();
        json = 'null';
        break;
      case 17: {
        // number_value
        if (stop - pos < 8) throw BAIL;
        const n = view.readDoubleLE(pos);
        pos += 8;
        if (!Number.isFinite(n) || Object.is(n, -0)) throw BAIL;
        json = JSON.stringify(n);
        break;
      }
      case 26: // string_value
        string(stop);
        json = strJson;
        s = str;
        break;
      case 32: {
        // bool_value
        const v = small();
        if (v > 1) throw BAIL;
        json = v === 1 ? 'true' : 'false';
        break;
      }
      case 42: // struct_value
        json = struct(len(stop), depth, null);
        break;
      case 50: // list_value
        if (depth >= FAST_MAX_DEPTH) throw BAIL;
        json = list(len(stop), depth);
        break;
      default:
        throw BAIL;
    }
  }
  if (pos !== stop) throw BAIL; // a second kind (ts-proto: the last wins) or anything else
  valueString = s;
  return json;
}

function noteTop(top: DataFacts, key: string, s: string): void {
  if (key === 'level') top.level = s;
  else if (key === 'status') top.status = s;
  else if (ERROR_KEYS.has(key)) (top.errors ??= {})[key] = s;
}

function list(stop: number, depth: number): string {
  let out = '[';
  while (pos < stop) {
    if (small() !== 10) throw BAIL; // values
    const valueEnd = len(stop);
    // ts-proto keeps a Value without a kind as undefined in the array; proto-json.ts renders it null.
    const v = value(valueEnd, depth + 1);
    out += (out.length === 1 ? '' : ',') + (v ?? 'null');
  }
  endAt(stop);
  return out + ']';
}
