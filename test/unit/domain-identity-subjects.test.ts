// DESIGN 3.2 row identity and the NATS subject matcher.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { deriveRowId, uuidV7 } from '../../src/domain/identity.js';
import type { IdentityInput } from '../../src/domain/identity.js';
import { normalizeMessage } from '../../src/domain/normalize.js';
import type { IncomingMessage } from '../../src/domain/normalize.js';
import { compileSubjectMatcher } from '../../src/domain/subjects.js';
import { MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';

const FIXTURES = new URL('../fixtures/swarm-v1/', import.meta.url);
const opts = { isLogEntrySubject: compileSubjectMatcher(['swarm.log.>']), maxEventBytes: 1 << 20 };
const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function msg(subject: string, data: Uint8Array, over: Partial<IncomingMessage> = {}): IncomingMessage {
  return { subject, data, streamName: 'SWARM', streamCreatedUs: 5, streamSeq: 1, serverTimeUs: 1_767_225_700_000_000, receivedAtUs: 1, ...over };
}
function rowId(m: IncomingMessage): string {
  const r = normalizeMessage(m, opts);
  if (!r.ok) return assert.fail(r.reject.detail);
  return r.row.id;
}
const base: IdentityInput = {
  envelopeId: '',
  sourceAsSent: 'a',
  timestamp: undefined,
  payload: new Uint8Array([1, 2, 3]),
  streamName: 'SWARM',
  streamCreatedUs: 5,
  streamSeq: 9,
  serverTimeUs: 1_767_225_700_000_000,
};

describe('identity', () => {
  const smoke = new Uint8Array(readFileSync(new URL('event_with_context.bin', FIXTURES)));
  it('the same bytes twice, redelivered or as the swarm.audit.trace copy, get the same id', () => {
    const first = rowId(msg('swarm.smoke.test', smoke, { streamSeq: 10, serverTimeUs: 1_767_225_700_000_000 }));
    assert.equal(rowId(msg('swarm.smoke.test', smoke, { streamSeq: 10 })), first);
    assert.equal(rowId(msg('swarm.audit.trace', smoke, { streamSeq: 11, serverTimeUs: 1_767_225_700_000_500 })), first);
    assert.match(first, UUID7);
  });
  it('test-id-2 re-sent with a new timestamp gets a new id; one nanosecond is enough', () => {
    const env = MsgEnvelope.decode(smoke);
    const again = MsgEnvelope.encode({ ...env, timestamp: { seconds: env.timestamp!.seconds, nanos: 1 } }).finish();
    assert.equal(env.id, 'test-id-2');
    assert.notEqual(rowId(msg('swarm.smoke.test', again)), rowId(msg('swarm.smoke.test', smoke)));
  });
  it('envelope ids depend on (source as sent, id, raw timestamp), not on other bytes', () => {
    const id = deriveRowId({ ...base, envelopeId: 'x', timestamp: { seconds: '1767225600', nanos: 5 } });
    assert.equal(id.kind, 'envelope_id');
    assert.equal(deriveRowId({ ...base, envelopeId: 'x', timestamp: { seconds: '1767225600', nanos: 5 }, payload: new Uint8Array([9]) }).id, id.id);
    assert.notEqual(deriveRowId({ ...base, envelopeId: 'x', sourceAsSent: 'b', timestamp: { seconds: '1767225600', nanos: 5 } }).id, id.id);
    assert.notEqual(deriveRowId({ ...base, envelopeId: 'x', timestamp: { seconds: '1767225600', nanos: 6 } }).id, id.id);
    assert.equal(id.id.slice(0, 13), uuidV7(1_767_225_600_000, '0'.repeat(64)).slice(0, 13), 'event-time ms prefix');
  });
  it('no id but a timestamp: a hash of the payload bytes', () => {
    const a = deriveRowId({ ...base, timestamp: { seconds: '1767225600', nanos: 0 } });
    assert.equal(a.kind, 'payload_hash');
    assert.equal(deriveRowId({ ...base, streamSeq: 77, timestamp: { seconds: '1767225600', nanos: 0 } }).id, a.id);
    assert.notEqual(deriveRowId({ ...base, payload: new Uint8Array([1, 2, 4]), timestamp: { seconds: '1767225600', nanos: 0 } }).id, a.id);
  });
  it('neither: the stream position (name, creation time, sequence)', () => {
    const a = deriveRowId(base);
    assert.equal(a.kind, 'stream_position');
    assert.equal(deriveRowId({ ...base }).id, a.id);
    assert.notEqual(deriveRowId({ ...base, streamSeq: 10 }).id, a.id);
    assert.notEqual(deriveRowId({ ...base, streamCreatedUs: 6 }).id, a.id);
    assert.notEqual(deriveRowId({ ...base, streamName: 'OTHER' }).id, a.id);
  });
  it('core mode without identity: random (copies cannot be recognised)', () => {
    const a = deriveRowId({ ...base, streamSeq: 0, streamName: '' });
    assert.equal(a.kind, 'random');
    assert.notEqual(deriveRowId({ ...base, streamSeq: 0, streamName: '' }).id, a.id);
    assert.match(a.id, UUID7);
  });
  it('uuidV7 layout: 48-bit ms, version 7, variant 10; time-ordered', () => {
    const u = uuidV7(0x0123_4567_89ab, 'f'.repeat(64));
    assert.equal(u, '01234567-89ab-7fff-bfff-ffffffffffff');
    assert.equal(uuidV7(-5, '0'.repeat(64)), '00000000-0000-7000-8000-000000000000');
    assert.ok(uuidV7(1000, 'f'.repeat(64)) < uuidV7(1001, '0'.repeat(64)));
  });
  it('uuidV7 lays out what the template it replaced did, for every time and digest', () => {
    const reference = (ms: number, hashHex: string): string => {
      const c = !Number.isFinite(ms) || ms < 0 ? 0 : ms > 2 ** 48 - 1 ? 2 ** 48 - 1 : Math.floor(ms);
      const t = c.toString(16).padStart(12, '0');
      const v = '89ab'[parseInt(hashHex.charAt(3), 16) & 0x3];
      return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${hashHex.slice(0, 3)}-${v}${hashHex.slice(4, 7)}-${hashHex.slice(7, 19)}`;
    };
    const times = [0, 1, 15, 16, 255, 0xffffff, 0x1000000, 0x1000001, 2 ** 32, 2 ** 48 - 2, 2 ** 48 - 1, 2 ** 48, 2 ** 60, -1, -0.5, 0.9, 1e3 + 0.999, NaN, Infinity, -Infinity];
    let checked = 0;
    for (let i = 0; i < 20_000; i++) {
      const hex = createHash('sha256').update(String(i)).digest('hex');
      const ms = i < times.length ? times[i]! : 1_767_225_600_000 + i * 7919 + (i % 3) * 0.25;
      assert.equal(uuidV7(ms, hex), reference(ms, hex));
      checked++;
    }
    for (const hex of ['0'.repeat(19), 'f'.repeat(32), '0123456789abcdef0123', 'ABCDEF0123456789ABCDEF']) assert.equal(uuidV7(1234, hex), reference(1234, hex));
    assert.equal(checked, 20_000);
  });
});

describe('compileSubjectMatcher', () => {
  const table: [string[], string, boolean][] = [
    [['swarm.log.>'], 'swarm.log.a', true],
    [['swarm.log.>'], 'swarm.log.a.b.c', true],
    [['swarm.log.>'], 'swarm.log', false],
    [['swarm.log.>'], 'swarm.logs.a', false],
    [['swarm.council.*.request'], 'swarm.council.x.request', true],
    [['swarm.council.*.request'], 'swarm.council.x.y.request', false],
    [['swarm.council.*.request'], 'swarm.council..request', false],
    [['swarm.council.*.request'], 'swarm.council.x.request.more', false],
    [['*.a'], 'x.a', true],
    [['a.b'], 'a.b', true],
    [['a.b'], 'a.b.c', false],
    [['a*.b'], 'ax.b', false],
    [['a*.b'], 'a*.b', true],
    [['>'], 'anything.at.all', true],
    [[], 'a', false],
    [['', '  '], 'a', false],
    [['x.>', 'a.*'], 'a.q', true],
    [['swarm.log.>'], 'swarm.loga.x', false],
    [['swarm.log.>'], 'swarm.lo.x', false],
    [['a.*'], 'a.', false],
    [['*.*'], 'a.b', true],
    [['*.*'], 'a', false],
    [['a.*.c'], 'a.bb.c', true],
    [['a.*.c'], 'a.bb.cc', false],
  ];
  for (const [patterns, subject, want] of table) {
    it(`${JSON.stringify(patterns)} ${want ? 'matches' : 'does not match'} ${subject}`, () => {
      assert.equal(compileSubjectMatcher(patterns)(subject), want);
    });
  }
});
