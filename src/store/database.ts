// Opens the store: a pg.Pool on PostgreSQL, or the embedded PGlite fallback served to the same `pg`
// code through @electric-sql/pglite-socket (DESIGN 5; STACK.md "PGlite as the embedded default").
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import pg from 'pg';
import type { Extensions, PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import type { DatabaseConfig } from '../config/config.js';
import type { Logger } from '../logger.js';
import { StoreError, StoreLockedError } from './errors.js';

export interface Database {
  readonly kind: 'postgres' | 'embedded';
  readonly pool: pg.Pool;
  /** Connection string for dedicated connections (LISTEN) in postgres mode. Contains the password. */
  readonly url: string;
  close(): Promise<void>;
}

/** Server-side limits every pooled session gets: a stuck statement or transaction never holds forever. */
const STATEMENT_TIMEOUT_MS = 120_000;
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 120_000;

export async function openDatabase(cfg: DatabaseConfig, logger: Logger): Promise<Database> {
  const log = logger.child({ component: 'database' });
  return cfg.kind === 'embedded' ? openEmbedded(cfg, log) : openPostgres(cfg, log);
}

async function openPostgres(cfg: DatabaseConfig, log: Logger): Promise<Database> {
  const pool = new pg.Pool({
    connectionString: cfg.url,
    max: cfg.poolMax,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'mycelis-memory',
    statement_timeout: STATEMENT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
  });
  // An idle client losing its connection (server restart) must not crash the process; the pool drops it.
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle database connection failed'));
  // pg-pool removes its idle listener while a client is checked out: a connection that dies between two
  // queries of its holder (PostgreSQL shutting down sends FATAL 57P01 to every backend) would emit an
  // unhandled 'error' and crash the process. The holder sees the failure on its next query instead.
  pool.on('connect', (client) => {
    client.on('error', (err) => log.debug({ err: err.message }, 'database connection failed while checked out'));
  });
  log.info({ url: cfg.redactedUrl, poolMax: cfg.poolMax }, 'PostgreSQL store');
  let closed = false;
  return {
    kind: 'postgres',
    pool,
    url: cfg.url,
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}

// ---- embedded -----------------------------------------------------------------------------------

const LOCK_FILE = 'memory.lock';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the exclusive lock file of the data directory: created with O_EXCL holding our pid. Two
 * processes on one PGlite directory lose committed rows (STACK.md), so a live holder is a hard error;
 * a lock left by a dead process is taken over.
 */
function acquireLock(dir: string, log: Logger): () => void {
  const path = join(dir, LOCK_FILE);
  for (let i = 0; i < 3; i++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StoreError(`cannot create lock file ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    let holder = NaN;
    try {
      holder = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    } catch {
      continue; // removed meanwhile: try again
    }
    if (Number.isInteger(holder) && holder > 0 && pidAlive(holder)) throw new StoreLockedError(dir, holder);
    log.warn({ lockFile: path, stalePid: Number.isNaN(holder) ? null : holder }, 'taking over a stale embedded store lock');
    try {
      unlinkSync(path);
    } catch {
      /* raced with another taker: the O_EXCL create decides */
    }
  }
  throw new StoreError(`could not acquire lock file ${path}`);
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Extensions loaded at every open (a database that once had an extension needs it again). */
async function embeddedExtensions(log: Logger): Promise<Extensions> {
  const extensions: Record<string, Extensions[string]> = {};
  const { pg_trgm } = await import('@electric-sql/pglite/contrib/pg_trgm');
  extensions['pg_trgm'] = pg_trgm;
  try {
    // Optional: present when @electric-sql/pglite-pgvector is installed; otherwise 001 warns and skips it.
    const mod = (await import('@electric-sql/pglite-pgvector' as string)) as { vector?: Extensions[string] };
    if (mod.vector) extensions['vector'] = mod.vector;
  } catch {
    log.warn('@electric-sql/pglite-pgvector is not installed: the embedded store runs without pgvector');
  }
  return extensions;
}

async function openEmbedded(cfg: DatabaseConfig, log: Logger): Promise<Database> {
  const dir = resolve(cfg.embeddedDataDir);
  mkdirSync(dir, { recursive: true });
  const release = acquireLock(dir, log);
  log.warn(
    { dataDir: dir },
    `embedded PGlite store at ${dir}: single process, not for production; set DATABASE_URL for PostgreSQL`,
  );
  const opened: { db?: PGlite; server?: PGLiteSocketServer } = {};
  try {
    const { PGlite: PGliteClass } = await import('@electric-sql/pglite');
    const { PGLiteSocketServer: ServerClass } = await import('@electric-sql/pglite-socket');
    const extensions = await embeddedExtensions(log);
    const db: PGlite = await PGliteClass.create({ dataDir: join(dir, 'pgdata'), extensions });
    const port = await freePort();
    // maxConnections above the pool size: pg-pool reconnects before the old socket is released.
    opened.db = db;
    const server = new ServerClass({ db, host: '127.0.0.1', port, maxConnections: 4 });
    opened.server = server;
    await server.start();
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    // One connection: all socket connections share PGlite's single backend session (STACK.md).
    const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 10_000 });
    pool.on('error', (err) => log.warn({ err: err.message }, 'embedded store connection failed'));
    const theDb = db;
    const theServer = server;
    let closed = false;
    return {
      kind: 'embedded',
      pool,
      url,
      // Order matters (STACK.md): clients -> pool -> socket server -> database; the caller stopped work.
      async close() {
        if (closed) return;
        closed = true;
        try {
          await pool.end();
          await theServer.stop();
          await theDb.close();
        } finally {
          release();
        }
      },
    };
  } catch (err) {
    await opened.server?.stop().catch(() => undefined);
    await opened.db?.close().catch(() => undefined);
    release();
    throw new StoreError(`cannot open the embedded store at ${dir}: ${(err as Error).message}`, { cause: err });
  }
}
