// NATS isolation for tests.
// - Quick tests on the shared NATS (127.0.0.1:4222): a unique stream name and subject prefix per test
//   (uniqueNatsNames), and the stream deleted afterwards (deleteStreamQuietly). Never a stream over
//   plain `swarm.>` on the shared server.
// - Tests that stop/restart NATS or need `swarm.>` itself: startPrivateNats() runs a private
//   nats-server with JetStream on a free port and a temp store dir; stop()/start() keep both, so
//   streams survive a restart; destroy() kills it and removes the directory. Register destroy() in
//   an `after` hook so it runs also when the test fails.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from 'nats';
import { spawnWatched, type WatchedChild } from './child.js';

export const SHARED_NATS_URL = 'nats://127.0.0.1:4222';

export interface NatsNames {
  /** Stream name (letters, digits, _). */
  readonly stream: string;
  /** Durable consumer name. */
  readonly consumer: string;
  /** Subject prefix token, e.g. "t3fa9c1"; subjects are `${prefix}.…`, the capture pattern `${prefix}.>`. */
  readonly prefix: string;
}

export function uniqueNatsNames(label: string): NatsNames {
  const hex = randomBytes(4).toString('hex');
  const clean = label.replace(/[^A-Za-z0-9]/g, '_').slice(0, 30);
  return { stream: `T_${clean}_${hex}`, consumer: `c_${clean}_${hex}`, prefix: `t${hex}` };
}

/** A test's teardown: its private stream deleted (if the connection was made), then the connection closed. */
export async function dropStreamAndClose(nc: NatsConnection | undefined, stream: string): Promise<void> {
  if (!nc) return;
  await deleteStreamQuietly(nc, stream);
  await nc.close();
}

export async function deleteStreamQuietly(nc: NatsConnection, stream: string): Promise<void> {
  try {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.delete(stream);
  } catch {
    // already gone
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface PrivateNats {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s); the store dir is kept. */
  stop(): Promise<void>;
  /** Starts it again on the same port and store dir; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it and removes the store dir. Idempotent. */
  destroy(): Promise<void>;
}

// Last resort if a test process exits without its after-hook: kill the servers, remove their dirs.
const live = new Map<PrivateNats, () => void>();
process.once('exit', () => {
  for (const killSync of live.values()) killSync();
});

export async function startPrivateNats(): Promise<PrivateNats> {
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), 'mm-nats-'));
  let child: WatchedChild | null = null;
  let destroyed = false;

  const start = async (): Promise<void> => {
    if (child) return;
    const c = spawnWatched('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    c.child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    child = c;
    void c.exited.then(() => {
      if (child === c) child = null;
    });
    await c.started; // not installed, not executable: fail now, with the reason
    const deadline = Date.now() + 20_000;
    while (!(await canConnect(port))) {
      if (child !== c) throw new Error(`private nats-server exited during start: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`private nats-server did not listen on ${port}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (!c) return;
    c.child.kill('SIGTERM');
    const t = setTimeout(() => c.child.kill('SIGKILL'), 5000);
    await c.exited;
    clearTimeout(t);
    child = null;
  };

  const handle: PrivateNats = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    stop,
    start,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      live.delete(handle);
      await stop();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
  live.set(handle, () => {
    child?.child.kill('SIGKILL');
    rmSync(storeDir, { recursive: true, force: true });
  });
  try {
    await start();
  } catch (err) {
    await handle.destroy();
    throw err;
  }
  return handle;
}
