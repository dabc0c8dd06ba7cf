// The two reference points of issue 6, implemented here on the same data, stream and machine:
//
// - bare pipeline: JetStream pull (500 per fetch) -> ts-proto decode -> COPY 5,000 rows per
//   transaction + one registry upsert per batch -> ack after commit. No dedupe (random ids), no dead
//   letters, no seq allocation under a lock, no notifications, no registry fold.
// - the directive's design ("Memory Service, Phase 2B"): one INSERT then one UPSERT per event, each
//   its own autocommit statement, one event at a time, over the directive's own schema (001 only).
import { randomUUID } from 'node:crypto';
import { finished } from 'node:stream/promises';
import { AckPolicy, DeliverPolicy, type JsMsg, type NatsConnection } from 'nats';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { LogEntry, MsgEnvelope } from '../src/gen/mycelis/swarm/v1/swarm.js';
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

/** The minimum a pipeline has to do to turn a message into a row: decode, pick fields, JSON. */
function decodeRow(subject: string, data: Uint8Array): BareRow {
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

export interface BareResult {
  events: number;
  seconds: number;
  eventsPerSec: number;
}

/**
 * Drains `expected` messages from `stream` with a fresh durable consumer into `dbUrl` (migrated
 * with the service's full schema, so the table and its indexes are the same as ours).
 */
export async function runBarePipeline(nc: NatsConnection, stream: string, dbUrl: string, expected: number): Promise<BareResult> {
  const jsm = await nc.jetstreamManager();
  const durable = 'bench-bare';
  await jsm.consumers.add(stream, {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 20_000,
    ack_wait: 60_000_000_000,
  });
  const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
  const consumer = await nc.jetstream().consumers.get(stream, durable);
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
    messages.stop();
    await pool.end();
    await jsm.consumers.delete(stream, durable).catch(() => undefined);
  }
  const seconds = (t1 - t0) / 1000;
  return { events: done, seconds, eventsPerSec: done / seconds };
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
      const r = decodeRow(m.subject, m.data);
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
