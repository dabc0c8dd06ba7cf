// Releasing large buffers at once (src/release-bytes.ts) and where the service does it: only a large
// buffer that is the whole of its ArrayBuffer or marked as its sole view is released (never a slice
// of Buffer's pool, a view into a shared slab, or a small buffer); a large record gets a slab of its
// own sized to it (no 2 MiB slab per 512 KiB record) that no later record shares; an outgrown COPY
// buffer is released.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { markSole, releaseBytes } from '../../src/release-bytes.js';
import { toWireRecord } from '../../src/api/log-record.js';
import { encodeCopyRows } from '../../src/store/batch-writer.js';
import type { StoredLogRow } from '../../src/store/log-reader.js';
import type { LogRow } from '../../src/domain/types.js';

const KiB = 1024;

function stored(seq: number, context: Record<string, unknown>): StoredLogRow {
  return {
    id: `0190c3f1-7e0a-7000-8000-${String(seq).padStart(12, '0')}`,
    seq,
    traceId: 'trace-1',
    timestampUs: 1_700_000_000_123_456,
    receivedAtUs: 1_700_000_000_223_456,
    level: 'INFO',
    source: 'agent-1',
    intent: 'tool_result',
    message: 'm',
    context,
    teamId: 'team',
    subject: 'swarm.agent.agent-1.output',
    approxBytes: 0,
  };
}

describe('releaseBytes', () => {
  it('frees a large buffer that is its whole ArrayBuffer: it and its views have length 0', () => {
    const b = Buffer.allocUnsafeSlow(512 * KiB).fill(7);
    const view = new Uint8Array(b.buffer, 10, 20);
    assert.equal(releaseBytes(b), true);
    assert.equal(b.length, 0);
    assert.equal(view.length, 0);
  });

  it('leaves small buffers, pool slices and views of a larger ArrayBuffer alone', () => {
    const small = Buffer.allocUnsafeSlow(60 * KiB).fill(1);
    assert.equal(releaseBytes(small), false);
    assert.equal(small.length, 60 * KiB);
    const pooled = Buffer.allocUnsafe(100); // a slice of Buffer's shared 8 KiB pool
    assert.equal(releaseBytes(pooled), false);
    const slab = Buffer.allocUnsafeSlow(1024 * KiB).fill(2);
    const part = slab.subarray(0, 600 * KiB);
    assert.equal(releaseBytes(part), false);
    assert.equal(slab.length, 1024 * KiB);
    assert.equal(part[599 * KiB], 2);
    const shared = new Uint8Array(new SharedArrayBuffer(128 * KiB));
    assert.equal(releaseBytes(shared), false);
  });

  it('frees a view marked as the sole view of its ArrayBuffer', () => {
    const slab = Buffer.allocUnsafeSlow(600 * KiB);
    const own = slab.subarray(30 * KiB);
    markSole(own);
    assert.equal(releaseBytes(own), true);
    assert.equal(own.length, 0);
  });
});

describe('where the service releases', () => {
  it('a 512 KiB record gets a slab of about its size, which the next record does not share', () => {
    const big = toWireRecord(stored(1, { content: 'x'.repeat(512 * KiB) })).chunk;
    assert.ok(big.length > 512 * KiB);
    assert.ok(big.buffer.byteLength <= big.length + 32 * KiB, `slab of ${big.buffer.byteLength} for a record of ${big.length}`);
    const copy = Buffer.from(big);
    const next = toWireRecord(stored(2, { content: 'small' })).chunk;
    assert.notEqual(next.buffer, big.buffer);
    assert.deepEqual(Buffer.from(big), copy);
    // Its own: a stream that encoded it for itself may release it; the next record is untouched.
    const nextCopy = Buffer.from(next);
    assert.equal(releaseBytes(big), true);
    assert.deepEqual(Buffer.from(next), nextCopy);
  });

  it('a record that outgrew its first grown slab is copied out whole, and encodes the same', () => {
    // The large field is written first (keys are written from the last); then 100 KiB more.
    const r = toWireRecord(stored(3, { a: 'y'.repeat(100 * KiB), z: 'x'.repeat(300 * KiB) })).chunk;
    assert.equal(r.byteOffset, 0);
    assert.equal(r.buffer.byteLength, r.length);
    const again = toWireRecord(stored(3, { z: 'x'.repeat(300 * KiB), a: 'y'.repeat(100 * KiB) })).chunk;
    assert.deepEqual(Buffer.from(again), Buffer.from(r));
  });

  it('encodeCopyRows releases the buffer it outgrew and returns the grown one with every line', () => {
    const row = (i: number): LogRow =>
      ({ id: `id-${i}`, traceId: 't', timestampUs: 1_700_000_000_000_000, level: 'INFO', source: 's', intent: 'i', message: 'm', context: `{"c":"${'p'.repeat(300 * KiB)}"}`, teamId: 'x', subject: 'a.b', receivedAtUs: 1_700_000_000_000_001 });
    const given = Buffer.allocUnsafeSlow(256 * KiB);
    const { buf, at } = encodeCopyRows([row(0), row(1)], 1, null, given);
    assert.equal(given.length, 0, 'the outgrown buffer is released');
    const text = buf.subarray(0, at).toString('utf8');
    assert.equal(text.split('\n').length, 3);
    assert.ok(text.startsWith('id-0\t1\t'));
    assert.ok(at > 600 * KiB);
  });
});
