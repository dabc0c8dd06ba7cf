// Collecting dead Buffers before they pile up in the resident set.
//
// A Buffer's bytes live outside V8's heap and go back only when a collection finds the Buffer dead.
// V8 starts a full collection for that external memory only once it grew by about 64 MiB since the
// last one, and on a busy host its concurrent marking runs late: with 512 KiB tool results streamed to
// ten tails (test/fault/large-messages.test.ts), dead buffers were about 100 MiB of a ~300 MB peak
// (bench/README.md, issue 13's fourth pass). This watches the process's ArrayBuffer bytes a few times
// a second and, when they have grown by `growthBytes` above their low point, asks V8 for a major
// collection, at once (an asynchronous request left the marking as late as V8's own). Small events
// never get there: their buffers die young and the scavenger frees them (same-run A/B, 100,000
// events: drain 1.035x, GC per event 0.89x). 10-tail test, Node 26.12.1, in turns: peaks 279-301 MB
// with it (request at 16 MiB of growth) against 285-306 MB without.
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Logger } from './logger.js';
import { counter } from './metrics.js';

const collected = counter('mycelis_memory_buffer_collections_total', 'Major garbage collections requested because ArrayBuffer bytes grew past the buffer governor\'s threshold');

const EVERY_MS = 200;

type Gc = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => unknown;

export interface BufferGovernor {
  /** Collections requested so far. */
  readonly collections: () => number;
  stop(): void;
}

/** Starts watching. `growthBytes`: how far above their low point ArrayBuffer bytes trigger a collection. */
export function startBufferGovernor(growthBytes: number, logger: Logger): BufferGovernor {
  const log = logger.child({ component: 'buffer-governor' });
  let gc: Gc;
  try {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as Gc;
  } catch (err) {
    log.warn({ err }, 'cannot reach the garbage collector; dead buffers are left to V8');
    return { collections: () => 0, stop: () => undefined };
  }
  let low = process.memoryUsage().arrayBuffers;
  let collections = 0;
  const timer = setInterval(() => {
    const now = process.memoryUsage().arrayBuffers;
    if (now < low) low = now;
    if (now - low > growthBytes) {
      gc({ type: 'major', execution: 'sync' });
      collections++;
      collected.inc();
      // What the collection frees lowers `low` on a later tick; until then, no second request.
      low = now;
    }
  }, EVERY_MS);
  timer.unref();
  return {
    collections: () => collections,
    stop: () => clearInterval(timer),
  };
}
