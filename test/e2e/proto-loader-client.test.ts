// The README's @grpc/proto-loader client, examples/proto-loader-client.mjs (README.md shows it verbatim:
// test/unit/readme.test.ts), run as `node examples/proto-loader-client.mjs <addr>` from the project root
// against the built service. No generated code is involved: the client loads proto/ at run time.
// GetRegistry lists every agent, QueryLogs the newest ERROR records, StreamLogs the last 5 records and
// then, across a service restart, resumes after its last cursor: every record once, in seq order.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../helpers/service.js';
import { waitFor } from '../helpers/wait.js';
import { startStack, type Stack } from './operator-harness.js';

interface Client {
  readonly child: ChildProcess;
  lines(prefix: string): string[];
  stderr(): string;
}

function runExample(addr: string): Client {
  const child = spawn(process.execPath, ['examples/proto-loader-client.mjs', addr], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return {
    child,
    lines: (prefix) =>
      out
        .split('\n')
        .filter((l) => l.startsWith(`${prefix} `))
        .map((l) => l.slice(prefix.length + 1)),
    stderr: () => err,
  };
}

describe('the README proto-loader client against the service', () => {
  let stack: Stack;
  let client: Client | undefined;

  before(async () => {
    stack = await startStack('proto_loader');
    await stack.publish(60, 1);
    await stack.waitRows(60);
  });
  after(async () => {
    client?.child.kill('SIGKILL');
    await stack?.close();
  });

  it('GetRegistry, QueryLogs, StreamLogs with tail, then resumed by cursor across a restart', { timeout: 180_000 }, async () => {
    const agents = (await stack.pool.query<{ agent_id: string }>('select agent_id from agent_registry order by agent_id')).rows.map((r) => r.agent_id);
    const errors = (await stack.pool.query<{ seq: string }>(`select seq::text from log_entries where level = 'ERROR' order by timestamp desc, seq desc limit 5`)).rows.map((r) => r.seq);
    const before = await stack.rows();
    assert.ok(agents.length >= 3 && errors.length >= 1, `the traffic has agents (${agents.length}) and errors (${errors.length})`);

    client = runExample(stack.grpcAddr);
    const c = client;
    const seqs = (): string[] => c.lines('live').map((l) => l.split(' ')[0]!);
    await waitFor(`the client's first answers (stdout so far: ${c.lines('agent').length} agents; stderr: ${c.stderr().slice(-300)})`, () => seqs().length >= 5, { timeoutMs: 60_000 });

    // GetRegistry: `agent <id> <status> team=<team> <last error>`, every agent, statuses by name.
    const agentLines = c.lines('agent');
    assert.deepEqual(agentLines.map((l) => l.split(' ')[0]).sort(), agents);
    for (const l of agentLines) assert.match(l, /^\S+ AGENT_STATUS_(IDLE|BUSY|OFFLINE|ERROR) team=\S+/);
    // QueryLogs: the newest ERROR records, newest first.
    const errorLines = c.lines('error');
    assert.deepEqual(errorLines.map((l) => l.split(' ')[0]), errors);
    for (const l of errorLines) assert.match(l, /^\d+ \d{4}-\d\d-\d\dT\S+Z ERROR \S+ \S+: /);
    // StreamLogs { tail: 5 }: the last 5 committed records, in seq order.
    assert.deepEqual(seqs(), before.slice(-5).map((r) => r.seq));

    // The service restarts: the stream ends with its cursor, the client resumes after it.
    await stack.restart();
    await stack.publish(40, 2);
    await stack.waitRows(100);
    const all = await stack.rows();
    const want = all.slice(before.length - 5).map((r) => r.seq);
    await waitFor(`every record after the tail, once (${seqs().length} of ${want.length}; stderr: ${c.stderr().slice(-300)})`, () => seqs().length >= want.length, { timeoutMs: 60_000 });
    assert.deepEqual(seqs(), want, 'no record lost or repeated across the restart');
    assert.match(c.stderr(), /stream ended \(\w+: [^)]*\); resuming after [A-Za-z0-9_-]+ in 1 s/);
    assert.equal(c.child.exitCode, null, 'the client keeps following');
  });
});
