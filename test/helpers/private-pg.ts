// A PRIVATE PostgreSQL 15 cluster for tests that stop, restart or slow the server, or need a different
// auth method (STACK.md: never stop the shared one). initdb in a temp dir (as user postgres via runuser
// when running as root, which initdb refuses), pg_ctl start on a free port with its socket in the same
// dir. Always cleaned up: destroy() in the test's after(), and a process 'exit' hook as a last resort.
import { spawnSync, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = '/usr/lib/postgresql/15/bin';

export interface PrivatePostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres (TCP; with hostAuth scram, add a password). */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Superuser connection over the unix socket (always trust), for setup such as CREATE ROLE. */
  readonly adminConfig: { host: string; port: number; user: string; database: string };
  /** Same cluster, database `name`, over TCP as `user` (password optional, URL-encoded). */
  urlFor(database: string, user?: string, password?: string): string;
  /** Fast shutdown (connected clients see 57P01 / connection loss). */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops (immediate) and removes the data directory. Idempotent. */
  destroy(): Promise<void>;
}

export interface PrivatePostgresOptions {
  /** Auth for TCP connections: 'trust' (default) or 'scram-sha-256'. The unix socket is always trust. */
  hostAuth?: 'trust' | 'scram-sha-256';
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function run(args: string[]): void {
  const [cmd, ...rest] = args;
  const full = isRoot ? ['runuser', '-u', 'postgres', '--', `${BIN}/${cmd!}`, ...rest] : [`${BIN}/${cmd!}`, ...rest];
  const r = spawnSync(full[0]!, full.slice(1), { encoding: 'utf8', cwd: tmpdir() });
  if (r.status !== 0) {
    throw new Error(`${full.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  }
}

const live = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const dir of live) {
      try {
        const cmd = isRoot
          ? ['runuser', '-u', 'postgres', '--', `${BIN}/pg_ctl`, '-D', dir, '-m', 'immediate', 'stop']
          : [`${BIN}/pg_ctl`, '-D', dir, '-m', 'immediate', 'stop'];
        spawnSync(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
      } catch {
        /* best effort */
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

export async function startPrivatePostgres(opts: PrivatePostgresOptions = {}): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'mm-pg-'));
  live.add(dir);
  installExitHook();
  let started = false;
  const port = await freePort();
  const destroy = async (): Promise<void> => {
    if (!live.has(dir)) return;
    live.delete(dir);
    if (started) {
      try {
        run(['pg_ctl', '-D', dir, '-m', 'immediate', '-w', 'stop']);
      } catch {
        /* already stopped */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (isRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
    }
    chmodSync(dir, 0o700);
    run(['initdb', '-D', dir, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
    if (opts.hostAuth === 'scram-sha-256') {
      // Replace the host lines: TCP needs a password; the socket stays trust for setup.
      writeFileSync(
        join(dir, 'pg_hba.conf'),
        'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n',
      );
    }
    appendFileSync(
      join(dir, 'postgresql.conf'),
      `\nport = ${port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${dir}'\nfsync = off\n` +
        `shared_buffers = 16MB\nmax_connections = 40\npassword_encryption = 'scram-sha-256'\n`,
    );
    const start = async (): Promise<void> => {
      run(['pg_ctl', '-D', dir, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
      started = true;
    };
    await start();
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      port,
      dataDir: dir,
      adminConfig: { host: dir, port, user: 'postgres', database: 'postgres' },
      urlFor(database, user = 'postgres', password) {
        const auth = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
        return `postgres://${auth}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
      },
      async stop() {
        run(['pg_ctl', '-D', dir, '-m', 'fast', '-w', '-t', '60', 'stop']);
      },
      start,
      destroy,
    };
  } catch (err) {
    await destroy();
    throw err;
  }
}
