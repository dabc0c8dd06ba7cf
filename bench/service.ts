// The built service as a child process for the benchmark: like test/helpers/service.ts, plus node
// flags (--cpu-prof cannot go through NODE_OPTIONS).
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnWatched } from '../test/helpers/child.js';
import { freePort, ROOT } from '../test/helpers/service.js';

/** What the service's start line reports about its runtime (src/main.ts runtime()). */
export interface ServiceRuntime {
  node: string;
  v8: string;
  execArgv: string[];
  heapLimitMiB: number;
}

export interface BenchService {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly output: string[];
  /** The Node.js release, V8 flags and heap limit the service reported at start. */
  readonly runtime: ServiceRuntime | undefined;
  /** Selected samples from the service's /metrics (name{labels} -> value), for the results JSON. */
  metrics(names: readonly string[]): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export async function startBenchService(
  env: Record<string, string>,
  nodeFlags: string[] = [],
  timeoutMs = 60_000,
  cli = join(ROOT, 'dist', 'src', 'cli.js'),
  node = process.execPath,
): Promise<BenchService> {
  if (!existsSync(cli)) throw new Error(`${cli} missing: run npm run build first`);
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const watched = spawnWatched(node, [...nodeFlags, cli, 'serve'], {
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', HOST: '127.0.0.1', GRPC_PORT: String(grpcPort), HTTP_PORT: String(httpPort), ...env },
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const child = watched.child;
  const output: string[] = [];
  let started = false;
  let runtime: ServiceRuntime | undefined;
  let onLine: (() => void) | null = null;
  const take = (b: Buffer): void => {
    for (const line of b.toString('utf8').split('\n')) {
      if (line === '') continue;
      output.push(line);
      if (output.length > 200) output.shift();
      if (line.includes('"mycelis-memory started"')) {
        started = true;
        try {
          runtime = (JSON.parse(line) as { runtime?: ServiceRuntime }).runtime;
        } catch {
          /* not JSON: leave it unknown */
        }
      }
    }
    onLine?.();
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = watched.exited.then(({ error }) => {
    if (error) output.push(error.message);
  });
  let gone = false;
  void exited.then(() => {
    gone = true;
    onLine?.();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => done(new Error('service did not start in time')), timeoutMs);
    const done = (err?: Error): void => {
      clearTimeout(timer);
      onLine = null;
      if (err) {
        child.kill('SIGKILL');
        reject(new Error(`${err.message}; output:\n${output.slice(-20).join('\n')}`));
      } else resolve();
    };
    onLine = () => {
      if (started) done();
      else if (gone) done(new Error('service exited during start'));
    };
    onLine();
  });
  return {
    child,
    pid: child.pid!,
    grpcPort,
    httpPort,
    output,
    runtime,
    async metrics(names) {
      const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const line of text.split('\n')) {
        if (line.startsWith('#')) continue;
        const sp = line.lastIndexOf(' ');
        const key = line.slice(0, sp);
        if (names.some((n) => key === n || key.startsWith(`${n}{`))) out[key] = Number(line.slice(sp + 1));
      }
      return out;
    },
    async stop() {
      if (gone) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    },
  };
}
