// The buffer governor asks V8 for a collection once ArrayBuffer bytes grow past its threshold above
// their low point, and not while they stay below it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startBufferGovernor } from '../../src/buffer-governor.js';
import { createLogger } from '../../src/logger.js';
import { waitFor } from '../helpers/wait.js';

describe('buffer governor', () => {
  it('requests a collection when buffer bytes grow past the threshold, none while they do not', async () => {
    const gov = startBufferGovernor(8 * 1024 * 1024, createLogger('silent'));
    try {
      await new Promise((r) => setTimeout(r, 450));
      assert.equal(gov.collections(), 0, 'no growth, no collection');
      const held = Array.from({ length: 24 }, () => Buffer.alloc(1024 * 1024, 1));
      await waitFor('a collection', () => gov.collections() > 0, { timeoutMs: 5000, intervalMs: 50 });
      assert.equal(held.length, 24);
    } finally {
      gov.stop();
    }
  });
});
