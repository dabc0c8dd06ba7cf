// JetStream ingest end to end: real NATS (a private server, because these tests need `swarm.>` itself
// and the default stream settings), real PostgreSQL (a fresh database), the real BatchWriter.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { connect, headers as natsHeaders, StorageType, type NatsConnection } from 'nats';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { startPrivateNats, type PrivateNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';
import { loadConfig } from '../../src/config/config.js';
import { ensureStream, StreamConfigMismatchError } from '../../src/ingest/stream-setup.js';
import { startIngest } from '../../src/ingest/ingest.js';
import { count, ingestMetrics, metricValue, prng, silentLogger, startHarness, textEnvelope, type Harness } from './ingest-harness.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/swarm-v1', import.meta.url));
interface Fixture {
  type: string;
  subject: string;
}
const index = JSON.parse(readFileSync(join(FIXTURES, 'index.json'), 'utf8')) as Record<string, Fixture>;
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(join(FIXTURES, `${name}.bin`)));

describe('JetStream ingest', () => {
  let tdb: TestDatabase;
  let nats: PrivateNats;
  let h: Harness;
  let pub: NatsConnection;

  before(async () => {
    tdb = await createTestDatabase('ingest_jetstream');
    nats = await startPrivateNats();
    pub = await connect({ servers: nats.url });
    // Defaults for stream, subjects, exclusions and log-entry subjects: the production shape.
    h = await startHarness({ ...tdb.env, INGEST_BATCH_SIZE: '100' }, nats.url);
  });

  after(async () => {
    await h?.close();
    await pub?.close();
    await nats?.destroy();
    await tdb?.drop();
  });

  /** Publishes a sentinel and waits until it is stored: everything published before it is committed. */
  async function settle(label: string): Promise<void> {
    const id = `sentinel-${label}`;
    pub.publish('swarm.agent.sentinel.output', textEnvelope(id, 'sentinel', label));
    await waitFor(`sentinel ${label}`, async () => (await count(h.sql, `SELECT 1 FROM log_entries WHERE context->>'id' = $1`, [id])) === 1);
  }

  it('creates the stream with no_ack, file storage and the configured subjects, and a durable explicit-ack consumer', async () => {
    const jsm = await pub.jetstreamManager();
    const si = await jsm.streams.info('SWARM');
    assert.deepEqual(si.config.subjects, ['swarm.>']);
    assert.equal(si.config.no_ack, true);
    assert.equal(si.config.storage, StorageType.File);
    const ci = await jsm.consumers.info('SWARM', 'mycelis-memory');
    assert.equal(ci.config.ack_policy, 'explicit');
    assert.ok((ci.config.max_ack_pending ?? 0) >= 200, `max_ack_pending ${ci.config.max_ack_pending}`);
  });

  it('stores the real-format fixtures as the exact rows and registry of DESIGN 3.1/3.3', async () => {
    for (const [name, f] of Object.entries(index)) pub.publish(f.subject, fixture(name));
    await settle('fixtures');
    const { rows } = await h.sql.query(
      `SELECT subject, source, team_id, intent, coalesce(message, '') AS message, level, trace_id,
              to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS ts
       FROM log_entries WHERE source <> 'sentinel' ORDER BY timestamp`,
    );
    assert.deepEqual(rows, [
      { subject: 'swarm.prod.agent.radiant-qa-001.heartbeat', source: 'radiant-qa-001', team_id: '', intent: 'heartbeat', message: 'heartbeat', level: 'INFO', trace_id: '', ts: '2026-01-01T00:00:00.123456' },
      { subject: 'swarm.agent.chatty.output', source: 'chatty', team_id: 'ops', intent: 'inform', message: 'hello swarm ☃', level: 'INFO', trace_id: 'trace-a', ts: '2026-01-01T00:00:01.000000' },
      { subject: 'swarm.team.dev.agent.coder.output', source: 'coder', team_id: 'dev', intent: 'tool_call', message: 'shell', level: 'INFO', trace_id: 'trace-a', ts: '2026-01-01T00:00:02.000000' },
      { subject: 'swarm.team.dev.agent.coder.output', source: 'coder', team_id: 'dev', intent: 'tool_result', message: 'boom: permission denied', level: 'ERROR', trace_id: 'trace-a', ts: '2026-01-01T00:00:03.999999' },
      { subject: 'swarm.smoke.test', source: 'finance-bot', team_id: 'finance', intent: 'payment.create', message: 'payment.create', level: 'INFO', trace_id: '', ts: '2026-01-01T00:00:04.000000' },
      { subject: 'swarm.agent.camera-01.output', source: 'camera-01', team_id: '', intent: 'binary', message: '', level: 'INFO', trace_id: '', ts: '2026-01-01T00:00:05.000000' },
      { subject: 'swarm.log.planner', source: 'planner', team_id: 'research', intent: 'plan.step', message: 'model timeout after 30s', level: 'ERROR', trace_id: 'trace-b', ts: '2026-01-01T00:00:06.000001' },
    ]);
    interface Agent {
      agent_id: string;
      team_id: string;
      status: string;
      meta: unknown;
      last_error_summary: string | null;
    }
    const reg = await h.sql.query<Agent>(`SELECT agent_id, team_id, status, meta, last_error_summary FROM agent_registry WHERE agent_id <> 'sentinel' ORDER BY agent_id`);
    const byId: Record<string, Agent> = Object.fromEntries(reg.rows.map((r) => [r.agent_id, r]));
    assert.deepEqual(Object.keys(byId), ['camera-01', 'chatty', 'coder', 'finance-bot', 'planner', 'radiant-qa-001']);
    assert.equal(byId['radiant-qa-001']!.status, 'BUSY');
    assert.equal(byId['radiant-qa-001']!.team_id, 'default');
    assert.deepEqual(byId['radiant-qa-001']!.meta, { location: 'rack-7', battery: 0.8 });
    assert.equal(byId['coder']!.status, 'ERROR');
    assert.equal(byId['coder']!.team_id, 'dev');
    assert.equal(byId['coder']!.last_error_summary, 'boom: permission denied');
    assert.equal(byId['planner']!.status, 'ERROR');
    assert.equal(byId['chatty']!.status, 'IDLE');
  });

  it('stores one row for a message sent twice and its swarm.audit.trace copy; a reused id with a new timestamp is a new row', async () => {
    const before = await count(h.sql, 'SELECT 1 FROM log_entries');
    const dupBefore = await metricValue(ingestMetrics.duplicates);
    const text = fixture('text');
    pub.publish(index['text']!.subject, text);
    pub.publish(index['text']!.subject, text);
    pub.publish('swarm.audit.trace', text);
    const smoke = MsgEnvelope.decode(fixture('event_with_context'));
    smoke.timestamp = { seconds: String(Number(smoke.timestamp!.seconds) + 60), nanos: 0 };
    pub.publish('swarm.smoke.test', MsgEnvelope.encode(smoke).finish());
    await settle('dedupe');
    // +1 for the re-sent test-id-2, +1 for the sentinel; the three text copies add nothing.
    assert.equal(await count(h.sql, 'SELECT 1 FROM log_entries'), before + 2);
    assert.equal(await count(h.sql, `SELECT 1 FROM log_entries WHERE context->>'id' = 'test-id-2'`), 2);
    assert.equal(await count(h.sql, `SELECT 1 FROM log_entries WHERE context->>'id' = 'tx-1'`), 1);
    assert.equal((await metricValue(ingestMetrics.duplicates)) - dupBefore, 3);
  });

  it('acks excluded subjects without storing them, and acks everything once committed', async () => {
    const excludedBefore = await metricValue(ingestMetrics.excluded);
    const rowsBefore = await count(h.sql, 'SELECT 1 FROM log_entries');
    const rejectsBefore = await count(h.sql, 'SELECT 1 FROM ingest_rejects');
    pub.publish('swarm.council.architect.request', new TextEncoder().encode('{"not":"swarm/v1"}'));
    pub.publish('swarm.council.architect.request', textEnvelope('council-1', 'architect', 'x'));
    await settle('excluded');
    assert.equal((await metricValue(ingestMetrics.excluded)) - excludedBefore, 2);
    assert.equal(await count(h.sql, 'SELECT 1 FROM log_entries'), rowsBefore + 1); // the sentinel only
    assert.equal(await count(h.sql, 'SELECT 1 FROM ingest_rejects'), rejectsBefore);
    const jsm = await pub.jetstreamManager();
    await waitFor('all acked', async () => {
      const ci = await jsm.consumers.info('SWARM', 'mycelis-memory');
      return ci.num_pending === 0 && ci.num_ack_pending === 0;
    });
    assert.equal(h.ingest.status().mode, 'jetstream');
    assert.equal(h.ingest.status().connected, true);
    assert.ok(h.ingest.status().lastCommitAt instanceof Date);
  });

  it('lets a core NATS request on a captured subject get the responder reply, not a stream ack', async () => {
    const responder = await connect({ servers: nats.url });
    try {
      responder.subscribe('swarm.agent.oracle.ask', {
        callback: (_err, msg) => msg.respond(new TextEncoder().encode('pong')),
      });
      await responder.flush();
      const reply = await pub.request('swarm.agent.oracle.ask', textEnvelope('ask-1', 'asker', 'ping'), { timeout: 5000 });
      assert.equal(new TextDecoder().decode(reply.data), 'pong');
      await settle('request');
      // …and the request itself is still captured and stored.
      assert.equal(await count(h.sql, `SELECT 1 FROM log_entries WHERE context->>'id' = 'ask-1'`), 1);
    } finally {
      await responder.close();
    }
  });

  it('turns 1,000 random-byte messages mixed with 1,000 valid ones into 1,000 rows and 1,000 dead letters (but random bytes that are text)', async () => {
    const rnd = prng(20260101);
    const subject = 'swarm.agent.mixer.output';
    // A short random payload can be valid UTF-8 text without control characters: that is a text row
    // (DESIGN 3.1.1), counted here by the definition, independently of the service's code.
    const isText = (b: Uint8Array): boolean => {
      try {
        const t = new TextDecoder('utf-8', { fatal: true }).decode(b);
        return /\S/.test(t) && !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(t);
      } catch {
        return false;
      }
    };
    let texts = 0;
    for (let i = 0; i < 1000; i++) {
      const junk = new Uint8Array(1 + Math.floor(rnd() * 200));
      for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(rnd() * 256);
      if (isText(junk)) texts++;
      pub.publish(subject, junk);
      pub.publish(subject, textEnvelope(`mix-${i}`, 'mixer', `valid ${i}`));
    }
    await settle('mix');
    assert.equal(await count(h.sql, `SELECT 1 FROM log_entries WHERE subject = $1`, [subject]), 1000 + texts);
    assert.equal(await count(h.sql, `SELECT 1 FROM log_entries WHERE subject = $1 AND intent = 'text' AND source = 'mixer' AND context->>'format' = 'text'`, [subject]), texts);
    assert.equal(await count(h.sql, `SELECT 1 FROM log_entries WHERE source = 'mixer' AND context->>'format' IS NULL`), 1000);
    assert.equal(await count(h.sql, `SELECT 1 FROM ingest_rejects WHERE subject = $1`, [subject]), 1000 - texts);
    const { rows } = await h.sql.query(`SELECT DISTINCT reason FROM ingest_rejects WHERE subject = $1`, [subject]);
    assert.ok(rows.length >= 1);
    // Raw bytes are kept for replay.
    const sample = await h.sql.query(`SELECT payload FROM ingest_rejects WHERE subject = $1 ORDER BY stream_seq LIMIT 1`, [subject]);
    assert.ok((sample.rows[0] as { payload: Buffer }).payload.length >= 1);
  });

  it('dead-letters a row PostgreSQL rejects with its own original bytes, headers and stream position, committing its neighbours', async () => {
    const subject = 'swarm.agent.oversize.output';
    const rnd = prng(20261127);
    // Invalid and excluded messages ahead of it in the same batch: they make no row, so a row's
    // original message is not at the row's index among the delivered messages.
    for (let i = 0; i < 20; i++) {
      pub.publish(subject, Uint8Array.from({ length: 40 }, () => Math.floor(rnd() * 256)));
      pub.publish('swarm.council.architect.request', textEnvelope(`skip-${i}`, 'architect', 'x'));
      pub.publish(subject, textEnvelope(`before-${i}`, 'oversize-neighbour', `before ${i}`));
    }
    // 54000: an index row over btree's limit (an incompressible agent id, indexed by idx_logs_source).
    const bad = textEnvelope('too-big', randomBytes(6000).toString('base64'), 'rejected by PostgreSQL');
    const hdrs = natsHeaders();
    hdrs.set('X-Probe', 'oversize');
    pub.publish(subject, bad, { headers: hdrs });
    for (let i = 0; i < 20; i++) pub.publish(subject, textEnvelope(`after-${i}`, 'oversize-neighbour', `after ${i}`));
    await settle('oversize');
    assert.equal(await count(h.sql, `SELECT 1 FROM log_entries WHERE source = 'oversize-neighbour'`), 40);
    const dl = await h.sql.query<{ payload: Buffer; headers: Record<string, string>; sqlstate: string; stream_seq: string }>(
      `SELECT payload, headers, sqlstate, stream_seq::text FROM ingest_rejects WHERE reason = 'db_rejected' AND subject = $1`,
      [subject],
    );
    assert.equal(dl.rowCount, 1, 'only the offending row is dead-lettered');
    const row = dl.rows[0]!;
    assert.match(row.sqlstate, /^54/);
    assert.deepEqual(new Uint8Array(row.payload), bad, 'the original bytes of that very message');
    assert.equal(row.headers['X-Probe'], 'oversize');
    const jsm = await pub.jetstreamManager();
    const stored = await jsm.streams.getMessage('SWARM', { seq: Number(row.stream_seq) });
    assert.deepEqual(stored.data, bad, 'stream_seq points at that message in the stream');
  });

  it('refuses an existing stream with other settings, naming each difference', async () => {
    const jsm = await pub.jetstreamManager();
    await jsm.streams.add({ name: 'LEGACY', subjects: ['legacy.>'], storage: StorageType.Memory });
    const cfg = loadConfig({ ...tdb.env, NATS_URL: nats.url, STREAM_NAME: 'LEGACY', NATS_SUBJECTS: 'legacy.>,legacy2.>' }).ingest;
    await assert.rejects(ensureStream(jsm, cfg, silentLogger), (err: unknown) => {
      assert.ok(err instanceof StreamConfigMismatchError);
      assert.match(err.message, /LEGACY/);
      assert.match(err.message, /subjects are \["legacy\.>"\], expected \["legacy\.>","legacy2\.>"\]/);
      assert.match(err.message, /no_ack is false/);
      assert.match(err.message, /storage is memory, expected file/);
      assert.equal(err.differences.length, 3);
      return true;
    });
    // The service start path refuses too, and leaves the stream unchanged.
    const config = loadConfig({ ...tdb.env, NATS_URL: nats.url, STREAM_NAME: 'LEGACY', NATS_SUBJECTS: 'legacy.>', CONSUMER_NAME: 'legacy-c' });
    await assert.rejects(startIngest({ config, nc: pub, writer: h.writer, logger: silentLogger }), StreamConfigMismatchError);
    const si = await jsm.streams.info('LEGACY');
    assert.notEqual(si.config.no_ack, true);
    assert.equal(si.config.storage, StorageType.Memory);
    await assert.rejects(jsm.consumers.info('LEGACY', 'legacy-c'));
  });
});
