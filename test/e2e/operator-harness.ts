// Shared by the operator e2e tests (cli-*, page-*): the built service as a child process on a fresh
// database and a unique stream/subject prefix on the shared NATS, the publish command, direct reads
// of what was committed, and long-running CLI children (tail, registry --watch) read line by line.
import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import { connect } from 'nats';
import { CLI, ROOT, freePort, serviceEnv, startService, type ServiceProcess } from '../helpers/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, deleteStreamQuietly, uniqueNatsNames, type NatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { spawnWatched } from '../helpers/child.js';

export interface Stack {
  readonly db: TestDatabase;
  readonly names: NatsNames;
  readonly pool: pg.Pool;
  svc: ServiceProcess;
  readonly grpcAddr: string;
  readonly httpBase: string;
  /** Publishes `count` generated messages under the test's prefix; resolves when the publisher exits 0. */
  publish(count: number, seed: number, agents?: number, mix?: 'protobuf' | 'current'): Promise<void>;
  /** Committed rows, in seq order. */
  rows(where?: string, params?: unknown[]): Promise<{ id: string; seq: string; source: string; team_id: string; level: string }[]>;
  /** Waits until at least `n` rows are committed. */
  waitRows(n: number): Promise<void>;
  /** SIGTERM the service and start it again on the same ports, database and stream. */
  restart(): Promise<void>;
  stopService(): Promise<void>;
  startService(): Promise<void>;
  close(): Promise<void>;
}

export async function startStack(label: string, extraEnv: Record<string, string> = {}): Promise<Stack> {
  const db = await createTestDatabase(label);
  const names = uniqueNatsNames(label);
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const env = serviceEnv(db.env, SHARED_NATS_URL, names, {
    GRPC_PORT: String(grpcPort),
    HTTP_PORT: String(httpPort),
    ...extraEnv,
  });
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  let svc = await startService({ env });
  const stack: Stack = {
    db,
    names,
    pool,
    get svc() {
      return svc;
    },
    set svc(s) {
      svc = s;
    },
    grpcAddr: `127.0.0.1:${grpcPort}`,
    httpBase: `http://127.0.0.1:${httpPort}`,
    async publish(count, seed, agents = 6, mix = 'protobuf') {
      const r = await runCliOnce(['publish', '--subject-prefix', names.prefix, '-n', String(count), '--seed', String(seed), '--agents', String(agents), '--teams', '2', '--mix', mix, '-q'], {
        NATS_URL: SHARED_NATS_URL,
      });
      if (r.code !== 0) throw new Error(`publish exited ${r.code}: ${r.stderr}`);
    },
    async rows(where = 'true', params = []) {
      const r = await pool.query(`select id::text, seq::text, source, team_id, level from log_entries where ${where} order by log_entries.seq`, params);
      return r.rows;
    },
    async waitRows(n) {
      await waitFor(`${n} committed rows`, async () => {
        const r = await pool.query<{ n: string }>('select count(*)::text as n from log_entries');
        return Number(r.rows[0]!.n) >= n;
      }, { timeoutMs: 60_000 });
    },
    async stopService() {
      const code = await svc.stop();
      if (code !== 0) throw new Error(`service exited ${code} on SIGTERM:\n${svc.output.slice(-20).join('\n')}`);
    },
    async startService() {
      svc = await startService({ env });
    },
    async restart() {
      await stack.stopService();
      await stack.startService();
    },
    async close() {
      await svc.kill().catch(() => undefined);
      const nc = await connect({ servers: SHARED_NATS_URL });
      await deleteStreamQuietly(nc, names.stream);
      await nc.close();
      await pool.end();
      await db.drop();
    },
  };
  return stack;
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const BASE_ENV = (): Record<string, string> => ({ PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', LOG_LEVEL: 'warn' });

/** The built CLI, run to completion. */
export function runCliOnce(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const { child, exited } = spawnWatched(process.execPath, [CLI, ...args], { env: { ...BASE_ENV(), ...env }, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mycelis-memory ${args.join(' ')} timed out; stdout: ${stdout.slice(-2000)} stderr: ${stderr.slice(-2000)}`));
    }, timeoutMs);
    void exited.then(({ code, signal, error }) => {
      clearTimeout(t);
      if (error) reject(error);
      else resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface CliChild {
  readonly child: ChildProcess;
  /** Complete stdout lines so far. */
  readonly lines: string[];
  stderr(): string;
  waitForLines(n: number, timeoutMs?: number): Promise<string[]>;
  waitForStderr(re: RegExp, timeoutMs?: number): Promise<void>;
  /** Sends a signal (default SIGINT) and resolves with the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The built CLI as a long-running child (tail, registry --watch). */
export function spawnCli(args: string[], env: Record<string, string> = {}): CliChild {
  const watched = spawnWatched(process.execPath, [CLI, ...args], { env: { ...BASE_ENV(), ...env }, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const child = watched.child;
  const lines: string[] = [];
  let rest = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // Settles on exit, or at once when the CLI could not be started (its reason then reads as stderr).
  const exited = watched.exited.then(({ code, signal, error }) => {
    if (error) err += error.message;
    return { code, signal };
  });
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    lines,
    stderr: () => err,
    async waitForLines(n, timeoutMs = 60_000) {
      await waitFor(`${n} lines from mycelis-memory ${args[0]} (have ${lines.length}; stderr: ${err.slice(-500)})`, () => lines.length >= n || (done ? Promise.reject(new Error(`exited; stderr: ${err}`)) : false), { timeoutMs });
      return lines;
    },
    async waitForStderr(re, timeoutMs = 60_000) {
      await waitFor(`stderr matching ${re} (stderr: ${err.slice(-500)})`, () => re.test(err), { timeoutMs });
    },
    async stop(signal = 'SIGINT') {
      if (!done) child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}
