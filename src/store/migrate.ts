// Forward-only SQL migrations (DESIGN 5): files migrations/NNN_*.sql applied in name order, each in its
// own transaction (no statement timeout: converting a large table must not be cut short), tracked in
// schema_migrations with a sha256 checksum. The whole run holds a session advisory lock, so replicas
// starting together apply each file exactly once (the second waits, then finds nothing pending). A file
// changed after it was applied is an error naming it. Before a file runs, its `-- summary:` and
// `-- locks:` header lines are logged (what it will do, what it will lock); `migrate --plan` prints them
// without applying anything. After the files, the log's partitions are created ahead (partitions.ts).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { MigrationError, sqlstateOf, StoreError } from './errors.js';
import { DEFAULT_PARTITION_SPEC, ensureLogPartitions, type PartitionSpec } from './partitions.js';

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
  /** The `-- summary:` header lines, joined ('' when the file has none). */
  readonly summary: string;
  /** The `-- locks:` header lines, joined ('' when the file has none). */
  readonly locks: string;
}

function headerLines(sql: string, key: string): string {
  const prefix = `-- ${key}:`;
  return sql
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .map((l) => l.slice(prefix.length).trim())
    .join(' ');
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
        summary: headerLines(sql, 'summary'),
        locks: headerLines(sql, 'locks'),
      };
    });
}

export interface MigrateOptions {
  /** The log's partitions to create after the files (the service passes its configured spec). */
  readonly partitions?: PartitionSpec;
  /** LOG_RETENTION: no partition is created for a range already past it. */
  readonly retentionMs?: number | null;
}

export async function migrate(pool: pg.Pool, logger: Logger, dir?: string, opts: MigrateOptions = {}): Promise<{ applied: string[]; partitionsCreated: string[] }> {
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
  let partitionsCreated: string[] = [];
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
        log.info({ migration: m.file, ...(m.summary ? { summary: m.summary } : {}), ...(m.locks ? { locks: m.locks } : {}) }, 'applying migration');
        try {
          await client.query('BEGIN');
          await client.query('SET LOCAL statement_timeout = 0');
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
      // Same client: the embedded store has one connection, and the advisory lock keeps two starting
      // replicas from racing (the partition code takes the commit lock as well).
      // A partition whose lock was not granted in time (readers of the default partition) does not stop
      // the start: until the maintenance pass creates it, its rows wait in the default partition.
      try {
        partitionsCreated = (
          await ensureLogPartitions(client, opts.partitions ?? DEFAULT_PARTITION_SPEC, { retentionMs: opts.retentionMs ?? null, log })
        ).created;
      } catch (err) {
        if (sqlstateOf(err) !== '55P03') throw err;
        log.warn({ err: (err as Error).message }, 'log partitions not created yet (lock not granted in time); the maintenance pass retries');
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
  return { applied, partitionsCreated };
}

export interface PendingMigration {
  readonly version: string;
  readonly file: string;
  readonly summary: string;
  readonly locks: string;
}

export interface MigrationPlan {
  readonly pending: PendingMigration[];
  /** log_entries as it is now: 'absent', 'plain' (before 004) or 'partitioned'. */
  readonly logEntries: 'absent' | 'plain' | 'partitioned';
  /** The planner's row estimate and the on-disk size of log_entries (all partitions). */
  readonly logRowsEstimate: number;
  readonly logBytes: number;
}

/** What `migrate` would do, without doing it (read-only; `migrate --plan`). */
export async function planMigrations(pool: pg.Pool, dir?: string): Promise<MigrationPlan> {
  const files = listMigrations(dir);
  const tracked = await pool.query<{ t: string | null }>(`SELECT to_regclass('schema_migrations')::text AS t`);
  const done = new Set<string>();
  if (tracked.rows[0]?.t) {
    for (const r of (await pool.query<{ version: string }>('SELECT version FROM schema_migrations')).rows) done.add(r.version);
  }
  const stats = await pool.query<{ kind: string | null; rows: string; bytes: string }>(`
    WITH t AS (SELECT to_regclass('log_entries') AS oid),
    parts AS (SELECT t.oid AS rel FROM t WHERE t.oid IS NOT NULL
              UNION ALL SELECT i.inhrelid FROM pg_inherits i, t WHERE i.inhparent = t.oid)
    SELECT (SELECT relkind::text FROM pg_class, t WHERE pg_class.oid = t.oid) AS kind,
           coalesce((SELECT sum(greatest(c.reltuples, 0)) FROM pg_class c JOIN parts ON c.oid = parts.rel), 0)::bigint::text AS rows,
           coalesce((SELECT sum(pg_total_relation_size(rel)) FROM parts), 0)::bigint::text AS bytes`);
  const s = stats.rows[0]!;
  return {
    pending: files.filter((m) => !done.has(m.version)).map(({ version, file, summary, locks }) => ({ version, file, summary, locks })),
    logEntries: s.kind === null ? 'absent' : s.kind === 'p' ? 'partitioned' : 'plain',
    logRowsEstimate: Number(s.rows),
    logBytes: Number(s.bytes),
  };
}
