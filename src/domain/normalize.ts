// One incoming NATS message -> one log row (+ what it means for the registry), or a dead letter.
// DESIGN 3.1 (type selection, validity), 3.1.1 (everything else the current swarm sends), 3.2 (row
// identity), 3.3 (the RegistryEvent). Pure and synchronous; never throws, whatever the bytes: anything
// unexpected becomes a reject.
//
// Two steps, kept apart so a faster decoder can replace one reader without touching the rest:
// 1. readPayload(): which format the bytes are (the order of DESIGN 3.1.1) and that format's reader —
//    formats/swarm-v1.ts (protobuf, strict proto3 JSON), formats/swarm-json.ts (signal, telemetry,
//    mission event, other JSON, text) — giving Facts and the context JSON, or a Problem;
// 2. buildRow(): Facts -> LogRow + RegistryEvent by one set of rules for every format.
// The protobuf hot path pays one extra byte comparison for all of this: JSON is only tried when the
// first byte is '{' or '[' (or Content-Type says JSON), text only after protobuf failed. A plain
// MsgEnvelope is read straight from the wire (formats/wire-envelope.ts) when that reader can answer
// exactly as the reference path would; otherwise the reference path decides.

import type { Facts, Format } from './formats/facts.js';
import { flat } from './flat.js';
import { deriveRowId, type ReplayOrigin } from './identity.js';
import { isJsonObject, jsonText, parseJsonPayload, utf8OrNull } from './formats/json-value.js';
import type { ParsedJson } from './formats/json-value.js';
import { LOG_ENTRY_TYPE, MSG_ENVELOPE_TYPE } from './descriptors.js';
import { MAX_STRUCT_DEPTH } from './formats/proto-json.js';
import { clean, uncounted } from './sanitize.js';
import type { StripCounter } from './sanitize.js';
import { asText, classifyObject, decodeEnvelope, envelopeFacts, genericJsonContext, genericJsonFacts, textContext, textFacts } from './formats/swarm-json.js';
import { checkV1, contextV1, decodeBinary, decodeProtoJson, factsV1, mayBeEnvelopeJson } from './formats/swarm-v1.js';
import type { DecodeV1Result, Problem } from './formats/swarm-v1.js';
import { readEnvelopeFast } from './formats/wire-envelope.js';
import { timestampToUs } from './time.js';
import type { Timestamp } from '../gen/google/protobuf/timestamp.js';
import type { LogRow, RegistryEvent, RejectReason, RejectRow } from './types.js';

export { FORMATS, normalizeLevel } from './formats/facts.js';
export type { Format } from './formats/facts.js';

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
  /**
   * Read plain MsgEnvelopes straight from the wire (formats/wire-envelope.ts; default true). false:
   * always the reference path (ts-proto decode, checkV1, contextV1, factsV1): the tests' reference and
   * the bench's A/B.
   */
  wireFastPath?: boolean;
}

export type Normalized =
  | { ok: true; row: LogRow; registry: RegistryEvent | null; stripped: number; format: Format }
  | { ok: false; reject: RejectRow; format: Format };

export const UNKNOWN_SOURCE = 'unknown';

/** The header `mycelis-memory dead-letters replay` adds to each message it republishes. */
export const REPLAY_HEADER = 'Mycelis-Replay-Of';

export function normalizeMessage(msg: IncomingMessage, opts: NormalizeOptions): Normalized {
  try {
    return normalize(msg, opts);
  } catch (err) {
    // Defensive: every expected failure is handled below; this keeps the "never throws" promise.
    return reject(msg, 'decode_error', `unexpected: ${errorText(err)}`, 'none');
  }
}

/** A format's reading of a payload: the row's facts and context, or why it is a dead letter. */
type Reading = { facts: Facts; context: string; format: Format } | { problem: Problem; format: Format };

function normalize(msg: IncomingMessage, opts: NormalizeOptions): Normalized {
  const { data } = msg;
  if (data.length > opts.maxEventBytes) {
    return reject(msg, 'too_large', `${data.length} bytes > MAX_EVENT_BYTES ${opts.maxEventBytes}`, 'none');
  }
  const h = readHeaders(msg.headers);
  const counter: StripCounter = { stripped: 0 };
  const logSubject = opts.isLogEntrySubject(msg.subject);
  const first = data[0];
  // The hot path: protobuf of the subject's type, valid. Everything else goes through readPayload
  // (handed this decode, so bytes that are not protobuf are decoded once).
  let binary: DecodeV1Result | undefined;
  if (first !== 0x7b && first !== 0x5b && !h.json && h.type === null) {
    // Plain, well-formed envelopes straight from the wire (equal to the reference path, or null).
    if (!logSubject && opts.wireFastPath !== false) {
      const fast = readEnvelopeFast(data);
      if (fast !== null) return buildRow(msg, h.replayOf, fast.context, fast.facts, counter, 'protobuf', true);
    }
    binary = decodeBinary(data, logSubject);
    if (!('reason' in binary) && checkV1(binary) === null) {
      const context = contextV1(binary, counter);
      if (typeof context === 'string') return buildRow(msg, h.replayOf, context, factsV1(binary), counter, 'protobuf');
    }
  }
  const r = readPayload(data, h, logSubject, counter, binary);
  if ('problem' in r) return reject(msg, r.problem.reason, r.problem.detail, r.format);
  return buildRow(msg, h.replayOf, r.context, r.facts, counter, r.format);
}

// ---------------------------------------------------------------------------------------------
// Step 1: which format, read by which reader

function readPayload(data: Uint8Array, h: HeaderFacts, logSubject: boolean, counter: StripCounter, binary?: DecodeV1Result): Reading {
  const first = data[0];
  // A protobuf message never starts with '{' (0x7B would be field 15, wire type 3, a group: not
  // used by these messages) nor '[' (field 11, a group). Do not skip whitespace: 0x0A is the tag of field 1.
  const looksJson = h.json || first === 0x7b || first === 0x5b;

  // Named type (Mycelis-Type header, LOG_ENTRY_SUBJECTS): strictly that type, as proto3 JSON or protobuf.
  const named = h.type ?? (logSubject ? 'log' : null);
  if (named !== null) {
    const isLog = named === 'log';
    if (h.json || first === 0x7b) {
      const p = parseJsonPayload(data, counter);
      return p.ok ? v1Reading(decodeProtoJson(p.json.value, isLog), counter, 'proto_json') : { problem: p, format: 'none' };
    }
    return v1Reading(binary ?? decodeBinary(data, isLog), counter, 'protobuf');
  }

  // Unnamed (DESIGN 3.1.1): JSON, then protobuf, then text; else a dead letter.
  let jsonProblem: Problem | null = null;
  if (looksJson) {
    const p = parseJsonPayload(data, counter);
    if (p.ok) return readJson(p.json, counter);
    if (p.reason === 'too_deep') return { problem: p, format: 'json' };
    jsonProblem = p; // not JSON after all: protobuf or text may still read it
  }
  const bin = v1Reading(binary ?? decodeBinary(data, false), counter, 'protobuf');
  if (!('problem' in bin) || bin.problem.reason === 'too_deep') return bin;
  const text = asText(utf8OrNull(data));
  if (text !== null) return { facts: textFacts(text), context: textContext(text), format: 'text' };
  return { problem: jsonProblem ?? bin.problem, format: 'none' };
}

function v1Reading(d: DecodeV1Result, counter: StripCounter, format: Format): Reading {
  // Bytes that do not decode as protobuf are no format at all; JSON that is not the type is still JSON.
  if ('reason' in d) return { problem: d, format: format === 'protobuf' ? 'none' : format };
  const invalid = checkV1(d);
  if (invalid !== null) return { problem: invalid, format };
  const context = contextV1(d, counter);
  if (typeof context !== 'string') return { problem: context, format };
  return { facts: factsV1(d), context, format };
}

/** Valid JSON on an unnamed subject: telemetry, signal, mission event, strict MsgEnvelope, else generic. */
function readJson(json: ParsedJson, counter: StripCounter): Reading {
  const v = json.value;
  if (isJsonObject(v)) {
    const format = classifyObject(v);
    if (format !== null) {
      if (json.depth > MAX_STRUCT_DEPTH) return { problem: tooDeep(json), format };
      const d = decodeEnvelope(format, v);
      if ('reason' in d) return { problem: d, format };
      // The context is the envelope as sent (offsets, unknown keys and all), sanitized.
      return { facts: envelopeFacts(d), context: jsonText(json), format };
    }
    if (mayBeEnvelopeJson(v)) {
      const env = v1Reading(decodeProtoJson(v, false), counter, 'proto_json');
      if (!('problem' in env) || env.problem.reason === 'too_deep') return env;
    }
  }
  if (json.depth > MAX_STRUCT_DEPTH) return { problem: tooDeep(json), format: 'json' };
  return { facts: genericJsonFacts(v), context: genericJsonContext(jsonText(json)), format: 'json' };
}

function tooDeep(json: ParsedJson): Problem {
  return { reason: 'too_deep', detail: `JSON nested ${json.depth} levels (limit ${MAX_STRUCT_DEPTH})` };
}

// ---------------------------------------------------------------------------------------------
// Headers

interface HeaderFacts {
  /** From Mycelis-Type: 'log' | 'envelope', or null when absent or naming neither. */
  type: 'log' | 'envelope' | null;
  json: boolean;
  replayOf: ReplayOrigin | null;
}

const NO_HEADERS: HeaderFacts = Object.freeze({ type: null, json: false, replayOf: null });

function readHeaders(headers: ReadonlyMap<string, string> | undefined): HeaderFacts {
  if (headers === undefined || headers.size === 0) return NO_HEADERS;
  const facts: HeaderFacts = { type: null, json: false, replayOf: null };
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower === 'mycelis-type') facts.type = typeFromHeader(value);
    else if (lower === 'content-type') facts.json = value.trim().toLowerCase().startsWith('application/json');
    else if (lower === 'mycelis-replay-of') facts.replayOf = parseReplayOf(value);
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

/** `dead-letter=<id>; stream-seq=<n>; received-us=<µs>` (formatReplayOf); null when malformed. */
export function parseReplayOf(value: string): ReplayOrigin | null {
  const fields = new Map<string, string>();
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const id = fields.get('dead-letter') ?? '';
  const seq = Number(fields.get('stream-seq'));
  const received = Number(fields.get('received-us'));
  // A time before 2000 is no receive time of ours (DESIGN 3.1's sanity rule for event times, applied here too).
  if (!/^\d{1,19}$/.test(id) || !Number.isSafeInteger(seq) || seq < 0 || !Number.isSafeInteger(received) || received < Y2000_US) return null;
  return { deadLetterId: id, streamSeq: seq, receivedUs: received };
}

export function formatReplayOf(o: ReplayOrigin): string {
  return `dead-letter=${o.deadLetterId}; stream-seq=${o.streamSeq}; received-us=${o.receivedUs}`;
}

// ---------------------------------------------------------------------------------------------
// Step 2: the row and the registry event

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
  // Per message: the first five dots found in place and only the tokens kept sliced out (it split the
  // subject into up to six strings before; test/unit/domain-normalize.test.ts compares the two).
  const facts: SubjectFacts = { agent: '', team: '' };
  const d0 = subject.indexOf('.');
  if (d0 !== 5 || !subject.startsWith('swarm')) return facts;
  const d1 = subject.indexOf('.', d0 + 1);
  const t1 = d1 < 0 ? subject.slice(d0 + 1) : subject.slice(d0 + 1, d1);
  if (d1 < 0) return facts;
  const d2 = subject.indexOf('.', d1 + 1);
  const token = (from: number, to: number): string => (to < 0 ? subject.slice(from) : subject.slice(from, to));
  if (t1 === 'agent') {
    facts.agent = token(d1 + 1, d2);
    return facts;
  }
  if (d2 < 0) return facts; // swarm.prod.<x> or swarm.team.<t>: no third dot, no agent and (team) fewer than 4 tokens
  const d3 = subject.indexOf('.', d2 + 1);
  if (t1 === 'prod') {
    if (subject.slice(d1 + 1, d2) === 'agent') facts.agent = token(d2 + 1, d3);
  } else if (t1 === 'team') {
    facts.team = subject.slice(d1 + 1, d2);
    if (token(d2 + 1, d3) === 'agent' && d3 >= 0) facts.agent = token(d3 + 1, subject.indexOf('.', d3 + 1));
  }
  return facts;
}

function buildRow(
  msg: IncomingMessage,
  replayOf: ReplayOrigin | null,
  context: string,
  f: Facts,
  counter: StripCounter,
  format: Format,
  /**
   * The facts' strings (and meta) are clean already: the wire fast path read them as strict UTF-8 (no
   * lone surrogates) and refused any NUL, and its meta is a fresh JSON.parse of them. Then they are used
   * as they are, without a second pass or a deep copy of meta (the subject still is cleaned).
   */
  trusted = false,
): Normalized {
  const subject = clean(msg.subject, counter);
  // The strings below also appear in the context and were counted there: clean without counting again.
  const quiet = uncounted();
  // A replayed dead letter stands where it was first received (never later than now): that is its
  // server time for the event-time rule and the registry's last_seen.
  const serverTimeUs = replayOf === null ? msg.serverTimeUs : Math.min(replayOf.receivedUs, msg.serverTimeUs);
  const fromSubject = parseSubject(subject);
  const sentSource = trusted ? f.sourceAsSent : clean(f.sourceAsSent, quiet);
  const source = sentSource !== '' ? sentSource : fromSubject.agent !== '' ? fromSubject.agent : UNKNOWN_SOURCE;
  const eventTeam = trusted ? f.team : clean(f.team, quiet);
  const timestampUs = eventTimeUs(f.timestamp, serverTimeUs);
  const { id } = deriveRowId({
    envelopeId: f.envelopeId,
    missionEventId: f.missionEventId,
    replayOf,
    sourceAsSent: f.sourceAsSent,
    timestamp: f.timestamp,
    payload: msg.data,
    streamName: msg.streamName,
    streamCreatedUs: msg.streamCreatedUs,
    streamSeq: msg.streamSeq,
    serverTimeUs,
  });
  const row: LogRow = {
    // Held until the batch commits: one flat string each, not a tree of pieces (flat.ts).
    id: flat(id),
    traceId: trusted ? f.traceId : clean(f.traceId, quiet),
    timestampUs,
    level: f.level,
    source,
    intent: trusted ? f.intent : clean(f.intent, quiet),
    message: trusted ? f.message : clean(f.message, quiet),
    context: flat(context),
    teamId: eventTeam !== '' ? eventTeam : fromSubject.team,
    subject,
    receivedAtUs: msg.receivedAtUs,
  };
  // swarm/v1 messages tell about their source; the JSON formats name their agent (or none) themselves.
  const agent = f.registryAgent === undefined ? source : trusted ? f.registryAgent : clean(f.registryAgent, quiet);
  const registry =
    agent === '' || agent === UNKNOWN_SOURCE
      ? null
      : registryEvent(msg, serverTimeUs, row, agent, f.registryAgent === undefined ? eventTeam : row.teamId, fromSubject.team, f, quiet, trusted);
  return { ok: true, row, registry, stripped: counter.stripped, format };
}

function registryEvent(
  msg: IncomingMessage,
  serverTimeUs: number,
  row: LogRow,
  agentId: string,
  eventTeam: string,
  subjectTeam: string,
  f: Facts,
  quiet: StripCounter,
  trusted: boolean,
): RegistryEvent {
  const isError = row.level === 'ERROR' || row.level === 'FATAL';
  // A row at level ERROR/FATAL sets ERROR, unless the event itself states a status.
  const status = f.status ?? (isError ? 'ERROR' : null);
  // last_error_summary: an explicit error message always; otherwise, for an error event, the best text it has.
  const errorish = isError || status === 'ERROR';
  const errorMessage = f.errorText ?? (errorish ? (f.dataError ?? (f.message !== '' ? f.message : null)) : null);
  return {
    agentId,
    eventTeam,
    subjectTeam,
    timeUs: row.timestampUs,
    streamSeq: msg.streamSeq,
    serverTimeUs,
    status,
    meta: f.meta === null ? null : trusted ? f.meta : (cleanValue(f.meta, quiet) as Record<string, unknown>),
    errorMessage: errorMessage === null ? null : trusted ? errorMessage : clean(errorMessage, quiet),
  };
}

/** A sanitized deep copy of a Struct value (depth already bounded by the context render). */
/** A JSON value with every string and key cleaned; a '__proto__' key stays an own, plain key. */
export function cleanValue(v: unknown, quiet: StripCounter): unknown {
  if (typeof v === 'string') return clean(v, quiet);
  if (v === null || typeof v !== 'object') return v === undefined ? null : v;
  if (Array.isArray(v)) return v.map((x) => cleanValue(x, quiet));
  const out: Record<string, unknown> = {};
  const obj = v as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const k = clean(key, quiet);
    // Assigning to '__proto__' would set the copy's prototype and drop the key.
    if (k === '__proto__') Object.defineProperty(out, k, { value: cleanValue(obj[key], quiet), enumerable: true, writable: true, configurable: true });
    else out[k] = cleanValue(obj[key], quiet);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dead letters

const MAX_DETAIL_CHARS = 1000;

function reject(msg: IncomingMessage, reason: RejectReason, detail: string, format: Format): Normalized {
  const quiet = uncounted();
  const headers: Record<string, string> = {};
  if (msg.headers !== undefined) {
    for (const [name, value] of msg.headers) headers[clean(name, quiet)] = clean(value, quiet);
  }
  return {
    ok: false,
    format,
    reject: {
      subject: clean(msg.subject, quiet),
      headers,
      payload: msg.data,
      reason,
      detail: clean(detail.length > MAX_DETAIL_CHARS ? detail.slice(0, MAX_DETAIL_CHARS) : detail, quiet),
      streamName: msg.streamName,
      streamCreatedUs: msg.streamCreatedUs,
      streamSeq: msg.streamSeq,
      receivedAtUs: msg.receivedAtUs,
    },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
