// The reference points of issues 6 and 17, implemented here on the same data, stream and machine:
//
// - bare pipeline: JetStream pull (500 per fetch) -> decode -> plain JSON -> COPY 5,000 rows per
//   transaction + one registry upsert per batch -> ack after commit. No dedupe (random ids), no dead
//   letters, no seq allocation under a lock, no notifications, no registry fold. Two decoders:
//   `ts-proto` (the generated types the service uses, context by ts-proto's toJSON) and `protobufjs`
//   (issue 17: the decoder an independent pipeline picked; reflection-compiled decode, toObject, Structs
//   unwrapped to plain JSON, JSON.stringify: the faster of the two on this data, see `decoders` in the
//   bench JSON).
// - the directive's design ("Memory Service, Phase 2B"): one INSERT then one UPSERT per event, each
//   its own autocommit statement, one event at a time, over the directive's own schema (001 only).
import { randomUUID } from 'node:crypto';
import { PerformanceObserver } from 'node:perf_hooks';
import { finished } from 'node:stream/promises';
import { AckPolicy, DeliverPolicy, type JsMsg, type NatsConnection } from 'nats';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import protobuf from 'protobufjs';
import { LogEntry, MsgEnvelope } from '../src/gen/mycelis/swarm/v1/swarm.js';
import { ROOT } from '../test/helpers/service.js';
import { nowMs } from './lib.js';

const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIAL_G = /[\\\n\r\t]/g;
const COPY_ESC: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const esc = (s: string): string => (COPY_SPECIAL.test(s) ? s.replace(COPY_SPECIAL_G, (c) => COPY_ESC[c]!) : s);

interface BareRow {
  traceId: string;
  ts: string;
  level: string;
  source: string;
  intent: string;
  message: string;
  context: string;
  team: string;
  subject: string;
}

function tsIso(t: { seconds: string; nanos: number } | undefined): string {
  if (!t) return new Date().toISOString();
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString();
}

/** The minimum a pipeline has to do to turn a message into a row: decode, pick fields, JSON (ts-proto). */
export function decodeRowTsProto(subject: string, data: Uint8Array): BareRow {
  if (subject.startsWith('swarm.log.')) {
    const e = LogEntry.decode(data);
    return {
      traceId: e.traceId,
      ts: tsIso(e.timestamp),
      level: e.level || 'INFO',
      source: e.source || e.agentId,
      intent: e.intent,
      message: e.message || e.errorMessage,
      context: JSON.stringify(LogEntry.toJSON(e)),
      team: e.teamId,
      subject,
    };
  }
  const env = MsgEnvelope.decode(data);
  const p = env.payload;
  let intent = 'binary';
  let message = '';
  let level = 'INFO';
  if (p?.$case === 'event') {
    intent = p.value.eventType;
    message = p.value.eventType;
  } else if (p?.$case === 'text') {
    intent = p.value.intent || 'text';
    message = p.value.content;
  } else if (p?.$case === 'toolCall') {
    intent = 'tool_call';
    message = p.value.toolName;
  } else if (p?.$case === 'toolResult') {
    intent = 'tool_result';
    message = p.value.isError ? p.value.errorMessage : p.value.callId;
    level = p.value.isError ? 'ERROR' : 'INFO';
  }
  return {
    traceId: env.traceId,
    ts: tsIso(env.timestamp),
    level,
    source: env.sourceAgentId,
    intent,
    message,
    context: JSON.stringify(MsgEnvelope.toJSON(env)),
    team: env.teamId,
    subject,
  };
}

// ---------------------------------------------------------------------------------------------
// The same with protobufjs (7.x, the version @grpc/proto-loader brings): types compiled from the .proto
// at start (snake_case names kept), decode, toObject, google.protobuf.Struct/Value unwrapped to plain JSON.

type Obj = Record<string, unknown>;
let pb: { env: protobuf.Type; log: protobuf.Type } | undefined;
function pbTypes(): { env: protobuf.Type; log: protobuf.Type } {
  if (pb === undefined) {
    const root = new protobuf.Root();
    root.loadSync(`${ROOT}/proto/mycelis/swarm/v1/swarm.proto`, { keepCase: true });
    pb = { env: root.lookupType('mycelis.swarm.v1.MsgEnvelope'), log: root.lookupType('mycelis.swarm.v1.LogEntry') };
  }
  return pb;
}
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String };

function pbValue(v: Obj): unknown {
  if (v['string_value'] !== undefined) return v['string_value'];
  if (v['number_value'] !== undefined) return v['number_value'];
  if (v['bool_value'] !== undefined) return v['bool_value'];
  if (v['struct_value'] !== undefined) return pbStruct(v['struct_value'] as Obj);
  if (v['list_value'] !== undefined) return (((v['list_value'] as Obj)['values'] as Obj[] | undefined) ?? []).map(pbValue);
  return null;
}
function pbStruct(s: Obj): Obj {
  const out: Obj = {};
  const fields = (s['fields'] ?? {}) as Record<string, Obj>;
  for (const k of Object.keys(fields)) out[k] = pbValue(fields[k]!);
  return out;
}
function pbIso(t: Obj | undefined): string | undefined {
  if (t === undefined) return undefined;
  return new Date(Number(t['seconds'] ?? 0) * 1000 + Math.floor(Number(t['nanos'] ?? 0) / 1e6)).toISOString();
}
function unwrap(o: Obj | undefined, key: string): void {
  if (o !== undefined && o[key] !== undefined) o[key] = pbStruct(o[key] as Obj);
}

export function decodeRowProtobufjs(subject: string, data: Uint8Array): BareRow {
  const t = pbTypes();
  if (subject.startsWith('swarm.log.')) {
    const e = t.log.toObject(t.log.decode(data), TO_OBJECT);
    const ts = pbIso(e['timestamp'] as Obj | undefined);
    if (ts !== undefined) e['timestamp'] = ts;
    unwrap(e, 'context_snapshot');
    const str = (k: string): string => (e[k] as string | undefined) ?? '';
    return {
      traceId: str('trace_id'),
      ts: ts ?? new Date().toISOString(),
      level: str('level') || 'INFO',
      source: str('source') || str('agent_id'),
      intent: str('intent'),
      message: str('message') || str('error_message'),
      context: JSON.stringify(e),
      team: str('team_id'),
      subject,
    };
  }
  const env = t.env.toObject(t.env.decode(data), TO_OBJECT);
  const ts = pbIso(env['timestamp'] as Obj | undefined);
  if (ts !== undefined) env['timestamp'] = ts;
  unwrap(env, 'swarm_context');
  let intent = 'binary';
  let message = '';
  let level = 'INFO';
  const event = env['event'] as Obj | undefined;
  const text = env['text'] as Obj | undefined;
  const call = env['tool_call'] as Obj | undefined;
  const result = env['tool_result'] as Obj | undefined;
  if (event !== undefined) {
    unwrap(event, 'data');
    intent = (event['event_type'] as string | undefined) ?? '';
    message = intent;
  } else if (text !== undefined) {
    intent = (text['intent'] as string | undefined) || 'text';
    message = (text['content'] as string | undefined) ?? '';
  } else if (call !== undefined) {
    unwrap(call, 'arguments');
    intent = 'tool_call';
    message = (call['tool_name'] as string | undefined) ?? '';
  } else if (result !== undefined) {
    unwrap(result, 'result');
    intent = 'tool_result';
    const isError = result['is_error'] === true;
    message = ((isError ? result['error_message'] : result['call_id']) as string | undefined) ?? '';
    level = isError ? 'ERROR' : 'INFO';
  }
  return {
    traceId: (env['trace_id'] as string | undefined) ?? '',
    ts: ts ?? new Date().toISOString(),
    level,
    source: (env['source_agent_id'] as string | undefined) ?? '',
    intent,
    message,
    context: JSON.stringify(env),
    team: (env['team_id'] as string | undefined) ?? '',
    subject,
  };
}

export const BARE_DECODERS = { 'ts-proto': decodeRowTsProto, protobufjs: decodeRowProtobufjs } as const;
export type BareDecoder = keyof typeof BARE_DECODERS;

export interface BareResult {
  events: number;
  seconds: number;
  eventsPerSec: number;
  /** GC time of this (the bench) process during the drain, per event (perf_hooks 'gc' entries). */
  gcUsPerEvent: number;
}

/**
 * Drains `expected` messages from `stream` with a fresh durable consumer into `dbUrl` (migrated
 * with the service's full schema, so the table and its indexes are the same as ours).
 */
export async function runBarePipeline(
  nc: NatsConnection,
  stream: string,
  dbUrl: string,
  expected: number,
  decoder: BareDecoder = 'ts-proto',
): Promise<BareResult> {
  const decodeRow = BARE_DECODERS[decoder];
  const jsm = await nc.jetstreamManager();
  const durable = `bench-bare-${decoder}`;
  await jsm.consumers.add(stream, {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 20_000,
    ack_wait: 60_000_000_000,
  });
  const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
  const consumer = await nc.jetstream().consumers.get(stream, durable);
  let gcMs = 0;
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const BATCH = 5000;
  let queue: JsMsg[] = [];
  let done = 0;
  let t0 = 0;
  let t1 = 0;
  let wake: (() => void) | null = null;
  const messages = await consumer.consume({
    max_messages: 500,
    callback: (m) => {
      if (t0 === 0) t0 = nowMs();
      queue.push(m);
      if (wake && queue.length >= BATCH) {
        const w = wake;
        wake = null;
        w();
      }
    },
  });
  try {
    while (done < expected) {
      if (queue.length < BATCH && queue.length < expected - done) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 20);
        });
        wake = null;
        if (queue.length < BATCH && queue.length < expected - done) continue;
      }
      const msgs = queue.length > BATCH ? queue.splice(0, BATCH) : queue;
      if (msgs === queue) queue = [];
      const lines: string[] = new Array<string>(msgs.length);
      const latest = new Map<string, { team: string; status: string }>();
      for (let i = 0; i < msgs.length; i++) {
        const m = msgs[i]!;
        const r = decodeRow(m.subject, m.data);
        lines[i] =
          `${randomUUID()}\t${esc(r.traceId)}\t${r.ts}\t${r.level}\t${esc(r.source)}\t${esc(r.intent)}\t${esc(r.message)}\t` +
          `${esc(r.context)}\t${esc(r.team)}\t${esc(r.subject)}\n`;
        if (r.source) latest.set(r.source, { team: r.team || 'default', status: r.level === 'ERROR' ? 'ERROR' : 'IDLE' });
      }
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const s = client.query(copyFrom('COPY log_entries (id, trace_id, timestamp, level, source, intent, message, context, team_id, subject) FROM STDIN'));
        s.end(Buffer.from(lines.join(''), 'utf8'));
        await finished(s);
        await client.query(
          `INSERT INTO agent_registry (agent_id, team_id, status, last_seen)
           SELECT a, t, s, now() FROM unnest($1::text[], $2::text[], $3::text[]) AS u(a, t, s)
           ON CONFLICT (agent_id) DO UPDATE SET team_id = EXCLUDED.team_id, status = EXCLUDED.status, last_seen = EXCLUDED.last_seen`,
          [[...latest.keys()], [...latest.values()].map((v) => v.team), [...latest.values()].map((v) => v.status)],
        );
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      for (const m of msgs) m.ack();
      done += msgs.length;
      t1 = nowMs();
    }
  } finally {
    gcObserver.disconnect();
    messages.stop();
    await pool.end();
    await jsm.consumers.delete(stream, durable).catch(() => undefined);
  }
  const seconds = (t1 - t0) / 1000;
  return { events: done, seconds, eventsPerSec: done / seconds, gcUsPerEvent: Math.round(((gcMs * 1000) / done) * 10) / 10 };
}

export interface DirectiveResult {
  events: number;
  seconds: number;
  eventsPerSec: number;
}

/**
 * The directive's design for `durationS` seconds: messages from the stream (no acks, like its core
 * subscription; a 1,000-message buffer), one worker, per event `INSERT INTO log_entries …` then
 * `INSERT INTO agent_registry … ON CONFLICT DO UPDATE`, each autocommitted.
 */
export async function runDirective(nc: NatsConnection, stream: string, dbUrl: string, durationS: number): Promise<DirectiveResult> {
  const jsm = await nc.jetstreamManager();
  const durable = 'bench-directive';
  await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All });
  const client = new pg.Client({ connectionString: dbUrl });
  await client.connect();
  const consumer = await nc.jetstream().consumers.get(stream, durable);
  const buffer: JsMsg[] = [];
  const messages = await consumer.consume({ max_messages: 1000, callback: (m) => void buffer.push(m) });
  let done = 0;
  const start = nowMs();
  const end = start + durationS * 1000;
  try {
    while (nowMs() < end) {
      const m = buffer.shift();
      if (!m) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      const r = decodeRowTsProto(m.subject, m.data);
      // The directive stores time.Now(), status ACTIVE and team "default" (DESIGN 1).
      await client.query(
        'INSERT INTO log_entries (trace_id, timestamp, level, source, intent, message, context) VALUES ($1, NOW(), $2, $3, $4, $5, $6)',
        [r.traceId, r.level, r.source, r.intent, r.message, r.context],
      );
      await client.query(
        `INSERT INTO agent_registry (agent_id, team_id, status, last_seen) VALUES ($1, 'default', 'ACTIVE', NOW())
         ON CONFLICT (agent_id) DO UPDATE SET status = 'ACTIVE', last_seen = NOW()`,
        [r.source],
      );
      done++;
    }
  } finally {
    messages.stop();
    await client.end();
    await jsm.consumers.delete(stream, durable).catch(() => undefined);
  }
  const seconds = (nowMs() - start) / 1000;
  return { events: done, seconds, eventsPerSec: done / seconds };
}
