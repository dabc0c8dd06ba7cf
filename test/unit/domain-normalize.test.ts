// DESIGN 3.1 / 3.3 (the RegistryEvent) over the real-format fixtures, column by column, plus the JSON
// forms, validity, sanitization, the level table and the timestamp rule.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { normalizeLevel, normalizeMessage, parseSubject } from '../../src/domain/normalize.js';
import type { IncomingMessage, Normalized } from '../../src/domain/normalize.js';
import { compileSubjectMatcher } from '../../src/domain/subjects.js';
import type { LogRow, RegistryEvent, RejectRow } from '../../src/domain/types.js';
import { LogEntry, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';

const FIXTURES = new URL('../fixtures/swarm-v1/', import.meta.url);
const index = JSON.parse(readFileSync(new URL('index.json', FIXTURES), 'utf8')) as Record<
  string,
  { type: string; subject: string; bytes: number; proto3_json: Record<string, unknown> }
>;
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(new URL(`${name}.bin`, FIXTURES)));

const SERVER_US = 1_767_225_700_000_000; // 2026-01-01T00:01:40Z
const RECEIVED_US = SERVER_US + 1234;
const opts = { isLogEntrySubject: compileSubjectMatcher(['swarm.log.>']), maxEventBytes: 1024 * 1024 };

function incoming(subject: string, data: Uint8Array, over: Partial<IncomingMessage> = {}): IncomingMessage {
  return {
    subject,
    data,
    streamName: 'SWARM',
    streamCreatedUs: 1_700_000_000_000_000,
    streamSeq: 42,
    serverTimeUs: SERVER_US,
    receivedAtUs: RECEIVED_US,
    ...over,
  };
}

function ok(r: Normalized): Extract<Normalized, { ok: true }> {
  if (!r.ok) assert.fail(`expected a row, got reject ${r.reject.reason}: ${r.reject.detail}`);
  return r;
}
function rejected(r: Normalized): RejectRow {
  if (r.ok) assert.fail(`expected a reject, got row ${JSON.stringify(r.row)}`);
  return r.reject;
}

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// Expected rows and registry events, derived by hand from DESIGN 3.1 / 3.3 and index.json.
const expected: Record<string, { row: Omit<LogRow, 'id' | 'context' | 'subject' | 'receivedAtUs'>; registry: Omit<RegistryEvent, 'streamSeq' | 'serverTimeUs'> | null }> = {
  heartbeat: {
    row: { traceId: '', timestampUs: 1_767_225_600_123_456, level: 'INFO', source: 'radiant-qa-001', intent: 'heartbeat', message: 'heartbeat', teamId: '' },
    registry: { agentId: 'radiant-qa-001', eventTeam: '', subjectTeam: '', timeUs: 1_767_225_600_123_456, status: 'BUSY', meta: { location: 'rack-7', battery: 0.8 }, errorMessage: null },
  },
  text: {
    row: { traceId: 'trace-a', timestampUs: 1_767_225_601_000_000, level: 'INFO', source: 'chatty', intent: 'inform', message: 'hello swarm ☃', teamId: 'ops' },
    registry: { agentId: 'chatty', eventTeam: 'ops', subjectTeam: '', timeUs: 1_767_225_601_000_000, status: null, meta: null, errorMessage: null },
  },
  tool_call: {
    row: { traceId: 'trace-a', timestampUs: 1_767_225_602_000_000, level: 'INFO', source: 'coder', intent: 'tool_call', message: 'shell', teamId: 'dev' },
    registry: { agentId: 'coder', eventTeam: 'dev', subjectTeam: 'dev', timeUs: 1_767_225_602_000_000, status: 'BUSY', meta: null, errorMessage: null },
  },
  tool_result_error: {
    row: { traceId: 'trace-a', timestampUs: 1_767_225_603_999_999, level: 'ERROR', source: 'coder', intent: 'tool_result', message: 'boom: permission denied', teamId: 'dev' },
    registry: { agentId: 'coder', eventTeam: 'dev', subjectTeam: 'dev', timeUs: 1_767_225_603_999_999, status: 'ERROR', meta: null, errorMessage: 'boom: permission denied' },
  },
  event_with_context: {
    row: { traceId: '', timestampUs: 1_767_225_604_000_000, level: 'INFO', source: 'finance-bot', intent: 'payment.create', message: 'payment.create', teamId: 'finance' },
    registry: { agentId: 'finance-bot', eventTeam: 'finance', subjectTeam: '', timeUs: 1_767_225_604_000_000, status: null, meta: null, errorMessage: null },
  },
  binary: {
    row: { traceId: '', timestampUs: 1_767_225_605_000_000, level: 'INFO', source: 'camera-01', intent: 'binary', message: '', teamId: '' },
    registry: { agentId: 'camera-01', eventTeam: '', subjectTeam: '', timeUs: 1_767_225_605_000_000, status: null, meta: null, errorMessage: null },
  },
  log_entry_failure: {
    row: { traceId: 'trace-b', timestampUs: 1_767_225_606_000_001, level: 'ERROR', source: 'planner', intent: 'plan.step', message: 'model timeout after 30s', teamId: 'research' },
    registry: { agentId: 'planner', eventTeam: 'research', subjectTeam: '', timeUs: 1_767_225_606_000_001, status: 'ERROR', meta: null, errorMessage: 'model timeout after 30s' },
  },
};

describe('normalize: every fixture, column by column', () => {
  it('covers every fixture in index.json', () => {
    assert.deepEqual(Object.keys(expected).sort(), Object.keys(index).sort());
  });
  for (const [name, meta] of Object.entries(index)) {
    it(name, () => {
      const data = fixture(name);
      assert.equal(data.length, meta.bytes);
      const r = ok(normalizeMessage(incoming(meta.subject, data), opts));
      const want = expected[name]!;
      const { id, context, subject, receivedAtUs, ...columns } = r.row;
      assert.deepEqual(columns, want.row);
      assert.match(id, UUID7);
      assert.equal(subject, meta.subject);
      assert.equal(receivedAtUs, RECEIVED_US);
      // Context: proto3 JSON with original field names, equal to what Python's runtime produced.
      assert.deepEqual(JSON.parse(context), meta.proto3_json);
      assert.ok(context.includes(meta.type.endsWith('LogEntry') ? '"agent_id"' : '"source_agent_id"'));
      assert.deepEqual(r.registry, { ...want.registry, streamSeq: 42, serverTimeUs: SERVER_US });
      assert.equal(r.stripped, 0);
    });
  }
  it('timestamps keep 0/3/6/9 fractional digits in the context', () => {
    const ctx = (name: string): unknown =>
      JSON.parse(ok(normalizeMessage(incoming(index[name]!.subject, fixture(name)), opts)).row.context).timestamp;
    assert.equal(ctx('heartbeat'), '2026-01-01T00:00:00.123456789Z');
    assert.equal(ctx('tool_call'), '2026-01-01T00:00:02Z');
    assert.equal(ctx('log_entry_failure'), '2026-01-01T00:00:06.000001Z');
    const ms = envelopeBytes({ timestamp: { seconds: '1767225600', nanos: 120_000_000 } });
    assert.equal(JSON.parse(ok(normalizeMessage(incoming('swarm.agent.a.x', ms), opts)).row.context).timestamp, '2026-01-01T00:00:00.120Z');
  });
});

function envelope(over: Partial<MsgEnvelope> = {}): MsgEnvelope {
  return {
    id: 'e-1',
    timestamp: { seconds: '1767225600', nanos: 0 },
    sourceAgentId: 'agent-7',
    type: 2,
    payload: { $case: 'text', value: { content: 'hi', recipientId: '', intent: '', contextId: '' } },
    traceId: '',
    spanId: '',
    teamId: '',
    swarmContext: undefined,
    ...over,
  };
}
function envelopeBytes(over: Partial<MsgEnvelope> = {}): Uint8Array {
  return MsgEnvelope.encode(envelope(over)).finish();
}
function logEntry(over: Partial<LogEntry> = {}): LogEntry {
  return {
    timestamp: { seconds: '1767225600', nanos: 0 },
    traceId: '',
    agentId: 'planner',
    teamId: '',
    sourceUri: '',
    intent: 'plan.step',
    contextSnapshot: undefined,
    status: '',
    errorMessage: '',
    rawPayload: undefined,
    level: '',
    source: '',
    message: '',
    ...over,
  };
}
const logBytes = (over: Partial<LogEntry> = {}): Uint8Array => LogEntry.encode(logEntry(over)).finish();
const event = (eventType: string, data?: Record<string, unknown>): Partial<MsgEnvelope> => ({
  type: 1,
  payload: { $case: 'event', value: { eventType, streamId: '', data } },
});

describe('normalize: type selection', () => {
  it('swarm.log.> subjects are LogEntry, others MsgEnvelope', () => {
    assert.equal(ok(normalizeMessage(incoming('swarm.log.x', logBytes()), opts)).row.intent, 'plan.step');
    // The same LogEntry bytes on another subject do not decode as a valid envelope.
    assert.equal(rejected(normalizeMessage(incoming('swarm.agent.x.out', logBytes({ intent: '' , message: 'm'})), opts)).reason.length > 0, true);
  });
  it('the Mycelis-Type header wins over the subject, with any header-name case', () => {
    const h = new Map([['mycelis-TYPE', 'mycelis.swarm.v1.LogEntry']]);
    const r = ok(normalizeMessage(incoming('swarm.agent.x.out', logBytes(), { headers: h }), opts));
    assert.equal(r.row.source, 'planner');
    const h2 = new Map([['Mycelis-Type', 'mycelis.swarm.v1.MsgEnvelope']]);
    assert.equal(ok(normalizeMessage(incoming('swarm.log.x', envelopeBytes(), { headers: h2 }), opts)).row.intent, 'text');
  });
  it('a Mycelis-Type naming another type falls back to the subject rule', () => {
    const h = new Map([['Mycelis-Type', 'something.Else']]);
    assert.equal(ok(normalizeMessage(incoming('swarm.agent.a.b', envelopeBytes(), { headers: h }), opts)).row.intent, 'text');
  });
});

describe('normalize: JSON forms', () => {
  const json = (o: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(o));
  it('a valid proto3 JSON envelope (first byte "{") gives the same row as its binary form', () => {
    const meta = index['tool_call']!;
    const fromJson = ok(normalizeMessage(incoming(meta.subject, json(meta.proto3_json)), opts));
    const fromBin = ok(normalizeMessage(incoming(meta.subject, fixture('tool_call')), opts));
    assert.deepEqual({ ...fromJson.row, id: '' }, { ...fromBin.row, id: '' });
    assert.equal(fromJson.row.id, fromBin.row.id, 'same source, id and raw timestamp -> same id');
  });
  it('accepts camelCase JSON names too (proto3 JSON parsers must)', () => {
    const r = ok(normalizeMessage(incoming('swarm.agent.a.out', json({ sourceAgentId: 'cc', text: { content: 'x' } })), opts));
    assert.equal(r.row.source, 'cc');
  });
  it('Content-Type application/json selects JSON even with leading whitespace', () => {
    const data = new TextEncoder().encode('  {"source_agent_id":"ws","text":{"content":"x"}}');
    const h = new Map([['content-type', 'application/json; charset=utf-8']]);
    const r = ok(normalizeMessage(incoming('swarm.agent.a.out', data, { headers: h }), opts));
    assert.equal(r.row.source, 'ws');
    assert.equal(r.format, 'proto_json');
    // Without the header, whitespace first is not JSON (nor protobuf): the bytes are text (DESIGN 3.1.1).
    const t = ok(normalizeMessage(incoming('swarm.agent.a.out', data), opts));
    assert.equal(t.format, 'text');
    assert.equal(t.row.intent, 'text');
  });
  const envelopeHeader = new Map([['Mycelis-Type', 'mycelis.swarm.v1.MsgEnvelope']]);
  it('where the type is named, an unknown key is invalid_json naming it', () => {
    const data = json({ text: { content: 'x' }, color: 'red' });
    const r = rejected(normalizeMessage(incoming('swarm.agent.a.out', data, { headers: envelopeHeader }), opts));
    assert.equal(r.reason, 'invalid_json');
    assert.match(r.detail, /color/);
    assert.equal(rejected(normalizeMessage(incoming('swarm.log.a', json({ intent: 'x', color: 'red' })), opts)).reason, 'invalid_json');
  });
  it('where the type is named, a wrong type is invalid_json', () => {
    assert.equal(rejected(normalizeMessage(incoming('swarm.agent.a.out', json({ text: { content: 5 } }), { headers: envelopeHeader }), opts)).reason, 'invalid_json');
    assert.equal(rejected(normalizeMessage(incoming('swarm.log.a', json({ intent: ['x'] })), opts)).reason, 'invalid_json');
  });
  it('where the type is named, not an object or broken JSON is invalid_json', () => {
    const h = new Map([['Content-Type', 'application/json'], ['Mycelis-Type', 'mycelis.swarm.v1.MsgEnvelope']]);
    for (const text of ['[1,2]', '"text"', '42', '{"text":', '{}x']) {
      const r = rejected(normalizeMessage(incoming('swarm.agent.a.out', new TextEncoder().encode(text), { headers: h }), opts));
      assert.equal(r.reason, 'invalid_json', text);
      assert.equal(rejected(normalizeMessage(incoming('swarm.log.x', new TextEncoder().encode(text), { headers: new Map([['Content-Type', 'application/json']]) }), opts)).reason, 'invalid_json', text);
    }
  });
  it('where the type is named, an empty JSON object is an envelope without payload', () => {
    assert.equal(rejected(normalizeMessage(incoming('swarm.agent.a.out', json({}), { headers: envelopeHeader }), opts)).reason, 'no_payload');
  });
  it('on an unnamed subject, JSON that is not a MsgEnvelope is a generic row (the contract of issue 22)', () => {
    // Unknown keys, wrong types, no payload, not an object: all kept, as {"format":"json","body":…}.
    for (const [value, message] of [
      [{ text: { content: 'x' }, color: 'red' }, '{"text":{"content":"x"},"color":"red"}'],
      [{ text: { content: 5 } }, '{"text":{"content":5}}'],
      [{}, '{}'],
      [[1, 2], '[1,2]'],
    ] as const) {
      const r = ok(normalizeMessage(incoming('swarm.team.ops.internal.x', json(value)), opts));
      assert.equal(r.format, 'json');
      assert.deepEqual(
        { intent: r.row.intent, level: r.row.level, source: r.row.source, team: r.row.teamId, message: r.row.message, trace: r.row.traceId },
        { intent: 'json', level: 'INFO', source: 'unknown', team: 'ops', message, trace: '' },
      );
      assert.deepEqual(JSON.parse(r.row.context), { format: 'json', body: value });
      assert.equal(r.registry, null);
      assert.equal(r.row.timestampUs, SERVER_US);
    }
    // Non-object JSON without a Content-Type and not starting with { or [ is text.
    for (const text of ['"text"', '42', 'null', 'true']) {
      assert.equal(ok(normalizeMessage(incoming('swarm.a.b', new TextEncoder().encode(text)), opts)).format, 'text', text);
      const h = new Map([['Content-Type', 'application/json']]);
      const r = ok(normalizeMessage(incoming('swarm.a.b', new TextEncoder().encode(text), { headers: h }), opts));
      assert.equal(r.format, 'json', text);
      assert.deepEqual(JSON.parse(r.row.context), { format: 'json', body: JSON.parse(text) });
    }
    // Broken JSON is not JSON: then protobuf, then text.
    const broken = ok(normalizeMessage(incoming('swarm.a.b', new TextEncoder().encode('{"text":')), opts));
    assert.deepEqual([broken.format, broken.row.message], ['text', '{"text":']);
  });
  it('a JSON LogEntry with the 1001-1003 fields', () => {
    const r = ok(normalizeMessage(incoming('swarm.log.x', json({ source: 'svc', level: 'warning', message: 'disk 91%' })), opts));
    assert.equal(r.row.source, 'svc');
    assert.equal(r.row.level, 'WARN');
    assert.equal(r.row.message, 'disk 91%');
    assert.deepEqual(JSON.parse(r.row.context), { source: 'svc', level: 'warning', message: 'disk 91%' });
  });
});

describe('normalize: validity and dead letters', () => {
  it('random bytes are rejected, never an empty row', () => {
    for (let i = 0; i < 2000; i++) {
      const data = randomBytes(16 + (i % 400));
      const r = normalizeMessage(incoming('swarm.agent.rnd.out', data), opts);
      assert.equal(r.ok, false, `random bytes #${i} (${data.toString('hex')}) became a row`);
    }
  });
  it('an envelope with no payload (not BINARY) is no_payload; an empty payload too', () => {
    assert.equal(rejected(normalizeMessage(incoming('swarm.a', envelopeBytes({ payload: undefined, type: 2 })), opts)).reason, 'no_payload');
    const emptyText = envelopeBytes({ payload: { $case: 'text', value: { content: '', recipientId: '', intent: '', contextId: '' } } });
    assert.equal(rejected(normalizeMessage(incoming('swarm.a', emptyText), opts)).reason, 'no_payload');
    assert.equal(rejected(normalizeMessage(incoming('swarm.a', new Uint8Array(0)), opts)).reason, 'no_payload');
  });
  it('a LogEntry without intent, message or error_message is empty_log_entry', () => {
    assert.equal(rejected(normalizeMessage(incoming('swarm.log.x', logBytes({ intent: '' })), opts)).reason, 'empty_log_entry');
    assert.equal(ok(normalizeMessage(incoming('swarm.log.x', logBytes({ intent: '', errorMessage: 'e' })), opts)).row.message, 'e');
  });
  it('payloads over maxEventBytes are too_large, with the reject row filled in', () => {
    const data = envelopeBytes({ payload: { $case: 'text', value: { content: 'x'.repeat(300), recipientId: '', intent: '', contextId: '' } } });
    const h = new Map([['X-Trace', 'a\u0000b']]);
    const r = rejected(normalizeMessage(incoming('swarm.agent.a.out', data, { headers: h }), { ...opts, maxEventBytes: 200 }));
    assert.equal(r.reason, 'too_large');
    assert.equal(r.subject, 'swarm.agent.a.out');
    assert.deepEqual(r.headers, { 'X-Trace': 'ab' });
    assert.equal(r.payload, data);
    assert.equal(r.streamSeq, 42);
    assert.equal(r.receivedAtUs, RECEIVED_US);
  });
  it('invalid UTF-8 in a string field is a decode error', () => {
    // field 3 (source_agent_id), length 2, bytes C3 28 (invalid sequence); then a text payload.
    const data = new Uint8Array([0x1a, 0x02, 0xc3, 0x28, 0x32, 0x03, 0x0a, 0x01, 0x78]);
    assert.equal(rejected(normalizeMessage(incoming('swarm.a', data), opts)).reason, 'decode_error');
  });
  function nested(depth: number): Record<string, unknown> {
    // Exactly `depth` levels (the Struct itself is level 1), lists and objects mixed, an object on top.
    let v: unknown = { leaf: true };
    for (let i = 2; i <= depth; i++) v = i < depth && i % 3 === 0 ? [v] : { k: v };
    return v as Record<string, unknown>;
  }
  it('Structs nested up to 64 are fine; 65 is too_deep (binary and JSON)', () => {
    const depthOf = (d: number) => ({ ...event('payment', nested(d)) });
    assert.equal(ok(normalizeMessage(incoming('swarm.a', envelopeBytes(depthOf(64))), opts)).row.intent, 'payment');
    assert.equal(rejected(normalizeMessage(incoming('swarm.a', envelopeBytes(depthOf(65))), opts)).reason, 'too_deep');
    const j = (d: number) => new TextEncoder().encode(JSON.stringify({ event: { event_type: 'p', data: nested(d) } }));
    assert.equal(ok(normalizeMessage(incoming('swarm.a', j(64)), opts)).row.intent, 'p');
    assert.equal(rejected(normalizeMessage(incoming('swarm.a', j(65)), opts)).reason, 'too_deep');
  });
  it('1,000-deep input is too_deep, without exhausting the stack', () => {
    const text = '{"event":{"event_type":"p","data":{"a":' + '['.repeat(1000) + ']'.repeat(1000) + '}}}';
    assert.equal(rejected(normalizeMessage(incoming('swarm.a', new TextEncoder().encode(text)), opts)).reason, 'too_deep');
    // Binary, hand-nested: Struct{ "k": Value{ struct_value: Struct{ … } } } 1,000 times.
    let value: Uint8Array = new Uint8Array([0x08, 0x00]); // Value{null_value: 0}
    for (let i = 0; i < 1000; i++) {
      const entry = concat([0x0a, 0x01, 0x6b, 0x12], varint(value.length), value); // key "k", value
      const struct = concat([0x0a], varint(entry.length), entry); // Struct.fields entry
      value = concat([0x2a], varint(struct.length), struct); // Value.struct_value
    }
    const struct = value.subarray(1 + varint(value.length - 1 - 3).length); // not used: rebuild below
    void struct;
    const entry = concat([0x0a, 0x01, 0x6b, 0x12], varint(value.length), value);
    const data = concat([0x0a], varint(entry.length), entry); // the data Struct
    const ev = concat([0x0a, 0x01, 0x70, 0x1a], varint(data.length), data); // EventPayload{event_type "p", data}
    const env = concat([0x2a], varint(ev.length), ev); // MsgEnvelope.event
    assert.equal(rejected(normalizeMessage(incoming('swarm.a', env), opts)).reason, 'too_deep');
  });
});

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
function concat(...parts: (ArrayLike<number>)[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe('normalize: the table', () => {
  const row = (over: Partial<MsgEnvelope>, subject = 'swarm.agent.a.out') =>
    ok(normalizeMessage(incoming(subject, envelopeBytes(over)), opts));
  it('text: intent from text.intent, else "text"; message = content', () => {
    const r = row({ payload: { $case: 'text', value: { content: 'c', recipientId: '', intent: 'ask', contextId: '' } } });
    assert.deepEqual([r.row.intent, r.row.message, r.row.level], ['ask', 'c', 'INFO']);
    assert.equal(row({}).row.intent, 'text');
  });
  it('event: data.level names the level when it is one', () => {
    assert.equal(row(event('x', { level: 'warning' })).row.level, 'WARN');
    assert.equal(row(event('x', { level: 'Critical' })).row.level, 'FATAL');
    assert.equal(row(event('x', { level: 'loud' })).row.level, 'INFO');
    assert.equal(row(event('x', { level: 3 })).row.level, 'INFO');
  });
  it('tool_result without error: message = call_id, INFO, registry IDLE', () => {
    const r = row({ type: 5, payload: { $case: 'toolResult', value: { callId: 'c9', result: {}, isError: false, errorMessage: '' } } });
    assert.deepEqual([r.row.intent, r.row.message, r.row.level, r.registry?.status], ['tool_result', 'c9', 'INFO', 'IDLE']);
  });
  it('LogEntry: level wins, else ERROR on FAILURE/ERROR status or error_message, else INFO', () => {
    const lvl = (o: Partial<LogEntry>) => ok(normalizeMessage(incoming('swarm.log.x', logBytes(o)), opts)).row.level;
    assert.equal(lvl({ level: 'debug', status: 'FAILURE' }), 'DEBUG');
    assert.equal(lvl({ status: 'failure' }), 'ERROR');
    assert.equal(lvl({ status: 'Error' }), 'ERROR');
    assert.equal(lvl({ errorMessage: 'x' }), 'ERROR');
    assert.equal(lvl({ status: 'SUCCESS' }), 'INFO');
    assert.equal(lvl({ level: 'verbose' }), 'INFO');
    const r = ok(normalizeMessage(incoming('swarm.log.x', logBytes({ message: 'm', errorMessage: 'e' })), opts));
    assert.equal(r.row.message, 'm');
  });
  it('the level table', () => {
    const table: [unknown, string | null][] = [
      ['DEBUG', 'DEBUG'], ['debug', 'DEBUG'], ['Info', 'INFO'], ['WARN', 'WARN'], ['warning', 'WARN'],
      ['ERROR', 'ERROR'], ['fatal', 'FATAL'], ['CRITICAL', 'FATAL'], [' error ', 'ERROR'],
      ['trace', null], ['', null], ['notice', null], [null, null], [5, null],
    ];
    for (const [input, want] of table) assert.equal(normalizeLevel(input), want, String(input));
  });
  it('source: as sent, else from the subject patterns, else "unknown" (no registry event)', () => {
    const noSource = { sourceAgentId: '' };
    assert.equal(row(noSource, 'swarm.agent.bob.output').row.source, 'bob');
    assert.equal(row(noSource, 'swarm.prod.agent.eve.heartbeat').row.source, 'eve');
    const t = row(noSource, 'swarm.team.red.agent.joe.output');
    assert.deepEqual([t.row.source, t.row.teamId, t.registry?.subjectTeam], ['joe', 'red', 'red']);
    const u = row(noSource, 'swarm.global.heartbeat');
    assert.equal(u.row.source, 'unknown');
    assert.equal(u.registry, null);
    assert.equal(row({ sourceAgentId: 'sent' }, 'swarm.agent.bob.output').row.source, 'sent');
  });
  it('team: the event\'s, else swarm.team.<t>.…, else empty', () => {
    assert.equal(row({ teamId: 'ops' }, 'swarm.team.red.internal.trigger').row.teamId, 'ops');
    assert.equal(row({}, 'swarm.team.red.internal.trigger').row.teamId, 'red');
    assert.equal(row({}, 'swarm.agent.a.out').row.teamId, '');
  });
  it('parseSubject', () => {
    assert.deepEqual(parseSubject('swarm.team.t1.agent.a1.out'), { agent: 'a1', team: 't1' });
    assert.deepEqual(parseSubject('swarm.team.t1'), { agent: '', team: '' });
    assert.deepEqual(parseSubject('other.agent.a1.x'), { agent: '', team: '' });
  });
  it('parseSubject reads as the split-based reader it replaced, on every arrangement of its tokens', () => {
    const reference = (subject: string): { agent: string; team: string } => {
      const t = subject.split('.', 6);
      const facts = { agent: '', team: '' };
      if (t[0] !== 'swarm') return facts;
      if (t[1] === 'agent') facts.agent = t[2] ?? '';
      else if (t[1] === 'prod' && t[2] === 'agent') facts.agent = t[3] ?? '';
      else if (t[1] === 'team' && t.length > 3) {
        facts.team = t[2] ?? '';
        if (t[3] === 'agent') facts.agent = t[4] ?? '';
      }
      return facts;
    };
    const tokens = ['swarm', 'agent', 'team', 'prod', 'a1', 't1', '', 'x', 'swarmx', 'Swarm'];
    let checked = 0;
    // Every subject of up to 5 tokens from these (10^1 + ... + 10^5), with and without a trailing token.
    const visit = (parts: string[]): void => {
      for (const s of [parts.join('.'), `${parts.join('.')}.out.more`]) {
        assert.deepEqual(parseSubject(s), reference(s), s);
        checked++;
      }
      if (parts.length < 5) for (const t of tokens) visit([...parts, t]);
    };
    for (const t of tokens) visit([t]);
    for (const s of ['', '.', 'swarm', 'swarm.', 'swarm..', '..swarm', 'swarm.team', 'swarm.team.t', 'swarm.team.t.agent', 'swarm.team.t.agent.']) {
      assert.deepEqual(parseSubject(s), reference(s), s);
    }
    assert.equal(checked, 2 * 111_110);
  });
  it('trace_id as sent, else empty', () => {
    assert.equal(row({ traceId: 'tr' }).row.traceId, 'tr');
    assert.equal(row({}).row.traceId, '');
  });
});

describe('normalize: timestamp rule', () => {
  const ts = (timestamp: MsgEnvelope['timestamp']) =>
    ok(normalizeMessage(incoming('swarm.agent.a.out', envelopeBytes({ timestamp })), opts));
  it('the event time when sane', () => {
    assert.equal(ts({ seconds: '1767225600', nanos: 999_999_999 }).row.timestampUs, 1_767_225_600_999_999);
  });
  it('unset -> server time', () => assert.equal(ts(undefined).row.timestampUs, SERVER_US));
  it('before 2000-01-01 -> server time, original kept in context', () => {
    const r = ts({ seconds: '946684799', nanos: 0 });
    assert.equal(r.row.timestampUs, SERVER_US);
    assert.equal(JSON.parse(r.row.context).timestamp, '1999-12-31T23:59:59Z');
    assert.equal(ts({ seconds: '946684800', nanos: 0 }).row.timestampUs, 946_684_800_000_000);
  });
  it('more than 5 minutes ahead of server time -> server time', () => {
    const serverS = SERVER_US / 1_000_000;
    assert.equal(ts({ seconds: String(serverS + 300), nanos: 0 }).row.timestampUs, SERVER_US + 300_000_000);
    assert.equal(ts({ seconds: String(serverS + 301), nanos: 0 }).row.timestampUs, SERVER_US);
  });
  it('the registry event carries the row time and the server time', () => {
    const r = ts({ seconds: '1767225600', nanos: 0 });
    assert.equal(r.registry?.timeUs, 1_767_225_600_000_000);
    assert.equal(r.registry?.serverTimeUs, SERVER_US);
  });
});

describe('normalize: sanitization', () => {
  it('strips NUL and lone surrogates from every string, key and value, and counts them', () => {
    const bad = 'a\u0000b\ud800c';
    const over: Partial<MsgEnvelope> = {
      sourceAgentId: 'ag\u0000ent',
      traceId: bad,
      teamId: 'ok',
      payload: { $case: 'text', value: { content: bad, recipientId: '', intent: '', contextId: '' } },
      swarmContext: { ['k\u0000ey']: bad, nested: [bad, { x: '\udc00' }], pair: '😀' },
    };
    const r = ok(normalizeMessage(incoming('swarm.agent.a.out\u0000', envelopeBytes(over)), opts));
    // Lone surrogates cannot survive UTF-8 encoding, so the protobuf bytes already carry U+FFFD for
    // them; NULs arrive intact and are stripped. The JSON form carries both (below).
    assert.equal(r.row.source, 'agent');
    assert.equal(r.row.subject, 'swarm.agent.a.out');
    assert.ok(!r.row.context.includes('\\u0000'));
    assert.deepEqual(JSON.parse(r.row.context).swarm_context.key, 'ab\ufffdc');
    assert.ok(r.stripped >= 6);
  });
  it('JSON input with \\u0000 and a lone \\ud800 is stored sanitized and counted', () => {
    const text = '{"source_agent_id":"a\\u0000","text":{"content":"x\\ud800y"},"swarm_context":{"k\\u0000":"\\udfff"}}';
    const r = ok(normalizeMessage(incoming('swarm.agent.a.out', new TextEncoder().encode(text)), opts));
    assert.equal(r.row.source, 'a');
    assert.equal(r.row.message, 'xy');
    assert.deepEqual(JSON.parse(r.row.context), { source_agent_id: 'a', text: { content: 'xy' }, swarm_context: { k: '' } });
    assert.equal(r.stripped, 4);
    assert.doesNotMatch(r.row.context, /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/);
  });
  it('heartbeat meta is sanitized too', () => {
    const text = '{"source_agent_id":"a","event":{"event_type":"heartbeat","data":{"status":"idle","no\\u0000te":"v\\u0000"}}}';
    const r = ok(normalizeMessage(incoming('swarm.agent.a.out', new TextEncoder().encode(text)), opts));
    assert.deepEqual(r.registry?.meta, { note: 'v' });
    assert.equal(r.registry?.status, 'IDLE');
  });
});

describe('normalize: registry events (DESIGN 3.3 status rules)', () => {
  const reg = (over: Partial<MsgEnvelope>) => ok(normalizeMessage(incoming('swarm.agent.a.out', envelopeBytes(over)), opts)).registry;
  for (const t of ['heartbeat', 'Agent.Heartbeat', 'status', 'agent.status']) {
    it(`${t} with data.status sets it (case-insensitive); meta = data minus status`, () => {
      const r = reg(event(t, { status: 'offline', cpu: 3 }));
      assert.equal(r?.status, 'OFFLINE');
      assert.deepEqual(r?.meta, { cpu: 3 });
    });
  }
  it('a heartbeat with an unknown status implies none', () => {
    assert.equal(reg(event('heartbeat', { status: 'sleepy' }))?.status, null);
    assert.equal(reg(event('heartbeat'))?.meta, null);
  });
  for (const t of ['shutdown', 'agent.shutdown', 'AGENT.OFFLINE']) {
    it(`${t} sets OFFLINE`, () => assert.equal(reg(event(t))?.status, 'OFFLINE'));
  }
  it('tool_call sets BUSY', () => {
    assert.equal(reg({ type: 4, payload: { $case: 'toolCall', value: { callId: 'c', toolName: 't', arguments: undefined } } })?.status, 'BUSY');
  });
  it('an ERROR/FATAL row sets ERROR with its message as the error', () => {
    const r = reg(event('job.failed', { level: 'fatal', error: 'disk full' }));
    assert.equal(r?.status, 'ERROR');
    assert.equal(r?.errorMessage, 'disk full');
    const l = ok(normalizeMessage(incoming('swarm.log.x', logBytes({ level: 'ERROR', message: 'went wrong' })), opts)).registry;
    assert.deepEqual([l?.status, l?.errorMessage], ['ERROR', 'went wrong']);
  });
  it('other events imply nothing', () => {
    const r = reg(event('payment.create', { amount: 1 }));
    assert.deepEqual([r?.status, r?.meta, r?.errorMessage], [null, null, null]);
  });
});
