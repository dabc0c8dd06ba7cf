// Realistic Mycelis swarm traffic, as deployed agents put it on NATS (DESIGN 2.1): heartbeats,
// tool calls followed by their results (some failing), text, events carrying a swarm_context,
// structured LogEntry errors, and the directive's verification message. With `mix: 'current'`, also
// everything else the current swarm sends (DESIGN 3.1.1, test/fixtures/swarm-head): signal and
// telemetry envelopes, mission events, scheduler JSON, proto3 JSON envelopes, and plain text (agents'
// answers, user input, interjections), mostly still protobuf heartbeats by count. No I/O: `publish`,
// the benchmark and the tests all drive it. Content is a function of the seed; timestamps come from
// `clock` and are strictly increasing in µs, so a producer that reuses a fixed id (the verification
// message's "test-id-2") still yields distinct events (DESIGN 3.2).
import { LogEntry, MessageType, MsgEnvelope } from '../gen/mycelis/swarm/v1/swarm.js';

export interface TrafficOptions {
  /** Number of messages to generate. */
  readonly count: number;
  /** Distinct agents (default 10). */
  readonly agents?: number;
  /** Teams the agents are spread over (default: one per 25 agents, at least 2 when there are 2+ agents). */
  readonly teams?: number;
  /** Replaces the leading `swarm` token of every subject (default "swarm"), so tests can isolate. */
  readonly subjectPrefix?: string;
  /** Seed for the content (default 1). */
  readonly seed?: number;
  /** Milliseconds since the epoch (default Date.now); read once per message. */
  readonly clock?: () => number;
  /**
   * Add a `Mycelis-Type` header naming the message type. Deployed agents do not send it; the service
   * then tells a LogEntry by its subject (LOG_ENTRY_SUBJECTS, default swarm.log.>), which a changed
   * prefix no longer matches. Default: only when the prefix is not "swarm".
   */
  readonly typeHeaders?: boolean;
  /** 'protobuf' (default): the swarm/v1 messages only; 'current': everything the current swarm sends. */
  readonly mix?: TrafficMix;
  /** Only these kinds (their weights in the mix renormalized); the smoke message only when listed. */
  readonly kinds?: readonly TrafficKind[];
}

export const TRAFFIC_MIXES = ['protobuf', 'current'] as const;
export type TrafficMix = (typeof TRAFFIC_MIXES)[number];

export type TrafficKind =
  | 'heartbeat'
  | 'tool_call'
  | 'tool_result'
  | 'text'
  | 'event'
  | 'log_error'
  | 'smoke'
  // mix 'current' only:
  | 'proto_json_text'
  | 'signal_status'
  | 'signal_result'
  | 'signal_command'
  | 'telemetry'
  | 'mission_event'
  | 'trigger_json'
  | 'reply_text'
  | 'user_input'
  | 'interjection';

/** The format the service reads each kind as (the `format` label of mycelis_memory_ingest_messages_total). */
export const FORMAT_OF: Readonly<Record<TrafficKind, string>> = {
  heartbeat: 'protobuf',
  tool_call: 'protobuf',
  tool_result: 'protobuf',
  text: 'protobuf',
  event: 'protobuf',
  log_error: 'protobuf',
  smoke: 'protobuf',
  proto_json_text: 'proto_json',
  signal_status: 'signal',
  signal_result: 'signal',
  signal_command: 'signal',
  telemetry: 'telemetry',
  mission_event: 'mission_event',
  trigger_json: 'json',
  reply_text: 'text',
  user_input: 'text',
  interjection: 'text',
};

export interface TrafficMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers?: Record<string, string>;
  /** What was generated (for summaries and tests; not sent). */
  readonly kind: TrafficKind;
}

export const LOG_ENTRY_TYPE = 'mycelis.swarm.v1.LogEntry';
export const ENVELOPE_TYPE = 'mycelis.swarm.v1.MsgEnvelope';

/** The directive's verification message: id, source, team and subject as Mycelis' smoke test sends them. */
export const SMOKE_TEST = { id: 'test-id-2', source: 'finance-bot', team: 'finance', subject: 'swarm.smoke.test' } as const;

const ROLES = ['planner', 'coder', 'researcher', 'qa', 'scout', 'analyst', 'writer', 'courier', 'sentinel', 'broker'];
const TEAM_NAMES = [
  'ops', 'dev', 'finance', 'research', 'support', 'sales', 'infra', 'security', 'data', 'ml',
  'legal', 'growth', 'design', 'mobile', 'web', 'platform', 'payments', 'risk', 'search', 'ads',
  'billing', 'catalog', 'checkout', 'delivery', 'docs', 'edge', 'fleet', 'gaming', 'health', 'identity',
  'inventory', 'logistics', 'maps', 'media', 'messaging', 'network', 'observability', 'partners', 'pricing', 'quality',
];
const LOCATIONS = ['rack-1', 'rack-2', 'rack-7', 'eu-west-1a', 'us-east-2b', 'edge-lisbon', 'edge-osaka', 'lab-3'];
const TOOLS: { name: string; args: (r: Rng) => Record<string, unknown> }[] = [
  { name: 'shell', args: (r) => ({ cmd: r.pick(['ls -la', 'git status', 'npm test', 'df -h']), timeout: 30, env: { CI: '1' } }) },
  { name: 'http.get', args: (r) => ({ url: `https://api.example.com/v1/items/${r.int(1, 99999)}`, headers: { accept: 'application/json' } }) },
  { name: 'sql.query', args: (r) => ({ query: 'select id, total from orders where created_at > $1', params: [`2026-01-${String(r.int(1, 28)).padStart(2, '0')}`] }) },
  { name: 'search.web', args: (r) => ({ q: r.pick(['swarm consensus', 'nats jetstream', 'battery drain', 'pgvector index']), limit: r.int(3, 20) }) },
  { name: 'fs.read', args: (r) => ({ path: `/work/repo/src/${r.pick(['main', 'router', 'agent', 'planner'])}.go`, max_bytes: 65536 }) },
];
const TOOL_ERRORS = ['permission denied', 'timeout after 30s', 'exit status 1: tests failed', 'HTTP 503 from upstream', 'relation "orders" does not exist'];
const INTENTS = ['inform', 'request', 'propose', 'confirm', 'reply'];
const SENTENCES = [
  'Picked up the ticket; starting with the failing integration test.',
  'Found three candidate sources, summarising the two most cited ones.',
  'Budget check passed, forwarding the proposal to the approver.',
  'The deployment window opens in ten minutes; holding until then.',
  'Retrying the upstream call with backoff, second attempt.',
  'Plan updated: split the migration into two forward-only steps.',
];
const EVENT_TYPES = ['task.assigned', 'task.completed', 'payment.create', 'memory.recall', 'plan.updated'];
const LOG_INTENTS = ['plan.step', 'tool.invoke', 'memory.write', 'handoff'];
const LOG_ERRORS = ['LLM provider returned 429: rate limited', 'context window exceeded (131072 tokens)', 'handoff target unreachable', 'schema validation failed for tool output'];

/** mulberry32: small, fast, deterministic. */
class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  hex(n: number): string {
    let s = '';
    while (s.length < n) s += Math.floor(this.next() * 0x100000000).toString(16).padStart(8, '0');
    return s.slice(0, n);
  }
}

interface Agent {
  readonly id: string;
  readonly team: string;
  readonly location: string;
  battery: number;
  /** Open tool calls awaiting their result. */
  readonly pending: string[];
  calls: number;
}

/** A subject prefix: one or more non-empty tokens without wildcards or whitespace. */
export function isValidSubjectPrefix(prefix: string): boolean {
  return prefix.split('.').every((t) => t.length > 0 && !/[\s*>]/.test(t));
}

export function defaultTeamCount(agents: number): number {
  return Math.min(agents, Math.max(agents >= 2 ? 2 : 1, Math.ceil(agents / 25)));
}

function teamName(i: number): string {
  const base = TEAM_NAMES[i % TEAM_NAMES.length]!;
  return i < TEAM_NAMES.length ? base : `${base}-${Math.floor(i / TEAM_NAMES.length)}`;
}

// Weights of each kind in the mix (the smoke message is also always first).
const MIX: [TrafficKind, number][] = [
  ['heartbeat', 0.34],
  ['tool_call', 0.16],
  ['tool_result', 0.16],
  ['text', 0.15],
  ['event', 0.12],
  ['log_error', 0.06],
  ['smoke', 0.01],
];
// The current swarm by count (test/fixtures/swarm-head/README.md): mostly protobuf heartbeats; signals
// a few percent (two per tool call, one per reply); telemetry rare; mission events, answers and input.
const CURRENT_MIX: [TrafficKind, number][] = [
  ['heartbeat', 0.51],
  ['tool_call', 0.05],
  ['tool_result', 0.05],
  ['text', 0.03],
  ['event', 0.03],
  ['log_error', 0.01],
  ['smoke', 0.005],
  ['proto_json_text', 0.01],
  ['signal_status', 0.08],
  ['signal_result', 0.06],
  ['signal_command', 0.01],
  ['telemetry', 0.03],
  ['mission_event', 0.05],
  ['trigger_json', 0.02],
  ['reply_text', 0.04],
  ['user_input', 0.01],
  ['interjection', 0.005],
];
const SIGNAL_TYPES = ['task_complete', 'task_complete', 'task_failed', 'sensor_data', 'sensor_data', 'heartbeat', 'chat_response', 'governance_halt'];
const MISSION_EVENTS = ['mission.started', 'tool.invoked', 'tool.invoked', 'tool.completed', 'tool.completed', 'tool.failed', 'agent.started', 'memory.stored', 'artifact.created', 'mission.completed'];
const SOURCE_KINDS = ['internal_tool', 'internal_tool', 'mcp', 'system'];
const USER_INPUTS = [
  "summarize yesterday's incidents for the ops team",
  'what is blocking the release?',
  'draft a reply to the customer about the outage',
  'compare the two vendor quotes',
];
const INTERJECTIONS = ['stop — use the staging database, not prod', 'skip the flaky test for now', 'ask before spending more than $50'];
const utf8 = new TextEncoder();
const json = (v: unknown): Uint8Array => utf8.encode(JSON.stringify(v));

/** RFC 3339 with nanoseconds, the way Go writes a time.Time: UTC, or (every fifth) with an offset. */
function goTime(ts: { seconds: string; nanos: number }, offsetHours: number): string {
  const ms = Number(ts.seconds) * 1000 + offsetHours * 3_600_000;
  const base = new Date(ms).toISOString().slice(0, 19);
  const frac = ts.nanos === 0 ? '' : `.${String(ts.nanos).padStart(9, '0').replace(/0+$/, '')}`;
  if (offsetHours === 0) return `${base}${frac}Z`;
  const sign = offsetHours < 0 ? '-' : '+';
  return `${base}${frac}${sign}${String(Math.abs(offsetHours)).padStart(2, '0')}:00`;
}

export function* generateTraffic(opts: TrafficOptions): Generator<TrafficMessage, void, undefined> {
  const count = opts.count;
  const agentCount = opts.agents ?? 10;
  const teamCount = opts.teams ?? defaultTeamCount(agentCount);
  const prefix = opts.subjectPrefix ?? 'swarm';
  const clock = opts.clock ?? Date.now;
  const typeHeaders = opts.typeHeaders ?? prefix !== 'swarm';
  const mix = (opts.mix ?? 'protobuf') === 'current' ? CURRENT_MIX : MIX;
  const kindsWanted = opts.kinds === undefined ? null : new Set(opts.kinds);
  const weights = kindsWanted === null ? mix : mix.filter(([k]) => kindsWanted.has(k));
  const weightSum = weights.reduce((a, [, w]) => a + w, 0);
  if (weights.length === 0) throw new RangeError(`none of the kinds ${JSON.stringify(opts.kinds)} is in the ${opts.mix ?? 'protobuf'} mix`);
  const smokeFirst = kindsWanted === null || kindsWanted.has('smoke');
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
  if (!Number.isSafeInteger(agentCount) || agentCount < 1) throw new RangeError(`agents must be a positive integer, got ${agentCount}`);
  if (!Number.isSafeInteger(teamCount) || teamCount < 1) throw new RangeError(`teams must be a positive integer, got ${teamCount}`);
  if (!isValidSubjectPrefix(prefix)) throw new RangeError(`subject prefix ${JSON.stringify(prefix)} is not a valid NATS subject prefix`);

  const rng = new Rng(opts.seed ?? 1);
  const agents: Agent[] = [];
  for (let i = 0; i < agentCount; i++) {
    agents.push({
      id: `${ROLES[i % ROLES.length]}-${String(i + 1).padStart(4, '0')}`,
      team: teamName(i % teamCount),
      location: rng.pick(LOCATIONS),
      battery: 0.5 + rng.next() / 2,
      pending: [],
      calls: 0,
    });
  }
  const subject = (rest: string): string => `${prefix}.${rest}`;
  const envelopeHeaders = typeHeaders ? { 'Mycelis-Type': ENVELOPE_TYPE } : undefined;
  const logHeaders = typeHeaders ? { 'Mycelis-Type': LOG_ENTRY_TYPE } : undefined;

  // Strictly increasing µs timestamps: the clock's value, or one µs after the previous one.
  let lastUs = 0;
  const timestamp = (): { seconds: string; nanos: number } => {
    lastUs = Math.max(Math.floor(clock() * 1000), lastUs + 1);
    const seconds = Math.floor(lastUs / 1_000_000);
    return { seconds: String(seconds), nanos: (lastUs - seconds * 1_000_000) * 1000 };
  };
  // Workflows: a team's messages share a trace id for a run of 3-24 of them, so a trace spans several
  // agents (what GetTrace and `mycelis-memory trace` show); a tool result shares its call's trace.
  const workflows = new Map<string, { id: string; left: number }>();
  const trace = (agent: Agent): string => {
    let w = workflows.get(agent.team);
    if (w === undefined || w.left <= 0) workflows.set(agent.team, (w = { id: rng.hex(32), left: rng.int(3, 24) }));
    w.left--;
    return w.id;
  };
  const span = (): string => rng.hex(16);
  const swarmContext = (agent: Agent): Record<string, unknown> => ({
    mission: `${agent.team}-m${rng.int(100, 999)}`,
    conversation_id: `conv-${rng.hex(12)}`,
    budget: { remaining: Math.round(rng.next() * 100000) / 100, currency: 'USD', ceiling: 2500 },
    hops: rng.int(0, 6),
    priority: rng.pick(['low', 'normal', 'high']),
    tags: [agent.team, rng.pick(ROLES), rng.pick(['nightly', 'adhoc', 'customer'])],
    upstream: { agent: rng.pick(agents).id, span: span() },
    approver: rng.next() < 0.5 ? null : 'human:oncall',
  });

  // Open tool calls, oldest first: results come back roughly in call order, from the caller.
  const openCalls: { agent: Agent; callId: string; traceId: string }[] = [];

  const runs: string[] = [];
  const runOf = (): string => {
    if (runs.length === 0 || rng.next() < 0.05) runs.push(`run-${rng.hex(6)}`);
    if (runs.length > 20) runs.shift();
    return rng.pick(runs);
  };
  const uuid = (): string => {
    const h = rng.hex(32);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${'89ab'[parseInt(h[16]!, 16) & 3]}${h.slice(17, 20)}-${h.slice(20, 32)}`;
  };

  for (let n = 0; n < count; n++) {
    let agent = rng.pick(agents);
    let kind: TrafficKind = 'smoke';
    if (n > 0 || !smokeFirst) {
      const r = rng.next() * weightSum;
      let acc = 0;
      for (const [k, w] of weights) {
        acc += w;
        kind = k;
        if (r < acc) break;
      }
    }
    // A result answers the oldest open call, from the agent that made it; with none open, call first.
    let callId = '';
    let callTrace = '';
    if (kind === 'tool_result') {
      const open = openCalls.shift();
      if (open) {
        agent = open.agent;
        callId = open.callId;
        callTrace = open.traceId;
        agent.pending.splice(agent.pending.indexOf(callId), 1);
      } else {
        kind = 'tool_call';
      }
    }

    switch (kind) {
      case 'smoke': {
        const env: MsgEnvelope = {
          id: SMOKE_TEST.id,
          timestamp: timestamp(),
          sourceAgentId: SMOKE_TEST.source,
          type: MessageType.MESSAGE_TYPE_EVENT,
          payload: {
            $case: 'event',
            value: { eventType: 'payment.create', streamId: 'payments', data: { amount: 100, currency: 'USD', lines: [{ sku: 'a', qty: 2 }] } },
          },
          traceId: '',
          spanId: '',
          teamId: SMOKE_TEST.team,
          swarmContext: { budget: { remaining: 900.5 }, approver: null },
        };
        yield msg(kind, subject(SMOKE_TEST.subject.slice('swarm.'.length)), MsgEnvelope.encode(env).finish(), envelopeHeaders);
        break;
      }
      case 'heartbeat': {
        agent.battery = Math.max(0.05, agent.battery - rng.next() * 0.01);
        const env: MsgEnvelope = {
          id: `hb-${agent.id}-${rng.hex(8)}`,
          timestamp: timestamp(),
          sourceAgentId: agent.id,
          type: MessageType.MESSAGE_TYPE_EVENT,
          payload: {
            $case: 'event',
            value: {
              eventType: 'heartbeat',
              streamId: 'main',
              data: {
                status: agent.pending.length > 0 ? 'BUSY' : rng.next() < 0.7 ? 'IDLE' : 'BUSY',
                battery: Math.round(agent.battery * 1000) / 1000,
                location: agent.location,
              },
            },
          },
          traceId: '',
          spanId: '',
          teamId: agent.team,
          swarmContext: undefined,
        };
        yield msg(kind, subject(`prod.agent.${agent.id}.heartbeat`), MsgEnvelope.encode(env).finish(), envelopeHeaders);
        break;
      }
      case 'tool_call': {
        const tool = rng.pick(TOOLS);
        callId = `call-${agent.id}-${++agent.calls}-${rng.hex(6)}`;
        agent.pending.push(callId);
        const traceId = trace(agent);
        openCalls.push({ agent, callId, traceId });
        const env: MsgEnvelope = {
          id: `tc-${rng.hex(16)}`,
          timestamp: timestamp(),
          sourceAgentId: agent.id,
          type: MessageType.MESSAGE_TYPE_TOOL_CALL,
          payload: { $case: 'toolCall', value: { callId, toolName: tool.name, arguments: tool.args(rng) } },
          traceId,
          spanId: span(),
          teamId: agent.team,
          swarmContext: undefined,
        };
        yield msg(kind, subject(`team.${agent.team}.agent.${agent.id}.output`), MsgEnvelope.encode(env).finish(), envelopeHeaders);
        break;
      }
      case 'tool_result': {
        const isError = rng.next() < 0.15;
        const env: MsgEnvelope = {
          id: `tr-${rng.hex(16)}`,
          timestamp: timestamp(),
          sourceAgentId: agent.id,
          type: MessageType.MESSAGE_TYPE_TOOL_RESULT,
          payload: {
            $case: 'toolResult',
            value: isError
              ? { callId, result: { exit_code: 1 }, isError: true, errorMessage: rng.pick(TOOL_ERRORS) }
              : { callId, result: { exit_code: 0, rows: rng.int(0, 500), duration_ms: rng.int(3, 4000) }, isError: false, errorMessage: '' },
          },
          traceId: callTrace,
          spanId: span(),
          teamId: agent.team,
          swarmContext: undefined,
        };
        yield msg(kind, subject(`team.${agent.team}.agent.${agent.id}.output`), MsgEnvelope.encode(env).finish(), envelopeHeaders);
        break;
      }
      case 'text': {
        const env: MsgEnvelope = {
          id: `tx-${rng.hex(16)}`,
          timestamp: timestamp(),
          sourceAgentId: agent.id,
          type: MessageType.MESSAGE_TYPE_TEXT,
          payload: {
            $case: 'text',
            value: { content: rng.pick(SENTENCES), recipientId: rng.pick(agents).id, intent: rng.pick(INTENTS), contextId: `thread-${rng.int(1, 400)}` },
          },
          traceId: trace(agent),
          spanId: span(),
          teamId: agent.team,
          swarmContext: undefined,
        };
        yield msg(kind, subject(`agent.${agent.id}.output`), MsgEnvelope.encode(env).finish(), envelopeHeaders);
        break;
      }
      case 'event': {
        const eventType = rng.pick(EVENT_TYPES);
        const env: MsgEnvelope = {
          id: `ev-${rng.hex(16)}`,
          timestamp: timestamp(),
          sourceAgentId: agent.id,
          type: MessageType.MESSAGE_TYPE_EVENT,
          payload: {
            $case: 'event',
            value: { eventType, streamId: rng.pick(['main', 'payments', 'tasks']), data: { ref: `${eventType}-${rng.hex(8)}`, amount: rng.int(1, 5000), ok: rng.next() < 0.9 } },
          },
          traceId: trace(agent),
          spanId: span(),
          teamId: agent.team,
          swarmContext: swarmContext(agent),
        };
        yield msg(kind, subject(`team.${agent.team}.internal.trigger`), MsgEnvelope.encode(env).finish(), envelopeHeaders);
        break;
      }
      case 'log_error': {
        const errorMessage = rng.pick(LOG_ERRORS);
        const entry: LogEntry = {
          timestamp: timestamp(),
          traceId: trace(agent),
          agentId: agent.id,
          teamId: agent.team,
          sourceUri: `swarm:${agent.id.split('-')[0]}`,
          intent: rng.pick(LOG_INTENTS),
          contextSnapshot: { step: rng.int(1, 12), tokens: { in: rng.int(100, 90000), out: rng.int(0, 4000) }, model: rng.pick(['gpt-4o', 'claude-sonnet', 'llama-3-70b']) },
          status: 'FAILURE',
          errorMessage,
          rawPayload: undefined,
          level: 'ERROR',
          source: agent.id,
          message: errorMessage,
        };
        yield msg(kind, subject(`log.${agent.id}`), LogEntry.encode(entry).finish(), logHeaders);
        break;
      }
      case 'proto_json_text': {
        const env = {
          id: `pj-${rng.hex(16)}`,
          timestamp: goTime(timestamp(), 0),
          source_agent_id: agent.id,
          type: 'MESSAGE_TYPE_TEXT',
          text: { content: rng.pick(SENTENCES), intent: rng.pick(INTENTS) },
          trace_id: trace(agent),
          team_id: agent.team,
        };
        yield msg(kind, subject(`agent.${agent.id}.output`), json(env), envelopeHeaders);
        break;
      }
      case 'signal_status':
      case 'signal_result': {
        const status = kind === 'signal_status';
        const failed = !status && rng.next() < 0.15;
        const tool = rng.pick(TOOLS).name;
        const meta: Record<string, string> = {
          timestamp: goTime(timestamp(), n % 5 === 0 ? 2 : 0),
          source_kind: rng.pick(SOURCE_KINDS),
          source_channel: `swarm.team.${agent.team}.signal.${status ? 'status' : 'result'}`,
          payload_kind: failed ? 'error' : status ? 'status' : rng.next() < 0.2 ? 'artifact' : 'result',
        };
        if (rng.next() < 0.7) meta['run_id'] = runOf();
        meta['team_id'] = agent.team;
        meta['agent_id'] = agent.id;
        const body: Record<string, unknown> = { meta };
        if (failed) body['text'] = `tool ${tool} failed: ${rng.pick(TOOL_ERRORS)}`;
        else if (status) body['text'] = `${agent.id} finished step ${rng.int(1, 5)} of 5`;
        body['payload'] = failed
          ? { tool, code: rng.pick(['EACCES', 'ETIMEDOUT', 'E503']) }
          : status
            ? { step: rng.int(1, 5), of: 5, state: rng.pick(['running', 'done']) }
            : { tool, rows: rng.int(0, 500), duration_ms: rng.int(3, 4000), uri: `artifact://${agent.team}/${rng.hex(8)}.md` };
        yield msg(kind, subject(`team.${agent.team}.signal.${status ? 'status' : 'result'}`), json(body), undefined);
        break;
      }
      case 'signal_command': {
        const body = {
          meta: { timestamp: goTime(timestamp(), 0), source_kind: 'workspace_ui', source_channel: 'workspace', payload_kind: 'command', team_id: agent.team },
          text: rng.pick(['pause the night shift', 'resume', 'retry the last failed step', 'raise the budget to 100']),
        };
        yield msg(kind, subject(`team.${agent.team}.internal.command`), json(body), undefined);
        break;
      }
      case 'telemetry': {
        const type = rng.pick(SIGNAL_TYPES);
        // Sensors report their readings and heartbeats as telemetry (they send no protobuf); agents
        // report task outcomes, chat responses and halts.
        const sensor = type === 'heartbeat' || type === 'sensor_data';
        const node = sensor ? `sensor-${String(rng.int(1, Math.max(2, Math.ceil(agentCount / 10)))).padStart(3, '0')}` : agent.id;
        const meta: Record<string, string> = { source_node: node, timestamp: goTime(timestamp(), n % 5 === 0 ? -4 : 0) };
        if (rng.next() < 0.5) meta['trace_id'] = `tr-${rng.hex(6)}`;
        const payload =
          type === 'task_failed'
            ? { error: rng.pick(LOG_ERRORS), attempt: rng.int(1, 3) }
            : type === 'heartbeat'
              ? { status: rng.pick(['IDLE', 'BUSY']), load: Math.round(rng.next() * 100) / 100 }
              : type === 'chat_response'
                ? { text: rng.pick(SENTENCES), provenance: { provider_id: 'ollama', model_id: 'qwen2.5-coder:7b', tokens_used: rng.int(50, 900) } }
                : type === 'governance_halt'
                  ? { reason: 'budget exceeded', halted: [agent.id] }
                  : { task: rng.pick(EVENT_TYPES), duration_ms: rng.int(100, 60000), reading: Math.round(rng.next() * 1000) / 10 };
        const body: Record<string, unknown> = { meta, signal_type: type, trust_score: type === 'sensor_data' ? 1 : 0.5, payload };
        if (rng.next() < 0.3) body['mission_event_id'] = `me-${rng.int(1, 999999)}`;
        yield msg(kind, subject(`team.${agent.team}.telemetry`), json(body), undefined);
        break;
      }
      case 'mission_event': {
        // A Go map: keys sorted.
        const run = runOf();
        const body = {
          event_type: rng.pick(MISSION_EVENTS),
          mission_event_id: uuid(),
          payload_summary: rng.next() < 0.5 ? null : { keys: ['tool', rng.pick(['args', 'error', 'result'])] },
          run_id: run,
          source_agent: agent.id,
        };
        yield msg(kind, subject(`mission.events.${run}`), json(body), undefined);
        break;
      }
      case 'trigger_json':
        yield msg(kind, subject(`team.${agent.team}.internal.trigger`), json({ triggered_by: 'scheduler', timestamp: goTime(timestamp(), 0) }), undefined);
        break;
      case 'reply_text':
        yield msg(kind, subject(`team.${agent.team}.internal.response`), utf8.encode(`${rng.pick(SENTENCES)}\n${rng.pick(SENTENCES)}`), undefined);
        break;
      case 'user_input':
        yield msg(kind, subject('global.input.user'), utf8.encode(rng.pick(USER_INPUTS)), undefined);
        break;
      case 'interjection':
        yield msg(kind, subject(`agent.${agent.id}.interjection`), utf8.encode(rng.pick(INTERJECTIONS)), undefined);
        break;
    }
  }
}

function msg(kind: TrafficKind, subject: string, data: Uint8Array, headers: Record<string, string> | undefined): TrafficMessage {
  return headers ? { kind, subject, data, headers } : { kind, subject, data };
}
