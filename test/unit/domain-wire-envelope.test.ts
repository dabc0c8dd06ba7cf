// The wire-direct fast path (src/domain/formats/wire-envelope.ts) against the reference path (ts-proto
// decode + checkV1 + contextV1 + factsV1), through normalizeMessage with the fast path on and off: the
// same row (id, context text, every column), the same registry event, the same dead letter and reason,
// the same strip count — on the bench's generated traffic, on thousands of random envelopes (random
// strings with escapes, NUL, astral characters; Structs with special keys, -0, NaN, deep nesting; odd
// timestamps and enum values), on every swarm-v1 fixture, on truncated and corrupted bytes, and on
// hand-built wire oddities (repeated fields, unknown fields, value before key, two kinds in one Value,
// redundant varints). The fast path must also actually answer for plain traffic (else the equality
// above would hold trivially).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';

import { BinaryWriter } from '@bufbuild/protobuf/wire';

import { generateTraffic } from '../../src/cli/traffic.js';
import { readEnvelopeFast } from '../../src/domain/formats/wire-envelope.js';
import { normalizeMessage, type IncomingMessage, type NormalizeOptions } from '../../src/domain/normalize.js';
import { compileSubjectMatcher } from '../../src/domain/subjects.js';
import { MessageType, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';
import { prng } from '../helpers/prng.js';

const SERVER_US = 1_767_225_700_000_000;
const base: NormalizeOptions = { isLogEntrySubject: compileSubjectMatcher(['swarm.log.>']), maxEventBytes: 1024 * 1024 };
const FAST = { ...base, wireFastPath: true };
const REFERENCE = { ...base, wireFastPath: false };

function incoming(subject: string, data: Uint8Array, seq: number, headers?: Record<string, string>): IncomingMessage {
  return {
    subject,
    data,
    headers: headers ? new Map(Object.entries(headers)) : undefined,
    streamName: 'SWARM',
    streamCreatedUs: SERVER_US - 86_400_000_000,
    streamSeq: seq,
    serverTimeUs: SERVER_US + seq,
    receivedAtUs: SERVER_US + seq + 7,
  };
}

/** Asserts fast == reference for one message; returns whether the fast reader answered. */
function same(m: IncomingMessage, label: string | (() => string)): boolean {
  const fast = normalizeMessage(m, FAST);
  const ref = normalizeMessage(m, REFERENCE);
  if (!isDeepStrictEqual(fast, ref)) assert.deepStrictEqual(fast, ref, typeof label === 'string' ? label : label());
  return !base.isLogEntrySubject(m.subject) && readEnvelopeFast(m.data) !== null;
}


describe('wire fast path = ts-proto decode + the existing normalization', () => {
  it('the bench traffic (20,000 messages of every kind): equal, and the fast path answers for the plain envelopes', () => {
    let envelopes = 0;
    let hits = 0;
    let seq = 0;
    let clock = SERVER_US / 1000;
    for (const m of generateTraffic({ count: 20_000, agents: 300, teams: 12, seed: 17, clock: () => (clock += 3), subjectPrefix: 'swarm' })) {
      const msg = incoming(m.subject, m.data, ++seq, m.headers);
      const hit = same(msg, `${m.kind} #${seq}`);
      if (!base.isLogEntrySubject(m.subject) && m.headers === undefined) envelopes++;
      if (hit) hits++;
    }
    assert.ok(envelopes > 15_000, `${envelopes} envelopes`);
    assert.ok(hits / envelopes > 0.95, `fast path answered ${hits} of ${envelopes}`);
  });

  it('the current-swarm mix (JSON, text, proto3 JSON, protobuf): equal', () => {
    let seq = 0;
    for (const m of generateTraffic({ count: 5000, agents: 100, teams: 5, seed: 3, clock: () => SERVER_US / 1000, subjectPrefix: 'swarm', mix: 'current' })) {
      same(incoming(m.subject, m.data, ++seq, m.headers), `${m.kind} #${seq}`);
    }
  });

  it('every swarm-v1 fixture: equal (the fast path answers for the plain envelopes among them)', () => {
    const dir = new URL('../fixtures/swarm-v1/', import.meta.url);
    const index = JSON.parse(readFileSync(new URL('index.json', dir), 'utf8')) as Record<string, { subject: string; type: string }>;
    let hits = 0;
    for (const [name, e] of Object.entries(index)) {
      const data = new Uint8Array(readFileSync(new URL(`${name}.bin`, dir)));
      const headers = e.type.endsWith('LogEntry') ? { 'Mycelis-Type': e.type } : undefined;
      if (same(incoming(e.subject, data, 1, headers), name)) hits++;
      // …and on any subject, and every prefix of it.
      same(incoming('swarm.agent.x.output', data, 2), `${name} elsewhere`);
      for (let cut = 0; cut < data.length; cut++) same(incoming('swarm.agent.x.output', data.subarray(0, cut), 3), `${name} cut at ${cut}`);
    }
    assert.ok(hits >= 4, `fast path answered for ${hits} fixtures`);
  });

  it('5,000 random envelopes (strings with escapes, NUL and astral characters; odd Structs, times and enums): equal', () => {
    const rand = prng(99);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const CHARS = ['a', 'b', 'Z', '0', ' ', '-', '.', '"', '\\', '\n', '\t', '\u0001', '\u001f', '\u007f', 'é', 'ß', '中', '😀', '\u2028', '/'];
    const str = (max = 12): string => {
      if (rand() < 0.2) return '';
      let s = '';
      const n = 1 + Math.floor(rand() * max);
      for (let i = 0; i < n; i++) s += rand() < 0.01 ? '\u0000' : rand() < 0.7 ? String.fromCharCode(97 + Math.floor(rand() * 26)) : pick(CHARS);
      return s;
    };
    const KEYS = ['level', 'status', 'error', 'error_message', 'last_error', 'battery', 'location', '', '__proto__', '0', '7', '4294967295', 'x-1', 'constructor', 'Level'];
    const NUMS = [0, 1, -1, 0.5, 1e21, 1e-7, -0, Number.NaN, Number.POSITIVE_INFINITY, 5e-324, 2 ** 53 + 2, 123456.789];
    const value = (depth: number): unknown => {
      const r = rand();
      if (r < 0.3) return rand() < 0.2 ? pick(['ERROR', 'warning', ' busy ', 'IDLE', 'offline', 'critical']) : str();
      if (r < 0.45) return pick(NUMS);
      if (r < 0.5) return rand() < 0.5;
      if (r < 0.55) return null;
      if (depth <= 0) return str();
      if (r < 0.75) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth - 1));
      return struct(depth - 1);
    };
    const struct = (depth: number): Record<string, unknown> => {
      const o: Record<string, unknown> = {};
      const n = Math.floor(rand() * 5);
      for (let i = 0; i < n; i++) {
        const k = rand() < 0.5 ? pick(KEYS) : str(6);
        if (k === '__proto__') Object.defineProperty(o, k, { value: value(depth), enumerable: true, writable: true, configurable: true });
        else o[k] = value(depth);
      }
      return o;
    };
    const deep = (levels: number): Record<string, unknown> => {
      let v: Record<string, unknown> = { leaf: 1 };
      for (let i = 0; i < levels; i++) v = i % 2 === 0 ? { k: v } : { l: [v] };
      return v;
    };
    const maybeStruct = (): Record<string, unknown> | undefined => (rand() < 0.3 ? undefined : rand() < 0.03 ? deep(20 + Math.floor(rand() * 60)) : struct(3));
    const EVENT_TYPES = ['heartbeat', 'agent.status', ' Status ', 'shutdown', 'agent.offline', 'task.done', '', 'HEARTBEAT'];
    let hits = 0;
    for (let i = 0; i < 5000; i++) {
      const r = rand();
      const payload: MsgEnvelope['payload'] =
        r < 0.3
          ? { $case: 'event', value: { eventType: rand() < 0.8 ? pick(EVENT_TYPES) : str(), streamId: str(4), data: maybeStruct() } }
          : r < 0.5
            ? { $case: 'text', value: { content: str(40), recipientId: str(5), intent: str(5), contextId: str(5) } }
            : r < 0.7
              ? { $case: 'toolCall', value: { callId: str(6), toolName: str(8), arguments: maybeStruct() } }
              : r < 0.9
                ? { $case: 'toolResult', value: { callId: str(6), result: maybeStruct(), isError: rand() < 0.4, errorMessage: str(20) } }
                : undefined;
      const ts = rand() < 0.1 ? undefined : rand() < 0.9
        ? { seconds: String(1_767_225_600 + Math.floor(rand() * 200)), nanos: pick([0, 5, 1_000, 123_000_000, 999_999_999, Math.floor(rand() * 1e9)]) }
        : { seconds: pick(['0', '-1', '-62135596800', '253402300799', '253402300800', '9007199254740993']), nanos: pick([0, -1, 1_000_000_000, 2 ** 31 - 1]) };
      const env: MsgEnvelope = {
        id: str(10),
        timestamp: ts,
        sourceAgentId: str(8),
        type: pick([0, 1, 2, 3, 4, 5, 6, 99, -1]) as MessageType,
        payload,
        traceId: str(8),
        spanId: str(4),
        teamId: str(4),
        swarmContext: rand() < 0.2 ? struct(2) : undefined,
      };
      const data = MsgEnvelope.encode(env).finish();
      const subject = pick(['swarm.agent.a1.output', 'swarm.team.t1.agent.a2.x', 'swarm.prod.agent.p.y', 'swarm.events', 'swarm.log.z']);
      if (same(incoming(subject, data, i + 1), () => `random #${i}: ${Buffer.from(data).toString('hex')}`)) hits++;
      // Corrupted copies: a flipped byte, a cut.
      const flipped = data.slice();
      if (flipped.length > 0) flipped[Math.floor(rand() * flipped.length)]! ^= 1 << Math.floor(rand() * 8);
      same(incoming(subject, flipped, i + 1), `random #${i} with a flipped bit`);
      same(incoming(subject, data.subarray(0, Math.floor(rand() * data.length)), i + 1), `random #${i} cut`);
    }
    assert.ok(hits > 1500, `fast path answered for ${hits} of 5,000`);
  });

  it('random bytes: equal (dead letters and reasons)', () => {
    const rand = prng(5);
    for (let i = 0; i < 5000; i++) {
      const data = new Uint8Array(Math.floor(rand() * 64));
      for (let j = 0; j < data.length; j++) data[j] = Math.floor(rand() * 256);
      same(incoming('swarm.agent.r.output', data, i + 1), `random bytes ${Buffer.from(data).toString('hex')}`);
    }
  });

  it('hand-built wire oddities: equal', () => {
    const w = (): BinaryWriter => new BinaryWriter();
    const text = (content: string): Uint8Array => w().uint32(10).string(content).finish();
    const strVal = (s: string): Uint8Array => w().uint32(26).string(s).finish();
    const entry = (key: string, value: Uint8Array): Uint8Array => w().uint32(10).string(key).uint32(18).bytes(value).finish();
    const eventWith = (data: Uint8Array, type = 'heartbeat'): Uint8Array => w().uint32(10).string(type).uint32(26).bytes(data).finish();
    const env = (...fields: [number, Uint8Array | string | number][]): Uint8Array => {
      const out = w();
      for (const [tag, v] of fields) {
        out.uint32(tag);
        if (typeof v === 'string') out.string(v);
        else if (typeof v === 'number') out.uint32(v);
        else out.bytes(v);
      }
      return out.finish();
    };
    const struct = (...entries: Uint8Array[]): Uint8Array => {
      const out = w();
      for (const e of entries) out.uint32(10).bytes(e);
      return out.finish();
    };
    const cases: [string, Uint8Array][] = [
      ['plain', env([10, 'id1'], [26, 'a'], [50, text('hi')])],
      ['id twice (last wins)', env([10, 'id1'], [10, 'id2'], [26, 'a'], [50, text('hi')])],
      ['two payloads (last wins)', env([10, 'id1'], [50, text('hi')], [42, eventWith(struct())])],
      ['payload then the same payload again', env([10, 'id1'], [50, text('hi')], [50, text('again')])],
      ['unknown field 9', env([10, 'id1'], [74, 'x'], [50, text('hi')])],
      ['known field, other wire type', env([8, 5], [50, text('hi')])],
      ['field order reversed', env([50, text('hi')], [26, 'a'], [10, 'id1'])],
      ['redundant varint tag', new Uint8Array([0x8a, 0x00, 1, 0x61, 0x32, 4, 0x0a, 2, 0x68, 0x69])],
      ['empty text payload', env([10, 'id1'], [50, new Uint8Array(0)])],
      ['no payload, BINARY', env([10, 'id1'], [32, 3])],
      ['no payload, BINARY, bare', env([32, 3])],
      ['type 7', env([10, 'id1'], [32, 7], [50, text('hi')])],
      ['struct: duplicate key', env([10, 'e'], [42, eventWith(struct(entry('status', strVal('BUSY')), entry('status', strVal('IDLE'))))])],
      ['struct: value before key', env([10, 'e'], [42, eventWith(struct(w().uint32(18).bytes(strVal('ERROR')).uint32(10).string('level').finish()))])],
      ['struct: entry without value', env([10, 'e'], [42, eventWith(struct(w().uint32(10).string('k').finish(), entry('b', strVal('x'))))])],
      ['struct: value without kind', env([10, 'e'], [42, eventWith(struct(entry('k', new Uint8Array(0))))])],
      ['struct: value with two kinds', env([10, 'e'], [42, eventWith(struct(entry('k', w().uint32(26).string('a').uint32(32).uint32(1).finish())))])],
      ['struct: entry key twice', env([10, 'e'], [42, eventWith(struct(w().uint32(10).string('a').uint32(10).string('b').uint32(18).bytes(strVal('x')).finish()))])],
      ['struct: index key', env([10, 'e'], [42, eventWith(struct(entry('b', strVal('x')), entry('1', strVal('y'))))])],
      ['struct: list with an empty value', env([10, 'e'], [42, eventWith(struct(entry('l', w().uint32(50).bytes(w().uint32(10).bytes(new Uint8Array(0)).uint32(10).bytes(strVal('z')).finish()).finish())))])],
      ['struct: null value 5', env([10, 'e'], [42, eventWith(struct(entry('n', w().uint32(8).uint32(5).finish())))])],
      ['bool 2', env([10, 'r'], [66, w().uint32(10).string('c').uint32(24).uint32(2).finish()])],
      ['timestamp with an unknown field', env([10, 'id1'], [18, w().uint32(8).uint32(1_767_225_600).uint32(24).uint32(1).finish()], [50, text('hi')])],
      ['timestamp empty', env([10, 'id1'], [18, new Uint8Array(0)], [50, text('hi')])],
      ['heartbeat with level and errors', env([10, 'e'], [26, 'a'], [42, eventWith(struct(entry('level', strVal(' warning ')), entry('error', strVal('disk')), entry('status', strVal('busy'))))])],
      ['event with error text, not a status event', env([10, 'e'], [26, 'a'], [42, eventWith(struct(entry('last_error', strVal('oops')), entry('level', strVal('CRITICAL'))), 'task.failed')])],
      ['length past the end', new Uint8Array([0x0a, 0x05, 0x61])],
      ['nested length past its message', env([10, 'id1'], [50, new Uint8Array([0x0a, 0x09, 0x68, 0x69])])],
      ['invalid UTF-8 in a string', env([10, 'id1'], [50, w().uint32(10).bytes(new Uint8Array([0xc3, 0x28])).finish()])],
      ['overlong UTF-8', env([10, 'id1'], [50, w().uint32(10).bytes(new Uint8Array([0xc0, 0xaf])).finish()])],
      ['UTF-8 surrogate', env([10, 'id1'], [50, w().uint32(10).bytes(new Uint8Array([0xed, 0xa0, 0x80])).finish()])],
      ['NUL in content', env([10, 'id1'], [50, text('a\u0000b')])],
      ['BOM in content', env([10, 'id1'], [50, text('\ufeffhi')])],
      ['tag 0 at the end', new Uint8Array([...env([10, 'id1'], [50, text('hi')]), 0])],
      ['end-group tag', new Uint8Array([...env([10, 'id1'], [50, text('hi')]), 0x0c])],
    ];
    let hits = 0;
    for (const [label, data] of cases) if (same(incoming('swarm.agent.w.output', data, 1), label)) hits++;
    assert.ok(hits >= 8, `fast path answered for ${hits} hand-built cases`);
    // The oddities it must leave to the reference.
    for (const label of ['id twice (last wins)', 'two payloads (last wins)', 'unknown field 9', 'struct: duplicate key', 'struct: index key', 'NUL in content', 'invalid UTF-8 in a string']) {
      assert.equal(readEnvelopeFast(cases.find(([l]) => l === label)![1]), null, label);
    }
  });
});
