// `mycelis-memory serve` refuses an invalid configuration before starting anything: exit 2 and one
// line naming the variable (DESIGN 7). Needs neither NATS nor PostgreSQL.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { runCli } from '../helpers/cli.js';

describe('cli serve: invalid configuration', () => {
  const cases: [Record<string, string>, string, RegExp][] = [
    [{ GRPC_PORT: 'abc' }, 'GRPC_PORT', /expected an integer from 0 to 65535/],
    [{ MEMORY_STORE: 'postgres' }, 'MEMORY_STORE', /set DATABASE_URL or DB_HOST/],
    [{ STREAM_MAX_AGE: '7' }, 'STREAM_MAX_AGE', /expected a duration/],
    [{ DATABASE_URL: 'mysql://x@h/db' }, 'DATABASE_URL', /expected postgres:\/\//],
  ];
  for (const [env, variable, detail] of cases) {
    it(`${variable}=${JSON.stringify(Object.values(env)[0])} exits 2 with one line naming ${variable}`, async () => {
      const r = await runCli(['serve'], env);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.split('\n').filter((l) => l.length > 0);
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, new RegExp(`^mycelis-memory: invalid configuration: ${variable}: `));
      assert.match(lines[0]!, detail);
      assert.equal(r.stdout, '');
    });
  }

  it('an unknown flag exits 64', async () => {
    const r = await runCli(['serve', '--port', '1']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /Usage: mycelis-memory serve/);
  });
});
