// Forward-only SQL migrations (DESIGN 5): files migrations/NNN_*.sql applied in name order, each in its
// own transaction, tracked in schema_migrations with a sha256 checksum. The whole run holds a session
// advisory lock, so replicas starting together apply each file exactly once (the second waits, then
// finds nothing pending). A file changed after it was applied is an error naming it.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { MigrationError, StoreError } from './errors.js';

/** pg_advisory_lock key of the migration run ('mig1'); distinct from the writer's commit lock. */
const MIGRATION_LOCK_KEY = 0x6d696731;

/** Finds migrations/ walking up from this module: src/store (tsx) and dist/src/store (built) both work. */
export function migrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'migrations');
    if (existsSync(join(candidate, '001_init_memory.sql'))) return candidate;
    dir = dirname(dir);
  }
  throw new StoreError(`migrations directory not found above ${dirname(fileURLToPath(import.meta.url))}`);
}

export interface MigrationFile {
  readonly version: string;
  readonly file: string;
  readonly sql: string;
  readonly checksum: string;
}

export function listMigrations(dir = migrationsDir()): MigrationFile[] {
  return readdirSync(dir)
    .filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const sql = readFileSync(join(dir, file), 'utf8');
      return {
        version: file.replace(/\.sql$/, ''),
        file,
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    });
}

export async function migrate(pool: pg.Pool, logger: Logger, dir?: string): Promise<{ applied: string[] }> {
  const log = logger.child({ component: 'migrate' });
  const files = listMigrations(dir);
  const client = await pool.connect();
  // RAISE WARNING (e.g. "no pgvector") arrives as a notice: surface it in our logs.
  const onNotice = (n: { severity?: string; message?: string }): void => {
    if (n.severity === 'WARNING') log.warn({ notice: n.message }, 'migration warning');
  };
  client.on('notice', onNotice);
  let broken: Error | undefined;
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (
           version text PRIMARY KEY, checksum text, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ version: string; checksum: string | null }>(
        'SELECT version, checksum FROM schema_migrations',
      );
      const done = new Map(rows.map((r) => [r.version, r.checksum]));
      for (const m of files) {
        if (done.has(m.version)) {
          const stored = done.get(m.version);
          if (stored && stored !== m.checksum) {
            throw new MigrationError(
              m.file,
              `changed after it was applied (stored checksum ${stored.slice(0, 12)}…, file ${m.checksum.slice(0, 12)}…); migrations are forward-only: add a new file instead`,
            );
          }
          continue;
        }
        const started = Date.now();
        try {
          await client.query('BEGIN');
          await client.query(m.sql);
          await client.query('INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)', [m.version, m.checksum]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch((e: unknown) => {
            broken = e instanceof Error ? e : new Error(String(e));
          });
          throw new MigrationError(m.file, `failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        applied.push(m.version);
        log.info({ migration: m.file, ms: Date.now() - started }, 'migration applied');
      }
    } finally {
      if (!broken) await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    }
  } catch (err) {
    if (err instanceof MigrationError) throw err;
    broken = err instanceof Error ? err : new Error(String(err));
    throw new StoreError(`migrations failed: ${broken.message}`, { cause: err });
  } finally {
    client.off('notice', onNotice);
    client.release(broken);
  }
  if (applied.length === 0) log.debug('schema up to date');
  return { applied };
}
