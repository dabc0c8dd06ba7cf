// Per-test-file isolation on the shared PostgreSQL (127.0.0.1:5432, trust auth): a fresh database
// named after the file, dropped afterwards unless KEEP_TEST_DB=1 (kept for inspection on failure).
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const ADMIN_URL = process.env['TEST_PG_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  /** Env for a child service process pointing at this database. */
  readonly env: Record<string, string>;
  drop(): Promise<void>;
}

export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `t_${label.replace(/[^a-z0-9]/gi, '_').toLowerCase().slice(0, 30)}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  return {
    name,
    url,
    env: { DATABASE_URL: url, MEMORY_STORE: 'postgres' },
    async drop() {
      if (process.env['KEEP_TEST_DB'] === '1') return;
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
