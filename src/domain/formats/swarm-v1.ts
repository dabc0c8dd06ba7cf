// The swarm's protobuf messages (mycelis.swarm.v1 MsgEnvelope and LogEntry, DESIGN 3.1): decoding from
// protobuf or strict proto3 JSON, validity, the context JSON, and what each means for its row (the
// normalization table). This is the ingest hot path for most of the swarm's traffic.

import { fromJson, toBinary } from '@bufbuild/protobuf';
import { BinaryReader } from '@bufbuild/protobuf/wire';

import { LogEntry, MsgEnvelope } from '../../gen/mycelis/swarm/v1/swarm.js';
import { LOG_ENTRY_TYPE, MSG_ENVELOPE_TYPE, swarmDescriptors } from '../descriptors.js';
import { eventRegistryFacts, normalizeLevel } from './facts.js';
import type { Facts } from './facts.js';
import { decodeUtf8Strict } from './json-value.js';
import type { JsonValue } from './json-value.js';
import { envelopeToJson, logEntryToJson, MAX_STRUCT_DEPTH, TooDeepError } from './proto-json.js';
import type { StripCounter } from '../sanitize.js';
import type { RejectReason } from '../types.js';

export type DecodedV1 = { kind: 'envelope'; m: MsgEnvelope } | { kind: 'log'; m: LogEntry };
export interface Problem {
  reason: RejectReason;
  detail: string;
}
export type DecodeV1Result = DecodedV1 | Problem;

// ts-proto's generated decoders stop at 100 nested messages (a counter kept on the reader). A Struct
// level costs up to three of them (Struct, FieldsEntry, Value), so that limit would reject Structs
// of depth ~33, which DESIGN 3.1 calls valid (the limit is 64). Starting the counter below zero gives
// them room for 64 Struct levels plus the envelope; deeper input still stops at a bounded depth (no
// stack exhaustion) and is reported as too_deep.
const DECODE_DEPTH_HEADROOM = 3 * MAX_STRUCT_DEPTH + 20;
const JSON_RECURSION_LIMIT = 3 * MAX_STRUCT_DEPTH + 120;

/** Protobuf bytes of `isLog ? LogEntry : MsgEnvelope`, fully consumed, strings strictly UTF-8. */
export function decodeBinary(data: Uint8Array, isLog: boolean): DecodeV1Result {
  // proto3 strings must be valid UTF-8: decode strictly (the default reader would substitute U+FFFD),
  // which also turns most random bytes into a decode error instead of a plausible-looking message.
  const reader = new BinaryReader(data, decodeUtf8Strict);
  (reader as unknown as { __tsProtoDecodeDepth: number }).__tsProtoDecodeDepth = -DECODE_DEPTH_HEADROOM;
  try {
    const decoded: DecodedV1 = isLog
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

/**
 * A parsed, sanitized JSON value as the strict proto3 JSON of the type: unknown keys and wrong types
 * are invalid_json. Then through the binary form into the same ts-proto type the binary path produces.
 */
export function decodeProtoJson(value: JsonValue, isLog: boolean): DecodeV1Result {
  try {
    const d = swarmDescriptors();
    const desc = isLog ? d.logEntry : d.msgEnvelope;
    const message = fromJson(desc, value, { registry: d.registry, recursionLimit: JSON_RECURSION_LIMIT });
    return decodeBinary(toBinary(desc, message), isLog);
  } catch (err) {
    return decodeFailure(err, 'invalid_json', isLog);
  }
}

let envelopeKeys: ReadonlySet<string> | undefined;

/**
 * Whether every key of `o` names a MsgEnvelope field (proto name or JSON name): strict proto3 JSON
 * rejects any other key, so an object with one cannot be an envelope, and is told apart without
 * running (and failing) the decoder — the common case for other JSON on an unnamed subject.
 */
export function mayBeEnvelopeJson(o: Readonly<Record<string, unknown>>): boolean {
  if (envelopeKeys === undefined) {
    const keys = new Set<string>();
    for (const f of swarmDescriptors().msgEnvelope.fields) keys.add(f.name).add(f.jsonName);
    envelopeKeys = keys;
  }
  for (const key in o) if (Object.hasOwn(o, key) && !envelopeKeys.has(key)) return false;
  return true;
}

function decodeFailure(err: unknown, reason: RejectReason, isLog: boolean): Problem {
  const text = err instanceof Error ? err.message : String(err);
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

/** null when the decoded message is valid (DESIGN 3.1), else why not. */
export function checkV1(d: DecodedV1): Problem | null {
  return d.kind === 'envelope' ? checkEnvelope(d.m) : checkLogEntry(d.m);
}

// A payload message with every field at its default carries nothing: we count it as not set. Random
// bytes often decode as an envelope holding just such an empty payload (e.g. 0x32 0x00 is `text {}`);
// that is invalid, not an empty row.
function checkEnvelope(m: MsgEnvelope): Problem | null {
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

function checkLogEntry(m: LogEntry): Problem | null {
  if (m.intent !== '' || m.message !== '' || m.errorMessage !== '') return null;
  return { reason: 'empty_log_entry', detail: 'LogEntry has no intent, message or error_message' };
}

/** The context column: the whole message as proto3 JSON with original field names; too_deep past 64 Struct levels. */
export function contextV1(d: DecodedV1, counter: StripCounter): string | Problem {
  try {
    return d.kind === 'envelope' ? envelopeToJson(d.m, counter) : logEntryToJson(d.m, counter);
  } catch (err) {
    if (err instanceof TooDeepError) return { reason: 'too_deep', detail: err.message };
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// The normalization table (DESIGN 3.1)

export function factsV1(d: DecodedV1): Facts {
  return d.kind === 'envelope' ? envelopeFacts(d.m) : logEntryFacts(d.m);
}

function envelopeFacts(m: MsgEnvelope): Facts {
  // Object literals, not baseFacts(): this runs for nearly every message.
  const f: Facts = {
    intent: 'binary',
    message: '',
    level: 'INFO',
    sourceAsSent: m.sourceAgentId,
    team: m.teamId,
    traceId: m.traceId,
    timestamp: m.timestamp,
    envelopeId: m.id,
    missionEventId: '',
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
    missionEventId: '',
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
