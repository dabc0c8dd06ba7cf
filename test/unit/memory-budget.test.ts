// src/config/memory-budget.ts: one budget, from MEMORY_LIMIT, else the container's limit, else 512 MiB;
// every share derived from it; the V8 flags that put it into effect; the operator's flags recognised.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { loadConfig } from '../../src/config/config.js';
import { BUFFER_POOL_BYTES, DEFAULT_MEMORY_LIMIT, heapFlagsIn, heapFlagsToAdd, MALLOC_ENV, mallocEnvToAdd, memoryBudget, v8FlagsFor } from '../../src/config/memory-budget.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const machine = { constrainedMemory: undefined, totalMemory: 24 * GiB };

describe('memory budget', () => {
  it('without a limit anywhere: the 512 MiB of k8s/base, divided as documented', () => {
    const b = memoryBudget({ memoryLimit: undefined, batchBytes: undefined, ...machine });
    assert.deepEqual(b, {
      limitBytes: DEFAULT_MEMORY_LIMIT,
      source: 'default',
      heapBytes: 256 * MiB,
      semiSpaceBytes: 16 * MiB,
      ingestBytes: 16 * MiB,
      batchBytes: 8 * MiB,
      handoverBytes: 16 * MiB,
      streamBytes: 16 * MiB,
      watchBytes: 8 * MiB,
    });
    assert.equal(DEFAULT_MEMORY_LIMIT, 512 * MiB);
    assert.deepEqual(v8FlagsFor(b), ['--max-old-space-size=256', '--max-semi-space-size=16']);
    // V8's heap limit is old + 3 x semi-space (two semi-spaces and the new large-object space): 304 MiB,
    // 0.59 of the limit; with the queues' eighth (64 MiB) that leaves 144 MiB for everything else.
    const heapLimit = b.heapBytes + 3 * b.semiSpaceBytes;
    assert.equal(heapLimit, 304 * MiB);
    assert.equal(b.limitBytes - heapLimit - b.limitBytes / 8, 144 * MiB);
  });

  it('the heap V8 may use (old + 3 semi-spaces) stays at most 0.6 of every limit, leaving the queues and the process room', () => {
    for (const limit of [128 * MiB, 200 * MiB, 256 * MiB, 300 * MiB, 512 * MiB, 768 * MiB, GiB, 4 * GiB, 64 * GiB]) {
      const b = memoryBudget({ memoryLimit: limit, batchBytes: undefined, ...machine });
      const heapLimit = b.heapBytes + 3 * b.semiSpaceBytes;
      assert.ok(heapLimit <= 0.6 * limit, `limit ${limit / MiB} MiB: heap ${heapLimit / MiB} MiB`);
      assert.ok(b.semiSpaceBytes >= MiB && b.semiSpaceBytes <= 16 * MiB);
      assert.ok(limit - heapLimit - limit / 8 >= 0.27 * limit, `limit ${limit / MiB} MiB: too little left for the process`);
    }
  });

  it('takes the container limit (process.constrainedMemory) when it is below the machine', () => {
    const b = memoryBudget({ memoryLimit: undefined, batchBytes: undefined, constrainedMemory: GiB, totalMemory: 24 * GiB });
    assert.equal(b.source, 'cgroup');
    assert.equal(b.limitBytes, GiB);
    assert.equal(b.heapBytes, 512 * MiB);
    assert.equal(b.semiSpaceBytes, 16 * MiB);
    assert.equal(b.ingestBytes, 32 * MiB);
    // No limit reads as a huge number (2^64) or 0: the default applies.
    for (const constrainedMemory of [2 ** 64, 0, 24 * GiB]) {
      assert.equal(memoryBudget({ memoryLimit: undefined, batchBytes: undefined, constrainedMemory, totalMemory: 24 * GiB }).source, 'default');
    }
  });

  it('MEMORY_LIMIT wins over the container; the semi-space stays between 1 and 16 MiB', () => {
    const b = memoryBudget({ memoryLimit: 8 * GiB, batchBytes: undefined, constrainedMemory: GiB, totalMemory: 24 * GiB });
    assert.equal(b.source, 'MEMORY_LIMIT');
    assert.equal(b.heapBytes, 4 * GiB);
    assert.equal(b.semiSpaceBytes, 16 * MiB);
    const small = memoryBudget({ memoryLimit: 128 * MiB, batchBytes: undefined, ...machine });
    assert.equal(small.semiSpaceBytes, 4 * MiB);
    assert.equal(small.batchBytes, 2 * MiB);
    assert.throws(() => memoryBudget({ memoryLimit: 100 * MiB, batchBytes: undefined, ...machine }), /at least 128MiB/);
  });

  it('INGEST_BATCH_BYTES replaces the batch share, up to half of the ingest share', () => {
    assert.equal(memoryBudget({ memoryLimit: undefined, batchBytes: MiB, ...machine }).batchBytes, MiB);
    assert.equal(memoryBudget({ memoryLimit: undefined, batchBytes: 8 * MiB, ...machine }).batchBytes, 8 * MiB);
    assert.throws(() => memoryBudget({ memoryLimit: undefined, batchBytes: 8 * MiB + 1, ...machine }), /at most half of the ingest budget/);
  });

  it('loadConfig computes it once, from the environment and the platform', () => {
    const c = loadConfig({ MEMORY_LIMIT: '1GiB', INGEST_BATCH_BYTES: '4MiB' }, machine);
    assert.equal(c.memory.limitBytes, GiB);
    assert.equal(c.memory.batchBytes, 4 * MiB);
    assert.ok(Object.isFrozen(c.memory));
    assert.equal(loadConfig({}, { constrainedMemory: 768 * MiB, totalMemory: 24 * GiB }).memory.limitBytes, 768 * MiB);
    assert.equal(loadConfig({ MEMORY_LIMIT: 'auto' }, machine).memory.source, 'default');
    // The Downward API gives the pod's limit as plain bytes.
    assert.equal(loadConfig({ MEMORY_LIMIT: String(512 * MiB) }, machine).memory.limitBytes, 512 * MiB);
  });

  it("adds glibc's malloc settings the environment does not set, and keeps the operator's", () => {
    assert.deepEqual(MALLOC_ENV, { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '65536' });
    assert.deepEqual(mallocEnvToAdd({}), MALLOC_ENV);
    assert.deepEqual(mallocEnvToAdd({ MALLOC_ARENA_MAX: '4' }), { MALLOC_MMAP_THRESHOLD_: '65536' });
    assert.deepEqual(mallocEnvToAdd({ ...MALLOC_ENV }), {});
  });

  it("sizes Buffer's pool below the mmap threshold, so a pool comes from the arena rather than a mapping of its own", () => {
    // glibc maps a request (plus its 8-16 byte header) of at least the threshold: a 64 KiB pool was one.
    assert.ok(BUFFER_POOL_BYTES + 64 <= Number(MALLOC_ENV.MALLOC_MMAP_THRESHOLD_), `${BUFFER_POOL_BYTES} vs ${MALLOC_ENV.MALLOC_MMAP_THRESHOLD_}`);
    // Still a pool: buffers under half of it (responses of a few records, frames, NATS and pg writes) share one.
    assert.ok(BUFFER_POOL_BYTES >= 8 * 1024);
    assert.ok(Buffer.poolSize >= BUFFER_POOL_BYTES, "Node's default is not below ours (then ours would shrink nothing)");
  });

  it('recognises the heap flags an operator set in NODE_OPTIONS or on the command line', () => {
    assert.deepEqual(heapFlagsIn(['--max-old-space-size=300', '--enable-source-maps', '--max_semi_space_size=4']), ['--max-old-space-size=300', '--max_semi_space_size=4']);
    assert.deepEqual(heapFlagsIn(['--max-old-space-size', '300']), ['--max-old-space-size']);
    assert.deepEqual(heapFlagsIn(['--import', 'tsx', '--max-old-space-size-percentage=50']), []);
  });

  it("keeps the limits the operator set and adds the budget's limits for the others (a semi-space alone keeps the old-space bound)", () => {
    const wanted = ['--max-old-space-size=256', '--max-semi-space-size=8'];
    assert.deepEqual(heapFlagsToAdd(wanted, []), wanted);
    assert.deepEqual(heapFlagsToAdd(wanted, ['--max-semi-space-size=16']), ['--max-old-space-size=256']);
    assert.deepEqual(heapFlagsToAdd(wanted, ['--max_old_space_size=300']), ['--max-semi-space-size=8']);
    assert.deepEqual(heapFlagsToAdd(wanted, ['--max-old-space-size', '--max-semi-space-size=4']), []);
    assert.deepEqual(heapFlagsToAdd(wanted, wanted), []);
    assert.deepEqual(loadConfig({ NODE_OPTIONS: '--enable-source-maps --max-old-space-size=300' }, machine).nodeOptionsHeapFlags, ['--max-old-space-size=300']);
    assert.deepEqual(loadConfig({}, machine).nodeOptionsHeapFlags, []);
  });
});
