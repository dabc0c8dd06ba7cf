// Fault scenario 1 (crash) with everything the current swarm sends (DESIGN 3.1.1): one stream of
// protobuf, proto3 JSON, signal and telemetry envelopes, mission events, other JSON and plain text
// (plus the swarm-head fixtures, three of which are dead letters) is ingested twice by two durable
// consumers into two databases — once cleanly, once with the service SIGKILLed twice mid-ingest.
// Afterwards both hold the same rows exactly once (ids, content, event times), the same dead
// letters, and the same registry. A private nats-server, because these subjects are plain swarm.*
// (the team and agent come from swarm.team.<t>.… and swarm.agent.<id>.…), with the production
// defaults for subjects, exclusions and batching.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import { FORMAT_OF } from '../../src/cli/traffic.js';
import { startService } from '../helpers/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { startPrivateNats, type PrivateNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { assertionPool, consumerDrained, countOf, publishTraffic } from './fault-helpers.js';

const TRAFFIC = 30_000;
const FIXTURES = new URL('../fixtures/swarm-head/', import.meta.url);
const index = JSON.parse(readFileSync(new URL('index.json', FIXTURES), 'utf8')) as Record<string, { file: string; subject: string; expect: { row: boolean } }>;
const fixtureList = Object.values(index);
const fixtureRows = fixtureList.filter((e) => e.expect.row && !e.subject.startsWith('swarm.council.')).length;
const fixtureDead = fixtureList.filter((e) => !e.expect.row).length;
const ROWS = TRAFFIC + fixtureRows;

const LOG_DIGEST = `SELECT count(*)::int AS n, md5(string_agg(concat_ws('|', id, trace_id, (extract(epoch FROM timestamp) * 1e6)::bigint, level, source, intent,
  message, context::text, team_id, subject), E'\\n' ORDER BY id)) AS digest FROM log_entries`;
const DEAD = `SELECT stream_seq::text, reason, detail, md5(payload) AS payload FROM ingest_rejects ORDER BY stream_seq, id`;
const REGISTRY = `SELECT agent_id, team_id, status, last_seen, meta, last_error_summary, status_at, status_seq::text,
  status_set_at, status_set_seq::text, team_at, team_seq::text, last_error_at, last_error_seq::text FROM agent_registry ORDER BY agent_id`;

describe('fault: SIGKILL x2 during a stream of every format the current swarm sends', { timeout: 240_000 }, () => {
  let nats: PrivateNats;
  let nc: NatsConnection;
  let crashDb: TestDatabase;
  let cleanDb: TestDatabase;
  let crashPool: pg.Pool;
  let cleanPool: pg.Pool;

  before(async () => {
    nats = await startPrivateNats();
    nc = await connect({ servers: nats.url });
    [crashDb, cleanDb] = await Promise.all([createTestDatabase('mixed_crash'), createTestDatabase('mixed_clean')]);
    crashPool = assertionPool(crashDb.url);
    cleanPool = assertionPool(cleanDb.url);
  });
  after(async () => {
    await nc?.close();
    await nats?.destroy();
    await crashPool?.end();
    await cleanPool?.end();
    await crashDb?.drop();
    await cleanDb?.drop();
  });

  // Production defaults: stream SWARM over swarm.>, exclusions, batch sizes, ACK_WAIT.
  const envOf = (db: TestDatabase, consumer: string): Record<string, string> => ({
    ...db.env,
    NATS_URL: nats.url,
    CONSUMER_NAME: consumer,
    LOG_LEVEL: 'info',
  });

  it(`${ROWS} rows exactly once, the same rows, dead letters and registry as a clean run`, async () => {
    const crashEnv = envOf(crashDb, 'mycelis-memory');
    const cleanEnv = envOf(cleanDb, 'mycelis-memory-clean');
    // Create the stream and both durable consumers, then fill the stream while neither consumes.
    await (await startService({ env: crashEnv })).kill();
    await (await startService({ env: cleanEnv })).kill();
    const sent = await publishTraffic(nc, { count: TRAFFIC, agents: 100, seed: 22, mix: 'current' });
    assert.equal(sent, TRAFFIC);
    for (const e of fixtureList) nc.publish(e.subject, new Uint8Array(readFileSync(new URL(e.file, FIXTURES))));
    await nc.flush();
    const jsm = await nc.jetstreamManager();
    await waitFor('the stream to hold every message', async () => (await jsm.streams.info('SWARM')).state.messages === TRAFFIC + fixtureList.length);

    const done = (pool: pg.Pool) => async (): Promise<boolean> =>
      (await countOf(pool, 'SELECT 1 FROM log_entries')) >= ROWS && (await countOf(pool, 'SELECT 1 FROM ingest_rejects')) >= fixtureDead;
    const clean = await startService({ env: cleanEnv });
    try {
      await waitFor('clean run complete', done(cleanPool), { timeoutMs: 120_000, intervalMs: 200 });
      await waitFor('clean consumer drained', () => consumerDrained(nats.url, 'SWARM', 'mycelis-memory-clean'), { timeoutMs: 30_000 });
    } finally {
      assert.equal(await clean.stop(), 0);
    }
    assert.equal(await countOf(cleanPool, 'SELECT 1 FROM log_entries'), ROWS);

    const rows = (): Promise<number> => countOf(crashPool, 'SELECT 1 FROM log_entries');
    const killedAt: number[] = [];
    for (const threshold of [7_000, 19_000]) {
      const svc = await startService({ env: crashEnv });
      await waitFor(`more than ${threshold} rows`, async () => (await rows()) > threshold, { timeoutMs: 120_000, intervalMs: 5 });
      await svc.kill();
      killedAt.push(await rows());
    }
    assert.ok(killedAt.every((n, i) => n < ROWS && (i === 0 || n > killedAt[i - 1]!)), `killed mid-ingest at ${killedAt.join(', ')} rows`);
    const last = await startService({ env: crashEnv });
    try {
      await waitFor('all rows', done(crashPool), { timeoutMs: 120_000, intervalMs: 200 });
      // Redeliveries of what was in flight at each kill must not add rows: wait until nothing is pending.
      await waitFor('crash consumer drained', () => consumerDrained(nats.url, 'SWARM', 'mycelis-memory'), { timeoutMs: 60_000 });
    } finally {
      assert.equal(await last.stop(), 0);
    }

    const counts = await crashPool.query('SELECT count(*)::int AS n, count(DISTINCT id)::int AS d, count(DISTINCT seq)::int AS s FROM log_entries');
    assert.deepEqual(counts.rows[0], { n: ROWS, d: ROWS, s: ROWS });
    // Every format is in there (the stored context tells generic rows apart; envelopes by their keys).
    const formats = await crashPool.query<{ f: string; n: number }>(`
      SELECT CASE WHEN context ? 'format' THEN context->>'format'
                  WHEN context ? 'signal_type' THEN 'telemetry'
                  WHEN context ? 'mission_event_id' THEN 'mission_event'
                  WHEN context ? 'meta' OR jsonb_typeof(context->'text') = 'string' THEN 'signal'
                  ELSE 'swarm/v1' END AS f, count(*)::int AS n
      FROM log_entries GROUP BY 1 ORDER BY 1`);
    const seen = new Set(formats.rows.map((r) => r.f));
    for (const f of ['json', 'mission_event', 'signal', 'swarm/v1', 'telemetry', 'text']) assert.ok(seen.has(f), `${f} rows among ${JSON.stringify(formats.rows)}`);
    assert.ok(new Set(Object.values(FORMAT_OF)).has('proto_json'));
    assert.ok((await countOf(crashPool, `SELECT 1 FROM log_entries WHERE context->>'id' LIKE 'pj-%'`)) > 0, 'proto3-JSON envelopes');

    const [crashLog, cleanLog] = await Promise.all([crashPool.query(LOG_DIGEST), cleanPool.query(LOG_DIGEST)]);
    assert.deepEqual(crashLog.rows[0], cleanLog.rows[0], 'the same rows with the same content');

    // Dead letters: the broken fixtures, each with its reason, once: a dead letter committed just before
    // a kill and redelivered with its batch is not stored again (keyed by stream position, migration 008).
    const [crashDead, cleanDead] = await Promise.all([crashPool.query(DEAD), cleanPool.query(DEAD)]);
    assert.equal(cleanDead.rows.length, fixtureDead);
    assert.deepEqual(crashDead.rows, cleanDead.rows);

    const [crashReg, cleanReg] = await Promise.all([crashPool.query(REGISTRY), cleanPool.query(REGISTRY)]);
    assert.ok(cleanReg.rows.length > 100, `${cleanReg.rows.length} agents`);
    // Every field, meta included (each meta key keeps the time of its event: registry-fold.ts, migration 007).
    const differ: string[] = [];
    crashReg.rows.forEach((r, i) => {
      const c = cleanReg.rows[i] ?? {};
      for (const k of Object.keys(r)) {
        if (JSON.stringify(r[k]) !== JSON.stringify(c[k])) differ.push(`${r['agent_id']}.${k}: ${JSON.stringify(r[k])} vs clean ${JSON.stringify(c[k])}`);
      }
    });
    assert.equal(crashReg.rows.length, cleanReg.rows.length);
    assert.deepEqual(differ, [], 'the registry after two crashes equals the clean run');
  });
});
