// Everything else the current swarm sends (DESIGN 3.1.1): its JSON envelopes (signal, telemetry), its
// mission events, and - as generic rows - any other JSON and plain text. Which one a payload is, what
// each requires, and what each means for its row and the registry.
//
// The three envelope formats are described in proto/mycelis/protocol/v1/envelopes.proto. A payload is
// checked against that description (every described field has the JSON type its proto type implies;
// timestamps are RFC 3339, see parseRfc3339) and then decoded by the generated ts-proto fromJSON.
// fromJSON alone would not do: it coerces (String(5) is "5") and hands timestamps to `Date`. Keys the
// proto does not describe are allowed (the sender's Go decoder ignores them) and kept in the context.

import { ScalarType } from '@bufbuild/protobuf';
import type { DescMessage } from '@bufbuild/protobuf';

import type { Timestamp } from '../../gen/google/protobuf/timestamp.js';
import { MissionEvent, SignalEnvelope, TelemetryEnvelope } from '../../gen/mycelis/protocol/v1/envelopes.js';
import { swarmDescriptors } from '../descriptors.js';
import { baseFacts, eventRegistryFacts } from './facts.js';
import type { Facts } from './facts.js';
import { isJsonObject, shortRendering } from './json-value.js';
import type { JsonObject, JsonValue } from './json-value.js';
import { parseRfc3339 } from '../time.js';
import type { Problem } from './swarm-v1.js';

export type EnvelopeFormat = 'signal' | 'telemetry' | 'mission_event';

export type DecodedJsonEnvelope =
  | { format: 'signal'; m: SignalEnvelope }
  | { format: 'telemetry'; m: TelemetryEnvelope }
  | { format: 'mission_event'; m: MissionEvent };

const has = (o: JsonObject, key: string): boolean => Object.hasOwn(o, key);

/**
 * DESIGN 3.1.1, in this order: telemetry (signal_type or meta.source_node), signal (meta with
 * source_kind, source_channel or payload_kind, or a string `text`: an object `text` is the proto3 JSON
 * of a MsgEnvelope's TextPayload), mission event (mission_event_id and event_type); else null.
 */
export function classifyObject(o: JsonObject): EnvelopeFormat | null {
  const meta = has(o, 'meta') ? o['meta'] : undefined;
  const m = isJsonObject(meta) ? meta : null;
  if (has(o, 'signal_type') || (m !== null && has(m, 'source_node'))) return 'telemetry';
  if ((m !== null && (has(m, 'source_kind') || has(m, 'source_channel') || has(m, 'payload_kind'))) || typeof o['text'] === 'string') {
    return 'signal';
  }
  if (has(o, 'mission_event_id') && has(o, 'event_type')) return 'mission_event';
  return null;
}

/** Decodes an object classified as `format`; a missing or malformed field is a Problem naming it. */
export function decodeEnvelope(format: EnvelopeFormat, o: JsonObject): DecodedJsonEnvelope | Problem {
  const d = swarmDescriptors();
  switch (format) {
    case 'telemetry': {
      const bad = checkFields(d.telemetryEnvelope, o, '', format) ?? requireTelemetry(o);
      if (bad !== null) return bad;
      const m = TelemetryEnvelope.fromJSON(o);
      if (m.meta !== undefined) m.meta.timestamp = exactTime((o['meta'] as JsonObject)['timestamp']);
      return { format, m };
    }
    case 'signal': {
      const bad = checkFields(d.signalEnvelope, o, '', format);
      if (bad !== null) return bad;
      const m = SignalEnvelope.fromJSON(o);
      if (m.meta !== undefined) m.meta.timestamp = exactTime((o['meta'] as JsonObject)['timestamp']);
      return { format, m };
    }
    case 'mission_event': {
      const bad = checkFields(d.missionEvent, o, '', format) ?? requireMission(o);
      if (bad !== null) return bad;
      return { format, m: MissionEvent.fromJSON(o) };
    }
  }
}

function exactTime(v: JsonValue | undefined): Timestamp | undefined {
  return typeof v === 'string' ? (parseRfc3339(v) ?? undefined) : undefined;
}

const TIMESTAMP = 'google.protobuf.Timestamp';
const VALUE = 'google.protobuf.Value';

/**
 * Every field `desc` describes, where present, has the JSON type its proto type implies. null counts
 * as absent (as for Go's decoder), except for a Value, where null is a value.
 */
function checkFields(desc: DescMessage, o: JsonObject, path: string, format: EnvelopeFormat): Problem | null {
  for (const field of desc.fields) {
    const key = field.jsonName;
    if (!has(o, key)) continue;
    const v = o[key]!;
    const at = path + key;
    if (field.fieldKind === 'message' && field.message.typeName === VALUE) continue;
    if (v === null) continue;
    if (field.fieldKind === 'scalar') {
      const want = field.scalar === ScalarType.STRING ? 'string' : field.scalar === ScalarType.BOOL ? 'boolean' : 'number';
      if (typeof v !== want) return invalid(format, at, `expected a ${want}, got ${describe(v)}`);
    } else if (field.fieldKind === 'message' && field.message.typeName === TIMESTAMP) {
      if (typeof v !== 'string') return invalid(format, at, `expected an RFC 3339 time, got ${describe(v)}`);
      if (parseRfc3339(v) === null) return invalid(format, at, `not an RFC 3339 time: ${describe(v)}`);
    } else if (field.fieldKind === 'message') {
      if (!isJsonObject(v)) return invalid(format, at, `expected an object, got ${describe(v)}`);
      const inner = checkFields(field.message, v, `${at}.`, format);
      if (inner !== null) return inner;
    } else {
      return invalid(format, at, `unsupported field kind ${field.fieldKind}`); // not used by envelopes.proto
    }
  }
  return null;
}

// Go's time.Time zero value, which the sender's validator rejects as "required".
const ZERO_TIME_SECONDS = '-62135596800';

/** The telemetry sender's own validator (CTSEnvelope.Validate): source_node, timestamp, signal_type, payload. */
function requireTelemetry(o: JsonObject): Problem | null {
  const meta = o['meta'];
  if (!isJsonObject(meta)) return missing('telemetry', 'meta');
  if (!nonEmpty(meta['source_node'])) return missing('telemetry', 'meta.source_node');
  const ts = exactTime(meta['timestamp']);
  if (ts === undefined || (ts.seconds === ZERO_TIME_SECONDS && ts.nanos === 0)) return missing('telemetry', 'meta.timestamp');
  if (!nonEmpty(o['signal_type'])) return missing('telemetry', 'signal_type');
  // Present, even as null: the sender's check is on the raw JSON (len(payload) > 0), which "null" passes.
  if (!has(o, 'payload')) return missing('telemetry', 'payload');
  return null;
}

function requireMission(o: JsonObject): Problem | null {
  if (!nonEmpty(o['event_type'])) return missing('mission_event', 'event_type');
  if (!nonEmpty(o['mission_event_id'])) return missing('mission_event', 'mission_event_id');
  return null;
}

const nonEmpty = (v: JsonValue | undefined): boolean => typeof v === 'string' && v.trim() !== '';

const FORMAT_NAMES: Record<EnvelopeFormat, string> = { signal: 'signal envelope', telemetry: 'telemetry envelope', mission_event: 'mission event' };

function missing(format: EnvelopeFormat, field: string): Problem {
  return { reason: 'missing_field', detail: `${field}: required in a ${FORMAT_NAMES[format]}, missing or empty` };
}

function invalid(format: EnvelopeFormat, field: string, what: string): Problem {
  return { reason: 'invalid_field', detail: `${field}: ${what} (in a ${FORMAT_NAMES[format]})` };
}

function describe(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  return `${typeof v} ${String(v)}`;
}

// ---------------------------------------------------------------------------------------------
// The table of DESIGN 3.1.1

export function envelopeFacts(d: DecodedJsonEnvelope): Facts {
  switch (d.format) {
    case 'signal':
      return signalFacts(d.m);
    case 'telemetry':
      return telemetryFacts(d.m);
    case 'mission_event':
      return missionFacts(d.m);
  }
}

function signalFacts(s: SignalEnvelope): Facts {
  const meta = s.meta;
  const agent = meta?.agentId ?? '';
  const kind = meta?.payloadKind ?? '';
  return baseFacts({
    // A signal without payload_kind (only `text`, say) still needs an intent to be found by.
    intent: kind !== '' ? kind : 'signal',
    message: s.text !== '' ? s.text : rendering(s.payload),
    level: lower(kind) === 'error' ? 'ERROR' : 'INFO',
    sourceAsSent: agent !== '' ? agent : (meta?.sourceKind ?? ''),
    team: meta?.teamId ?? '',
    traceId: meta?.runId ?? '',
    timestamp: meta?.timestamp,
    // Only a named agent is an agent: source_kind (workspace_ui, scheduler, …) is not one.
    registryAgent: agent,
    dataError: errorIn(s.payload),
  });
}

const TELEMETRY_TEXT_KEYS = ['text', 'message', 'error', 'summary'];

function telemetryFacts(t: TelemetryEnvelope): Facts {
  const type = lower(t.signalType);
  const node = t.meta?.sourceNode ?? '';
  const f = baseFacts({
    intent: t.signalType,
    message: textIn(t.payload, TELEMETRY_TEXT_KEYS) ?? rendering(t.payload),
    level: type === 'error' || type === 'task_failed' ? 'ERROR' : type === 'governance_halt' ? 'WARN' : 'INFO',
    sourceAsSent: node,
    // The team is the subject's (swarm.team.<t>.telemetry): normalize.ts falls back to it.
    traceId: t.meta?.traceId ?? '',
    timestamp: t.meta?.timestamp,
    registryAgent: node,
    dataError: errorIn(t.payload),
  });
  // signal_type heartbeat counts as a heartbeat (DESIGN 3.1.1): status and meta from its payload.
  if (type === 'heartbeat' && isJsonObject(t.payload as JsonValue)) eventRegistryFacts(f, 'heartbeat', t.payload as JsonObject);
  return f;
}

function missionFacts(e: MissionEvent): Facts {
  return baseFacts({
    intent: e.eventType,
    message: e.eventType,
    level: lower(e.eventType).endsWith('.failed') ? 'ERROR' : 'INFO',
    sourceAsSent: e.sourceAgent,
    traceId: e.runId,
    missionEventId: e.missionEventId,
    registryAgent: e.sourceAgent,
  });
}

/** Generic rows change no agent (a subject's agent is who it is addressed to, not who sent it). */
export function genericJsonFacts(value: JsonValue): Facts {
  return baseFacts({ intent: 'json', message: shortRendering(value), registryAgent: '' });
}

export function textFacts(text: string): Facts {
  return baseFacts({ intent: 'text', message: text, registryAgent: '' });
}

export function genericJsonContext(bodyJson: string): string {
  return `{"format":"json","body":${bodyJson}}`;
}

export function textContext(text: string): string {
  return `{"format":"text","body":${JSON.stringify(text)}}`;
}

const lower = (s: string): string => s.trim().toLowerCase();

function rendering(v: unknown): string {
  return v === undefined || v === null ? '' : shortRendering(v as JsonValue);
}

/** The first non-blank string among `keys` of an object payload. */
function textIn(v: unknown, keys: readonly string[]): string | null {
  if (!isJsonObject(v as JsonValue)) return null;
  const o = v as JsonObject;
  for (const key of keys) {
    const s = o[key];
    if (typeof s === 'string' && s.trim() !== '' && has(o, key)) return s;
  }
  return null;
}

function errorIn(v: unknown): string | null {
  return textIn(v, ['error_message', 'error', 'last_error']);
}

// ---------------------------------------------------------------------------------------------
// Plain text (DESIGN 3.1.1 step 3)

// Control characters (Unicode Cc: C0, DEL, C1) other than tab, newline and carriage return. Protobuf
// nearly always has some (tags and lengths below 0x20), so this also keeps binary out of text rows.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

// Something other than white space: a lone newline (a protobuf cut after its first tag byte, 0x0A) or a
// run of blanks says nothing, like an empty payload.
const SOMETHING = /\S/;

/** Valid UTF-8 without control characters other than \t \n \r, not only white space: the text; else null. */
export function asText(decoded: string | null): string | null {
  if (decoded === null || CONTROL.test(decoded) || !SOMETHING.test(decoded)) return null;
  return decoded;
}
