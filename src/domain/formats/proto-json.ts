// Hand-written proto3 JSON for the swarm messages, with the ORIGINAL proto field names
// (`source_agent_id`), as the context column stores it (DESIGN 3.1). This is the ingest hot path, so it
// writes JSON text directly from the ts-proto objects instead of going through reflection.
//
// Follows the proto3 JSON mapping: fields at their default value are omitted (a set message field,
// even empty, is written); enums by name (unknown values as numbers); Timestamp as RFC 3339 in UTC with
// 0, 3, 6 or 9 fractional digits; Struct as a plain JSON object; Any as {"@type": …, fields…}.
// Where the mapping has no answer we keep the data rather than fail (see renderNumber, renderTimestamp,
// renderAny). Every string, key and value goes through clean() (NUL / lone surrogates stripped, counted).
//
// Structs nested deeper than MAX_STRUCT_DEPTH throw TooDeepError; recursion stops right there, so even a
// pathologically deep value cannot exhaust the stack here.

import { create, toJson } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';

import type { Any } from '../../gen/google/protobuf/any.js';
import type { Timestamp } from '../../gen/google/protobuf/timestamp.js';
import type {
  EventPayload,
  LogEntry,
  MsgEnvelope,
  TextPayload,
  ToolCallPayload,
  ToolResultPayload,
} from '../../gen/mycelis/swarm/v1/swarm.js';
import { swarmDescriptors } from '../descriptors.js';
import { clean } from '../sanitize.js';
import type { StripCounter } from '../sanitize.js';

/** Structs nested deeper than this are invalid (DESIGN 3.1: many clients cannot decode deeper). */
export const MAX_STRUCT_DEPTH = 64;

export class TooDeepError extends Error {
  override readonly name = 'TooDeepError';
  constructor(readonly field: string) {
    super(`${field}: Struct nested deeper than ${MAX_STRUCT_DEPTH}`);
  }
}

const MESSAGE_TYPE_NAMES = [
  'MESSAGE_TYPE_UNSPECIFIED',
  'MESSAGE_TYPE_EVENT',
  'MESSAGE_TYPE_TEXT',
  'MESSAGE_TYPE_BINARY',
  'MESSAGE_TYPE_TOOL_CALL',
  'MESSAGE_TYPE_TOOL_RESULT',
];

/** Builds one JSON object; fields are appended in declaration order. */
class ObjectWriter {
  private out = '{';
  constructor(private readonly c: StripCounter) {}

  raw(key: string, json: string): void {
    this.out += (this.out.length === 1 ? '"' : ',"') + key + '":' + json;
  }
  str(key: string, value: string): void {
    if (value !== '') this.raw(key, quote(value, this.c));
  }
  bool(key: string, value: boolean): void {
    if (value) this.raw(key, 'true');
  }
  struct(key: string, value: Record<string, unknown> | undefined): void {
    if (value !== undefined) this.raw(key, renderStruct(value, key, this.c));
  }
  timestamp(key: string, value: Timestamp | undefined): void {
    if (value !== undefined) this.raw(key, renderTimestamp(value));
  }
  end(): string {
    return this.out + '}';
  }
}

// Strings with nothing JSON must escape and nothing clean() strips (nearly all) are quoted as they are.
const NEEDS_WORK = /[\u0000-\u001f"\\\ud800-\udfff]/;

export function quote(s: string, c: StripCounter): string {
  return NEEDS_WORK.test(s) ? JSON.stringify(clean(s, c)) : '"' + s + '"';
}

export function envelopeToJson(m: MsgEnvelope, c: StripCounter): string {
  const w = new ObjectWriter(c);
  w.str('id', m.id);
  w.timestamp('timestamp', m.timestamp);
  w.str('source_agent_id', m.sourceAgentId);
  if (m.type !== 0) w.raw('type', enumJson(m.type));
  const p = m.payload;
  if (p !== undefined) {
    switch (p.$case) {
      case 'event':
        w.raw('event', eventJson(p.value, c));
        break;
      case 'text':
        w.raw('text', textJson(p.value, c));
        break;
      case 'toolCall':
        w.raw('tool_call', toolCallJson(p.value, c));
        break;
      case 'toolResult':
        w.raw('tool_result', toolResultJson(p.value, c));
        break;
    }
  }
  w.str('trace_id', m.traceId);
  w.str('span_id', m.spanId);
  w.str('team_id', m.teamId);
  w.struct('swarm_context', m.swarmContext);
  return w.end();
}

function enumJson(value: number): string {
  const name = MESSAGE_TYPE_NAMES[value];
  return name === undefined ? String(value) : `"${name}"`;
}

function eventJson(p: EventPayload, c: StripCounter): string {
  const w = new ObjectWriter(c);
  w.str('event_type', p.eventType);
  w.str('stream_id', p.streamId);
  w.struct('data', p.data);
  return w.end();
}

function textJson(p: TextPayload, c: StripCounter): string {
  const w = new ObjectWriter(c);
  w.str('content', p.content);
  w.str('recipient_id', p.recipientId);
  w.str('intent', p.intent);
  w.str('context_id', p.contextId);
  return w.end();
}

function toolCallJson(p: ToolCallPayload, c: StripCounter): string {
  const w = new ObjectWriter(c);
  w.str('call_id', p.callId);
  w.str('tool_name', p.toolName);
  w.struct('arguments', p.arguments);
  return w.end();
}

function toolResultJson(p: ToolResultPayload, c: StripCounter): string {
  const w = new ObjectWriter(c);
  w.str('call_id', p.callId);
  w.struct('result', p.result);
  w.bool('is_error', p.isError);
  w.str('error_message', p.errorMessage);
  return w.end();
}

export function logEntryToJson(m: LogEntry, c: StripCounter): string {
  const w = new ObjectWriter(c);
  w.timestamp('timestamp', m.timestamp);
  w.str('trace_id', m.traceId);
  w.str('agent_id', m.agentId);
  w.str('team_id', m.teamId);
  w.str('source_uri', m.sourceUri);
  w.str('intent', m.intent);
  w.struct('context_snapshot', m.contextSnapshot);
  w.str('status', m.status);
  w.str('error_message', m.errorMessage);
  if (m.rawPayload !== undefined) w.raw('raw_payload', renderAny(m.rawPayload, c));
  w.str('level', m.level);
  w.str('source', m.source);
  w.str('message', m.message);
  return w.end();
}

/** A Struct (plain object from ts-proto) as JSON; the Struct itself is depth 1. */
export function renderStruct(value: Record<string, unknown>, field: string, c: StripCounter): string {
  return renderValue(value, 0, field, c);
}

function renderValue(v: unknown, depth: number, field: string, c: StripCounter): string {
  switch (typeof v) {
    case 'string':
      return quote(v, c);
    case 'number':
      return renderNumber(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      break;
    default:
      return 'null'; // a Value with no kind set
  }
  if (v === null) return 'null';
  if (depth >= MAX_STRUCT_DEPTH) throw new TooDeepError(field);
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += (i === 0 ? '' : ',') + renderValue(v[i], depth + 1, field, c);
    return out + ']';
  }
  let out = '{';
  let first = true;
  const obj = v as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    out += (first ? '' : ',') + quote(key, c) + ':' + renderValue(obj[key], depth + 1, field, c);
    first = false;
  }
  return out + '}';
}

/**
 * Struct numbers are doubles. NaN and ±Infinity have no JSON form (and jsonb rejects them); the
 * mapping writes them as strings for double fields, and so do we, rather than drop the value.
 */
function renderNumber(n: number): string {
  if (Number.isFinite(n)) return JSON.stringify(n);
  return Number.isNaN(n) ? '"NaN"' : n > 0 ? '"Infinity"' : '"-Infinity"';
}

const MIN_SECONDS = -62_135_596_800; // 0001-01-01T00:00:00Z
const MAX_SECONDS = 253_402_300_799; // 9999-12-31T23:59:59Z

// "YYYY-MM-DDTHH:MM:SS" of the last two distinct seconds (envelope timestamps cluster).
const prefixSec = [Number.NaN, Number.NaN];
const prefixText = ['', ''];
let prefixNext = 0;
function secondPrefix(s: number): string {
  if (prefixSec[0] === s) return prefixText[0]!;
  if (prefixSec[1] === s) return prefixText[1]!;
  const text = new Date(s * 1000).toISOString().slice(0, 19);
  prefixSec[prefixNext] = s;
  prefixText[prefixNext] = text;
  prefixNext ^= 1;
  return text;
}

/** RFC 3339 (UTC) with 0, 3, 6 or 9 fractional digits; null when outside proto3's valid range. */
export function timestampToRfc3339(seconds: string, nanos: number): string | null {
  const s = Number(seconds);
  if (!Number.isInteger(s) || s < MIN_SECONDS || s > MAX_SECONDS) return null;
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) return null;
  const base = secondPrefix(s);
  if (nanos === 0) return base + 'Z';
  if (nanos % 1_000_000 === 0) return `${base}.${String(nanos / 1_000_000).padStart(3, '0')}Z`;
  if (nanos % 1000 === 0) return `${base}.${String(nanos / 1000).padStart(6, '0')}Z`;
  return `${base}.${String(nanos).padStart(9, '0')}Z`;
}

/** An out-of-range Timestamp has no proto3 JSON form: keep its raw fields so nothing is lost. */
function renderTimestamp(t: Timestamp): string {
  const text = timestampToRfc3339(t.seconds, t.nanos);
  return text !== null ? `"${text}"` : `{"seconds":${JSON.stringify(t.seconds)},"nanos":${t.nanos}}`;
}

/**
 * Any: {"@type": url, …fields} through the descriptor registry when the type is known there. An
 * unknown type cannot be rendered by the mapping; we keep it as {"@type": url, "value": base64}.
 */
function renderAny(a: Any, c: StripCounter): string {
  let json: unknown;
  try {
    json = toJson(AnySchema, create(AnySchema, { typeUrl: a.typeUrl, value: a.value }), {
      registry: swarmDescriptors().registry,
      useProtoFieldName: true,
    });
  } catch {
    json = { '@type': a.typeUrl, value: Buffer.from(a.value).toString('base64') };
  }
  return renderValue(json, 0, 'raw_payload', c);
}
