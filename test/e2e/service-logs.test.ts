// The service's log output as a person and a machine see it (README: readable on a terminal, JSON
// everywhere else). The built service runs three times on one database and stream:
// - through a pipe (as in containers and CI): every line is a pino JSON object;
// - on a pseudo-terminal (`script`, as `npm start` in a shell): readable, coloured lines
//   `[HH:MM:SS.mmm] INFO: [component] message {fields}`, no JSON object lines; Ctrl-C typed on that
//   terminal stops it gracefully, and the shutdown lines are readable too;
// - on a pseudo-terminal with LOG_FORMAT=json: JSON again.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { connect } from 'nats';
import { CLI, ROOT, freePort, serviceEnv, startService } from '../helpers/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, deleteStreamQuietly, uniqueNatsNames, type NatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';

const hasScript = spawnSync('script', ['--version']).status === 0;
// Colour and cursor sequences, and the pty's carriage returns.
const plain = (s: string): string => s.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r/g, '');

interface PtyRun {
  output(): string;
  /** Types on the terminal (e.g. "\x03" for Ctrl-C). */
  type(text: string): void;
  exited: Promise<number | null>;
  kill(): void;
}

/** `node dist/src/cli.js serve` with stdout on a pseudo-terminal, via util-linux `script`. */
function serveOnTerminal(env: Record<string, string>): PtyRun {
  const child = spawn('script', ['-qefc', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} serve`, '/dev/null'], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', TERM: 'xterm-256color', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    output: () => out,
    type: (text) => child.stdin!.write(text),
    exited,
    kill: () => child.kill('SIGKILL'),
  };
}

describe('service logs: readable on a terminal, JSON elsewhere', { skip: hasScript ? false : 'util-linux script(1) is not installed' }, () => {
  let db: TestDatabase;
  let names: NatsNames;
  let env: Record<string, string>;

  before(async () => {
    db = await createTestDatabase('service_logs');
    names = uniqueNatsNames('service_logs');
    env = serviceEnv(db.env, SHARED_NATS_URL, names, {
      HOST: '127.0.0.1',
      GRPC_PORT: String(await freePort()),
      HTTP_PORT: String(await freePort()),
    });
  });
  after(async () => {
    const nc = await connect({ servers: SHARED_NATS_URL });
    await deleteStreamQuietly(nc, names.stream);
    await nc.close();
    await db?.drop();
  });

  it('through a pipe: one pino JSON object per line', { timeout: 90_000 }, async () => {
    const svc = await startService({ env });
    assert.equal(await svc.stop(), 0);
    const lines = svc.output.filter((l) => l.length > 0);
    assert.ok(lines.length >= 5, lines.join('\n'));
    for (const line of lines) {
      const rec = JSON.parse(line) as Record<string, unknown>;
      assert.equal(typeof rec['level'], 'number', line);
      assert.equal(typeof rec['time'], 'string', line);
      assert.equal(typeof rec['msg'], 'string', line);
      // One component a line: a key twice is valid JSON but ambiguous (most readers keep the last).
      assert.ok((line.match(/"component":/g) ?? []).length <= 1, `a key twice: ${line}`);
    }
    assert.ok(svc.logs().some((l) => l['msg'] === 'mycelis-memory started' && l['component'] === 'main'));
  });

  it('on a terminal: readable coloured lines; Ctrl-C stops it gracefully', { timeout: 90_000 }, async () => {
    const run = serveOnTerminal(env);
    try {
      await waitFor(`"mycelis-memory started" on the terminal (so far: ${plain(run.output()).slice(-600)})`, () => /mycelis-memory started/.test(run.output()), { timeoutMs: 60_000 });
      run.type('\x03');
      const code = await run.exited;
      const raw = run.output();
      const text = plain(raw);
      assert.match(raw, /\x1b\[32mINFO\x1b\[39m/, 'levels are coloured on a terminal');
      assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[main\] mycelis-memory started \{"grpcPort":\d+,/m);
      assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[grpc-server\] gRPC server listening /m);
      assert.match(text, /^(\^C)?\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[main\] shutting down \{"reason":"SIGINT"\}/m);
      assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[main\] stopped/m);
      assert.doesNotMatch(text, /^\{"level"/m, 'no JSON lines on a terminal');
      assert.equal(code, 130, `Ctrl-C exits 130:\n${text}`);
    } finally {
      run.kill();
    }
  });

  it('on a terminal with LOG_FORMAT=json: JSON lines', { timeout: 90_000 }, async () => {
    const run = serveOnTerminal({ ...env, LOG_FORMAT: 'json' });
    try {
      await waitFor('"mycelis-memory started"', () => /mycelis-memory started/.test(run.output()), { timeoutMs: 60_000 });
      run.type('\x03');
      await run.exited;
      const lines = plain(run.output())
        .split('\n')
        .filter((l) => l.startsWith('{'));
      assert.ok(lines.some((l) => (JSON.parse(l) as { msg: string }).msg === 'mycelis-memory started'), lines.join('\n'));
    } finally {
      run.kill();
    }
  });
});
