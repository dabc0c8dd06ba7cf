// The built service as a child process (test/e2e, test/fault): `node dist/src/cli.js serve` with an
// explicit environment, free ports, and its pino JSON output captured for assertions.
import type { ChildProcess } from 'node:child_process';
import { spawnWatched } from './child.js';
import { freePort, type NatsNames } from './nats.js';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'dist', 'src', 'cli.js');

export { freePort };

/**
 * Service environment isolated on shared servers: one database, a unique stream/consumer/subject
 * prefix, a short batch wait. ACK_WAIT and every other setting keep the production default unless a
 * test says otherwise.
 */
export function serviceEnv(dbEnv: Record<string, string>, natsUrl: string, names: NatsNames, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...dbEnv,
    LOG_LEVEL: 'info',
    NATS_URL: natsUrl,
    STREAM_NAME: names.stream,
    CONSUMER_NAME: names.consumer,
    NATS_SUBJECTS: `${names.prefix}.>`,
    LOG_ENTRY_SUBJECTS: `${names.prefix}.log.>`,
    NATS_EXCLUDE_SUBJECTS: `${names.prefix}.council.*.request`,
    INGEST_BATCH_WAIT: '20ms',
    ...extra,
  };
}

export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly grpcAddress: string;
  readonly httpBase: string;
  /** Every stdout+stderr line so far. */
  readonly output: string[];
  /** Parsed pino lines so far. */
  logs(): Record<string, unknown>[];
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
  kill(): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  env: Record<string, string>;
  /** Wait for the "mycelis-memory started" log line (default true). */
  waitReady?: boolean;
  timeoutMs?: number;
  args?: string[];
  cwd?: string;
}

export async function startService(opts: StartOptions): Promise<ServiceProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run npm run build first`);
  const grpcPort = opts.env['GRPC_PORT'] ? Number(opts.env['GRPC_PORT']) : await freePort();
  const httpPort = opts.env['HTTP_PORT'] ? Number(opts.env['HTTP_PORT']) : await freePort();
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    HOME: process.env['HOME'] ?? '/tmp',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    GRPC_PORT: String(grpcPort),
    HTTP_PORT: String(httpPort),
    ...opts.env,
  };
  const watched = spawnWatched(process.execPath, [CLI, ...(opts.args ?? ['serve'])], {
    env,
    cwd: opts.cwd ?? ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const child = watched.child;
  const output: string[] = [];
  const parsed: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  const onData = (buf: Buffer, carry: { rest: string }): void => {
    const text = carry.rest + buf.toString('utf8');
    const lines = text.split('\n');
    carry.rest = lines.pop() ?? '';
    for (const line of lines) {
      output.push(line);
      if (line.startsWith('{')) {
        try {
          parsed.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          /* not JSON */
        }
      }
    }
    for (const w of waiters) w();
  };
  const outCarry = { rest: '' };
  const errCarry = { rest: '' };
  child.stdout!.on('data', (b: Buffer) => onData(b, outCarry));
  child.stderr!.on('data', (b: Buffer) => onData(b, errCarry));
  // Settles on exit, and at once when the process could not be started (see helpers/child.ts).
  const exited = watched.exited.then(({ code, signal, error }) => {
    if (error) output.push(error.message);
    for (const w of waiters) w();
    return { code, signal };
  });
  let exitedYet = false;
  void exited.then(() => {
    exitedYet = true;
  });

  const waitForLog = (predicate: (l: Record<string, unknown>) => boolean, timeoutMs = 60_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = (): boolean => {
        const hit = parsed.find(predicate);
        if (hit) {
          cleanup();
          resolve(hit);
          return true;
        }
        if (exitedYet) {
          cleanup();
          reject(new Error(`service exited before the expected log line; output:\n${output.slice(-30).join('\n')}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for a log line; output:\n${output.slice(-30).join('\n')}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(listener);
      };
      const listener = (): void => {
        check();
      };
      waiters.add(listener);
      check();
    });

  const svc: ServiceProcess = {
    child,
    grpcPort,
    httpPort,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    httpBase: `http://127.0.0.1:${httpPort}`,
    output,
    logs: () => parsed,
    waitForLog,
    exited,
    async stop(timeoutMs = 30_000) {
      if (exitedYet) return (await exited).code;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(t);
      return r.code;
    },
    async kill() {
      if (exitedYet) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
  await watched.started; // a child that cannot start fails here, with the reason
  if (opts.waitReady !== false) {
    try {
      await waitForLog((l) => l['msg'] === 'mycelis-memory started', opts.timeoutMs ?? 60_000);
    } catch (err) {
      await svc.kill();
      throw err;
    }
  }
  return svc;
}
