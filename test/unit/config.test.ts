// src/config/config.ts: every error path names its variable and the accepted form; defaults; the
// DB_* URL survives any password; MEMORY_STORE rules; the result is deeply frozen.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parsePgConnectionString } from 'pg-connection-string';

import { ConfigError, loadConfig, loadNatsConfig, parseDuration, parseSize } from '../../src/config/config.js';

type Env = Record<string, string>;

function configError(env: Env): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(env)} to be rejected`);
}

// [variable expected in the error, env, pattern the detail must match (the accepted form)]
const INVALID: [string, Env, RegExp][] = [
  ['LOG_LEVEL', { LOG_LEVEL: 'loud' }, /expected one of fatal, error, warn, info, debug, trace, silent/],
  ['LOG_FORMAT', { LOG_FORMAT: 'colour' }, /expected one of auto, json, pretty/],
  ['MEMORY_STORE', { MEMORY_STORE: 'mysql' }, /expected one of auto, postgres, embedded/],
  ['MEMORY_STORE', { MEMORY_STORE: 'postgres' }, /set DATABASE_URL or DB_HOST/],
  ['PGSSLMODE', { PGSSLMODE: 'sometimes' }, /expected one of disable, allow, prefer, require, verify-ca, verify-full/],
  ['DB_POOL_MAX', { DB_POOL_MAX: 'ten' }, /expected an integer from 2 to 1000/],
  ['DB_POOL_MAX', { DB_POOL_MAX: '1' }, /expected an integer from 2 to 1000/],
  ['DATABASE_URL', { DATABASE_URL: 'not a url' }, /expected postgres:\/\/user:password@host:5432\/dbname/],
  ['DATABASE_URL', { DATABASE_URL: 'mysql://u:p@h/db' }, /expected postgres:\/\/ or postgresql:\/\//],
  ['DB_PORT', { DB_HOST: 'db', DB_PORT: 'x5432' }, /expected an integer from 0 to 65535/],
  ['DB_PORT', { DB_HOST: 'db', DB_PORT: '70000' }, /expected an integer from 0 to 65535/],
  ['DB_HOST', { DB_HOST: 'user@db' }, /expected a host name or IP address/],
  ['DB_HOST', { DB_HOST: 'db/x' }, /expected a host name or IP address/],
  ['DB_NAME', { DB_HOST: 'db', DB_NAME: 'memory/db' }, /expected a database name without \/ \? or #/],
  ['DB_NAME', { DB_HOST: 'db', DB_NAME: 'memory#1' }, /expected a database name without \/ \? or #/],
  ['NATS_URL', { NATS_URL: 'http://nats:4222' }, /expected nats:\/\/host:port/],
  ['NATS_URL', { NATS_URL: 'nats://a:4222, not a server' }, /expected nats:\/\/host:port/],
  ['INGEST_BATCH_SIZE', { INGEST_BATCH_SIZE: '0' }, /expected an integer from 1 to 50000/],
  ['INGEST_BATCH_SIZE', { INGEST_BATCH_SIZE: '2k' }, /expected an integer from 1 to 50000/],
  ['STREAM_MAX_BYTES', { STREAM_MAX_BYTES: 'lots' }, /expected a byte size such as/],
  ['STREAM_MAX_BYTES', { STREAM_MAX_BYTES: '10 parsecs' }, /expected a byte size such as/],
  ['TLS_KEY_FILE', { TLS_CERT_FILE: '/tls/cert.pem' }, /must be set together with/],
  ['TLS_CERT_FILE', { TLS_KEY_FILE: '/tls/key.pem' }, /must be set together with/],
  ['GRPC_PORT', { GRPC_PORT: 'abc' }, /expected an integer from 0 to 65535/],
  ['GRPC_PORT', { GRPC_PORT: '-1' }, /expected an integer from 0 to 65535/],
  ['HTTP_PORT', { HTTP_PORT: '8o8o' }, /expected an integer from 0 to 65535/],
  ['HTTP_PORT', { GRPC_PORT: '9000', HTTP_PORT: '9000' }, /must differ from GRPC_PORT/],
  ['CORS_ORIGINS', { CORS_ORIGINS: 'ui.example.com' }, /expected comma-separated origins such as https:\/\/ui\.example\.com, or \*/],
  ['INGEST_MODE', { INGEST_MODE: 'kafka' }, /expected one of jetstream, core, off/],
  ['NATS_SUBJECTS', { NATS_SUBJECTS: 'swarm.>.x' }, /expected comma-separated NATS subjects/],
  ['NATS_SUBJECTS', { NATS_SUBJECTS: 'swarm..agent' }, /expected comma-separated NATS subjects/],
  ['NATS_EXCLUDE_SUBJECTS', { NATS_EXCLUDE_SUBJECTS: 'swarm.council.a*.request' }, /expected comma-separated NATS subjects/],
  ['LOG_ENTRY_SUBJECTS', { LOG_ENTRY_SUBJECTS: 'swarm log' }, /expected comma-separated NATS subjects/],
  ['STREAM_NAME', { STREAM_NAME: 'SWARM.V1' }, /expected 1-64 letters, digits, _ or -/],
  ['CONSUMER_NAME', { CONSUMER_NAME: 'memory consumer' }, /expected 1-64 letters, digits, _ or -/],
  ['STREAM_MAX_AGE', { STREAM_MAX_AGE: '7' }, /expected a duration such as/],
  ['STREAM_MAX_AGE', { STREAM_MAX_AGE: 'a week' }, /expected a duration such as/],
  ['INGEST_BATCH_WAIT', { INGEST_BATCH_WAIT: '50' }, /expected a duration such as/],
  ['ACK_WAIT', { ACK_WAIT: 'soon' }, /expected a duration such as/],
  ['ACK_WAIT', { ACK_WAIT: '40ms', INGEST_BATCH_WAIT: '50ms' }, /must be longer than INGEST_BATCH_WAIT/],
  ['MAX_EVENT_BYTES', { MAX_EVENT_BYTES: '1 megabyte' }, /expected a byte size such as/],
  ['MAX_EVENT_BYTES', { MAX_EVENT_BYTES: '-5' }, /expected a byte size such as/],
  ['CORE_BUFFER_SIZE', { CORE_BUFFER_SIZE: '0' }, /expected an integer from 1 to 10000000/],
  ['MAX_STREAMS', { MAX_STREAMS: 'many' }, /expected an integer from 1 to 1000000/],
  ['STREAM_BUFFER', { STREAM_BUFFER: '5' }, /expected an integer from 10 to 1000000/],
  ['KEEPALIVE_INTERVAL', { KEEPALIVE_INTERVAL: '15' }, /expected a duration such as/],
  ['AGENT_OFFLINE_AFTER', { AGENT_OFFLINE_AFTER: '1.5 minutes' }, /expected a duration such as/],
  ['LOG_RETENTION', { LOG_RETENTION: '30 days' }, /expected a duration such as/],
  ['DEAD_LETTER_RETENTION', { DEAD_LETTER_RETENTION: 'week' }, /expected a duration such as/],
  ['LOG_PARTITION_INTERVAL', { LOG_PARTITION_INTERVAL: '5h' }, /whole hours that divide a day .* or whole days/],
  ['RETENTION_INTERVAL', { RETENTION_INTERVAL: '100ms' }, /at least 1s/],
  ['SHUTDOWN_TIMEOUT', { SHUTDOWN_TIMEOUT: '20' }, /expected a duration such as/],
  ['MEMORY_LIMIT', { MEMORY_LIMIT: 'half' }, /expected a byte size such as/],
  ['MEMORY_LIMIT', { MEMORY_LIMIT: '64MiB' }, /must be at least 128MiB/],
  ['INGEST_BATCH_BYTES', { INGEST_BATCH_BYTES: 'big' }, /expected a byte size such as/],
  ['INGEST_BATCH_BYTES', { INGEST_BATCH_BYTES: '0' }, /must be at least 1 byte/],
  ['INGEST_BATCH_BYTES', { INGEST_BATCH_BYTES: '64MiB' }, /must be at most half of the ingest budget \(8MiB with a memory limit of 512MiB\)/],
];

describe('config: every invalid value names its variable and the accepted form', () => {
  for (const [variable, env, form] of INVALID) {
    it(`${variable}=${JSON.stringify(Object.values(env).at(-1))}`, () => {
      const err = configError(env);
      assert.equal(err.variable, variable);
      assert.match(err.message, new RegExp(`^${variable}: `));
      assert.match(err.detail, form);
      // One line: main/cli print it as is.
      assert.doesNotMatch(err.message, /\n/);
      // A rejected value is quoted back so the operator sees what was read.
      if (err.detail.startsWith('invalid ')) assert.match(err.detail, /^invalid \w+ ".*": /);
    });
  }

  it('covers every variable the module reads', async () => {
    const { readFile } = await import('node:fs/promises');
    const src = await readFile(new URL('../../src/config/config.ts', import.meta.url), 'utf8');
    const read = new Set([...src.matchAll(/\b(?:str|duration|optionalDuration|optionalFile\(env,|get|parse\w+)\(\s*'([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!));
    for (const m of src.matchAll(/optionalFile\(env, '([A-Z][A-Z0-9_]+)'\)/g)) read.add(m[1]!);
    const free = new Set([
      // Free-form values with no invalid form: paths, secrets, host to bind, data dir.
      'EMBEDDED_DATA_DIR', 'DB_USER', 'DB_PASSWORD', 'HOST', 'API_TOKENS',
      'NATS_TOKEN', 'NATS_USER', 'NATS_PASSWORD', 'NATS_CREDS_FILE', 'NATS_TLS_CA_FILE', 'NATS_TLS_CERT_FILE', 'NATS_TLS_KEY_FILE',
      // Node's own; only its heap-size flags are looked at.
      'NODE_OPTIONS',
    ]);
    const tested = new Set(INVALID.map(([v]) => v));
    const missing = [...read].filter((v) => !tested.has(v) && !free.has(v));
    assert.ok(read.size >= 30, `found only ${read.size} variables in config.ts: the scan is broken`);
    assert.deepEqual(missing, [], `variables with an error path but no test: ${missing.join(', ')}`);
  });
});

describe('config: defaults', () => {
  it('an empty environment gives the documented defaults', () => {
    const c = loadConfig({});
    assert.equal(c.logLevel, 'info');
    assert.equal(c.logFormat, 'auto');
    assert.equal(c.database.kind, 'embedded');
    assert.equal(c.database.embeddedDataDir, './.data');
    assert.equal(c.database.poolMax, 1);
    assert.deepEqual(c.nats.servers, ['nats://127.0.0.1:4222']);
    assert.equal(c.nats.token, undefined);
    assert.equal(c.ingest.mode, 'jetstream');
    assert.deepEqual(c.ingest.subjects, ['swarm.>']);
    assert.deepEqual(c.ingest.excludeSubjects, ['swarm.council.*.request']);
    assert.deepEqual(loadConfig({ NATS_EXCLUDE_SUBJECTS: 'none' }).ingest.excludeSubjects, [], 'none keeps every lane');
    assert.deepEqual(loadConfig({ NATS_EXCLUDE_SUBJECTS: 'swarm.a.>, swarm.b' }).ingest.excludeSubjects, ['swarm.a.>', 'swarm.b']);
    assert.deepEqual(c.ingest.logEntrySubjects, ['swarm.log.>']);
    assert.equal(c.ingest.streamName, 'SWARM');
    assert.equal(c.ingest.streamMaxAgeMs, 7 * 86_400_000);
    assert.equal(c.ingest.streamMaxBytes, -1);
    assert.equal(c.ingest.maxEventBytes, 1024 * 1024);
    assert.equal(c.ingest.ackWaitMs, 10_000);
    assert.ok(c.ingest.ackWaitMs > c.ingest.batchWaitMs);
    assert.equal(c.api.grpcPort, 50051);
    assert.equal(c.api.httpPort, 8080);
    assert.deepEqual(c.api.apiTokens, []);
    assert.deepEqual(c.api.corsOrigins, []);
    assert.equal(c.api.keepaliveMs, 15_000);
    assert.equal(c.agentOfflineAfterMs, 90_000);
    assert.equal(c.logRetentionMs, null);
    assert.equal(c.deadLetterRetentionMs, 7 * 86_400_000);
    assert.equal(c.shutdownTimeoutMs, 20_000);
  });

  it('an empty string counts as unset', () => {
    const c = loadConfig({ GRPC_PORT: '', LOG_LEVEL: '', DATABASE_URL: '', STREAM_MAX_AGE: '' });
    assert.equal(c.api.grpcPort, 50051);
    assert.equal(c.database.kind, 'embedded');
  });

  it('parses the accepted forms', () => {
    const c = loadConfig({
      LOG_LEVEL: 'DEBUG',
      STREAM_MAX_AGE: '1h30m',
      STREAM_MAX_BYTES: '10GiB',
      MAX_EVENT_BYTES: '512KiB',
      INGEST_BATCH_WAIT: '250ms',
      NATS_URL: 'nats://a:4222, nats://b:4222',
      NATS_SUBJECTS: 'swarm.>, ops.*.agent.>',
      LOG_RETENTION: '30d',
      DEAD_LETTER_RETENTION: 'forever',
      GRPC_PORT: '0',
      HTTP_PORT: '0',
      CORS_ORIGINS: 'https://ui.example.com,http://localhost:5173',
      API_TOKENS: 'a, b',
    });
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.ingest.streamMaxAgeMs, 5_400_000);
    assert.equal(c.ingest.streamMaxBytes, 10 * 1024 ** 3);
    assert.equal(c.ingest.maxEventBytes, 512 * 1024);
    assert.equal(c.ingest.batchWaitMs, 250);
    assert.deepEqual(c.nats.servers, ['nats://a:4222', 'nats://b:4222']);
    assert.deepEqual(c.ingest.subjects, ['swarm.>', 'ops.*.agent.>']);
    assert.equal(c.logRetentionMs, 30 * 86_400_000);
    assert.equal(c.deadLetterRetentionMs, null);
    assert.equal(c.api.grpcPort, 0);
    assert.deepEqual(c.api.corsOrigins, ['https://ui.example.com', 'http://localhost:5173']);
    assert.deepEqual(c.api.apiTokens, ['a', 'b']);
  });

  it('parseDuration and parseSize reject what they cannot read, naming the variable', () => {
    assert.equal(parseDuration('X', '500ms'), 500);
    assert.equal(parseDuration('X', '2w'), 14 * 86_400_000);
    assert.throws(() => parseDuration('X', ''), (e: unknown) => e instanceof ConfigError && e.variable === 'X');
    assert.throws(() => parseDuration('X', '5s junk'), ConfigError);
    assert.equal(parseSize('Y', '1MB'), 1_000_000);
    // Kubernetes quantities as a pod's limit is written.
    assert.equal(parseSize('Y', '512Mi'), 512 * 1024 ** 2);
    assert.equal(parseSize('Y', '1Gi'), 1024 ** 3);
    assert.equal(parseSize('Y', '500M'), 500_000_000);
    assert.throws(() => parseSize('Y', '1XB'), (e: unknown) => e instanceof ConfigError && e.variable === 'Y');
  });
});

describe('config: database URL from DB_* variables', () => {
  const PASSWORD = 'p@ss:w/rd?#%';

  it(`a password such as ${PASSWORD} round-trips through new URL() and pg's parser`, () => {
    const c = loadConfig({ DB_HOST: 'db.internal', DB_PORT: '6543', DB_USER: 'mem ory@ops', DB_PASSWORD: PASSWORD, DB_NAME: 'memory db;v=1,a@b:c&d+e$%' });
    assert.equal(c.database.kind, 'postgres');
    const u = new URL(c.database.url);
    assert.equal(decodeURIComponent(u.password), PASSWORD);
    assert.equal(decodeURIComponent(u.username), 'mem ory@ops');
    assert.equal(u.hostname, 'db.internal');
    assert.equal(u.port, '6543');
    const pgOpts = parsePgConnectionString(c.database.url);
    assert.equal(pgOpts.password, PASSWORD);
    assert.equal(pgOpts.user, 'mem ory@ops');
    assert.equal(pgOpts.host, 'db.internal');
    assert.equal(pgOpts.port, '6543');
    assert.equal(pgOpts.database, 'memory db;v=1,a@b:c&d+e$%');
  });

  it('never shows the password in the redacted URL', () => {
    const c = loadConfig({ DB_HOST: 'db', DB_PASSWORD: PASSWORD });
    assert.ok(!c.database.redactedUrl.includes(encodeURIComponent(PASSWORD)));
    assert.ok(!c.database.redactedUrl.includes('p@ss'));
    assert.match(c.database.redactedUrl, /\*\*\*/);
  });

  it('defaults the other DB_* parts and keeps PGSSLMODE for pg', () => {
    const c = loadConfig({ DB_PASSWORD: PASSWORD, PGSSLMODE: 'require' });
    const pgOpts = parsePgConnectionString(c.database.url);
    assert.equal(pgOpts.host, '127.0.0.1');
    assert.equal(pgOpts.port, '5432');
    assert.equal(pgOpts.user, 'postgres');
    assert.equal(pgOpts.database, 'postgres');
    assert.equal(pgOpts.password, PASSWORD);
    assert.equal(c.database.sslMode, 'require');
    assert.equal(new URL(c.database.url).searchParams.get('sslmode'), 'require');
  });

  it('brackets an IPv6 host', () => {
    const c = loadConfig({ DB_HOST: '::1', DB_PASSWORD: 'x' });
    assert.equal(new URL(c.database.url).hostname, '[::1]');
    assert.equal(parsePgConnectionString(c.database.url).host, '::1');
  });

  it('DATABASE_URL wins over DB_* and is used as given', () => {
    const url = 'postgresql://app:s%40cret@pg:5432/memory';
    const c = loadConfig({ DATABASE_URL: url, DB_HOST: 'ignored' });
    assert.equal(c.database.url, url);
    assert.equal(parsePgConnectionString(c.database.url).password, 's@cret');
  });
});

describe('config: MEMORY_STORE', () => {
  it('no database variable: embedded', () => {
    assert.equal(loadConfig({}).database.kind, 'embedded');
  });
  it('any database variable: postgres', () => {
    for (const k of ['DATABASE_URL', 'DB_HOST', 'DB_PORT', 'DB_USER', 'DB_PASSWORD', 'DB_NAME']) {
      const v = k === 'DATABASE_URL' ? 'postgres://x@h/db' : k === 'DB_PORT' ? '5433' : 'x';
      assert.equal(loadConfig({ [k]: v }).database.kind, 'postgres', k);
    }
  });
  it('MEMORY_STORE=postgres without a database variable is an error naming MEMORY_STORE', () => {
    const err = configError({ MEMORY_STORE: 'postgres' });
    assert.equal(err.variable, 'MEMORY_STORE');
    assert.match(err.message, /^MEMORY_STORE: .*DATABASE_URL/);
  });
  it('MEMORY_STORE=postgres with a database variable: postgres', () => {
    assert.equal(loadConfig({ MEMORY_STORE: 'postgres', DB_HOST: 'db' }).database.kind, 'postgres');
  });
  it('MEMORY_STORE=embedded wins over database variables', () => {
    const c = loadConfig({ MEMORY_STORE: 'Embedded', DATABASE_URL: 'postgres://x@h/db', EMBEDDED_DATA_DIR: '/var/lib/memory' });
    assert.equal(c.database.kind, 'embedded');
    assert.equal(c.database.url, '');
    assert.equal(c.database.embeddedDataDir, '/var/lib/memory');
  });
});

describe('config: immutability', () => {
  it('the config object is deeply frozen', () => {
    const c = loadConfig({ NATS_URL: 'nats://a:4222', API_TOKENS: 't1' });
    for (const o of [c, c.database, c.nats, c.nats.servers, c.ingest, c.ingest.subjects, c.api, c.api.apiTokens]) {
      assert.ok(Object.isFrozen(o));
    }
    assert.throws(() => {
      (c as { logLevel: string }).logLevel = 'debug';
    }, TypeError);
    assert.throws(() => {
      (c.nats.servers as string[]).push('nats://evil:4222');
    }, TypeError);
  });
  it('loadNatsConfig reads only the NATS part, frozen', () => {
    const n = loadNatsConfig({ NATS_URL: 'nats://x:1', NATS_TOKEN: 'tok', GRPC_PORT: 'abc', MEMORY_STORE: 'postgres' });
    assert.deepEqual(n.servers, ['nats://x:1']);
    assert.equal(n.token, 'tok');
    assert.ok(Object.isFrozen(n) && Object.isFrozen(n.servers));
    assert.throws(() => loadNatsConfig({ NATS_URL: 'http://x' }), (e: unknown) => e instanceof ConfigError && e.variable === 'NATS_URL');
  });
});
