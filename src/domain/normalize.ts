// One incoming NATS message -> one log row (+ what it means for the registry), or a dead letter.
// DESIGN 3.1 (decoding, validity, the normalization table), 3.2 (row identity), 3.3 (the RegistryEvent).
// Pure and synchronous; never throws, whatever the bytes: anything unexpected becomes a reject.

import { fromJson, toBinary } from '@bufbuild/protobuf';
import type { JsonValue } from '@bufbuild/protobuf';
import { BinaryReader } from '@bufbuild/protobuf/wire';

import type { Timestamp } from '../gen/google/protobuf/timestamp.js';
import { LogEntry, MsgEnvelope } from '../gen/mycelis/swarm/v1/swarm.js';
import { LOG_ENTRY_TYPE, MSG_ENVELOPE_TYPE, swarmDescriptors } from './descriptors.js';
import { flat } from './flat.js';
import { deriveRowId } from './identity.js';
import { envelopeToJson, logEntryToJson, MAX_STRUCT_DEPTH, TooDeepError } from './proto-json.js';
import { clean, uncounted } from './sanitize.js';
import type { StripCounter } from './sanitize.js';
import { timestampToUs } from './time.js';
import type { Level, LogRow, RegistryEvent, RejectReason, RejectRow, ReportedStatus } from './types.js';

export interface IncomingMessage {
  subject: string;
  data: Uint8Array;
  headers?: ReadonlyMap<string, string>;
  /** '' in core mode. */
  streamName: string;
  /** 0 in core mode. */
  streamCreatedUs: number;
  /** 0 in core mode. */
  streamSeq: number;
  /** NATS server publish time (JetStream metadata), or the local receive time in core mode; µs. */
  serverTimeUs: number;
  receivedAtUs: number;
}

export interface NormalizeOptions {
  isLogEntrySubject: (subject: string) => boolean;
  maxEventBytes: number;
}

export type Normalized =
  | { ok: true; row: LogRow; registry: RegistryEvent | null; stripped: number }
  | { ok: false; reject: RejectRow };

export const UNKNOWN_SOURCE = 'unknown';

export function normalizeMessage(msg: IncomingMessage, opts: NormalizeOptions): Normalized {
  try {
    return normalize(msg, opts);
  } catch (err) {
    // Defensive: every expected failure is handled below; this keeps the "never throws" promise.
    return reject(msg, 'decode_error', `unexpected: ${errorText(err)}`);
  }
}

type Decoded = { kind: 'envelope'; m: MsgEnvelope } | { kind: 'log'; m: LogEntry };
type DecodeResult = Decoded | { reason: RejectReason; detail: string };

function normalize(msg: IncomingMessage, opts: NormalizeOptions): Normalized {
  const { data } = msg;
  if (data.length > opts.maxEventBytes) {
    return reject(msg, 'too_large', `${data.length} bytes > MAX_EVENT_BYTES ${opts.maxEventBytes}`);
  }
  const h = readHeaders(msg.headers);
  const isLog = h.type !== null ? h.type === 'log' : opts.isLogEntrySubject(msg.subject);
  // A protobuf message never starts with '{' (0x7B would be field 15, wire type 3, a group: not
  // used by these messages). Do not skip whitespace: 0x0A is the tag of field 1.
  const json = h.json || data[0] === 0x7b;
  const counter: StripCounter = { stripped: 0 };
  const decoded = json ? decodeJson(data, isLog, counter) : decodeBinary(data, isLog);
  if ('reason' in decoded) return reject(msg, decoded.reason, decoded.detail);

  const invalid = decoded.kind === 'envelope' ? checkEnvelope(decoded.m) : checkLogEntry(decoded.m);
  if (invalid !== null) return reject(msg, invalid.reason, invalid.detail);

  let context: string;
  try {
    context = decoded.kind === 'envelope' ? envelopeToJson(decoded.m, counter) : logEntryToJson(decoded.m, counter);
  } catch (err) {
    if (err instanceof TooDeepError) return reject(msg, 'too_deep', err.message);
    throw err;
  }
  const subject = clean(msg.subject, counter);
  const facts = decoded.kind === 'envelope' ? envelopeFacts(decoded.m) : logEntryFacts(decoded.m);
  return buildRow(msg, subject, context, facts, counter.stripped);
}

// ---------------------------------------------------------------------------------------------
// Headers and type selection

interface HeaderFacts {
  /** From Mycelis-Type: 'log' | 'envelope', or null when absent or naming neither. */
  type: 'log' | 'envelope' | null;
  json: boolean;
}

function readHeaders(headers: ReadonlyMap<string, string> | undefined): HeaderFacts {
  const facts: HeaderFacts = { type: null, json: false };
  if (headers === undefined || headers.size === 0) return facts;
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower === 'mycelis-type') facts.type = typeFromHeader(value);
    else if (lower === 'content-type') facts.json = value.trim().toLowerCase().startsWith('application/json');
  }
  return facts;
}

function typeFromHeader(value: string): 'log' | 'envelope' | null {
  let v = value.trim();
  const slash = v.lastIndexOf('/'); // tolerate a type URL (type.googleapis.com/…)
  if (slash >= 0) v = v.slice(slash + 1);
  if (v === LOG_ENTRY_TYPE) return 'log';
  if (v === MSG_ENVELOPE_TYPE) return 'envelope';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Decoding

// proto3 strings must be valid UTF-8: decode strictly (the default reader would substitute U+FFFD),
// which also turns most random bytes into a decode error instead of a plausible-looking message.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const decodeUtf8Strict = (bytes: Uint8Array): string => strictUtf8.decode(bytes);

// ts-proto's generated decoders stop at 100 nested messages (a counter kept on the reader). A Struct
// level costs up to three of them (Struct, FieldsEntry, Value), so that limit would reject Structs
// of depth ~33, which DESIGN 3.1 calls valid (the limit is 64). Starting the counter below zero gives
// them room for 64 Struct levels plus the envelope; deeper input still stops at a bounded depth (no
// stack exhaustion) and is reported as too_deep.
const DECODE_DEPTH_HEADROOM = 3 * MAX_STRUCT_DEPTH + 20;
const JSON_RECURSION_LIMIT = 3 * MAX_STRUCT_DEPTH + 120;
// Envelope -> payload -> data -> 64 Struct levels fits well within this; deeper is too_deep anyway.
const JSON_MAX_NESTING = MAX_STRUCT_DEPTH + 8;

function decodeBinary(data: Uint8Array, isLog: boolean): DecodeResult {
  const reader = new BinaryReader(data, decodeUtf8Strict);
  (reader as unknown as { __tsProtoDecodeDepth: number }).__tsProtoDecodeDepth = -DECODE_DEPTH_HEADROOM;
  try {
    const decoded: Decoded = isLog
      ? { kind: 'log', m: LogEntry.decode(reader) }
      : { kind: 'envelope', m: MsgEnvelope.decode(reader) };
    // The generated decoders stop early at a zero tag or an end-group tag, both invalid here.
    if (reader.pos !== data.length) {
      return { reason: 'decode_error', detail: `not a ${typeName(isLog)}: stray bytes at offset ${reader.pos}` };
    }
    return decoded;
  } catch (err) {
    return decodeFailure(err, 'decode_error', isLog);
  }
}

function decodeJson(data: Uint8Array, isLog: boolean, counter: StripCounter): DecodeResult {
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(data));
  } catch (err) {
    return { reason: 'invalid_json', detail: `not JSON: ${errorText(err)}` };
  }
  // JSON is the one form that can carry lone surrogates (\ud800 escapes; UTF-8 bytes cannot), and
  // the strict parser below rejects them: strip them (and NULs) here, counted, so such a message is
  // stored sanitized rather than dead-lettered.
  let clean: JsonValue;
  try {
    clean = cleanJson(value as JsonValue, 0, counter);
  } catch (err) {
    if (err instanceof TooDeepError) return { reason: 'too_deep', detail: err.message };
    throw err;
  }
  try {
    // Strict proto3 JSON: unknown keys and wrong types throw. Then through the binary form into the
    // same ts-proto type the binary path produces.
    const d = swarmDescriptors();
    const desc = isLog ? d.logEntry : d.msgEnvelope;
    const message = fromJson(desc, clean, { registry: d.registry, recursionLimit: JSON_RECURSION_LIMIT });
    return decodeBinary(toBinary(desc, message), isLog);
  } catch (err) {
    return decodeFailure(err, 'invalid_json', isLog);
  }
}

/** Sanitized copy of parsed JSON; nesting is bounded here, before any recursive decoder sees it. */
function cleanJson(v: JsonValue, depth: number, counter: StripCounter): JsonValue {
  if (typeof v === 'string') return clean(v, counter);
  if (v === null || typeof v !== 'object') return v;
  if (depth > JSON_MAX_NESTING) throw new TooDeepError('JSON');
  if (Array.isArray(v)) return v.map((x) => cleanJson(x, depth + 1, counter));
  const out: { [k: string]: JsonValue } = {};
  for (const key of Object.keys(v)) out[clean(key, counter)] = cleanJson(v[key] as JsonValue, depth + 1, counter);
  return out;
}

function decodeFailure(err: unknown, reason: RejectReason, isLog: boolean): { reason: RejectReason; detail: string } {
  const text = errorText(err);
  // ts-proto: "recursion limit exceeded"; protobuf-es JSON: "maximum recursion depth"; V8: "call stack".
  if (/recursion (limit|depth)|call stack/i.test(text)) {
    return { reason: 'too_deep', detail: `nested deeper than the decoder allows (Struct limit ${MAX_STRUCT_DEPTH})` };
  }
  return { reason, detail: `not a ${typeName(isLog)}: ${text}` };
}

function typeName(isLog: boolean): string {
  return isLog ? LOG_ENTRY_TYPE : MSG_ENVELOPE_TYPE;
}

// ---------------------------------------------------------------------------------------------
// Validity (DESIGN 3.1)

const BINARY = 3;

// A payload message with every field at its default carries nothing: we count it as not set. Random
// bytes often decode as an envelope holding just such an empty payload (e.g. 0x32 0x00 is `text {}`);
// that is invalid, not an empty row.
function checkEnvelope(m: MsgEnvelope): { reason: RejectReason; detail: string } | null {
  const p = m.payload;
  if (p === undefined) {
    // BINARY carries its data outside these fields, but an envelope with nothing besides the type is empty.
    if (m.type === BINARY && !isBareEnvelope(m)) return null;
    return { reason: 'no_payload', detail: 'MsgEnvelope has no payload and is not MESSAGE_TYPE_BINARY' };
  }
  if (isEmptyPayload(p)) return { reason: 'no_payload', detail: `MsgEnvelope payload ${p.$case} is empty` };
  return null;
}

function isBareEnvelope(m: MsgEnvelope): boolean {
  return (
    m.id === '' &&
    m.timestamp === undefined &&
    m.sourceAgentId === '' &&
    m.traceId === '' &&
    m.spanId === '' &&
    m.teamId === '' &&
    m.swarmContext === undefined
  );
}

function isEmptyPayload(p: NonNullable<MsgEnvelope['payload']>): boolean {
  switch (p.$case) {
    case 'event':
      return p.value.eventType === '' && p.value.streamId === '' && p.value.data === undefined;
    case 'text':
      return p.value.content === '' && p.value.recipientId === '' && p.value.intent === '' && p.value.contextId === '';
    case 'toolCall':
      return p.value.callId === '' && p.value.toolName === '' && p.value.arguments === undefined;
    case 'toolResult':
      return p.value.callId === '' && p.value.result === undefined && !p.value.isError && p.value.errorMessage === '';
  }
}

function checkLogEntry(m: LogEntry): { reason: RejectReason; detail: string } | null {
  if (m.intent !== '' || m.message !== '' || m.errorMessage !== '') return null;
  return { reason: 'empty_log_entry', detail: 'LogEntry has no intent, message or error_message' };
}

// ---------------------------------------------------------------------------------------------
// The normalization table

/** What the row and the registry event need from a decoded message (strings not yet sanitized). */
interface Facts {
  intent: string;
  message: string;
  level: Level;
  sourceAsSent: string;
  team: string;
  traceId: string;
  timestamp: Timestamp | undefined;
  envelopeId: string;
  /** Status implied by the message itself (before the level rule). */
  status: ReportedStatus | null;
  meta: Record<string, unknown> | null;
  /** An explicit error message field (tool_result / LogEntry error_message), if set. */
  errorText: string | null;
  /** An error text found in event data (error_message, error, last_error), used when the event is an error. */
  dataError: string | null;
}

const LEVEL_NAMES: ReadonlyMap<string, Level> = new Map<string, Level>([
  ['DEBUG', 'DEBUG'],
  ['INFO', 'INFO'],
  ['WARN', 'WARN'],
  ['WARNING', 'WARN'],
  ['ERROR', 'ERROR'],
  ['FATAL', 'FATAL'],
  ['CRITICAL', 'FATAL'],
]);

/** DEBUG/INFO/WARN/ERROR/FATAL, case-insensitive, WARNING -> WARN, CRITICAL -> FATAL; else null. */
export function normalizeLevel(value: unknown): Level | null {
  if (typeof value !== 'string') return null;
  return LEVEL_NAMES.get(value.trim().toUpperCase()) ?? null;
}

const STATUS_EVENTS = new Set(['heartbeat', 'agent.heartbeat', 'status', 'agent.status']);
const OFFLINE_EVENTS = new Set(['shutdown', 'agent.shutdown', 'agent.offline']);
const REPORTED: ReadonlyMap<string, ReportedStatus> = new Map<string, ReportedStatus>([
  ['IDLE', 'IDLE'],
  ['BUSY', 'BUSY'],
  ['ERROR', 'ERROR'],
  ['OFFLINE', 'OFFLINE'],
]);

function envelopeFacts(m: MsgEnvelope): Facts {
  const f: Facts = {
    intent: 'binary',
    message: '',
    level: 'INFO',
    sourceAsSent: m.sourceAgentId,
    team: m.teamId,
    traceId: m.traceId,
    timestamp: m.timestamp,
    envelopeId: m.id,
    status: null,
    meta: null,
    errorText: null,
    dataError: null,
  };
  const p = m.payload;
  if (p === undefined) return f; // BINARY (validity checked before)
  switch (p.$case) {
    case 'text':
      f.intent = p.value.intent !== '' ? p.value.intent : 'text';
      f.message = p.value.content;
      break;
    case 'event': {
      const { eventType, data } = p.value;
      f.intent = eventType;
      f.message = eventType;
      f.level = normalizeLevel(data?.['level']) ?? 'INFO';
      eventRegistryFacts(f, eventType, data);
      break;
    }
    case 'toolCall':
      f.intent = 'tool_call';
      f.message = p.value.toolName;
      f.status = 'BUSY';
      break;
    case 'toolResult': {
      const r = p.value;
      f.intent = 'tool_result';
      f.message = r.isError ? r.errorMessage : r.callId;
      f.level = r.isError ? 'ERROR' : 'INFO';
      f.status = r.isError ? 'ERROR' : 'IDLE';
      if (r.isError && r.errorMessage !== '') f.errorText = r.errorMessage;
      break;
    }
  }
  return f;
}

function eventRegistryFacts(f: Facts, eventType: string, data: Record<string, unknown> | undefined): void {
  const type = eventType.trim().toLowerCase();
  if (STATUS_EVENTS.has(type)) {
    const s = data?.['status'];
    if (typeof s === 'string') f.status = REPORTED.get(s.trim().toUpperCase()) ?? null;
    if (data !== undefined) {
      const meta: Record<string, unknown> = {};
      for (const key of Object.keys(data)) if (key !== 'status') meta[key] = data[key];
      f.meta = meta;
    }
  } else if (OFFLINE_EVENTS.has(type)) {
    f.status = 'OFFLINE';
  }
  if (data !== undefined) {
    for (const key of ['error_message', 'error', 'last_error']) {
      const v = data[key];
      if (typeof v === 'string' && v.trim() !== '') {
        f.dataError = v;
        break;
      }
    }
  }
}

function logEntryFacts(m: LogEntry): Facts {
  const failed = isFailureStatus(m.status) || m.errorMessage !== '';
  return {
    intent: m.intent,
    message: m.message !== '' ? m.message : m.errorMessage,
    // An unrecognised level falls through to the status rule (so "verbose" + FAILURE is still an
    // ERROR); the original stays in the context.
    level: normalizeLevel(m.level) ?? (failed ? 'ERROR' : 'INFO'),
    sourceAsSent: m.agentId !== '' ? m.agentId : m.source,
    team: m.teamId,
    traceId: m.traceId,
    timestamp: m.timestamp,
    envelopeId: '',
    status: null,
    meta: null,
    errorText: m.errorMessage !== '' ? m.errorMessage : null,
    dataError: null,
  };
}

function isFailureStatus(status: string): boolean {
  const s = status.trim().toUpperCase();
  return s === 'FAILURE' || s === 'ERROR';
}

// ---------------------------------------------------------------------------------------------
// Row and registry event

const Y2000_US = 946_684_800_000_000;
const MAX_AHEAD_US = 5 * 60 * 1_000_000;

/** The event's own time, unless unset, before 2000-01-01 or > 5 min ahead of server time (DESIGN 3.1). */
export function eventTimeUs(ts: Timestamp | undefined, serverTimeUs: number): number {
  if (ts === undefined) return serverTimeUs;
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999) return serverTimeUs;
  const us = timestampToUs(ts.seconds, ts.nanos);
  if (!Number.isSafeInteger(us) || us < Y2000_US || us > serverTimeUs + MAX_AHEAD_US) return serverTimeUs;
  return us;
}

interface SubjectFacts {
  agent: string;
  team: string;
}

/** swarm.agent.<id>.…, swarm.prod.agent.<id>.…, swarm.team.<t>.agent.<id>.…; team from swarm.team.<t>.… */
export function parseSubject(subject: string): SubjectFacts {
  const t = subject.split('.', 6);
  const facts: SubjectFacts = { agent: '', team: '' };
  if (t[0] !== 'swarm') return facts;
  if (t[1] === 'agent') facts.agent = t[2] ?? '';
  else if (t[1] === 'prod' && t[2] === 'agent') facts.agent = t[3] ?? '';
  else if (t[1] === 'team' && t.length > 3) {
    facts.team = t[2] ?? '';
    if (t[3] === 'agent') facts.agent = t[4] ?? '';
  }
  return facts;
}

function buildRow(msg: IncomingMessage, subject: string, context: string, f: Facts, stripped: number): Normalized {
  // The strings below also appear in the context and were counted there: clean without counting again.
  const quiet = uncounted();
  const fromSubject = parseSubject(subject);
  const sentSource = clean(f.sourceAsSent, quiet);
  const source = sentSource !== '' ? sentSource : fromSubject.agent !== '' ? fromSubject.agent : UNKNOWN_SOURCE;
  const eventTeam = clean(f.team, quiet);
  const timestampUs = eventTimeUs(f.timestamp, msg.serverTimeUs);
  const message = clean(f.message, quiet);
  const { id } = deriveRowId({
    envelopeId: f.envelopeId,
    sourceAsSent: f.sourceAsSent,
    timestamp: f.timestamp,
    payload: msg.data,
    streamName: msg.streamName,
    streamCreatedUs: msg.streamCreatedUs,
    streamSeq: msg.streamSeq,
    serverTimeUs: msg.serverTimeUs,
  });
  const row: LogRow = {
    // Held until the batch commits: one flat string each, not a tree of pieces (flat.ts).
    id: flat(id),
    traceId: clean(f.traceId, quiet),
    timestampUs,
    level: f.level,
    source,
    intent: clean(f.intent, quiet),
    message,
    context: flat(context),
    teamId: eventTeam !== '' ? eventTeam : fromSubject.team,
    subject,
    receivedAtUs: msg.receivedAtUs,
  };
  const registry = source === UNKNOWN_SOURCE ? null : registryEvent(msg, row, eventTeam, fromSubject.team, f, quiet);
  return { ok: true, row, registry, stripped };
}

function registryEvent(
  msg: IncomingMessage,
  row: LogRow,
  eventTeam: string,
  subjectTeam: string,
  f: Facts,
  quiet: StripCounter,
): RegistryEvent {
  const isError = row.level === 'ERROR' || row.level === 'FATAL';
  // A row at level ERROR/FATAL sets ERROR, unless the event itself states a status.
  const status = f.status ?? (isError ? 'ERROR' : null);
  // last_error_summary: an explicit error message always; otherwise, for an error event, the best text it has.
  const errorish = isError || status === 'ERROR';
  const errorMessage = f.errorText ?? (errorish ? (f.dataError ?? (f.message !== '' ? f.message : null)) : null);
  return {
    agentId: row.source,
    eventTeam,
    subjectTeam,
    timeUs: row.timestampUs,
    streamSeq: msg.streamSeq,
    serverTimeUs: msg.serverTimeUs,
    status,
    meta: f.meta === null ? null : (cleanValue(f.meta, quiet) as Record<string, unknown>),
    errorMessage: errorMessage === null ? null : clean(errorMessage, quiet),
  };
}

/** A sanitized deep copy of a Struct value (depth already bounded by the context render). */
function cleanValue(v: unknown, quiet: StripCounter): unknown {
  if (typeof v === 'string') return clean(v, quiet);
  if (v === null || typeof v !== 'object') return v === undefined ? null : v;
  if (Array.isArray(v)) return v.map((x) => cleanValue(x, quiet));
  const out: Record<string, unknown> = {};
  const obj = v as Record<string, unknown>;
  for (const key of Object.keys(obj)) out[clean(key, quiet)] = cleanValue(obj[key], quiet);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dead letters

const MAX_DETAIL_CHARS = 1000;

function reject(msg: IncomingMessage, reason: RejectReason, detail: string): Normalized {
  const quiet = uncounted();
  const headers: Record<string, string> = {};
  if (msg.headers !== undefined) {
    for (const [name, value] of msg.headers) headers[clean(name, quiet)] = clean(value, quiet);
  }
  return {
    ok: false,
    reject: {
      subject: clean(msg.subject, quiet),
      headers,
      payload: msg.data,
      reason,
      detail: clean(detail.length > MAX_DETAIL_CHARS ? detail.slice(0, MAX_DETAIL_CHARS) : detail, quiet),
      streamSeq: msg.streamSeq,
      receivedAtUs: msg.receivedAtUs,
    },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
