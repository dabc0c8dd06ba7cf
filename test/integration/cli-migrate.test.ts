// `mycelis-memory migrate` as a child process against a private PostgreSQL with password auth
// (scram): DB_* variables with a password full of URL delimiters connect; applied versions are
// printed once, then nothing (`--plan` says what is pending, with what it does and locks); a wrong
// password exits 4, an unreachable server exits 3.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';

import { runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/nats.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-pg.js';

const PASSWORD = 'p@ss:w/rd?#%';
const ROLE = 'memory_operator';
const DB = 'memory_cli';

describe('cli migrate', () => {
  let server: PrivatePostgres;
  let dbEnv: Record<string, string>;
  before(async () => {
    server = await startPrivatePostgres({ hostAuth: 'scram-sha-256' });
    const admin = new pg.Client(server.adminConfig);
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD.replaceAll("'", "''")}'`);
      await admin.query(`CREATE DATABASE ${DB} OWNER ${ROLE}`);
    } finally {
      await admin.end();
    }
    dbEnv = { DB_HOST: '127.0.0.1', DB_PORT: String(server.port), DB_USER: ROLE, DB_PASSWORD: PASSWORD, DB_NAME: DB };
  });
  after(async () => {
    await server?.destroy();
  });

  it(`connects with DB_PASSWORD=${PASSWORD} and applies every migration once`, async () => {
    // --plan first: what would be done, and nothing done.
    const plan0 = await runCli(['migrate', '--plan'], dbEnv);
    assert.equal(plan0.code, 0, plan0.stderr);
    assert.match(plan0.stdout, /^log_entries: absent, about 0 rows, 0 MiB\npending 001_init_memory\n/);
    assert.match(plan0.stdout, /pending 004_partition_log_entries\n {2}does: {2}converts log_entries into a table partitioned by event time.*\n {2}locks: ACCESS EXCLUSIVE on log_entries/);
    assert.match(plan0.stdout, /pending 006_log_search\n {2}does: {2}adds log_entries\.search, a stored generated tsvector.*\n {2}locks: ACCESS EXCLUSIVE on log_entries while every partition is rewritten/);

    const first = await runCli(['migrate'], dbEnv);
    assert.equal(first.code, 0, first.stderr);
    const lines = first.stdout.trim().split('\n');
    const applied = lines.filter((l) => l.startsWith('applied '));
    assert.ok(applied.length >= 2, first.stdout);
    // Then the log's partitions, created ahead (a day each, 7 back to 3 ahead).
    assert.match(lines.at(-1)!, /^created 11 log partitions \(log_entries_p\d{8} \.\. log_entries_p\d{8}\)$/);
    assert.match(applied[0]!, /^applied 001/);
    assert.match(applied[1]!, /^applied 002/);
    assert.ok(!first.stderr.includes(PASSWORD) && !first.stderr.includes(encodeURIComponent(PASSWORD)), 'the password is never printed');

    const admin = new pg.Client({ ...server.adminConfig, database: DB });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version');
      assert.deepEqual(rows.map((r) => r.version), applied.map((l) => l.replace(/^applied /, '')));
    } finally {
      await admin.end();
    }

    const second = await runCli(['migrate'], dbEnv);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, '');
    assert.match(second.stderr, /up to date: nothing to apply/);

    const plan = await runCli(['migrate', '--plan'], dbEnv);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /^log_entries: partitioned, about \d+ rows, \d+ MiB\nnothing to apply\n$/);
  });

  it('exits 4 when the password is wrong', async () => {
    const r = await runCli(['migrate'], { ...dbEnv, DB_PASSWORD: 'p@ss:w/rd?#' });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /^mycelis-memory: migrating postgres:\/\/memory_operator:\*\*\*@127\.0\.0\.1/m);
  });

  it('exits 3 when the database cannot be reached', async () => {
    const port = await freePort();
    const r = await runCli(['migrate'], { ...dbEnv, DB_PORT: String(port) });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /ECONNREFUSED/);
  });
});
