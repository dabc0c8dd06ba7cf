// Puts the memory budget's V8 limits into effect for `serve` (src/config/memory-budget.ts says why).
//
// V8 sizes its heap once, when the process starts; a flag set later is ignored. So when the process
// was started without them, it replaces itself (process.execve: same PID, same environment, same
// arguments, nothing run yet but config parsing) with the same command plus the budget's flags.
// A limit the operator gave (on the node command line or in NODE_OPTIONS) wins and is kept as given;
// the budget still sets every limit the operator left unset. The same re-execution puts the glibc
// malloc settings of MALLOC_ENV into the environment where it does not set them (glibc, too, reads
// them only at start).
import v8 from 'node:v8';
import type { Config } from '../config/config.js';
import { heapFlagsIn, heapFlagsToAdd, MALLOC_ENV, mallocEnvToAdd, v8FlagsFor } from '../config/memory-budget.js';

export type V8LimitsSource = 'budget' | 'operator' | 'not applied';

export interface V8Limits {
  readonly source: V8LimitsSource;
  /** The heap-size flags in effect (command line and NODE_OPTIONS). */
  readonly flags: readonly string[];
  /** What V8 reports as its heap limit (old generation, young generation and large objects). */
  readonly heapSizeLimitBytes: number;
  /** Why the budget's flags are not in effect (source 'not applied'). */
  readonly reason?: string;
  /** The MALLOC_ENV variables as the process runs with them (unset: glibc's defaults). */
  readonly malloc: Readonly<Record<string, string | undefined>>;
}

function mallocInEffect(): Record<string, string | undefined> {
  return Object.fromEntries(Object.keys(MALLOC_ENV).map((k) => [k, process.env[k]]));
}

/**
 * Re-executes the process with the budget's V8 flags for the limits nobody set (does not return then).
 * Otherwise returns what is in effect, for the start-up log and /metrics.
 */
export function applyV8Limits(config: Config): V8Limits {
  const wanted = v8FlagsFor(config.memory);
  const onCommandLine = heapFlagsIn(process.execArgv);
  const given = [...onCommandLine, ...config.nodeOptionsHeapFlags];
  const heapSizeLimitBytes = v8.getHeapStatistics().heap_size_limit;
  const missing = heapFlagsToAdd(wanted, given);
  const mallocMissing = mallocEnvToAdd(process.env);
  if (missing.length === 0 && Object.keys(mallocMissing).length === 0) {
    // Either this is the re-executed process (the budget's flags on its command line) or the operator set every limit.
    const ours = config.nodeOptionsHeapFlags.length === 0 && onCommandLine.every((f) => wanted.includes(f));
    return { source: ours ? 'budget' : 'operator', flags: given, heapSizeLimitBytes, malloc: mallocInEffect() };
  }
  // Node >= 22.15 / 23.11 (not yet in the @types/node this project compiles against).
  const execve = (process as NodeJS.Process & { execve?: (file: string, args: readonly string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof execve !== 'function') {
    return { source: 'not applied', flags: [], heapSizeLimitBytes, reason: `process.execve is not available on Node ${process.version}`, malloc: mallocInEffect() };
  }
  try {
    execve.call(process, process.execPath, [process.execPath, ...process.execArgv, ...missing, ...process.argv.slice(1)], { ...process.env, ...mallocMissing });
  } catch (err) {
    // e.g. ERR_FEATURE_UNAVAILABLE_ON_PLATFORM: run with V8's defaults and say so.
    return { source: 'not applied', flags: [], heapSizeLimitBytes, reason: (err as Error).message, malloc: mallocInEffect() };
  }
  // process.execve does not return on success.
  throw new Error('process.execve returned');
}
