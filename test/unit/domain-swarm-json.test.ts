// DESIGN 3.1.1 in the domain: every file of test/fixtures/swarm-head/ (copied from the shared
// fixtures, written the way the swarm's Go code writes them) gives the row, registry event or dead
// letter its index.json `expect` names; then the hostile variants (wrong types, missing required
// fields, non-object JSON, invalid UTF-8, huge and deeply nested payloads), RFC 3339 times with
// offsets, the 5-minute rule, ids and replays.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { formatReplayOf, normalizeMessage } from '../../src/domain/normalize.js';
import type { IncomingMessage, Normalized } from '../../src/domain/normalize.js';
import { shortRendering } from '../../src/domain/formats/json-value.js';
import { compileSubjectMatcher } from '../../src/domain/subjects.js';
import { parseRfc3339, timestampToUs } from '../../src/domain/time.js';
import type { RejectRow } from '../../src/domain/types.js';
import { SignalMeta } from '../../src/gen/mycelis/protocol/v1/envelopes.js';
import { MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';

const FIXTURES = new URL('../fixtures/swarm-head/', import.meta.url);
interface Expect {
  row: boolean;
  source?: string;
  team?: string;
  level?: string;
  intent?: string;
  trace?: string;
  event_time?: string;
  message?: string;
  registry_agent?: string | null;
  registry_last_error_contains?: string;
  dead_letter_reason_mentions?: string;
}
interface Entry {
  file: string;
  subject: string;
  format: string;
  bytes: number;
  expect: Expect;
}
const index = JSON.parse(readFileSync(new URL('index.json', FIXTURES), 'utf8')) as Record<string, Entry>;
const bytesOf = (file: string): Uint8Array => new Uint8Array(readFileSync(new URL(file, FIXTURES)));

// The day after the fixtures' events: none of them is "more than 5 minutes ahead".
const SERVER_US = Date.parse('2026-07-01T00:00:00Z') * 1000;
const opts = { isLogEntrySubject: compileSubjectMatcher(['swarm.log.>']), maxEventBytes: 1024 * 1024 };
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const json = (v: unknown): Uint8Array => enc(JSON.stringify(v));

function incoming(subject: string, data: Uint8Array, over: Partial<IncomingMessage> = {}): IncomingMessage {
  return { subject, data, streamName: 'SWARM', streamCreatedUs: 1_700_000_000_000_000, streamSeq: 42, serverTimeUs: SERVER_US, receivedAtUs: SERVER_US + 5, ...over };
}
const run = (subject: string, data: Uint8Array, over: Partial<IncomingMessage> = {}): Normalized => normalizeMessage(incoming(subject, data, over), opts);
function ok(r: Normalized): Extract<Normalized, { ok: true }> {
  if (!r.ok) assert.fail(`expected a row, got dead letter ${r.reject.reason}: ${r.reject.detail}`);
  return r;
}
function dead(r: Normalized): RejectRow {
  if (r.ok) assert.fail(`expected a dead letter, got row ${JSON.stringify(r.row)}`);
  return r.reject;
}
/** An RFC 3339 time -> µs (the row's resolution), from its exact nanoseconds. */
const us = (rfc: string): number => {
  const t = parseRfc3339(rfc);
  assert.ok(t, rfc);
  return timestampToUs(t.seconds, t.nanos);
};

describe('swarm-head fixtures through normalize (index.json expect)', () => {
  it('index.json names every file of the directory', () => {
    const files = readdirSync(FIXTURES).filter((f) => f !== 'index.json' && f !== 'README.md').sort();
    assert.deepEqual(Object.values(index).map((e) => e.file).sort(), files);
  });
  for (const [name, e] of Object.entries(index)) {
    it(`${name} (${e.format} on ${e.subject})`, () => {
      const data = bytesOf(e.file);
      assert.equal(data.length, e.bytes);
      const r = run(e.subject, data);
      const x = e.expect;
      if (!x.row) {
        const d = dead(r);
        assert.ok(`${d.reason} ${d.detail}`.includes(x.dead_letter_reason_mentions!), `${d.reason}: ${d.detail}`);
        assert.ok(d.detail.startsWith(x.dead_letter_reason_mentions!) || d.detail.includes(`.${x.dead_letter_reason_mentions}`), d.detail);
        assert.equal(r.format, e.format);
        assert.deepEqual(d.payload, data);
        return;
      }
      const { row, registry, format } = ok(r);
      assert.equal(format, e.format);
      assert.deepEqual(
        { source: row.source, team: row.teamId, level: row.level, intent: row.intent, trace: row.traceId },
        { source: x.source, team: x.team, level: x.level, intent: x.intent, trace: x.trace },
      );
      assert.equal(row.timestampUs, x.event_time === 'server' ? SERVER_US : us(x.event_time!));
      if (x.message !== undefined) assert.equal(row.message, x.message);
      assert.ok(row.message.length > 0, 'every row has a readable message');
      assert.equal(row.subject, e.subject);
      // The original as context: the envelope / document as sent, or {"format", "body"} for generic rows.
      const original = readFileSync(new URL(e.file, FIXTURES), 'utf8');
      const context = JSON.parse(row.context) as unknown;
      if (e.format === 'text') assert.deepEqual(context, { format: 'text', body: original });
      else if (e.format === 'json') assert.deepEqual(context, { format: 'json', body: JSON.parse(original) });
      else assert.deepEqual(context, JSON.parse(original));
      assert.equal(registry?.agentId ?? null, x.registry_agent);
      if (registry) {
        assert.equal(registry.timeUs, row.timestampUs, 'seen at the event time');
        assert.equal(registry.eventTeam, row.teamId, "in the row's team");
        assert.equal(registry.serverTimeUs, SERVER_US);
      }
      if (x.registry_last_error_contains !== undefined) {
        assert.ok(registry?.errorMessage?.includes(x.registry_last_error_contains), `last error ${registry?.errorMessage}`);
        assert.equal(registry?.status, 'ERROR');
      } else if (registry) {
        // Failures set the last error (the row's message when nothing better); nothing else does.
        assert.equal(registry.errorMessage, row.level === 'ERROR' ? row.message : null);
      }
    });
  }
});

const telemetry = (over: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): Record<string, unknown> => ({
  meta: { source_node: 'probe-1', timestamp: '2026-06-30T15:00:00Z', ...meta },
  signal_type: 'sensor_data',
  payload: { cpu: 0.4 },
  ...over,
});
const signal = (over: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): Record<string, unknown> => ({
  meta: { timestamp: '2026-06-30T09:00:00Z', source_kind: 'internal_tool', payload_kind: 'status', agent_id: 'a-1', ...meta },
  text: 'working',
  ...over,
});
const mission = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  event_type: 'tool.invoked',
  mission_event_id: 'me-1',
  payload_summary: null,
  run_id: 'run-1',
  source_agent: 'coder-2',
  ...over,
});

describe('required and malformed fields: a dead letter naming the field', () => {
  const cases: [string, Record<string, unknown>, 'missing_field' | 'invalid_field', string][] = [
    ['telemetry without meta', { signal_type: 'x', payload: 1 }, 'missing_field', 'meta'],
    ['telemetry meta not an object', telemetry({ meta: 'probe' }), 'invalid_field', 'meta'],
    ['telemetry source_node a number', telemetry({}, { source_node: 7 }), 'invalid_field', 'meta.source_node'],
    ['telemetry source_node empty', telemetry({}, { source_node: '' }), 'missing_field', 'meta.source_node'],
    ['telemetry without timestamp', telemetry({}, { timestamp: undefined }), 'missing_field', 'meta.timestamp'],
    ['telemetry timestamp a number', telemetry({}, { timestamp: 1782831600 }), 'invalid_field', 'meta.timestamp'],
    ['telemetry timestamp Feb 30', telemetry({}, { timestamp: '2026-02-30T00:00:00Z' }), 'invalid_field', 'meta.timestamp'],
    ['telemetry timestamp Go zero time', telemetry({}, { timestamp: '0001-01-01T00:00:00Z' }), 'missing_field', 'meta.timestamp'],
    ['telemetry signal_type a number', telemetry({ signal_type: 5 }), 'invalid_field', 'signal_type'],
    ['telemetry signal_type null', telemetry({ signal_type: null }), 'missing_field', 'signal_type'],
    ['telemetry trust_score a string', telemetry({ trust_score: 'high' }), 'invalid_field', 'trust_score'],
    ['telemetry mode an object', telemetry({ mode: {} }), 'invalid_field', 'mode'],
    ['telemetry trace_id an array', telemetry({}, { trace_id: ['a'] }), 'invalid_field', 'meta.trace_id'],
    ['signal timestamp not RFC 3339', signal({}, { timestamp: '2026-06-30 09:00:00' }), 'invalid_field', 'meta.timestamp'],
    ['signal timestamp 10 fractional digits', signal({}, { timestamp: '2026-06-30T09:00:00.1234567891Z' }), 'invalid_field', 'meta.timestamp'],
    ['signal timestamp leap second', signal({}, { timestamp: '2026-06-30T23:59:60Z' }), 'invalid_field', 'meta.timestamp'],
    ['signal agent_id a number', signal({}, { agent_id: 5 }), 'invalid_field', 'meta.agent_id'],
    ['signal meta an array', { meta: [], text: 'x' }, 'invalid_field', 'meta'],
    ['mission event_type a number', mission({ event_type: 5 }), 'invalid_field', 'event_type'],
    ['mission id empty', mission({ mission_event_id: '' }), 'missing_field', 'mission_event_id'],
    ['mission source_agent an object', mission({ source_agent: { id: 'x' } }), 'invalid_field', 'source_agent'],
  ];
  for (const [label, value, reason, field] of cases) {
    it(label, () => {
      const d = dead(run('swarm.team.ops.telemetry', json(value)));
      assert.equal(d.reason, reason);
      assert.ok(d.detail.startsWith(`${field}: `), d.detail);
    });
  }
  it('telemetry payload null passes, as the sender\'s validator lets it', () => {
    const r = ok(run('swarm.team.ops.telemetry', json(telemetry({ payload: null }))));
    assert.equal(r.row.message, '');
  });
  it('signal without a timestamp takes the server time; all its fields are optional', () => {
    const r = ok(run('swarm.team.ops.signal.status', json({ meta: { source_kind: 'system' } })));
    assert.deepEqual([r.row.timestampUs, r.row.source, r.row.intent, r.row.message, r.registry], [SERVER_US, 'system', 'signal', '', null]);
    assert.equal(ok(run('swarm.x', json({ text: 'just text' }))).format, 'signal');
  });
  it('null fields count as absent (as for Go), keys not in the proto are kept in the context', () => {
    const r = ok(run('swarm.team.ops.signal.status', json(signal({ extra: { deep: [1] } }, { run_id: null, future_field: 'x' }))));
    assert.equal(r.row.traceId, '');
    assert.deepEqual(JSON.parse(r.row.context).extra, { deep: [1] });
    assert.equal(JSON.parse(r.row.context).meta.future_field, 'x');
  });
});

describe('what is JSON, protobuf, text, or nothing', () => {
  it('non-object JSON is a generic row', () => {
    for (const v of [[], [1, 'a', null], [{ role: 'user', content: 'hi' }]]) {
      const r = ok(run('swarm.council.c.request', json(v)));
      assert.equal(r.format, 'json');
      assert.deepEqual(JSON.parse(r.row.context), { format: 'json', body: v });
    }
  });
  it('`text` that is an object is the proto3 JSON of a MsgEnvelope, not a signal', () => {
    const r = ok(run('swarm.agent.a.out', json({ source_agent_id: 'a', text: { content: 'hi' } })));
    assert.equal(r.format, 'proto_json');
    assert.equal(r.row.message, 'hi');
    // …and `text` of another type is neither: other JSON.
    assert.equal(ok(run('swarm.agent.a.out', json({ text: 5 }))).format, 'json');
  });
  it('invalid UTF-8 is a dead letter (in JSON, in text)', () => {
    const badJson = new Uint8Array([...enc('{"text":"'), 0xff, 0xfe, ...enc('"}')]);
    const d = dead(run('swarm.team.ops.signal.status', badJson));
    assert.equal(d.reason, 'invalid_json');
    assert.match(d.detail, /UTF-8/);
    assert.equal(dead(run('swarm.global.input.user', new Uint8Array([0x68, 0x69, 0xc3, 0x28]))).reason, 'decode_error');
  });
  it('text: tab, newline and carriage return are fine; other control characters are not', () => {
    assert.equal(ok(run('swarm.global.input.user', enc('a\tb\r\nc'))).row.message, 'a\tb\r\nc');
    for (const c of ['\u0000', '\u0007', '\u001b', '\u007f', '\u0085']) {
      assert.equal(run('swarm.global.input.user', enc(`bell${c}`)).ok, false, JSON.stringify(c));
    }
    assert.equal(dead(run('swarm.global.input.user', new Uint8Array(0))).reason, 'no_payload');
    for (const blank of ['\n', ' ', '\r\n\t ']) assert.equal(run('swarm.global.input.user', enc(blank)).ok, false, 'white space only says nothing');
  });
  it('truncated protobuf stays a dead letter', () => {
    const full = MsgEnvelope.encode({ id: 'e', timestamp: { seconds: '1782810000', nanos: 0 }, sourceAgentId: 'a', type: 2, payload: { $case: 'text', value: { content: 'hello there', recipientId: '', intent: '', contextId: '' } }, traceId: '', spanId: '', teamId: '' }).finish();
    for (let cut = 1; cut < full.length; cut++) assert.equal(run('swarm.agent.a.out', full.slice(0, cut)).ok, false, `cut at ${cut}`);
    assert.equal(ok(run('swarm.agent.a.out', full)).format, 'protobuf');
  });
  it('too large, whatever the format', () => {
    const big = json(signal({ payload: { blob: 'x'.repeat(2000) } }));
    assert.equal(dead(normalizeMessage(incoming('swarm.a', big), { ...opts, maxEventBytes: 1000 })).reason, 'too_large');
    assert.equal(dead(normalizeMessage(incoming('swarm.a', enc('y'.repeat(1001))), { ...opts, maxEventBytes: 1000 })).reason, 'too_large');
  });
  it('a payload just under MAX_EVENT_BYTES is stored whole, with a short message', () => {
    const blob = 'z'.repeat(1024 * 1024 - 400);
    const r = ok(run('swarm.team.ops.signal.result', json(signal({ text: undefined, payload: { blob } }))));
    assert.ok(r.row.message.length <= 241 && r.row.message.endsWith('…'), r.row.message.slice(0, 50));
    assert.equal(JSON.parse(r.row.context).payload.blob.length, blob.length);
    const t = ok(run('swarm.team.ops.internal.response', enc(blob)));
    assert.equal(t.row.message.length, blob.length, 'a text row keeps the whole text as its message');
  });
  function nested(depth: number): unknown {
    let v: unknown = 1;
    for (let i = 0; i < depth; i++) v = i % 2 === 0 ? { k: v } : [v];
    return v;
  }
  it('JSON nested up to 64 levels is stored; 65 is too_deep (every JSON format)', () => {
    // The document itself is level 1: {"meta":…,"payload": <63 levels>} is 64 deep.
    assert.equal(ok(run('swarm.team.a.signal.status', json(signal({ payload: nested(63) })))).format, 'signal');
    assert.equal(dead(run('swarm.team.a.signal.status', json(signal({ payload: nested(64) })))).reason, 'too_deep');
    assert.equal(ok(run('swarm.team.a.telemetry', json(telemetry({ payload: nested(63) })))).format, 'telemetry');
    assert.equal(dead(run('swarm.team.a.telemetry', json(telemetry({ payload: nested(64) })))).reason, 'too_deep');
    assert.equal(ok(run('swarm.a', json(nested(64)))).format, 'json');
    assert.equal(dead(run('swarm.a', json(nested(65)))).reason, 'too_deep');
  });
  it('100,000-deep JSON is too_deep without exhausting the stack', () => {
    const text = '{"meta":{"source_kind":"x"},"payload":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}';
    const d = dead(run('swarm.team.a.signal.status', enc(text)));
    assert.equal(d.reason, 'too_deep');
    assert.equal(dead(run('swarm.a', enc('['.repeat(100_000) + ']'.repeat(100_000)))).reason, 'too_deep');
  });
  it('NUL and lone surrogates in JSON are stripped and counted; the context stays valid JSON', () => {
    const text = JSON.stringify(signal({ text: 'aXb' })).replace('aXb', 'a\\u0000b\\ud800c');
    const r = ok(run('swarm.team.a.signal.status', enc(text)));
    assert.equal(r.row.message, 'abc');
    assert.equal(r.stripped, 2);
    assert.equal(JSON.parse(r.row.context).text, 'abc');
  });
  it('"__proto__" is an ordinary key', () => {
    const r = ok(run('swarm.a', enc('{"__proto__":{"signal_type":"x"},"a":"\\u0000"}')));
    assert.equal(r.format, 'json');
    assert.deepEqual(JSON.parse(r.row.context), { format: 'json', body: JSON.parse('{"__proto__":{"signal_type":"x"},"a":""}') });
  });
  it('where the type is named, decoding stays strict: a signal on swarm.log.> or with Mycelis-Type is a dead letter', () => {
    const data = bytesOf('signal_status.json');
    assert.equal(dead(run('swarm.log.ops', data)).reason, 'invalid_json');
    assert.equal(dead(run('swarm.team.ops.signal.status', data, { headers: new Map([['Mycelis-Type', 'mycelis.swarm.v1.MsgEnvelope']]) })).reason, 'invalid_json');
    assert.equal(dead(run('swarm.log.ops', enc('plain text'))).reason, 'decode_error');
  });
});

describe('times', () => {
  it('parseRfc3339: offsets honoured, every fractional digit kept', () => {
    assert.deepEqual(parseRfc3339('2026-06-30T11:02:00+02:00'), parseRfc3339('2026-06-30T09:02:00Z'));
    assert.deepEqual(parseRfc3339('2026-06-30T08:00:00.25-04:00'), { seconds: String(Date.parse('2026-06-30T12:00:00Z') / 1000), nanos: 250_000_000 });
    assert.deepEqual(parseRfc3339('2026-06-30T09:15:02.481923117Z'), { seconds: String(Date.parse('2026-06-30T09:15:02Z') / 1000), nanos: 481_923_117 });
    assert.deepEqual(parseRfc3339('2026-06-30t13:50:00.000000001z'), { seconds: String(Date.parse('2026-06-30T13:50:00Z') / 1000), nanos: 1 });
    assert.deepEqual(parseRfc3339('0001-01-01T00:00:00Z'), { seconds: '-62135596800', nanos: 0 });
    assert.deepEqual(parseRfc3339('1969-12-31T23:59:59.5Z'), { seconds: '-1', nanos: 500_000_000 });
    assert.deepEqual(parseRfc3339('2028-02-29T00:00:00+14:00'), { seconds: String(Date.parse('2028-02-28T10:00:00Z') / 1000), nanos: 0 });
    for (const bad of ['yesterday', '2026-06-30', '2026-06-30T09:00:00', '2027-02-29T00:00:00Z', '2026-13-01T00:00:00Z', '2026-06-30T24:00:00Z', '2026-06-30T09:00:00+24:00', '2026-06-30T09:00:00.Z', ' 2026-06-30T09:00:00Z']) {
      assert.equal(parseRfc3339(bad), null, bad);
    }
    // Why ingest does not rely on ts-proto's fromJSON for times: it hands them to Date.
    assert.equal(SignalMeta.fromJSON({ timestamp: 'yesterday' }).timestamp?.seconds, 'NaN');
    assert.notEqual(SignalMeta.fromJSON({ timestamp: 'June 30 2026' }).timestamp?.seconds, 'NaN');
  });
  it('a fixture with an offset lands at the same instant as its UTC form', () => {
    const r = ok(run('swarm.team.core.telemetry', bytesOf('telemetry_chat_response.json')));
    assert.equal(r.row.timestampUs, us('2026-06-30T12:00:00.25Z'));
  });
  it('the 5-minute rule: a time more than 5 minutes ahead of the server is replaced by the server time', () => {
    const at = (minutesAhead: number): string => new Date(SERVER_US / 1000 + minutesAhead * 60_000).toISOString();
    assert.equal(ok(run('swarm.team.a.signal.status', json(signal({}, { timestamp: at(4) })))).row.timestampUs, SERVER_US + 4 * 60_000_000);
    assert.equal(ok(run('swarm.team.a.signal.status', json(signal({}, { timestamp: at(6) })))).row.timestampUs, SERVER_US);
    assert.equal(ok(run('swarm.team.a.telemetry', json(telemetry({}, { timestamp: at(60) })))).row.timestampUs, SERVER_US);
    assert.equal(ok(run('swarm.team.a.telemetry', json(telemetry({}, { timestamp: '1999-12-31T23:59:59Z' })))).row.timestampUs, SERVER_US);
  });
});

describe('the table of DESIGN 3.1.1 beyond the fixtures', () => {
  it('telemetry level: ERROR for error and task_failed, WARN for governance_halt, else INFO', () => {
    const level = (t: string): string => ok(run('swarm.team.a.telemetry', json(telemetry({ signal_type: t })))).row.level;
    assert.deepEqual(['error', 'task_failed', 'governance_halt', 'telemetry', 'heartbeat'].map(level), ['ERROR', 'ERROR', 'WARN', 'INFO', 'INFO']);
  });
  it('telemetry message: the payload\'s text, message, error or summary, else a short rendering', () => {
    const msg = (payload: unknown): string => ok(run('swarm.team.a.telemetry', json(telemetry({ payload })))).row.message;
    assert.equal(msg({ summary: 's', other: 1 }), 's');
    assert.equal(msg({ message: 'm', summary: 's' }), 'm');
    assert.equal(msg({ text: '', error: 'e' }), 'e');
    assert.equal(msg([1, 2]), '[1,2]');
    assert.equal(msg('plain'), '"plain"');
    assert.equal(msg({ list: Array.from({ length: 1000 }, (_, i) => i) }).length, 241);
  });
  it('telemetry heartbeat counts as a heartbeat: status and meta from its payload', () => {
    const r = ok(run('swarm.team.a.telemetry', json(telemetry({ signal_type: 'heartbeat', payload: { status: 'busy', load: 0.7 } }))));
    assert.deepEqual([r.registry?.agentId, r.registry?.status, r.registry?.meta], ['probe-1', 'BUSY', { load: 0.7 }]);
  });
  it('mission event: ERROR for *.failed, the run as trace, server time, team from nowhere', () => {
    const r = ok(run('swarm.mission.events.run-1', json(mission({ event_type: 'mission.failed' }))));
    assert.deepEqual([r.row.level, r.row.traceId, r.row.timestampUs, r.row.teamId, r.registry?.status], ['ERROR', 'run-1', SERVER_US, '', 'ERROR']);
    assert.equal(ok(run('swarm.mission.events.run-1', json(mission({ source_agent: '' })))).registry, null);
  });
  it('signal: ERROR only for payload_kind error; registry only for a named agent', () => {
    assert.equal(ok(run('swarm.team.a.signal.status', json(signal({}, { payload_kind: 'ERROR' })))).row.level, 'ERROR');
    const noAgent = ok(run('swarm.team.a.signal.status', json(signal({}, { agent_id: undefined }))));
    assert.deepEqual([noAgent.row.source, noAgent.registry], ['internal_tool', null]);
    assert.equal(ok(run('swarm.team.a.signal.status', json(signal({ text: '', payload: { error: 'boom' } }, { payload_kind: 'error' })))).registry?.errorMessage, 'boom');
  });
  it('team: the signal\'s own team wins over the subject\'s', () => {
    assert.equal(ok(run('swarm.team.subj.signal.status', json(signal({}, { team_id: 'own' })))).row.teamId, 'own');
    assert.equal(ok(run('swarm.team.subj.signal.status', json(signal()))).row.teamId, 'subj');
  });
  it('shortRendering stops early on large values', () => {
    assert.equal(shortRendering({ a: 'x'.repeat(10) }), '{"a":"xxxxxxxxxx"}');
    const long = shortRendering(Array.from({ length: 1_000_000 }, () => ({ k: 'v' })));
    assert.equal(long.length, 241);
    assert.ok(long.endsWith('…'));
    assert.equal(shortRendering('😀'.repeat(200)).length <= 241, true);
  });
});

describe('ids: redelivery, copies and replays dedupe', () => {
  const at = (seq: number, subject = 'swarm.team.ops.signal.status', data = bytesOf('signal_status.json'), over: Partial<IncomingMessage> = {}): string =>
    ok(run(subject, data, { streamSeq: seq, serverTimeUs: SERVER_US + seq, ...over })).row.id;
  it('signal and telemetry (they carry a timestamp): the payload, wherever and whenever it arrives', () => {
    assert.equal(at(1), at(2));
    assert.equal(at(1), at(3, 'swarm.audit.trace'), "the router's audit copy");
    assert.notEqual(at(1), at(1, 'swarm.team.ops.signal.status', json(signal())));
    assert.match(at(1), /^019f17cf-7fd1-7/, 'UUIDv7 with the event time as prefix');
  });
  it('mission event: its mission_event_id', () => {
    const data = bytesOf('mission_event_started.json');
    assert.equal(at(1, 'swarm.mission.events.run-7f3a', data), at(9, 'swarm.audit.trace', data));
    assert.notEqual(at(1, 'swarm.mission.events.r', json(mission())), at(1, 'swarm.mission.events.r', json(mission({ mission_event_id: 'me-2' }))));
  });
  it('text and other JSON: the stream position (redelivery dedupes; a copy does not)', () => {
    const data = bytesOf('user_input_text.txt');
    assert.equal(at(5, 'swarm.global.input.user', data), at(5, 'swarm.global.input.user', data));
    assert.notEqual(at(5, 'swarm.global.input.user', data), at(6, 'swarm.global.input.user', data));
  });
  it('a replayed dead letter is the same row however often it is replayed, at its first receive time', () => {
    const data = bytesOf('user_input_text.txt');
    const firstSeenUs = SERVER_US - 3_600_000_000;
    const header = (dl: string, seq: number): Map<string, string> => new Map([['Mycelis-Replay-Of', formatReplayOf({ deadLetterId: dl, streamSeq: seq, receivedUs: firstSeenUs })]]);
    const replay = (streamSeq: number, h: Map<string, string>): Extract<Normalized, { ok: true }> => ok(run('swarm.global.input.user', data, { streamSeq, headers: h }));
    const a = replay(100, header('7', 42));
    assert.equal(a.row.id, replay(200, header('7', 42)).row.id, 'replayed twice');
    assert.equal(a.row.id, replay(300, header('8', 42)).row.id, 'two dead letters of one message (its stream sequence)');
    assert.notEqual(a.row.id, replay(300, header('8', 43)).row.id);
    assert.equal(replay(1, header('9', 0)).row.id, replay(2, header('9', 0)).row.id, 'core mode: the dead letter id');
    assert.equal(a.row.timestampUs, firstSeenUs, 'stored at the time it was first received');
    // A replay never claims a time later than the server's.
    const future = new Map([['mycelis-replay-of', formatReplayOf({ deadLetterId: '1', streamSeq: 1, receivedUs: SERVER_US * 2 })]]);
    assert.equal(replay(5, future).row.timestampUs, SERVER_US);
    // A malformed header is ignored, and so is a receive time before 2000.
    assert.equal(replay(5, new Map([['Mycelis-Replay-Of', 'dead-letter=x']])).row.timestampUs, SERVER_US);
    assert.equal(replay(5, new Map([['Mycelis-Replay-Of', formatReplayOf({ deadLetterId: '1', streamSeq: 1, receivedUs: 1 })]])).row.timestampUs, SERVER_US);
    // Messages with their own identity keep it.
    const sig = bytesOf('signal_status.json');
    assert.equal(at(1, 'swarm.team.ops.signal.status', sig, { headers: header('7', 42) }), at(1, 'swarm.team.ops.signal.status', sig));
  });
});

describe('registry meta from the reference path', () => {
  it('keeps a "__proto__" key as a plain own key (assignment would set the prototype and drop it)', async () => {
    const { cleanValue } = await import('../../src/domain/normalize.js');
    const input = JSON.parse('{"__proto__":{"battery":0.5},"level":"ok\\u0000"}') as Record<string, unknown>;
    const counter = { stripped: 0 };
    const out = cleanValue(input, counter) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.deepEqual(Object.keys(out), ['__proto__', 'level']);
    assert.equal(JSON.stringify(out), '{"__proto__":{"battery":0.5},"level":"ok"}');
    assert.equal(counter.stripped, 1);
  });
});
