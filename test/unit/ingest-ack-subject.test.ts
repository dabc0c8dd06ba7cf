// parseAckSubject (src/ingest/pull-consumer.ts) reads every delivery's ack subject in place; it must
// answer exactly as the split-based reader it replaced, on real subjects and on malformed ones.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseAckSubject } from '../../src/ingest/pull-consumer.js';
import { prng } from '../helpers/prng.js';

/** The reader before issue 17: split on '.', tokens by position. */
function reference(reply: string): { deliveryCount: number; streamSeq: number; timestampNanos: number } | null {
  const t = reply.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return null;
  const at = t.length === 9 ? 4 : t.length >= 11 ? 6 : -1;
  if (at < 0) return null;
  const deliveryCount = Number(t[at]);
  const streamSeq = Number(t[at + 1]);
  const timestampNanos = Number(t[at + 3]);
  if (!Number.isSafeInteger(deliveryCount) || !Number.isSafeInteger(streamSeq) || !Number.isFinite(timestampNanos)) return null;
  return { deliveryCount, streamSeq, timestampNanos };
}


describe('parseAckSubject', () => {
  it('reads both layouts', () => {
    assert.deepEqual(parseAckSubject('$JS.ACK.S.C.2.17.30.1700000000000000000.5'), { deliveryCount: 2, streamSeq: 17, timestampNanos: 1700000000000000000 });
    assert.deepEqual(parseAckSubject('$JS.ACK.dom.hash.S.C.1.9.10.1700000000000000000.0.tok'), { deliveryCount: 1, streamSeq: 9, timestampNanos: 1700000000000000000 });
    assert.equal(parseAckSubject('$JS.ACK.hash.S.C.1.9.10.1700000000000000000.0'), null); // 10 tokens: neither layout
    assert.equal(parseAckSubject('_INBOX.x'), null);
    assert.equal(parseAckSubject(''), null);
  });

  it('answers as the split-based reader on 20,000 generated and malformed subjects', () => {
    const next = prng(17);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
    const tokens = ['', '0', '1', '7', '42', '9007199254740991', '9007199254740993', '-1', '1.5', '1e3', ' 5', '0x10', 'abc', 'S', 'C', '1700000000000000000', 'Infinity', '$JS', 'ACK'];
    const heads = ['$JS.ACK.', '$JS.ACK', '$JS.ack.', '$js.ACK.', '$JS.NAK.', 'x$JS.ACK.', ''];
    let checked = 0;
    for (let i = 0; i < 20_000; i++) {
      const n = Math.floor(next() * 16);
      const parts: string[] = [];
      for (let k = 0; k < n; k++) parts.push(next() < 0.7 ? String(Math.floor(next() * 1e6)) : pick(tokens));
      const reply = pick(heads) + parts.join(next() < 0.95 ? '.' : '..');
      assert.deepEqual(parseAckSubject(reply), reference(reply), reply);
      checked++;
    }
    // Real ones of both layouts, with the numbers anywhere in their ranges.
    for (let i = 0; i < 2_000; i++) {
      const d = 1 + Math.floor(next() * 20);
      const s = Math.floor(next() * 2 ** 53);
      const ts = Math.floor(next() * 2e18);
      for (const reply of [`$JS.ACK.STREAM_${i}.consumer-${i}.${d}.${s}.${i}.${ts}.${i * 3}`, `$JS.ACK.dom.acc${i}.S.C.${d}.${s}.${i}.${ts}.0.tok${i}`]) {
        assert.deepEqual(parseAckSubject(reply), reference(reply), reply);
        assert.notEqual(parseAckSubject(reply), null);
        checked++;
      }
    }
    assert.equal(checked, 24_000);
  });
});
