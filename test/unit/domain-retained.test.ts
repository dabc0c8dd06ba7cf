// Memory held per in-flight event. Ingest keeps each normalized row until its batch commits (two
// batches in flight), so every young-generation GC copies what a row holds: a context kept as V8's
// tree of concatenated pieces cost 3.1 KB per message where its text is ~0.4 KB (src/domain/flat.ts).
// Heap sizes after a full GC are deterministic enough for a bound with a wide margin; no timing here.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';

import { generateTraffic } from '../../src/cli/traffic.js';
import { flat } from '../../src/domain/flat.js';
import { normalizeMessage, type IncomingMessage } from '../../src/domain/normalize.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Heap bytes still held per item after building n items with make() and keeping them. */
function retainedPerItem<T>(n: number, make: (i: number) => T): number {
  const keep: T[] = new Array<T>(n);
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < n; i++) keep[i] = make(i);
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  assert.equal(keep.length, n);
  return (after - before) / n;
}

/** A ~400-character JSON text built from 60 pieces, as the context renderer builds one. */
function pieced(i: number): string {
  let s = '{';
  for (let k = 0; k < 30; k++) s += `"key_${k}":"value ${i} ${k}",`;
  return s + '"end":true}';
}

describe('memory held per in-flight event', () => {
  it('flat() turns a string built from many pieces into one sequential string', () => {
    const len = pieced(7).length;
    const asBuilt = retainedPerItem(20_000, (i) => pieced(i));
    const flattened = retainedPerItem(20_000, (i) => flat(pieced(i)));
    // About one byte per character (plus headers); the tree of pieces is several times that.
    assert.ok(flattened < 1.5 * len, `flattened: ${flattened.toFixed(0)} bytes for ${len} characters`);
    assert.ok(asBuilt > 3 * flattened, `as built: ${asBuilt.toFixed(0)} bytes, flattened ${flattened.toFixed(0)}`);
    assert.equal(flat('abc'), 'abc');
    assert.equal(flat(''), '');
  });

  it('a normalized message (row and registry event) holds under 1.6 KB', () => {
    const msgs = [...generateTraffic({ count: 20_000, agents: 1000, teams: 40, seed: 42, clock: () => 1_767_225_600_000, subjectPrefix: 'swarm' })];
    const opts = { isLogEntrySubject: () => false, maxEventBytes: 1024 * 1024 };
    const incoming = msgs.map(
      (m, i): IncomingMessage => ({
        // A subject as NATS hands it over: one flat string (the generator builds it from pieces).
        subject: flat(m.subject),
        data: m.data,
        headers: undefined,
        streamName: 'SWARM',
        streamCreatedUs: 1_700_000_000_000_000,
        streamSeq: i + 1,
        serverTimeUs: 1_767_225_600_000_000,
        receivedAtUs: 1_767_225_600_000_000,
      }),
    );
    for (let i = 0; i < 2000; i++) normalizeMessage(incoming[i]!, opts); // compiled before measuring
    const perMessage = retainedPerItem(incoming.length, (i) => normalizeMessage(incoming[i]!, opts));
    // Measured: 0.9 KB with flattened contexts and ids, 3.1 KB without.
    assert.ok(perMessage < 1600, `${perMessage.toFixed(0)} bytes held per normalized message`);
  });
});
