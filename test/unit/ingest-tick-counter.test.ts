// TickCounter (src/ingest/pipeline.ts): per-message increments reach the metric once per turn of the
// event loop, all of them, before anything in a later turn (a scrape) can read it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { TickCounter } from '../../src/ingest/pipeline.js';

describe('TickCounter', () => {
  it('adds a run of increments to the metric once, by the next turn', async () => {
    const added: number[] = [];
    const c = new TickCounter({ inc: (n) => void added.push(n) });
    for (let i = 0; i < 1234; i++) c.inc();
    assert.deepEqual(added, []); // not yet: same turn
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(added, [1234]);
    c.inc();
    await Promise.resolve();
    c.inc();
    await new Promise((r) => setImmediate(r));
    assert.equal(added.reduce((a, b) => a + b, 0), 1236);
    await new Promise((r) => setImmediate(r));
    assert.ok(added.every((n) => n > 0)); // nothing added for an empty turn
  });
});
