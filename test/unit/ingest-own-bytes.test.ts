// ownBytes (src/ingest/jetstream-ingest.ts): a large payload that is a view of a much larger read
// buffer is copied into a buffer of its own; everything else is kept as handed over.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ownBytes } from '../../src/ingest/jetstream-ingest.js';

describe('ownBytes', () => {
  it('copies a 512 KiB payload out of a 1 MiB read buffer, same bytes', () => {
    const read = new Uint8Array(1024 * 1024).map((_, i) => i & 0xff);
    const view = read.subarray(1000, 1000 + 512 * 1024);
    const own = ownBytes(view);
    assert.notEqual(own.buffer, read.buffer);
    assert.equal(own.buffer.byteLength, view.byteLength);
    assert.deepEqual(own, view);
  });
  it('keeps small payloads and payloads that (nearly) fill their buffer', () => {
    const read = new Uint8Array(1024 * 1024);
    const small = read.subarray(0, 1000);
    assert.equal(ownBytes(small), small);
    const whole = new Uint8Array(512 * 1024);
    assert.equal(ownBytes(whole), whole);
    const nearly = new Uint8Array(520 * 1024).subarray(0, 512 * 1024);
    assert.equal(ownBytes(nearly), nearly);
  });
});
