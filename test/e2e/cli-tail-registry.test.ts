// The operator CLI as a process against the built service (API_TOKENS on): tail sees published
// events (history with --tail, live after a cursor, filters, --json, plain text without colour in a
// pipe), survives a service restart with no record lost or repeated, registry shows every agent and
// follows changes live (--watch), trace prints a workflow as a timeline, search finds and pages, and failures have distinct
// exit codes (unreachable 3, refused token 4, bad cursor 64).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../helpers/wait.js';
import { runCliOnce, spawnCli, startStack, type Stack } from './operator-harness.js';

const TOKEN = 'cli-e2e-token';
const AUTH = { MYCELIS_TOKEN: TOKEN };

interface JsonRecord {
  id: string;
  cursor: string;
  seq: string;
  subject: string;
  entry: { level: string; source: string; agentId: string; teamId?: string; intent?: string };
}

const parse = (lines: string[]): JsonRecord[] => lines.filter((l) => l.length > 0).map((l) => JSON.parse(l) as JsonRecord);

describe('cli tail and registry against a running service', () => {
  let stack: Stack;
  let addr: string;

  before(async () => {
    stack = await startStack('cli_tail', { API_TOKENS: `${TOKEN},other-token` });
    addr = stack.grpcAddr;
    await stack.publish(40, 1);
    await stack.waitRows(40);
  });
  after(async () => {
    await stack?.close();
  });

  it('tail --tail N --json prints the last N committed records in seq order, then --max ends it', async () => {
    const rows = await stack.rows();
    const r = await runCliOnce(['tail', '--addr', addr, '--tail', '25', '--max', '25', '--json'], AUTH);
    assert.equal(r.code, 0, r.stderr);
    const recs = parse(r.stdout.split('\n'));
    assert.equal(recs.length, 25);
    assert.deepEqual(
      recs.map((x) => x.id),
      rows.slice(-25).map((x) => x.id),
    );
    for (const rec of recs) {
      assert.match(rec.cursor, /^[A-Za-z0-9_-]+$/);
      assert.match(rec.subject, new RegExp(`^${stack.names.prefix}\\.`));
      assert.ok(rec.entry.level && rec.entry.source, JSON.stringify(rec));
    }
  });

  it('tail after a cursor follows live traffic with filters, as plain uncoloured text in a pipe; Ctrl-C exits 130 with the resume cursor', async () => {
    const head = await runCliOnce(['tail', '--addr', addr, '--tail', '1', '--max', '1', '--json'], AUTH);
    assert.equal(head.code, 0, head.stderr);
    const [last] = parse(head.stdout.split('\n'));
    assert.ok(last);
    const busiest = await stack.pool.query<{ team_id: string }>(`select team_id from log_entries group by team_id order by count(*) desc limit 1`);
    const team = busiest.rows[0]!.team_id;
    // Live: everything committed after the cursor that matches team AND (ERROR or INFO).
    const tail = spawnCli(['tail', '--addr', addr, '--after', last.cursor, '--team', team, '--level', 'error', '--level', 'INFO'], { ...AUTH, FORCE_COLOR: '1' });
    try {
      await stack.publish(60, 2);
      await stack.waitRows(100);
      const want = await stack.rows(`seq > $1 and team_id = $2 and level in ('ERROR', 'INFO')`, [last.seq, team]);
      const others = await stack.rows(`seq > $1 and not (team_id = $2 and level in ('ERROR', 'INFO'))`, [last.seq, team]);
      assert.ok(want.length > 5 && others.length > 5, `the traffic should exercise the filter (${want.length} match, ${others.length} do not)`);
      await tail.waitForLines(want.length);
      const lines = tail.lines.filter((l) => l.length > 0);
      assert.equal(lines.length, want.length, lines.join('\n'));
      lines.forEach((line, i) => {
        assert.doesNotMatch(line, /\x1b\[/, 'no colour codes when stdout is not a terminal');
        assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (ERROR|INFO ) \S+ \[[^\]]+\] /);
        assert.ok(line.includes(` ${want[i]!.source} [${team}] `), `line ${i} should be from ${want[i]!.source}: ${line}`);
        assert.ok(line.includes(want[i]!.level === 'ERROR' ? ' ERROR ' : ' INFO  '), line);
      });
      const end = await tail.stop('SIGINT');
      assert.equal(end.code, 130);
      assert.match(tail.stderr(), /stopped after \d+ records; resume with --after [A-Za-z0-9_-]+/);
    } finally {
      await tail.stop('SIGKILL');
    }
  });

  it('registry prints every agent as a table and as JSON lines', async () => {
    const agents = (await stack.pool.query<{ agent_id: string; team_id: string; status: string }>('select agent_id, team_id, status from agent_registry order by agent_id')).rows;
    assert.ok(agents.length >= 6);
    const table = await runCliOnce(['registry', '--addr', addr, '--token', TOKEN]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^AGENT\s+STATUS\s+TEAM\s+LAST SEEN\s+META\s+LAST ERROR$/);
    for (const a of agents) {
      const line = lines.find((l) => l.startsWith(a.agent_id + ' '));
      assert.ok(line, `row for ${a.agent_id} in:\n${table.stdout}`);
      // Within the offline threshold (90 s default) the effective status is the reported one.
      assert.match(line, new RegExp(`^${a.agent_id}\\s+${a.status}\\s+${a.team_id}\\s+(now|\\d+s ago)`));
    }
    assert.match(lines[lines.length - 1]!, new RegExp(`^${agents.length} agents \\(`));

    const json = await runCliOnce(['registry', '--addr', addr, '--json', '--team', agents[0]!.team_id], AUTH);
    assert.equal(json.code, 0, json.stderr);
    const got = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { agentId: string; teamId: string; status: string; lastSeen: string });
    assert.deepEqual(
      got.map((a) => a.agentId),
      agents.filter((a) => a.team_id === agents[0]!.team_id).map((a) => a.agent_id),
    );
    for (const a of got) {
      assert.equal(a.teamId, agents[0]!.team_id);
      assert.match(a.status, /^AGENT_STATUS_(IDLE|BUSY|ERROR)$/);
      assert.ok(!Number.isNaN(Date.parse(a.lastSeen)));
    }
  });

  it('registry --watch follows WatchRegistry: the table once, then a line per change, until Ctrl-C (exit 130)', async () => {
    for (const [i, via] of [['--addr', addr], ['--connect', stack.httpBase]].entries()) {
      const watch = spawnCli(['registry', ...via, '--watch'], AUTH);
      try {
        await waitFor('the table', () => watch.lines.some((l) => /^\d+ agents \(/.test(l)), { timeoutMs: 30_000 });
        assert.equal(watch.lines.filter((l) => /^AGENT\s+STATUS/.test(l)).length, 1, 'in a pipe the table is printed once');
        // New agents join: each is one line, as it happens (no polling).
        const before = (await stack.pool.query<{ n: number }>('select count(*)::int as n from agent_registry')).rows[0]!.n;
        await stack.publish(60, 7 + i, before + 4); // agent ids go by index: more agents, new ids
        const after = await waitFor('new agents registered', async () => {
          const n = (await stack.pool.query<{ n: number }>('select count(*)::int as n from agent_registry')).rows[0]!.n;
          return n > before ? n : false;
        });
        await waitFor('their lines', () => watch.lines.filter((l) => /new agent, (IDLE|BUSY|ERROR)/.test(l)).length >= after - before, { timeoutMs: 30_000 });
        const end = await watch.stop('SIGINT');
        assert.equal(end.code, 130, watch.stderr());
      } finally {
        await watch.stop('SIGKILL');
      }
    }
  });

  it('trace <id> prints the workflow as a timeline with a lane per agent, over gRPC and Connect; --json; exit codes', async () => {
    const busiest = await stack.pool.query<{ trace_id: string; n: number; agents: number }>(
      `select trace_id, count(*)::int as n, count(distinct source)::int as agents from log_entries where trace_id <> ''
        group by trace_id order by count(distinct source) desc, count(*) desc limit 1`,
    );
    const t = busiest.rows[0]!;
    assert.ok(t.agents >= 2, 'the sample traffic has workflows across agents');
    for (const via of [['--addr', addr], ['--connect', stack.httpBase]]) {
      const r = await runCliOnce(['trace', t.trace_id, ...via], AUTH);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split('\n');
      assert.match(lines[0]!, new RegExp(`^trace ${t.trace_id}: ${t.n} records?, ${t.agents} agents, `));
      const header = lines.findIndex((l) => l.includes('+OFFSET'));
      const timeline = lines.slice(header + 1).filter((l) => l.length > 0);
      assert.equal(timeline.length, t.n);
      assert.ok(timeline.every((l) => l.includes('●')), 'every record marks its agent');
      assert.match(timeline[0]!, /^\s*\+0ms\s+-\s/);
    }
    const json = await runCliOnce(['trace', t.trace_id, '--addr', addr, '--json'], AUTH);
    assert.equal(json.code, 0, json.stderr);
    const res = JSON.parse(json.stdout) as { traceId: string; records: { id: string; entry: { timestamp: string } }[]; agents: unknown[] };
    assert.equal(res.records.length, t.n);
    const ts = res.records.map((x) => Date.parse(x.entry.timestamp));
    assert.deepEqual(ts, [...ts].sort((a, b) => a - b), 'event-time order');

    const missing = await runCliOnce(['trace', 'no-such-trace', '--addr', addr], AUTH);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /trace: trace_id: no records with trace id "no-such-trace"/);
    const usage = await runCliOnce(['trace', '--addr', addr], AUTH);
    assert.equal(usage.code, 64, usage.stderr);
    const noToken = await runCliOnce(['trace', t.trace_id, '--addr', addr]);
    assert.equal(noToken.code, 4, noToken.stderr);
  });

  it('search "<query>" prints the hits newest first with highlights, pages with --limit/--page-token, over gRPC and Connect; bad queries exit 64', async () => {
    // A word of the sample traffic found in a handful of records, and what the database says matches it.
    const stat = await stack.pool.query<{ word: string }>(
      `select word from ts_stat('select search from log_entries') where ndoc between 3 and 30 and word ~ '^[a-z]{4,}$' order by ndoc desc, word limit 1`,
    );
    const word = stat.rows[0]!.word;
    const expected = (
      await stack.pool.query<{ id: string }>(
        `select id::text from log_entries where search @@ websearch_to_tsquery('simple', $1) order by timestamp desc, seq desc`,
        [word],
      )
    ).rows.map((r) => r.id);
    for (const via of [['--addr', addr], ['--connect', stack.httpBase]]) {
      const json = await runCliOnce(['search', word, ...via, '--json', '--limit', '1000'], AUTH);
      assert.equal(json.code, 0, json.stderr);
      const hits = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { record: { id: string }; snippet: string; rank: number });
      assert.deepEqual(hits.map((h) => h.record.id), expected);
      assert.ok(hits.every((h) => h.rank > 0));
    }
    const text = await runCliOnce(['search', word.toUpperCase(), '--addr', addr, '--limit', '2'], AUTH);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.ok(lines.every((l) => l.toLowerCase().includes(`«${word}»`) && !l.includes('\x1b[')), lines.join('\n'));
    const token = /more with --page-token (\S+)/.exec(text.stderr)?.[1];
    assert.ok(token, text.stderr);
    const rest = await runCliOnce(['search', word.toUpperCase(), '--addr', addr, '--page-token', token, '--limit', '1000', '--json'], AUTH);
    assert.deepEqual(rest.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { record: { id: string } }).record.id), expected.slice(2));

    const bad = await runCliOnce(['search', '!!! ::', '--addr', addr], AUTH);
    assert.equal(bad.code, 64, bad.stderr);
    assert.match(bad.stderr, /query: .*no word to search for/);
    const usage = await runCliOnce(['search', '--addr', addr], AUTH);
    assert.equal(usage.code, 64, usage.stderr);
    const noToken = await runCliOnce(['search', word, '--addr', addr]);
    assert.equal(noToken.code, 4, noToken.stderr);
  });

  it('the same commands work over Connect on the HTTP port (--connect)', async () => {
    const rows = await stack.rows();
    const tail = await runCliOnce(['tail', '--connect', stack.httpBase, '--tail', '10', '--max', '10', '--json'], AUTH);
    assert.equal(tail.code, 0, tail.stderr);
    assert.deepEqual(
      parse(tail.stdout.split('\n')).map((x) => x.id),
      rows.slice(-10).map((x) => x.id),
    );
    const reg = await runCliOnce(['registry', '--connect', stack.httpBase, '--json'], AUTH);
    assert.equal(reg.code, 0, reg.stderr);
    const agents = (await stack.pool.query<{ agent_id: string }>('select agent_id from agent_registry order by agent_id')).rows.map((r) => r.agent_id);
    assert.deepEqual(
      reg.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { agentId: string }).agentId),
      agents,
    );
    const wrong = await runCliOnce(['registry', '--connect', stack.httpBase, '--token', 'nope']);
    assert.equal(wrong.code, 4, wrong.stderr);
    const unreachable = await runCliOnce(['tail', '--connect', 'http://127.0.0.1:1'], AUTH);
    assert.equal(unreachable.code, 3, unreachable.stderr);
  });

  it('exit codes: unreachable 3, missing or wrong token 4, malformed cursor 64', async () => {
    const unreachable = await runCliOnce(['registry', '--addr', '127.0.0.1:1'], AUTH);
    assert.equal(unreachable.code, 3, unreachable.stderr);
    assert.match(unreachable.stderr, /cannot connect to the service at 127\.0\.0\.1:1/);
    const tailUnreachable = await runCliOnce(['tail', '--addr', '127.0.0.1:1'], AUTH);
    assert.equal(tailUnreachable.code, 3, tailUnreachable.stderr);

    const noToken = await runCliOnce(['registry', '--addr', addr]);
    assert.equal(noToken.code, 4, noToken.stderr);
    assert.match(noToken.stderr, /refused the credentials.*--token or set MYCELIS_TOKEN/);
    const wrong = await runCliOnce(['tail', '--addr', addr, '--token', 'not-the-token']);
    assert.equal(wrong.code, 4, wrong.stderr);
    assert.doesNotMatch(wrong.stderr, /not-the-token/, 'the token is never echoed');

    const badCursor = await runCliOnce(['tail', '--addr', addr, '--after', 'garbage'], AUTH);
    assert.equal(badCursor.code, 64, badCursor.stderr);
    assert.match(badCursor.stderr, /after_cursor/);
    const badFlag = await runCliOnce(['tail', '--addr', addr, '--level', 'LOUD'], AUTH);
    assert.equal(badFlag.code, 64);
  });

  it('tail survives a service restart: resumes from its cursor, nothing lost, nothing twice', async () => {
    const tail = spawnCli(['tail', '--addr', addr, '--tail', '5', '--json'], AUTH);
    try {
      await tail.waitForLines(5);
      const startSeq = BigInt(parse(tail.lines)[0]!.seq);
      // Counted from here: the tests before this one published their own traffic.
      const base = (await stack.rows()).length;
      await stack.publish(30, 3);
      await stack.waitRows(base + 30);
      await stack.stopService();
      // Published while the service is down: JetStream keeps them for the restarted service.
      await stack.publish(30, 4);
      await tail.waitForStderr(/reconnecting/);
      await stack.startService();
      await stack.publish(30, 5);
      await stack.waitRows(base + 90);
      const all = await stack.rows('seq >= $1', [String(startSeq)]);
      await tail.waitForLines(all.length);
      const recs = parse(tail.lines);
      assert.deepEqual(
        recs.map((x) => x.seq),
        all.map((x) => x.seq),
        'exactly the committed records from the first one shown, in seq order, once each',
      );
      assert.match(tail.stderr(), /reconnected to .*resuming after/);
    } finally {
      await tail.stop('SIGKILL');
    }
  });
  it('tail shows what the current swarm sends besides protobuf like any other record', async () => {
    const n = (await stack.rows()).length;
    await stack.publish(200, 8, 6, 'current');
    await stack.waitRows(n + 200);
    const json = await runCliOnce(['tail', '--addr', addr, '--tail', '200', '--max', '200', '--json'], AUTH);
    assert.equal(json.code, 0, json.stderr);
    const recs = parse(json.stdout.split('\n'));
    const intents = new Set(recs.map((r) => r.entry.intent));
    for (const intent of ['status', 'text', 'json']) assert.ok(intents.has(intent), `${intent} among ${[...intents].join(', ')}`);
    const texts = recs.filter((r) => r.entry.intent === 'text').length;
    assert.ok(texts > 0);
    const plain = await runCliOnce(['tail', '--addr', addr, '--tail', String(texts), '--max', String(texts), '--intent', 'text'], AUTH);
    assert.equal(plain.code, 0, plain.stderr);
    const lines = plain.stdout.split('\n').filter((l) => l.length > 0);
    assert.equal(lines.length, texts);
    // The agent (the subject's, else "unknown"), the team when there is one, then the text on one line.
    for (const line of lines) assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  \S+ (\[[^\]]+\] )?text: \S/);
  });
});
