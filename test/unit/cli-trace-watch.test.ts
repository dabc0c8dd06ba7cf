// The CLI's renderings of GetTrace (a timeline with one lane per agent, offsets and per-agent steps)
// and of WatchRegistry changes, from protobuf-es messages as the client receives them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import {
  AgentSchema,
  AgentStatus,
  GetTraceResponseSchema,
  RegistryChange_Kind,
  RegistryChangeSchema,
} from '../../web/gen/mycelis/memory/v1/memory_pb.js';
import { duration, renderTimeline } from '../../src/cli/trace.js';
import { describeChange } from '../../src/cli/registry.js';
import { painter } from '../../src/cli/terminal.js';

const T0 = Date.parse('2026-03-01T12:00:00.000Z');
const plain = painter(false);

describe('cli trace', () => {
  it('durations read naturally', () => {
    assert.deepEqual([0, 850, 1234, 12_400, 185_000, 7_440_000].map(duration), ['0ms', '850ms', '1.23s', '12.4s', '3m05s', '2h04m']);
  });

  it('renders a timeline: header, agents with spans, one lane per agent, offsets and per-agent steps', () => {
    const rec = (ms: number, source: string, level: string, intent: string, message: string) => ({
      id: `${source}-${ms}`,
      entry: { timestamp: timestampFromMs(T0 + ms), source, agentId: source, level, intent, message },
    });
    const res = create(GetTraceResponseSchema, {
      traceId: 'wf-1',
      records: [
        rec(0, 'planner', 'INFO', 'text', 'plan the work'),
        rec(100, 'coder', 'INFO', 'tool_call', 'shell'),
        rec(400, 'coder', 'ERROR', 'tool_result', 'permission denied'),
        rec(500, 'planner', 'INFO', 'text', 'done'),
      ],
      agents: [
        { agentId: 'planner', teamId: 'ops', records: 2, errors: 0, firstAt: timestampFromMs(T0), lastAt: timestampFromMs(T0 + 500) },
        { agentId: 'coder', teamId: 'ops', records: 2, errors: 1, firstAt: timestampFromMs(T0 + 100), lastAt: timestampFromMs(T0 + 400) },
      ],
      startedAt: timestampFromMs(T0),
      endedAt: timestampFromMs(T0 + 500),
      totalRecords: 4,
    });
    const out = renderTimeline(res, plain, 120).split('\n');
    assert.equal(out[0], 'trace wf-1: 4 records, 2 agents, 500ms (2026-03-01T12:00:00.000Z to 2026-03-01T12:00:00.500Z)');
    assert.match(out[3]!, /^1\s+planner\s+ops\s+2\s+0\s+500ms from \+0ms$/);
    assert.match(out[4]!, /^2\s+coder\s+ops\s+2\s+1\s+300ms from \+100ms$/);
    const lines = out.slice(out.findIndex((l) => l.includes('+OFFSET')) + 1);
    assert.deepEqual(
      lines.map((l) => l.replace(/\s+/g, ' ').trim()),
      [
        '+0ms - ● INFO planner text: plan the work',
        '+100ms - │ ● INFO coder tool_call: shell',
        '+400ms +300ms │ ● ERROR coder tool_result: permission denied',
        '+500ms +500ms ● INFO planner text: done',
      ],
    );
    const truncated = renderTimeline(create(GetTraceResponseSchema, { ...res, truncated: true, totalRecords: 12_000 }), plain, 120);
    assert.match(truncated, /showing the first 4 records by event time \(the trace has 12000\)/);
  });
});

describe('cli registry --watch', () => {
  const agent = (over: object) => create(AgentSchema, { agentId: 'a-1', teamId: 'ops', status: AgentStatus.IDLE, reportedStatus: AgentStatus.IDLE, ...over });
  const change = (over: object) => create(RegistryChangeSchema, { kind: RegistryChange_Kind.CHANGE, observedAt: timestampFromMs(T0), ...over });
  it('describes a change in one line', () => {
    assert.equal(
      describeChange(change({ agent: agent({ status: AgentStatus.OFFLINE }), previousStatus: AgentStatus.BUSY, changedFields: ['status'], previousTeamId: 'ops' }), plain),
      '2026-03-01T12:00:00.000Z a-1 BUSY -> OFFLINE',
    );
    assert.equal(
      describeChange(change({ agent: agent({ teamId: 'dev', lastErrorSummary: 'disk full' }), previousStatus: AgentStatus.IDLE, changedFields: ['team_id', 'last_error_summary'], previousTeamId: 'ops' }), plain),
      '2026-03-01T12:00:00.000Z a-1 team ops -> dev; error: disk full',
    );
    assert.equal(describeChange(change({ agent: agent({ status: AgentStatus.BUSY }), changedFields: ['status'] }), plain), '2026-03-01T12:00:00.000Z a-1 new agent, BUSY');
  });
});
