// The memory budget: ONE place that turns the memory the process may use into every byte bound the
// service keeps (like pg-boss's attorney.ts for its options). Computed once, from configuration, by
// loadConfig; everything that holds bytes receives its share from config.memory instead of choosing a
// number of its own.
//
// The limit: MEMORY_LIMIT when set, else the container's limit (the cgroup, as Node reports it through
// process.constrainedMemory()), else DEFAULT_LIMIT - the limit of k8s/base, so a process started by
// hand or by the tests behaves as it does in its pod.
//
// What the limit is divided into (L = the limit):
// - V8's old generation, L/2 (--max-old-space-size), and its semi-space, L/32 between 1 and 16 MiB
//   (--max-semi-space-size). Without these V8 sizes its heap from the machine's memory, not the pod's,
//   and lets garbage grow until it is far past what the work needs: the same 100,000-event drain peaked
//   at 418 MiB RSS on Node 24 with V8's defaults and at 199 MiB with 256/8 (test/fault/overload.test.ts).
//   src/cli/v8-limits.ts applies them at start.
//   The young generation V8 reserves is three semi-spaces (two for the scavenger's copying, one for
//   new large objects): V8 reports a heap limit of old + 3 x semi (280 MiB for 256/8, 304 for 256/16).
//   Ingest holds two batches of rows across a commit and allocates a few KB per event, so a small
//   young generation runs the scavenger more often and copies (then promotes) rows that a larger one
//   would have seen die: at L/64 (8 MiB) the service spent 19 µs of GC per event against 14 µs at
//   16 MiB in the same run (issue 17, bench/README.md), where the bare pipeline runs with V8's default.
//   The arithmetic at the default L = 512 MiB: heap limit 256 + 3 x 16 = 304 MiB (0.59 L), the queues
//   at most L/8 = 64 MiB (ingest, handover, streams L/32 each; stream pages and watch L/64 each) (most of what they hold is already inside that heap), which leaves 144 MiB (0.28 L)
//   of the limit for code, sockets, buffers and the collector's headroom; at the 128 MiB minimum:
//   64 + 3 x 4 = 76 MiB (0.59 L), queues 16 MiB, 36 MiB left. Above 512 MiB the semi-space stays at
//   16 MiB, so the young generation's share falls as L grows. (V8's own default on Node 26 is 32 MiB,
//   a young generation of 96 MiB whatever the limit: the bench process's bare pipelines run with it.)
// - The queues, L/8 together, of what the process holds that grows with the traffic:
//   ingest   L/32  messages JetStream delivered that are not yet acked or handed back (the pull
//                  credit: no pull asks for more), including the batches being decoded and committed
//                  (L/16 until issue 13's 10-tail run: each held 512 KiB tool result is also its
//                  decoded context, COPY text and wire record, and the 1,000 x 512 KiB run peaked at
//                  290-312 MB with L/16, 275-286 MB with L/32, stored as fast; small events are bound
//                  by count long before: 10,000 of 1 KiB are 10 MiB);
//   batch    L/64  one transaction's messages (INGEST_BATCH_BYTES overrides, at most half of ingest,
//                  so one batch commits while the next fills); a single larger message is a batch alone;
//   handover L/32  committed rows handed from the writer to the live fan-out, not yet fanned out
//                  (past it, the fan-out reads them back from PostgreSQL);
//   streams  L/32  records held for live streams: the hub's recent window (all of it) and the queues
//                  (half of it, all streams together and each one; past it a stream catches up from
//                  the window, then PostgreSQL, as it does past STREAM_BUFFER records; a queued record
//                  is also in the window, so the two overlap); stream database pages take their own
//                  L/64 (two 1 MiB pages at least) while read and encoded, and while kept for other streams;
//   watch    L/64  registry changes WatchRegistry keeps for its watchers, one log shared by all of
//                  them (past it, a watcher that is behind starts over from a fresh snapshot).
//   Each held byte costs more than one byte of memory (a message is also decoded into a row, its
//   context text, its COPY line and its wire record), which is why the queues get an eighth.
// - The rest is the process itself: code, libraries, sockets, buffers, and the headroom the garbage
//   collector needs. Measured peaks and the manifest's limit are in the README ("Memory").

const MiB = 1024 * 1024;

/** The limit assumed when neither MEMORY_LIMIT nor a container limit says otherwise: k8s/base's 512Mi. */
export const DEFAULT_MEMORY_LIMIT = 512 * MiB;
/** Below this the service cannot run its own code with any room for work. */
export const MIN_MEMORY_LIMIT = 128 * MiB;

export type MemoryLimitSource = 'MEMORY_LIMIT' | 'cgroup' | 'default';

export interface MemoryBudget {
  /** The memory the process may use, in bytes. */
  readonly limitBytes: number;
  /** Where limitBytes came from. */
  readonly source: MemoryLimitSource;
  /** V8's old generation limit (--max-old-space-size). */
  readonly heapBytes: number;
  /** V8's semi-space (--max-semi-space-size). */
  readonly semiSpaceBytes: number;
  /** Bytes of JetStream messages delivered and not yet acked or handed back (queue and batches). */
  readonly ingestBytes: number;
  /** Bytes of messages in one batch (one transaction). */
  readonly batchBytes: number;
  /** Bytes of committed rows handed to the live fan-out and not yet fanned out. */
  readonly handoverBytes: number;
  /** Bytes of records queued for live streams, all together (and so each stream's). */
  readonly streamBytes: number;
  /** Bytes of registry changes held for WatchRegistry's watchers, one log for all. */
  readonly watchBytes: number;
}

export interface MemoryInputs {
  /** MEMORY_LIMIT in bytes, when set. */
  readonly memoryLimit: number | undefined;
  /** INGEST_BATCH_BYTES, when set. */
  readonly batchBytes: number | undefined;
  /** process.constrainedMemory(): the cgroup limit, or 0 / a huge number when there is none. */
  readonly constrainedMemory: number | undefined;
  /** os.totalmem(): a "limit" at or above it is no limit. */
  readonly totalMemory: number;
}

/** Why a budget cannot be made; loadConfig turns it into a ConfigError naming the variable. */
export class MemoryBudgetError extends Error {
  override readonly name = 'MemoryBudgetError';
  constructor(
    readonly variable: 'MEMORY_LIMIT' | 'INGEST_BATCH_BYTES',
    message: string,
  ) {
    super(message);
  }
}

const floorMiB = (n: number): number => Math.max(MiB, Math.floor(n / MiB) * MiB);

/** The budget for a limit. Pure: the caller supplies what the platform reports. */
export function memoryBudget(inputs: MemoryInputs): MemoryBudget {
  let limitBytes: number;
  let source: MemoryLimitSource;
  const cgroup = inputs.constrainedMemory;
  if (inputs.memoryLimit !== undefined) {
    limitBytes = inputs.memoryLimit;
    source = 'MEMORY_LIMIT';
    if (limitBytes < MIN_MEMORY_LIMIT) {
      throw new MemoryBudgetError('MEMORY_LIMIT', `must be at least ${MIN_MEMORY_LIMIT / MiB}MiB (the process alone needs about 100 MiB)`);
    }
  } else if (cgroup !== undefined && cgroup > 0 && cgroup < inputs.totalMemory) {
    limitBytes = Math.max(cgroup, MIN_MEMORY_LIMIT);
    source = 'cgroup';
  } else {
    limitBytes = DEFAULT_MEMORY_LIMIT;
    source = 'default';
  }
  const ingestBytes = floorMiB(limitBytes / 32);
  let batchBytes = floorMiB(limitBytes / 64);
  if (inputs.batchBytes !== undefined) {
    if (inputs.batchBytes > ingestBytes / 2) {
      throw new MemoryBudgetError(
        'INGEST_BATCH_BYTES',
        `must be at most half of the ingest budget (${ingestBytes / 2 / MiB}MiB with a memory limit of ${limitBytes / MiB}MiB), so one batch can commit while the next fills: raise MEMORY_LIMIT or lower it`,
      );
    }
    batchBytes = inputs.batchBytes;
  }
  return {
    limitBytes,
    source,
    heapBytes: floorMiB(limitBytes / 2),
    semiSpaceBytes: Math.min(16 * MiB, floorMiB(limitBytes / 32)),
    ingestBytes,
    batchBytes,
    handoverBytes: floorMiB(limitBytes / 32),
    streamBytes: floorMiB(limitBytes / 32),
    watchBytes: floorMiB(limitBytes / 64),
  };
}

/** The V8 flags that put the budget's heap limits into effect (in MiB, as V8 takes them). */
export function v8FlagsFor(b: MemoryBudget): string[] {
  return [`--max-old-space-size=${Math.floor(b.heapBytes / MiB)}`, `--max-semi-space-size=${Math.floor(b.semiSpaceBytes / MiB)}`];
}

/**
 * glibc malloc settings `serve` runs with unless the environment sets them (src/cli/v8-limits.ts puts
 * them into the environment of the process it re-executes; glibc reads them at start). Buffers -
 * NATS messages, COPY text, encoded records, HTTP/2 frames - live outside V8's heap in malloc'd
 * memory, and with glibc's defaults (up to 8 arenas per core, and a threshold for mmap that rises to
 * the size of the largest buffer freed, so 512 KiB tool results end up in the arenas) freed memory
 * stays in the process: 1,000 x 512 KiB with 10 tails peaked at 338 MiB RSS with the defaults and
 * 267 MiB with these (same run, test/fault/large-messages.test.ts's scenario). Two arenas; every buffer
 * of 64 KiB or more its own mapping, returned to the system when freed. The threshold is 64 KiB, not
 * 128, because every socket read is a 64 KiB buffer (libuv's read size): at 128 KiB the reads of
 * PostgreSQL pages and NATS messages went to the main arena, which kept its high-water mark (76 MiB
 * of [heap] after a full collection at a peak of the 10-tail run under load, 27 MiB at 64 KiB), and the
 * peak was 15-30 MB higher (bench/README.md, issue 13 fourth pass). The price: a mapping, its page
 * faults and an munmap per read, ~35 µs per 64 KiB read (a local socket drained at 1 GiB/s), under 1 %
 * of ingest's CPU per 1 KiB event. Other C libraries (musl) ignore them.
 */
export const MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '65536' };

/**
 * Buffer.poolSize for `serve` (Node's default: 64 KiB). Buffer.allocUnsafe() of less than half the pool
 * size takes a slice of a shared pool, and a pool of 64 KiB is itself a malloc of 64 KiB: with
 * MALLOC_MMAP_THRESHOLD_=65536 every pool became its own mapping, so every 64 KiB of small buffers -
 * each gRPC response frame grpc-js copies, each encoded StreamLogs response, NATS and pg writes - paid
 * an mmap, 16 page faults on first touch and an munmap when the collector freed it. Measured on the
 * bench host (2 vCPUs), Buffer.allocUnsafe + copy of 600 bytes: 2-5 µs at a 64 KiB pool against
 * 0.2-0.4 µs at 8-60 KiB; in the fan-out phase's profile (1,000 tails) grpc-js's copy of each response
 * into its frame was 6 % of the service's time and the collector (which unmaps) 18 %. A 32 KiB pool
 * stays below the threshold (socket reads of 64 KiB keep their own mappings); buffers of 16-32 KiB
 * then come from the arena directly.
 */
export const BUFFER_POOL_BYTES = 32 * 1024;

/** The MALLOC_ENV settings `env` does not set yet. */
export function mallocEnvToAdd(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(MALLOC_ENV)) if (env[k] === undefined) out[k] = v;
  return out;
}

/** V8 heap-size flags an operator may set themselves (then theirs win). */
export const V8_HEAP_FLAGS = ['--max-old-space-size', '--max-semi-space-size'] as const;

/**
 * The budget's flags for the heap limits the operator left unset: each limit the operator gave (on the
 * command line or in NODE_OPTIONS) is theirs, each other one stays the budget's. Setting only the
 * semi-space must not drop the old-space limit, or the heap could outgrow the container.
 */
export function heapFlagsToAdd(wanted: readonly string[], given: readonly string[]): string[] {
  const set = new Set(given.map(heapFlagName));
  return wanted.filter((f) => !set.has(heapFlagName(f)));
}

function heapFlagName(option: string): string {
  return option.split('=')[0]!.replace(/_/g, '-');
}

/** The heap-size flags among these node options (`--flag=value` or `--flag value`; `_` and `-` alike). */
export function heapFlagsIn(options: readonly string[]): string[] {
  return options.filter((o) => {
    return (V8_HEAP_FLAGS as readonly string[]).includes(heapFlagName(o));
  });
}
