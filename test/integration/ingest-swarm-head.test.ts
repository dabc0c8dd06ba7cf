// DESIGN 3.1.1 end to end: every file of test/fixtures/swarm-head/ published on its subject to a private
// NATS (these subjects are under swarm.>, so not the shared server), taken by the real JetStream ingest
// into a fresh database with the production defaults; then the row, the registry and the dead letter
// its index.json `expect` names, the API's filters and live tail over the new rows, /metrics by
// format, hostile variants of every format (also over MAX_EVENT_BYTES, with a second consumer), and dead letters of these formats stored before the upgrade replayed with
// the real `dead-letters replay` command: stored once, however often replayed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { connect, headers as natsHeaders, type MsgHdrs, type NatsConnection } from 'nats';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { startPrivateNats, type PrivateNats } from '../helpers/nats.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { parseRfc3339, timestampToUs } from '../../src/domain/time.js';
import { MemoryCore } from '../../src/api/core.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/api/grpc-server.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { MemoryServiceClient, type LogRecord, type QueryLogsRequest } from '../../src/gen/mycelis/memory/v1/memory.js';
import * as grpc from '@grpc/grpc-js';
import { count, ingestMetrics, metricValue, silentLogger, startHarness, textEnvelope, type Harness } from './ingest-harness.js';
import { StreamCollector, unary } from './api-harness.js';

const FIXTURES = new URL('../fixtures/swarm-head/', import.meta.url);
interface Entry {
  file: string;
  subject: string;
  format: string;
  expect: {
    row: boolean;
    source?: string;
    team?: string;
    level?: string;
    intent?: string;
    trace?: string;
    event_time?: string;
    message?: string;
    registry_agent?: string | null;
    registry_last_error_contains?: string;
    dead_letter_reason_mentions?: string;
  };
}
const index = JSON.parse(readFileSync(new URL('index.json', FIXTURES), 'utf8')) as Record<string, Entry>;
const bytesOf = (file: string): Uint8Array => new Uint8Array(readFileSync(new URL(file, FIXTURES)));
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

interface Row {
  id: string;
  subject: string;
  source: string;
  team_id: string;
  level: string;
  intent: string;
  trace_id: string;
  message: string;
  context: unknown;
  ts_us: string;
  stream_time_ms?: number;
}

describe('the current swarm (swarm-head fixtures) through the real ingest path', () => {
  let tdb: TestDatabase;
  let nats: PrivateNats;
  let h: Harness;
  let pub: NatsConnection;
  let notifier: CommitNotifier;
  let core: MemoryCore;
  let server: RunningGrpcServer;
  let client: MemoryServiceClient;

  before(async () => {
    tdb = await createTestDatabase('ingest_swarm_head');
    nats = await startPrivateNats();
    pub = await connect({ servers: nats.url });
    // Production defaults for subjects, exclusions (swarm.council.*.request), LogEntry subjects, sizes.
    h = await startHarness({ ...tdb.env, HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0' }, nats.url);
    notifier = new CommitNotifier(h.db, h.writer, silentLogger);
    await notifier.start();
    core = new MemoryCore({ db: h.db, notifier, config: h.config, logger: silentLogger });
    server = await startGrpcServer({ config: h.config, core, logger: silentLogger });
    client = new MemoryServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await server?.shutdown(2000);
    await h?.close();
    await notifier?.stop();
    await pub?.close();
    await nats?.destroy();
    await tdb?.drop();
  });

  let sentinels = 0;
  /** Publishes a sentinel and waits until it is stored: everything published before it is committed. */
  async function settle(): Promise<void> {
    const id = `sentinel-${++sentinels}`;
    pub.publish('swarm.agent.sentinel.output', textEnvelope(id, 'sentinel', id));
    await waitFor(`sentinel ${id}`, async () => (await count(h.sql, `SELECT 1 FROM log_entries WHERE context->>'id' = $1`, [id])) === 1);
  }
  async function rowsOn(subject: string): Promise<Row[]> {
    const r = await h.sql.query<Row>(
      `SELECT id::text, subject, source, team_id, level, intent, trace_id, coalesce(message, '') AS message, context,
              (extract(epoch FROM timestamp) * 1000000)::bigint::text AS ts_us
       FROM log_entries WHERE subject = $1 ORDER BY seq`,
      [subject],
    );
    return r.rows;
  }
  const formatCount = (format: string, result: string): Promise<number> => metricValue(ingestMetrics.byFormat, { format, result });

  it('every fixture: the row, registry and dead letter its expect names', async () => {
    const before = new Map<string, number>();
    for (const f of ['signal', 'telemetry', 'mission_event', 'text', 'json']) {
      before.set(`${f}/row`, await formatCount(f, 'row'));
      before.set(`${f}/dead_letter`, await formatCount(f, 'dead_letter'));
    }
    const excludedBefore = await metricValue(ingestMetrics.excluded);
    for (const e of Object.values(index)) pub.publish(e.subject, bytesOf(e.file));
    await settle();
    // The stream (no_ack: publishes get no ack) holds each message with its server time.
    const jsm = await pub.jetstreamManager();
    const serverTimeOf = new Map<string, Date>();
    const last = (await jsm.streams.info('SWARM')).state.last_seq;
    for (let seq = 1; seq <= last; seq++) {
      const m = await jsm.streams.getMessage('SWARM', { seq });
      serverTimeOf.set(Buffer.from(m.data).toString('base64'), m.time);
    }

    const expectedAgents = new Set<string>();
    for (const [name, e] of Object.entries(index)) {
      const x = e.expect;
      const rows = await rowsOn(e.subject);
      const mine = rows.filter((r) => isDeepStrictEqual(r.context, contextOf(e)));
      if (e.subject === 'swarm.council.admin.request') {
        // Stored only where NATS_EXCLUDE_SUBJECTS does not exclude it: its default does (request-reply lane).
        assert.equal(rows.length, 0, `${name} is excluded by default`);
        continue;
      }
      if (!x.row) {
        assert.equal(mine.length, 0, `${name} is not a row`);
        const dl = await h.sql.query<{ reason: string; detail: string; payload: Buffer; stream_seq: string }>(
          `SELECT reason, detail, payload, stream_seq::text FROM ingest_rejects WHERE payload = $1`, [Buffer.from(bytesOf(e.file))]);
        assert.equal(dl.rowCount, 1, `${name}: one dead letter`);
        const d = dl.rows[0]!;
        assert.ok(`${d.reason}: ${d.detail}`.includes(x.dead_letter_reason_mentions!), `${name}: ${d.reason}: ${d.detail}`);
        assert.deepEqual(new Uint8Array(d.payload), bytesOf(e.file), 'raw bytes kept for replay');
        continue;
      }
      assert.equal(mine.length, 1, `${name}: exactly one row (${rows.length} on its subject)`);
      const r = mine[0]!;
      assert.deepEqual(
        { source: r.source, team: r.team_id, level: r.level, intent: r.intent, trace: r.trace_id },
        { source: x.source, team: x.team, level: x.level, intent: x.intent, trace: x.trace },
        name,
      );
      if (x.message !== undefined) assert.equal(r.message, x.message, name);
      if (x.event_time === 'server') {
        const stored = serverTimeOf.get(Buffer.from(bytesOf(e.file)).toString('base64'))!;
        assert.ok(Math.abs(Number(r.ts_us) / 1000 - stored.getTime()) < 1, `${name}: the NATS server time (${r.ts_us} vs ${stored.toISOString()})`);
      } else {
        const t = parseRfc3339(x.event_time!)!;
        assert.equal(Number(r.ts_us), timestampToUs(t.seconds, t.nanos), `${name}: the event time, offset applied, to the µs`);
      }
      if (x.registry_agent) expectedAgents.add(x.registry_agent);
    }

    // Registry: exactly the agents the envelopes name, in the row's team; failures set the last error.
    interface Agent {
      agent_id: string;
      team_id: string;
      status: string;
      last_error_summary: string | null;
    }
    const reg = await h.sql.query<Agent>(`SELECT agent_id, team_id, status, last_error_summary FROM agent_registry WHERE agent_id <> 'sentinel' ORDER BY agent_id`);
    assert.deepEqual(reg.rows.map((a) => a.agent_id), [...expectedAgents].sort());
    const byId = new Map(reg.rows.map((a) => [a.agent_id, a]));
    // The last error is the newest failure's (by event time; server-time events are the newest, in publish order).
    const newestError = new Map<string, { at: number; text: string }>();
    Object.values(index).forEach((e, i) => {
      const x = e.expect;
      if (!x.registry_agent) return;
      const a = byId.get(x.registry_agent)!;
      if (x.team) assert.ok([x.team, 'default'].includes(a.team_id), `${a.agent_id} in team ${a.team_id}`);
      if (x.level !== 'ERROR') return;
      const at = x.event_time === 'server' ? 1e18 + i : Date.parse(x.event_time!);
      const prev = newestError.get(x.registry_agent);
      if (!prev || at > prev.at) newestError.set(x.registry_agent, { at, text: x.registry_last_error_contains ?? x.message ?? x.intent! });
    });
    assert.deepEqual([...newestError.keys()].sort(), reg.rows.filter((a) => a.last_error_summary !== null).map((a) => a.agent_id));
    for (const [agent, { text }] of newestError) assert.ok(byId.get(agent)!.last_error_summary?.includes(text), `${agent}: ${byId.get(agent)!.last_error_summary} (expected ${text})`);
    assert.equal(byId.get('builder-3')!.team_id, 'build');
    assert.equal(byId.get('builder-3')!.status, 'ERROR');
    assert.equal(byId.get('scout-7')!.team_id, 'research');
    assert.equal(byId.get('overseer')!.team_id, 'default', 'a mission event has no team');
    assert.equal(byId.get('planner-1')!.status, 'IDLE');

    // /metrics counts by format (the council request was excluded before it was read).
    const delta = async (f: string, result: string): Promise<number> => (await formatCount(f, result)) - before.get(`${f}/${result}`)!;
    assert.deepEqual(
      await Promise.all([delta('signal', 'row'), delta('telemetry', 'row'), delta('mission_event', 'row'), delta('text', 'row'), delta('json', 'row')]),
      [4, 4, 2, 3, 1],
    );
    assert.deepEqual(await Promise.all([delta('signal', 'dead_letter'), delta('telemetry', 'dead_letter')]), [1, 2]);
    assert.equal((await metricValue(ingestMetrics.excluded)) - excludedBefore, 1);
  });

  it('the council request lane is stored as a generic row where NATS_EXCLUDE_SUBJECTS does not exclude it', async () => {
    // A second service on the same stream (its own consumer and database) that keeps every lane.
    const all = await createTestDatabase('ingest_swarm_head_all');
    const keepAll = await startHarness({ ...all.env, NATS_EXCLUDE_SUBJECTS: 'none', CONSUMER_NAME: 'keep-all' }, nats.url);
    try {
      const e = index['council_request_json']!;
      await waitFor('council request stored', async () => (await count(keepAll.sql, `SELECT 1 FROM log_entries WHERE subject = $1`, [e.subject])) === 1);
      const { rows } = await keepAll.sql.query(`SELECT source, team_id, level, intent, trace_id, context FROM log_entries WHERE subject = $1`, [e.subject]);
      assert.deepEqual(rows[0], { source: 'unknown', team_id: '', level: 'INFO', intent: 'json', trace_id: '', context: contextOf(e) });
      assert.equal(await count(keepAll.sql, `SELECT 1 FROM agent_registry WHERE agent_id IN ('unknown', 'admin')`), 0);
    } finally {
      await keepAll.close();
      await all.drop();
    }
  });

  it('redelivery and the audit copy add nothing; the same text sent again is a new row', async () => {
    const rowsBefore = await count(h.sql, 'SELECT 1 FROM log_entries');
    for (const name of ['signal_status', 'telemetry_task_failed', 'mission_event_started']) {
      pub.publish(index[name]!.subject, bytesOf(index[name]!.file));
      pub.publish('swarm.audit.trace', bytesOf(index[name]!.file));
    }
    pub.publish('swarm.global.input.user', bytesOf('user_input_text.txt'));
    await settle();
    // +1 sentinel, +1 the text (it carries no identity of its own: a new stream position, a new row).
    assert.equal(await count(h.sql, 'SELECT 1 FROM log_entries'), rowsBefore + 2);
  });

  const query = (filter: Partial<QueryLogsRequest['filter']>): Promise<LogRecord[]> =>
    unary(client.queryLogs.bind(client), {
      filter: { agentIds: [], teamIds: [], levels: [], intents: [], traceId: '', ...filter },
      pageSize: 100,
      pageToken: '',
    }).then((r) => r.records.filter((rec) => rec.entry?.source !== 'sentinel'));

  it('QueryLogs filters the new rows by team, level, intent and trace like protobuf ones', async () => {
    const trace = await query({ traceId: 'run-7f3a' });
    // signal_status, the two mission events (a run reads as one trace).
    assert.deepEqual(trace.map((r) => r.entry!.intent).sort(), ['mission.started', 'status', 'tool.failed']);
    const errors = await query({ levels: ['ERROR'] });
    assert.deepEqual(errors.map((r) => r.entry!.intent).sort(), ['error', 'task_failed', 'tool.failed']);
    assert.deepEqual((await query({ levels: ['WARN'] })).map((r) => r.entry!.source), ['governor']);
    assert.deepEqual((await query({ teamIds: ['dev'] })).map((r) => r.entry!.intent).sort(), ['error', 'task_complete', 'text']);
    const texts = await query({ intents: ['text'] });
    assert.ok(texts.some((r) => r.entry!.message.startsWith('I refactored the auth module')));
    const json = await query({ intents: ['json'], teamIds: ['ops'] });
    assert.equal(json.length, 1);
    assert.deepEqual(json[0]!.entry!.contextSnapshot, { format: 'json', body: { triggered_by: 'scheduler', timestamp: '2026-06-30T06:00:00Z' } });
    const [artifact] = await query({ agentIds: ['scout-7'] });
    assert.equal(artifact!.entry!.contextSnapshot!['meta'] !== undefined, true, 'the envelope as context');
    assert.equal((artifact!.entry!.contextSnapshot!['meta'] as Record<string, unknown>)['timestamp'], '2026-06-30T11:02:00+02:00', 'as sent, offset and all');
    assert.equal(artifact!.subject, 'swarm.team.research.signal.result');
  });

  it('StreamLogs tails the new rows, and goes on live with them', async () => {
    const tail = new StreamCollector(client, { tail: 50, filter: { agentIds: [], teamIds: ['ops'], levels: [], intents: [], traceId: '' } });
    const entries: LogRecord[] = [];
    tail.call.on('data', (r: { records: LogRecord[] }) => entries.push(...r.records));
    try {
      await waitFor('history', () => entries.length >= 4);
      assert.deepEqual(entries.map((e) => e.entry!.intent).sort(), ['command', 'governance_halt', 'json', 'status']);
      pub.publish('swarm.team.ops.signal.status', enc(JSON.stringify({ meta: { timestamp: new Date().toISOString(), source_kind: 'system', payload_kind: 'status', agent_id: 'live-1' }, text: 'live now' })));
      pub.publish('swarm.team.ops.internal.response', enc('a live answer'));
      await waitFor('live', () => entries.length >= 6);
      assert.deepEqual(entries.slice(4).map((e) => [e.entry!.intent, e.entry!.message]), [['status', 'live now'], ['text', 'a live answer']]);
    } finally {
      tail.cancel();
    }
  });

  it('hostile variants: wrong types, missing fields, invalid UTF-8, huge and deep payloads', async () => {
    const probes: [string, Uint8Array, string][] = [
      ['swarm.team.h.telemetry', enc('{"meta":{"source_node":5,"timestamp":"2026-06-30T15:00:00Z"},"signal_type":"x","payload":{}}'), 'invalid_field:meta.source_node'],
      ['swarm.team.h.telemetry', enc('{"meta":{"source_node":"n","timestamp":"2026-06-30T15:00:00Z"},"payload":{}, "signal_type": ""}'), 'missing_field:signal_type'],
      ['swarm.team.h.signal.status', enc('{"meta":{"timestamp":"30/06/2026","payload_kind":"status"},"text":"x"}'), 'invalid_field:meta.timestamp'],
      ['swarm.mission.events.h', enc('{"event_type":["x"],"mission_event_id":"m"}'), 'invalid_field:event_type'],
      ['swarm.team.h.signal.status', new Uint8Array([...enc('{"text":"'), 0xc3, 0x28, ...enc('"}')]), 'invalid_json:'],
      ['swarm.team.h.signal.status', enc(`{"meta":{"source_kind":"x"},"payload":${'['.repeat(5000)}${']'.repeat(5000)}}`), 'too_deep:'],
      ['swarm.team.h.internal.response', new Uint8Array([0x41, 0x00, 0x42]), 'decode_error:'],
    ];
    const big = enc(JSON.stringify({ meta: { timestamp: '2026-06-30T15:00:00Z', source_kind: 'mcp', payload_kind: 'result', agent_id: 'bulky' }, payload: { page: 'p'.repeat(900 * 1024) } }));
    for (const [subject, data] of probes) pub.publish(subject, data);
    pub.publish('swarm.team.h.signal.result', big);
    pub.publish('swarm.team.h.internal.x', enc('[1,"two",{"three":3}]'));
    await settle();
    for (let i = 0; i < probes.length; i++) {
      const d = await h.sql.query<{ reason: string; detail: string }>(`SELECT reason, detail FROM ingest_rejects WHERE payload = $1`, [Buffer.from(probes[i]![1])]);
      const [reason, field] = probes[i]![2].split(':') as [string, string];
      assert.equal(d.rows[0]?.reason, reason, `${probes[i]![2]}: ${JSON.stringify(d.rows[0])}`);
      assert.ok(d.rows[0]!.detail.startsWith(field), d.rows[0]!.detail);
    }
    const [bulky] = await rowsOn('swarm.team.h.signal.result');
    assert.equal(bulky!.source, 'bulky');
    assert.equal(((bulky!.context as { payload: { page: string } }).payload.page).length, 900 * 1024);
    assert.ok(bulky!.message.length <= 241);
    const [arr] = await rowsOn('swarm.team.h.internal.x');
    assert.deepEqual([arr!.intent, arr!.team_id, arr!.message], ['json', 'h', '[1,"two",{"three":3}]']);
  });

  it('dead letters of these formats stored before the upgrade replay with `dead-letters replay` and land exactly once', async () => {
    // As the previous version stored them: a signal and telemetry as invalid_json (unknown key "meta"),
    // text as decode_error, a mission event, other JSON; one of them twice (a message dead-lettered,
    // then redelivered after a crash and dead-lettered again). The signal and telemetry differ from the
    // fixtures stored above (else they would be those rows, deduplicated).
    const edit = (name: string, from: string, to: string): Uint8Array => enc(readFileSync(new URL(index[name]!.file, FIXTURES), 'utf8').replace(from, to));
    const oldSubject = (name: string): string => index[name]!.subject.replace(/^swarm\.(team|agent)\.[^.]+/, 'swarm.$1.old');
    const old: [string, Uint8Array, string, string, number][] = [
      ['signal_error', edit('signal_error', 'permission denied', 'disk full'), 'invalid_json', 'not a mycelis.swarm.v1.MsgEnvelope: cannot decode message mycelis.swarm.v1.MsgEnvelope from JSON: key "meta" is unknown', 501],
      ['telemetry_chat_response', edit('telemetry_chat_response', 'Here is the plan', 'Here is the new plan'), 'invalid_json', 'key "meta" is unknown', 502],
      ['mission_event_tool_failed', bytesOf(index['mission_event_tool_failed']!.file), 'invalid_json', 'key "event_type" is unknown', 503],
      ['team_response_text', bytesOf(index['team_response_text']!.file), 'decode_error', 'premature EOF', 504],
      ['interjection_text', bytesOf(index['interjection_text']!.file), 'decode_error', 'premature EOF', 505],
      ['interjection_text', bytesOf(index['interjection_text']!.file), 'decode_error', 'premature EOF', 505],
      ['scheduler_trigger_json', bytesOf(index['scheduler_trigger_json']!.file), 'invalid_json', 'key "triggered_by" is unknown', 506],
    ];
    const receivedAt = '2026-11-20T10:00:00.123456Z';
    for (const [name, payload, reason, detail, seq] of old) {
      await h.sql.query(
        `INSERT INTO ingest_rejects (received_at, subject, headers, payload, reason, detail, stream_seq) VALUES ($1, $2, '{}', $3, $4, $5, $6)`,
        [receivedAt, oldSubject(name), Buffer.from(payload), reason, detail, seq],
      );
    }
    const cliEnv = { DATABASE_URL: tdb.url, MEMORY_STORE: 'postgres', NATS_URL: nats.url };
    const window = ['--since', '2026-11-20T00:00:00Z', '--until', '2026-11-21T00:00:00Z'];
    const missionRows = (): Promise<number> => count(h.sql, `SELECT 1 FROM log_entries WHERE context->>'mission_event_id' = 'b3e1c2a4-5d6f-4a7b-9c8d-0e1f2a3b4c5d'`);
    assert.equal(await missionRows(), 1, 'the mission event, already stored by the first test');
    const oldRows = (): Promise<number> => count(h.sql, `SELECT 1 FROM log_entries WHERE subject LIKE 'swarm.%.old.%'`);
    const r1 = await runCli(['dead-letters', 'replay', ...window], cliEnv);
    assert.equal(r1.code, 0, r1.stderr);
    assert.match(r1.stderr, /replayed 7 dead letters/);
    await waitFor('replayed rows stored', async () => (await oldRows()) === 5);
    await settle();
    // Again (--again; as after a replay that died between publishing and marking): nothing new.
    const r2 = await runCli(['dead-letters', 'replay', '--again', ...window], cliEnv);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /replayed 7 dead letters/);
    await settle();
    assert.equal(await oldRows(), 5, 'signal, telemetry, two texts (the one dead-lettered twice: once), JSON');
    assert.equal(await missionRows(), 1, 'the mission event is its id');
    const rows = await h.sql.query<{ intent: string; source: string; message: string; ts: string }>(
      `SELECT intent, source, message, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS ts
       FROM log_entries WHERE subject LIKE 'swarm.%.old.%' ORDER BY intent, source`);
    assert.deepEqual(rows.rows, [
      { intent: 'chat_response', source: 'soma', message: 'Here is the new plan: three steps, two teams.', ts: '2026-06-30T12:00:00.250000' },
      { intent: 'error', source: 'coder-2', message: 'tool write_file failed: disk full', ts: '2026-06-30T13:45:10.500000' },
      // Without a time of their own: when they were first received.
      { intent: 'json', source: 'unknown', message: '{"triggered_by":"scheduler","timestamp":"2026-06-30T06:00:00Z"}', ts: '2026-11-20T10:00:00.123456' },
      { intent: 'text', source: 'old', message: 'stop — use the staging database, not prod', ts: '2026-11-20T10:00:00.123456' },
      { intent: 'text', source: 'unknown', message: 'I refactored the auth module: three files changed, all 212 tests pass.\nNext: the token refresh path.', ts: '2026-11-20T10:00:00.123456' },
    ]);
    assert.equal(await count(h.sql, `SELECT 1 FROM ingest_rejects WHERE received_at = $1 AND replayed_at IS NOT NULL`, [receivedAt]), 7);
    assert.equal(await count(h.sql, `SELECT 1 FROM ingest_rejects WHERE headers ? 'Mycelis-Replay-Of'`), 0, 'none of them failed again');
  });

  // The same hostile variants the domain's unit test checks (test/unit/domain-swarm-json.test.ts), here
  // through the real JetStream ingest with production defaults, for every format: each is a dead letter
  // with the reason and field named, or the row DESIGN 3.1.1 makes of it, and none of them stops ingest
  // (the sentinel after them is stored). Subjects swarm.team.hx.<n>: team hx, one subject per case.
  it('hostile variants of every format: wrong types, missing fields, non-object JSON, invalid UTF-8, huge and deep', async () => {
    const T = '2026-06-30T15:00:00Z';
    const telemetry = (over: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): Uint8Array =>
      enc(JSON.stringify({ meta: { source_node: 'hx-node', timestamp: T, ...meta }, signal_type: 'sensor_data', payload: { v: 1 }, ...over }));
    const signal = (over: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): Uint8Array =>
      enc(JSON.stringify({ meta: { timestamp: T, source_kind: 'system', payload_kind: 'status', agent_id: 'hx-agent', ...meta }, text: 'hx', ...over }));
    const mission = (over: Record<string, unknown> = {}): Uint8Array =>
      enc(JSON.stringify({ event_type: 'tool.invoked', mission_event_id: `hx-${Math.random()}`, payload_summary: null, run_id: 'hx-run', source_agent: 'hx-agent', ...over }));
    const nested = (depth: number): unknown => {
      let v: unknown = 1;
      for (let i = 0; i < depth; i++) v = i % 2 === 0 ? { k: v } : [v];
      return v;
    };
    const badUtf8 = (before: string, after: string): Uint8Array => new Uint8Array([...enc(before), 0xc3, 0x28, ...enc(after)]);
    const hdrs = (pairs: Record<string, string>): MsgHdrs => {
      const h = natsHeaders();
      for (const [k, v] of Object.entries(pairs)) h.set(k, v);
      return h;
    };
    type Want = { dead: string; field?: string } | { intent: string; message?: string; source?: string };
    const cases: [string, Uint8Array, Want, MsgHdrs?][] = [
      // wrong types
      ['signal agent_id a number', signal({}, { agent_id: 5 }), { dead: 'invalid_field', field: 'meta.agent_id' }],
      ['signal meta an array', enc('{"meta":[],"text":"x"}'), { dead: 'invalid_field', field: 'meta' }],
      ['signal run_id an object', signal({}, { run_id: { id: 1 } }), { dead: 'invalid_field', field: 'meta.run_id' }],
      ['signal timestamp a leap second', signal({}, { timestamp: '2026-06-30T23:59:60Z' }), { dead: 'invalid_field', field: 'meta.timestamp' }],
      ['telemetry trust_score a string', telemetry({ trust_score: 'high' }), { dead: 'invalid_field', field: 'trust_score' }],
      ['telemetry timestamp a number', telemetry({}, { timestamp: 1782831600 }), { dead: 'invalid_field', field: 'meta.timestamp' }],
      ['telemetry meta a string', telemetry({ meta: 'probe' }), { dead: 'invalid_field', field: 'meta' }],
      ['mission source_agent an object', mission({ source_agent: { id: 'x' } }), { dead: 'invalid_field', field: 'source_agent' }],
      ['mission event_type a number', mission({ event_type: 5 }), { dead: 'invalid_field', field: 'event_type' }],
      // missing required fields
      ['telemetry without meta', enc('{"signal_type":"sensor_data","payload":1}'), { dead: 'missing_field', field: 'meta' }],
      ['telemetry without timestamp', telemetry({}, { timestamp: undefined }), { dead: 'missing_field', field: 'meta.timestamp' }],
      ['telemetry Go zero time', telemetry({}, { timestamp: '0001-01-01T00:00:00Z' }), { dead: 'missing_field', field: 'meta.timestamp' }],
      ['telemetry signal_type null', telemetry({ signal_type: null }), { dead: 'missing_field', field: 'signal_type' }],
      ['telemetry source_node blank', telemetry({}, { source_node: '  ' }), { dead: 'missing_field', field: 'meta.source_node' }],
      ['mission id empty', mission({ mission_event_id: '' }), { dead: 'missing_field', field: 'mission_event_id' }],
      // non-object JSON: a generic row (where no type is named), a dead letter where one is
      ['an array on a telemetry subject', enc('[{"signal_type":"task_failed"}]'), { intent: 'json', message: '[{"signal_type":"task_failed"}]' }],
      ['a JSON string, Content-Type JSON', enc('"just a string"'), { intent: 'json', message: '"just a string"' }, hdrs({ 'Content-Type': 'application/json' })],
      ['JSON null, Content-Type JSON', enc('null'), { intent: 'json', message: 'null' }, hdrs({ 'Content-Type': 'application/json' })],
      ['a bare number (no header: text)', enc('42'), { intent: 'text', message: '42' }],
      // (DESIGN 3.1: where the type is named, only '{' or Content-Type JSON is read as JSON; '[' is protobuf)
      ['an array where Mycelis-Type names MsgEnvelope', enc('[1,2]'), { dead: 'decode_error' }, hdrs({ 'Mycelis-Type': 'mycelis.swarm.v1.MsgEnvelope' })],
      ['an array, Content-Type JSON, Mycelis-Type MsgEnvelope', enc('[1,2]'), { dead: 'invalid_json' }, hdrs({ 'Mycelis-Type': 'mycelis.swarm.v1.MsgEnvelope', 'Content-Type': 'application/json' })],
      ['a signal where Mycelis-Type names MsgEnvelope', signal(), { dead: 'invalid_json' }, hdrs({ 'Mycelis-Type': 'mycelis.swarm.v1.MsgEnvelope' })],
      ['"[" that is not JSON (text)', enc('[draft] not json'), { intent: 'text', message: '[draft] not json' }],
      // invalid UTF-8, empty
      ['invalid UTF-8 in a telemetry envelope', badUtf8('{"meta":{"source_node":"n","timestamp":"2026-06-30T15:00:00Z"},"signal_type":"x","payload":"', '"}'), { dead: 'invalid_json', field: 'not JSON: not valid UTF-8' }],
      ['invalid UTF-8 in a mission event', badUtf8('{"event_type":"tool.invoked","mission_event_id":"m","source_agent":"', '"}'), { dead: 'invalid_json', field: 'not JSON: not valid UTF-8' }],
      ['invalid UTF-8 in other JSON', badUtf8('["', '"]'), { dead: 'invalid_json', field: 'not JSON: not valid UTF-8' }],
      ['invalid UTF-8 in text', badUtf8('an answer ', ' cut'), { dead: 'decode_error' }],
      ['a control character in text', enc('bell\u0007'), { dead: 'decode_error' }],
      ['empty', new Uint8Array(0), { dead: 'no_payload' }],
      // deeply nested: 64 levels are stored, 65 are too_deep, 100,000 too (without exhausting the stack)
      ['signal payload 64 levels deep', signal({ payload: nested(63), text: undefined }, { agent_id: undefined }), { intent: 'status' }],
      ['signal payload 65 levels deep', signal({ payload: nested(64) }), { dead: 'too_deep' }],
      ['telemetry payload 64 levels deep', telemetry({ payload: nested(63) }), { intent: 'sensor_data', source: 'hx-node' }],
      ['telemetry payload 65 levels deep', telemetry({ payload: nested(64) }), { dead: 'too_deep' }],
      ['mission event 65 levels deep', mission({ payload_summary: nested(64) }), { dead: 'too_deep' }],
      ['other JSON 64 levels deep', enc(JSON.stringify(nested(64))), { intent: 'json' }],
      ['other JSON 65 levels deep', enc(JSON.stringify(nested(65))), { dead: 'too_deep' }],
      ['other JSON 100,000 levels deep', enc('['.repeat(100_000) + ']'.repeat(100_000)), { dead: 'too_deep' }],
      ['telemetry 100,000 levels deep', enc('{"signal_type":"x","payload":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}'), { dead: 'too_deep' }],
      // huge: just under MAX_EVENT_BYTES (1 MiB, also NATS' max_payload) is stored whole
      ['telemetry of 1 MiB', telemetry({ payload: { text: 'ok', blob: 't'.repeat(1024 * 1024 - 300) } }), { intent: 'sensor_data', message: 'ok' }],
      ['mission event of 1 MiB', mission({ payload_summary: { keys: ['k'.repeat(1024 * 1024 - 300)] } }), { intent: 'tool.invoked', message: 'tool.invoked' }],
      ['other JSON of 1 MiB', enc(JSON.stringify([{ role: 'user', content: 'c'.repeat(1024 * 1024 - 100) }])), { intent: 'json' }],
      ['text of 1 MiB', enc('w'.repeat(1024 * 1024 - 10)), { intent: 'text', message: 'w'.repeat(1024 * 1024 - 10) }],
    ];
    const subjectOf = (i: number): string => `swarm.team.hx.case${i}`;
    cases.forEach(([, data, , headers], i) => pub.publish(subjectOf(i), data, headers ? { headers } : undefined));
    await settle();
    for (let i = 0; i < cases.length; i++) {
      const [label, data, want] = cases[i]!;
      const dead = await h.sql.query<{ reason: string; detail: string; payload: Buffer }>(`SELECT reason, detail, payload FROM ingest_rejects WHERE subject = $1`, [subjectOf(i)]);
      const rows = await rowsOn(subjectOf(i));
      if ('dead' in want) {
        assert.equal(rows.length, 0, `${label}: no row`);
        assert.equal(dead.rowCount, 1, `${label}: one dead letter`);
        assert.equal(dead.rows[0]!.reason, want.dead, `${label}: ${dead.rows[0]!.reason}: ${dead.rows[0]!.detail}`);
        if (want.field !== undefined) assert.ok(dead.rows[0]!.detail.startsWith(want.field), `${label}: ${dead.rows[0]!.detail}`);
        assert.ok(Buffer.from(data).equals(dead.rows[0]!.payload), `${label}: the raw bytes kept`);
      } else {
        assert.equal(dead.rowCount, 0, `${label}: no dead letter (${dead.rows[0]?.reason}: ${dead.rows[0]?.detail})`);
        assert.equal(rows.length, 1, `${label}: one row`);
        const r = rows[0]!;
        assert.equal(r.intent, want.intent, label);
        assert.equal(r.team_id, 'hx', label);
        if (want.message !== undefined) assert.equal(r.message, want.message, label);
        if (want.source !== undefined) assert.equal(r.source, want.source, label);
        if (want.intent === 'json') assert.deepEqual(r.context, { format: 'json', body: JSON.parse(new TextDecoder().decode(data)) }, `${label}: the whole value`);
        if (want.intent === 'sensor_data' || want.intent === 'tool.invoked') assert.deepEqual(r.context, JSON.parse(new TextDecoder().decode(data)), `${label}: the whole envelope`);
      }
    }
    // Generic rows change no agent; the envelopes' agents are registered.
    assert.equal(await count(h.sql, `SELECT 1 FROM agent_registry WHERE agent_id IN ('hx', 'unknown')`), 0);
    assert.equal(await count(h.sql, `SELECT 1 FROM agent_registry WHERE agent_id = 'hx-node' AND team_id = 'hx'`), 1);
  });

  it('over MAX_EVENT_BYTES, whatever the format: too_large, raw bytes kept', async () => {
    // NATS' default max_payload equals the default MAX_EVENT_BYTES (1 MiB), so a larger payload cannot
    // arrive at the defaults: a second service on the same stream (its own consumer and database) with
    // a 64 KiB limit reads payloads the first one stores.
    const tight = await createTestDatabase('ingest_swarm_head_tight');
    const small = await startHarness({ ...tight.env, MAX_EVENT_BYTES: '64KiB', CONSUMER_NAME: 'tight' }, nats.url);
    try {
      const blob = 'b'.repeat(100 * 1024);
      const big: [string, Uint8Array][] = [
        ['signal', enc(JSON.stringify({ meta: { timestamp: '2026-06-30T15:00:00Z', payload_kind: 'result', agent_id: 'big-1' }, payload: { blob } }))],
        ['telemetry', enc(JSON.stringify({ meta: { source_node: 'big-2', timestamp: '2026-06-30T15:00:00Z' }, signal_type: 'sensor_data', payload: { blob } }))],
        ['mission_event', enc(JSON.stringify({ event_type: 'artifact.created', mission_event_id: 'big-3', payload_summary: { keys: [blob] }, run_id: 'r', source_agent: 'big-3' }))],
        ['json', enc(JSON.stringify([blob]))],
        ['text', enc(blob)],
      ];
      big.forEach(([format], i) => pub.publish(`swarm.team.big.${format}`, big[i]![1]));
      const sentinel = `sentinel-tight-${++sentinels}`;
      pub.publish('swarm.agent.sentinel.output', textEnvelope(sentinel, 'sentinel', sentinel));
      await waitFor('tight sentinel', async () => (await count(small.sql, `SELECT 1 FROM log_entries WHERE context->>'id' = $1`, [sentinel])) === 1);
      await waitFor('default sentinel', async () => (await count(h.sql, `SELECT 1 FROM log_entries WHERE context->>'id' = $1`, [sentinel])) === 1);
      for (const [format, data] of big) {
        const subject = `swarm.team.big.${format}`;
        const d = await small.sql.query<{ reason: string; detail: string; payload: Buffer }>(`SELECT reason, detail, payload FROM ingest_rejects WHERE subject = $1`, [subject]);
        assert.equal(d.rowCount, 1, format);
        assert.equal(d.rows[0]!.reason, 'too_large', format);
        assert.match(d.rows[0]!.detail, /> MAX_EVENT_BYTES 65536/, format);
        assert.ok(Buffer.from(data).equals(d.rows[0]!.payload), `${format}: the raw bytes kept`);
        assert.equal(await count(small.sql, 'SELECT 1 FROM log_entries WHERE subject = $1', [subject]), 0, format);
        assert.equal(await count(h.sql, 'SELECT 1 FROM log_entries WHERE subject = $1', [subject]), 1, `${format} is a row at the default limit`);
      }
      assert.equal(await count(small.sql, `SELECT 1 FROM agent_registry WHERE agent_id LIKE 'big-%'`), 0, 'a dead letter registers nobody');
    } finally {
      await small.close();
      await tight.drop();
    }
  });
});

function contextOf(e: Entry): unknown {
  const text = readFileSync(new URL(e.file, FIXTURES), 'utf8');
  if (e.format === 'text') return { format: 'text', body: text };
  if (e.format === 'json') return { format: 'json', body: JSON.parse(text) };
  return JSON.parse(text);
}
