// Child processes that cannot hang a test run. A spawn that fails (ENOENT, EACCES: a missing binary,
// a missing cwd, a node binary the image's user may not read) emits 'error' and 'close' but never
// 'exit', so code awaiting 'exit' alone waits forever. Here both outcomes settle one promise, and a
// child that could not start is an Error naming what was run, as whom, and why, within milliseconds.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process never started (code and signal are then null). */
  error?: Error;
}

export interface WatchedChild {
  readonly child: ChildProcess;
  /** Resolves once the process is running; rejects, with the reason, when it could not be started. */
  readonly started: Promise<void>;
  /** Resolves when the process has exited, or at once when it never started: never hangs. */
  readonly exited: Promise<ChildExit>;
  /** Whether `exited` has resolved. */
  done(): boolean;
}

/** What a spawn was asked to do, for error messages: the command line, the cwd and the user. */
export function describeSpawn(command: string, args: readonly string[], options: SpawnOptions = {}): string {
  const who = options.uid !== undefined ? ` as uid ${options.uid}${options.gid !== undefined ? `:${options.gid}` : ''}` : '';
  const where = options.cwd ? ` in ${String(options.cwd)}` : '';
  return `${[command, ...args].join(' ')}${where}${who}`;
}

/** Watches an already spawned child (see spawnWatched). */
export function watchChild(child: ChildProcess, what: string): WatchedChild {
  let finished = false;
  let spawnError: Error | undefined;
  const started = new Promise<void>((resolve, reject) => {
    if (child.pid !== undefined) resolve();
    else child.once('spawn', () => resolve());
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return; // a later error (e.g. a failed kill) is not a start failure
      const hint = err.code === 'EACCES' ? ' (permission denied: this user may not execute the binary or enter a directory on its path or the cwd)' : '';
      spawnError = new Error(`could not start ${what}: ${err.message}${hint}`, { cause: err });
      reject(spawnError);
    });
  });
  started.catch(() => undefined); // the rejection is for whoever awaits started; exited reports it too
  const exited = new Promise<ChildExit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // After a failed spawn only 'close' comes (exitCode is then the negative errno).
    child.once('close', () => resolve(spawnError ? { code: null, signal: null, error: spawnError } : { code: child.exitCode, signal: child.signalCode }));
    started.catch((error: Error) => resolve({ code: null, signal: null, error }));
  });
  void exited.then(() => (finished = true));
  return { child, started, exited, done: () => finished };
}

/** spawn() whose failure to start is reported, never awaited forever. */
export function spawnWatched(command: string, args: readonly string[], options: SpawnOptions = {}): WatchedChild {
  return watchChild(spawn(command, args, options), describeSpawn(command, args, options));
}
