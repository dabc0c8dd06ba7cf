// Stream cursors (src/api/cursor.ts): version 2 carries a CRC-32 instead of version 1's truncated
// sha256, and version-1 cursors that clients saved before an upgrade still resume.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { decodeCursor, encodeCursor } from '../../src/api/cursor.js';
import { InvalidArgumentError } from '../../src/errors.js';

/** A version-1 cursor exactly as the previous release built it: version 1, seq (u64 BE), sha256[0..4). */
function v1Cursor(seq: bigint): string {
  const buf = Buffer.alloc(13);
  buf.writeUInt8(1, 0);
  buf.writeBigUInt64BE(seq, 1);
  createHash('sha256').update('mycelis-cursor').update(buf.subarray(0, 9)).digest().subarray(0, 4).copy(buf, 9);
  return buf.toString('base64url');
}

/** Asserts that decoding fails with an InvalidArgumentError on `after_cursor` whose message matches. */
function assertRejected(cursor: string, why: RegExp): void {
  assert.throws(
    () => decodeCursor(cursor, 'after_cursor'),
    (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, `got ${String(err)}`);
      assert.equal(err.field, 'after_cursor');
      assert.match(err.message, /^after_cursor: malformed cursor/);
      assert.match(err.message, why);
      return true;
    },
  );
}

describe('stream cursors', () => {
  it('round-trip every position, including 0, the 32-bit boundary and the largest safe integer', () => {
    for (const seq of [0, 1, 42, 127, 128, 0xffff_ffff, 2 ** 32, 2 ** 32 + 1, 1_764_000_000_123, Number.MAX_SAFE_INTEGER]) {
      assert.equal(decodeCursor(encodeCursor(seq), 'after_cursor'), seq, `seq ${seq}`);
    }
  });

  it('pin the version-2 format: version 2, seq as u64 big-endian, CRC-32 seeded with the domain', () => {
    assert.equal(encodeCursor(42), 'AgAAAAAAAAAqehUChw');
    const bytes = Buffer.from('AgAAAAAAAAAqehUChw', 'base64url');
    assert.deepEqual([...bytes.subarray(0, 9)], [2, 0, 0, 0, 0, 0, 0, 0, 42]);
    assert.equal(bytes.length, 13);
  });

  it('only issues cursors for safe non-negative integers', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1, Infinity]) {
      assert.throws(() => encodeCursor(bad), RangeError, `seq ${bad}`);
    }
  });

  it('a version-1 cursor saved before the upgrade decodes to its seq', () => {
    assert.equal(decodeCursor(v1Cursor(123_456n), 'after_cursor'), 123_456);
    assert.equal(decodeCursor(v1Cursor(BigInt(Number.MAX_SAFE_INTEGER)), 'after_cursor'), Number.MAX_SAFE_INTEGER);
    assert.equal(decodeCursor(v1Cursor(0n), 'after_cursor'), 0);
  });

  it('a version-1 cursor with a wrong checksum is still rejected', () => {
    const buf = Buffer.from(v1Cursor(123_456n), 'base64url');
    buf[12] = buf[12]! ^ 1;
    assertRejected(buf.toString('base64url'), /checksum mismatch/);
    // A version-2 checksum on a version-1 cursor is not accepted either.
    const crossed = Buffer.from(encodeCursor(123_456), 'base64url');
    crossed[0] = 1;
    assertRejected(crossed.toString('base64url'), /checksum mismatch/);
  });

  it('tampered, truncated, extended and unknown-version cursors are rejected, naming the field', () => {
    const good = Buffer.from(encodeCursor(77), 'base64url');
    for (let i = 1; i < good.length; i++) {
      const flip = Buffer.from(good);
      flip[i] = flip[i]! ^ 0x10;
      assertRejected(flip.toString('base64url'), /checksum mismatch/);
    }
    assertRejected(good.subarray(0, 12).toString('base64url'), /wrong length/);
    assertRejected(Buffer.concat([good, Buffer.from([0])]).toString('base64url'), /wrong length/);
    const v9 = Buffer.from(good);
    v9[0] = 9;
    assertRejected(v9.toString('base64url'), /unsupported version 9/);
    assertRejected('not a cursor!', /not a cursor this service issued/);
    assertRejected('', /not a cursor this service issued/);
    assertRejected('A'.repeat(65), /not a cursor this service issued/);
  });

  it('a well-formed cursor beyond the largest safe integer is rejected, not rounded', () => {
    // Built with a valid v1 checksum, so only the range check can refuse it.
    assertRejected(v1Cursor(BigInt(Number.MAX_SAFE_INTEGER) + 1n), /position out of range/);
  });
});
