// `mycelis-memory publish` as a child process (tsx src/cli.ts) against the shared NATS, isolated by a
// unique subject prefix: exact counts, every message decodes with the generated types, pacing,
// usage errors (64) and an unreachable server (3).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, type Msg, type NatsConnection } from 'nats';

import { LogEntry, MessageType, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';
import { freePort, SHARED_NATS_URL, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { runCli } from '../helpers/cli.js';

interface Received {
  subject: string;
  data: Uint8Array;
  type: string | undefined;
  atMs: number;
}

describe('cli publish', () => {
  let nc: NatsConnection;
  before(async () => {
    nc = await connect({ servers: SHARED_NATS_URL });
  });
  after(async () => {
    await nc.close();
  });

  async function collect(prefix: string): Promise<{ got: Received[]; stop: () => void }> {
    const got: Received[] = [];
    const sub = nc.subscribe(`${prefix}.>`, {
      callback: (_err, m: Msg) => {
        got.push({ subject: m.subject, data: m.data, type: m.headers?.get('Mycelis-Type') || undefined, atMs: performance.now() });
      },
    });
    await nc.flush(); // the subscription is registered on the server before anyone publishes
    return { got, stop: () => sub.unsubscribe() };
  }

  it('--count 100 puts exactly 100 decodable messages on NATS', async () => {
    const { prefix } = uniqueNatsNames('publish');
    const { got, stop } = await collect(prefix);
    const r = await runCli(['publish', '--count', '100', '--subject-prefix', prefix, '--seed', '7', '--server', SHARED_NATS_URL]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor('100 messages', () => got.length >= 100);
    await nc.flush();
    stop();
    assert.equal(got.length, 100);
    assert.match(r.stderr, /published 100 messages in \d+\.\d+s \(\d+ msg\/s\)/);

    const kinds = new Map<string, number>();
    const openCalls = new Set<string>();
    let smoke = 0;
    for (const m of got) {
      assert.ok(m.subject.startsWith(`${prefix}.`), m.subject);
      const rest = m.subject.slice(prefix.length + 1);
      if (m.type === 'mycelis.swarm.v1.LogEntry') {
        assert.match(rest, /^log\.[a-z]+-\d{4}$/);
        const e = LogEntry.decode(m.data);
        assert.ok(e.intent.length > 0 && e.errorMessage.length > 0, JSON.stringify(e));
        assert.equal(e.level, 'ERROR');
        assert.ok(e.timestamp && Number(e.timestamp.seconds) > 1_700_000_000);
        assert.equal(rest, `log.${e.agentId}`);
        kinds.set('log', (kinds.get('log') ?? 0) + 1);
        continue;
      }
      assert.equal(m.type, 'mycelis.swarm.v1.MsgEnvelope', `a prefixed run labels every message (${m.subject})`);
      const env = MsgEnvelope.decode(m.data);
      assert.ok(env.payload, `exactly one payload set: ${JSON.stringify(env)}`);
      assert.ok(env.timestamp && Number(env.timestamp.seconds) > 1_700_000_000);
      assert.ok(env.id.length > 0);
      kinds.set(env.payload.$case, (kinds.get(env.payload.$case) ?? 0) + 1);
      switch (env.payload.$case) {
        case 'event': {
          assert.equal(env.type, MessageType.MESSAGE_TYPE_EVENT);
          const ev = env.payload.value;
          if (rest === 'smoke.test') {
            smoke++;
            assert.equal(env.id, 'test-id-2');
            assert.equal(env.sourceAgentId, 'finance-bot');
            assert.equal(env.teamId, 'finance');
            assert.ok(env.swarmContext);
          } else if (ev.eventType === 'heartbeat') {
            assert.equal(rest, `prod.agent.${env.sourceAgentId}.heartbeat`);
            assert.ok(['IDLE', 'BUSY'].includes(ev.data?.['status']), JSON.stringify(ev.data));
            assert.equal(typeof ev.data?.['battery'], 'number');
            assert.equal(typeof ev.data?.['location'], 'string');
          } else {
            assert.equal(rest, `team.${env.teamId}.internal.trigger`);
            assert.ok(env.swarmContext && Object.keys(env.swarmContext).length > 0);
          }
          break;
        }
        case 'toolCall':
          assert.equal(env.type, MessageType.MESSAGE_TYPE_TOOL_CALL);
          assert.equal(rest, `team.${env.teamId}.agent.${env.sourceAgentId}.output`);
          assert.ok(env.payload.value.toolName.length > 0);
          openCalls.add(env.payload.value.callId);
          break;
        case 'toolResult':
          assert.equal(env.type, MessageType.MESSAGE_TYPE_TOOL_RESULT);
          assert.equal(rest, `team.${env.teamId}.agent.${env.sourceAgentId}.output`);
          // Core NATS keeps one publisher's order: every result answers a call seen before it.
          assert.ok(openCalls.delete(env.payload.value.callId), `result for an unknown call ${env.payload.value.callId}`);
          if (env.payload.value.isError) assert.ok(env.payload.value.errorMessage.length > 0);
          break;
        case 'text':
          assert.equal(env.type, MessageType.MESSAGE_TYPE_TEXT);
          assert.equal(rest, `agent.${env.sourceAgentId}.output`);
          assert.ok(env.payload.value.content.length > 0);
          break;
      }
    }
    assert.ok(smoke >= 1, 'the directive verification message is published');
    for (const k of ['event', 'toolCall', 'toolResult', 'text', 'log']) assert.ok((kinds.get(k) ?? 0) > 0, `no ${k} in ${JSON.stringify([...kinds])}`);
  });

  it('--mix current also sends signal and telemetry envelopes, mission events, JSON and text', async () => {
    const { prefix } = uniqueNatsNames('publish_mix');
    const { got, stop } = await collect(prefix);
    const r = await runCli(['publish', '--count', '2000', '--mix', 'current', '--subject-prefix', prefix, '--server', SHARED_NATS_URL, '-q']);
    assert.equal(r.code, 0, r.stderr);
    await waitFor('2000 messages', () => got.length >= 2000);
    stop();
    for (const kind of ['signal_status', 'signal_result', 'telemetry', 'mission_event', 'trigger_json', 'reply_text', 'user_input', 'proto_json_text', 'heartbeat']) {
      assert.match(r.stderr, new RegExp(`\\b${kind}=\\d+`), `${kind} in the summary: ${r.stderr}`);
    }
    const rest = (m: Received): string => m.subject.slice(prefix.length + 1);
    const signal = got.find((m) => /^team\.[\w-]+\.signal\.status$/.test(rest(m)))!;
    assert.equal(signal.type, undefined, 'no Mycelis-Type on the JSON formats (it would make them strict)');
    const body = JSON.parse(new TextDecoder().decode(signal.data)) as { meta: Record<string, string> };
    assert.match(body.meta['timestamp']!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:00)$/);
    const text = got.find((m) => rest(m) === 'global.input.user')!;
    assert.ok(new TextDecoder().decode(text.data).length > 0);
  });

  it('gives the verification message a fresh timestamp on every run', async () => {
    const { prefix } = uniqueNatsNames('smoke');
    const { got, stop } = await collect(`${prefix}.smoke`);
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['publish', '--count', '1', '--subject-prefix', prefix, '--quiet']);
      assert.equal(r.code, 0, r.stderr);
    }
    await waitFor('2 smoke messages', () => got.length >= 2);
    stop();
    const [a, b] = got.map((m) => MsgEnvelope.decode(m.data));
    assert.equal(a!.id, 'test-id-2');
    assert.equal(b!.id, 'test-id-2');
    assert.notDeepEqual(a!.timestamp, b!.timestamp);
  });

  it('--rate paces the messages over time', async () => {
    const { prefix } = uniqueNatsNames('rate');
    const { got, stop } = await collect(prefix);
    // 30 messages at 30/s: the last is due (30-1)/30 s after the first. Only a lower bound is
    // asserted; a slow machine can only stretch it.
    const r = await runCli(['publish', '--count', '30', '--rate', '30', '--subject-prefix', prefix]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor('30 messages', () => got.length >= 30);
    stop();
    const span = got.at(-1)!.atMs - got[0]!.atMs;
    assert.ok(span >= 800, `30 messages at 30/s arrived within ${span.toFixed(0)} ms`);
    const m = /published 30 messages in (\d+\.\d+)s/.exec(r.stderr);
    assert.ok(m && Number(m[1]) >= 0.9, r.stderr);
  });

  for (const args of [
    ['publish', '--count', 'abc'],
    ['publish', '--count', '-5'],
    ['publish', '--rate', 'fast'],
    ['publish', '--bogus'],
    ['publish', 'extra-positional'],
    ['publish', '--subject-prefix', 'a.>'],
    ['publish', '--type-headers', 'sometimes'],
    ['publish', '--mix', 'everything'],
    ['frobnicate'],
    [],
  ]) {
    it(`exits 64 with usage for: ${args.join(' ') || '(no command)'}`, async () => {
      const r = await runCli(args);
      assert.equal(r.code, 64, r.stderr);
      assert.match(r.stderr, /Usage: mycelis-memory/);
      assert.equal(r.stdout, '');
    });
  }

  it('--help prints the usage on stdout and exits 0', async () => {
    const r = await runCli(['publish', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: mycelis-memory publish/);
    assert.match(r.stdout, /--subject-prefix/);
    const top = await runCli(['help']);
    assert.equal(top.code, 0);
    for (const c of ['serve', 'migrate', 'publish']) assert.match(top.stdout, new RegExp(`^  ${c} `, 'm'));
    assert.match(top.stdout, /64 +usage error/);
  });

  it('exits 3 with a clear message when the server is unreachable', async () => {
    const port = await freePort();
    const r = await runCli(['publish', '--count', '5', '--server', `nats://127.0.0.1:${port}`]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^mycelis-memory: cannot connect to NATS at nats://127\\.0\\.0\\.1:${port}: `));
  });

  it('exits 2 naming NATS_URL when it is invalid and no --server is given', async () => {
    const r = await runCli(['publish', '--count', '1'], { NATS_URL: 'http://nats:4222' });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^mycelis-memory: invalid configuration: NATS_URL: /);
  });
});
