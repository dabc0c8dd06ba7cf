// src/cli/traffic.ts: the generator publish, the benchmark and tests share. Pure: same seed and
// clock, same bytes; realistic mix, sizes and subjects.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { FORMAT_OF, generateTraffic, SMOKE_TEST, type TrafficKind, type TrafficMessage } from '../../src/cli/traffic.js';
import { normalizeMessage } from '../../src/domain/normalize.js';
import { compileSubjectMatcher } from '../../src/domain/subjects.js';
import { LogEntry, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';

const T0_MS = Date.UTC(2026, 0, 1);
const fixedClock = (): number => T0_MS;

describe('generateTraffic', () => {
  it('is deterministic for a seed and clock, and differs across seeds', () => {
    const a = [...generateTraffic({ count: 300, seed: 42, clock: fixedClock })];
    const b = [...generateTraffic({ count: 300, seed: 42, clock: fixedClock })];
    const c = [...generateTraffic({ count: 300, seed: 43, clock: fixedClock })];
    assert.deepEqual(a, b);
    assert.notDeepEqual(
      a.map((m) => m.subject),
      c.map((m) => m.subject),
    );
  });

  it('spreads ~1,000 agents over 40 teams with the realistic mix', () => {
    const msgs = [...generateTraffic({ count: 20_000, agents: 1000, seed: 5, clock: fixedClock })];
    assert.equal(msgs.length, 20_000);
    const agents = new Set<string>();
    const teams = new Set<string>();
    const kinds = new Map<string, number>();
    let errors = 0;
    const ctxSizes: number[] = [];
    let lastUs = 0n;
    for (const m of msgs) {
      kinds.set(m.kind, (kinds.get(m.kind) ?? 0) + 1);
      assert.equal(m.headers, undefined, 'no type headers under the real "swarm" prefix');
      assert.match(m.subject, /^swarm\.(prod\.agent\.[\w-]+\.heartbeat|team\.[\w-]+\.agent\.[\w-]+\.output|team\.[\w-]+\.internal\.trigger|agent\.[\w-]+\.output|log\.[\w-]+|smoke\.test)$/);
      const ts = m.kind === 'log_error' ? decodeLog(m).timestamp! : decodeEnv(m).timestamp!;
      const us = BigInt(ts.seconds) * 1_000_000n + BigInt(ts.nanos / 1000);
      assert.ok(us > lastUs, 'timestamps strictly increase (a fixed clock still yields distinct events)');
      lastUs = us;
      if (m.kind === 'log_error' || m.kind === 'smoke') continue;
      const env = decodeEnv(m);
      agents.add(env.sourceAgentId);
      teams.add(env.teamId);
      if (env.payload?.$case === 'toolResult' && env.payload.value.isError) errors++;
      if (m.kind === 'event') ctxSizes.push(Buffer.byteLength(JSON.stringify(env.swarmContext)));
    }
    assert.ok(agents.size > 950, `agents seen: ${agents.size}`);
    assert.equal(teams.size, 40);
    for (const k of ['heartbeat', 'tool_call', 'tool_result', 'text', 'event', 'log_error', 'smoke']) assert.ok((kinds.get(k) ?? 0) > 0, k);
    assert.ok((kinds.get('heartbeat') ?? 0) > 20_000 * 0.25);
    assert.ok(errors > 0, 'some tool results fail');
    const avg = ctxSizes.reduce((a, b) => a + b, 0) / ctxSizes.length;
    assert.ok(avg > 200 && avg < 400, `swarm_context averages ${avg.toFixed(0)} bytes`);
  });

  it('starts with the directive verification message', () => {
    const [first] = generateTraffic({ count: 1, clock: fixedClock });
    assert.equal(first!.subject, SMOKE_TEST.subject);
    const env = decodeEnv(first!);
    assert.equal(env.id, 'test-id-2');
    assert.equal(env.sourceAgentId, 'finance-bot');
    assert.equal(env.teamId, 'finance');
    assert.equal(env.payload?.$case, 'event');
  });

  it('replaces the leading swarm token and labels types under another prefix', () => {
    const msgs = [...generateTraffic({ count: 200, subjectPrefix: 'it.t1', seed: 9 })];
    for (const m of msgs) {
      assert.ok(m.subject.startsWith('it.t1.') && !m.subject.includes('swarm'), m.subject);
      assert.equal(m.headers?.['Mycelis-Type'], m.kind === 'log_error' ? 'mycelis.swarm.v1.LogEntry' : 'mycelis.swarm.v1.MsgEnvelope');
    }
    const none = [...generateTraffic({ count: 50, subjectPrefix: 'it.t1', typeHeaders: false })];
    assert.ok(none.every((m) => m.headers === undefined));
  });

  it('mix current: everything the current swarm sends, each read as its format, mostly protobuf heartbeats', () => {
    const now = Date.now();
    const opts = { isLogEntrySubject: compileSubjectMatcher(['swarm.log.>']), maxEventBytes: 1 << 20 };
    const kinds = new Map<string, number>();
    const formats = new Map<string, number>();
    for (const [prefix, typeHeaders] of [['swarm', false], ['it.t2', true]] as const) {
      const msgs = [...generateTraffic({ count: 20_000, agents: 200, seed: 7, mix: 'current', subjectPrefix: prefix, typeHeaders })];
      msgs.forEach((m, i) => {
        const r = normalizeMessage({ subject: m.subject, data: m.data, headers: m.headers ? new Map(Object.entries(m.headers)) : undefined, streamName: 'S', streamCreatedUs: 1, streamSeq: i + 1, serverTimeUs: (now + 60_000) * 1000, receivedAtUs: now * 1000 }, opts);
        if (!r.ok) assert.fail(`${m.kind} on ${m.subject}: ${r.reject.reason} ${r.reject.detail}`);
        assert.equal(r.format, FORMAT_OF[m.kind], `${m.kind} read as ${r.format}`);
        if (prefix === 'swarm') {
          kinds.set(m.kind, (kinds.get(m.kind) ?? 0) + 1);
          formats.set(r.format, (formats.get(r.format) ?? 0) + 1);
          // JSON envelopes carry the generator's clock: their event time is theirs, not the server's.
          if (r.format === 'signal' || r.format === 'telemetry') assert.ok(Math.abs(r.row.timestampUs - now * 1000) < 60_000_000, m.kind);
        }
        if (typeHeaders && m.headers) assert.ok(['protobuf', 'proto_json'].includes(FORMAT_OF[m.kind]), 'type headers only on swarm/v1 messages');
      });
    }
    for (const k of Object.keys(FORMAT_OF) as TrafficKind[]) assert.ok((kinds.get(k) ?? 0) > 0, `${k} generated`);
    assert.ok(formats.get('protobuf')! > 20_000 * 0.6, `protobuf ${formats.get('protobuf')}`);
    assert.ok(kinds.get('heartbeat')! > 20_000 * 0.45);
    for (const f of ['signal', 'telemetry', 'mission_event', 'json', 'text', 'proto_json']) assert.ok(formats.get(f)! >= 100, `${f}: ${formats.get(f)}`);
  });

  it('kinds restricts the mix', () => {
    const msgs = [...generateTraffic({ count: 500, mix: 'current', kinds: ['telemetry', 'user_input'] })];
    assert.deepEqual([...new Set(msgs.map((m) => m.kind))].sort(), ['telemetry', 'user_input']);
    assert.throws(() => [...generateTraffic({ count: 1, kinds: ['telemetry'] })], RangeError, 'not in the protobuf mix');
  });

  it('rejects impossible options', () => {
    assert.throws(() => [...generateTraffic({ count: 1, subjectPrefix: 'a.*' })], RangeError);
    assert.throws(() => [...generateTraffic({ count: 1, subjectPrefix: 'a..b' })], RangeError);
    assert.throws(() => [...generateTraffic({ count: 1, agents: 0 })], RangeError);
    assert.throws(() => [...generateTraffic({ count: -1 })], RangeError);
  });
});

function decodeEnv(m: TrafficMessage): MsgEnvelope {
  return MsgEnvelope.decode(m.data);
}
function decodeLog(m: TrafficMessage): LogEntry {
  return LogEntry.decode(m.data);
}
