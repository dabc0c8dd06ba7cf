// The batch writer against the real PostgreSQL: COPY path, the duplicate fast path, rows PostgreSQL
// rejects dead-lettered while their neighbours commit, dead letters, registry upsert, notifications,
// and retention.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createLogger } from '../../src/logger.js';
import { BatchWriter, type CommitRange } from '../../src/store/batch-writer.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';
import { StoreMaintenance } from '../../src/store/maintenance.js';
import { DEFAULT_PARTITION_SPEC } from '../../src/store/partitions.js';
import { nowUs } from '../../src/domain/time.js';
import { metricsRegistry } from '../../src/metrics.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { waitFor } from '../helpers/wait.js';
import { makeEvent, makeReject, makeRow, makeRows } from './store-rows.js';

const logger = createLogger('silent');

async function metricValue(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = metricsRegistry.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  return data.values
    .filter((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val))
    .reduce((s, v) => s + v.value, 0);
}

describe('store: batch writer (PostgreSQL)', () => {
  let tdb: TestDatabase;
  let db: Database;
  let writer: BatchWriter;

  before(async () => {
    tdb = await createTestDatabase('store_writer');
    db = await openDatabase(
      { kind: 'postgres', url: tdb.url, redactedUrl: tdb.url, sslMode: undefined, poolMax: 4, embeddedDataDir: '' },
      logger,
    );
    await migrate(db.pool, logger);
    writer = new BatchWriter(db, logger);
  });
  after(async () => {
    await db?.close();
    await tdb?.drop();
  });

  it('writes rows by COPY with exact text, seq range and event time', async () => {
    const rows = makeRows(50);
    const r = await writer.write({ rows, rejects: [], registry: [] });
    assert.equal(r.rowsPath, 'copy');
    assert.equal(r.inserted, 50);
    assert.equal(r.duplicates, 0);
    assert.equal(r.lastSeq - r.firstSeq + 1, 50);
    const res = await db.pool.query(
      `SELECT id::text, seq::text, message, context, team_id, subject, source,
              (extract(epoch FROM timestamp) * 1000000)::bigint::text AS ts_us
       FROM log_entries WHERE id = ANY($1::uuid[]) ORDER BY log_entries.seq`,
      [rows.map((x) => x.id)],
    );
    assert.equal(res.rowCount, 50);
    res.rows.forEach((got, i) => {
      const want = rows[i]!;
      assert.equal(got.id, want.id);
      assert.equal(Number(got.seq), r.firstSeq + i);
      assert.equal(got.message, want.message);
      assert.deepEqual(got.context, JSON.parse(want.context));
      assert.equal(got.team_id, want.teamId);
      assert.equal(got.subject, want.subject);
      assert.equal(Number(got.ts_us), want.timestampUs);
    });
  });

  it('rewriting a partly stored batch stores only the new rows, through the duplicate fast path', async () => {
    const old = makeRows(30);
    await writer.write({ rows: old, rejects: [], registry: [] });
    const fallbackBefore = await metricValue('mycelis_memory_store_batches_total', { path: 'duplicate_fallback' });
    const carefulBefore = await metricValue('mycelis_memory_store_careful_writes_total', { why: 'duplicate' });
    const fresh = makeRows(20);
    const mixed = [...old.slice(0, 15), ...fresh, ...old.slice(15)];
    const r = await writer.write({ rows: mixed, rejects: [], registry: [] });
    assert.equal(r.rowsPath, 'duplicate_fallback');
    assert.equal(r.inserted, 20);
    assert.equal(r.duplicates, 30);
    assert.equal(await metricValue('mycelis_memory_store_batches_total', { path: 'duplicate_fallback' }), fallbackBefore + 1);
    // The optimistic COPY met the stored copies, was rolled back whole, and the batch went again carefully.
    assert.equal(await metricValue('mycelis_memory_store_careful_writes_total', { why: 'duplicate' }), carefulBefore + 1);
    const res = await db.pool.query('SELECT count(*)::int AS n FROM log_entries WHERE id = ANY($1::uuid[])', [
      mixed.map((x) => x.id),
    ]);
    assert.equal(res.rows[0].n, 50);
    // The same batch again: nothing new, nothing duplicated.
    const again = await writer.write({ rows: mixed, rejects: [], registry: [] });
    assert.equal(again.inserted, 0);
    assert.equal(again.duplicates, 50);
    assert.equal(again.firstSeq, 0);
    assert.equal(again.lastSeq, 0);
  });

  for (const useCopy of [true, false]) {
    it(`dead-letters only the rows PostgreSQL rejects, committing their neighbours (useCopy=${useCopy})`, async () => {
      const w = new BatchWriter(db, logger, { useCopy });
      const rows = makeRows(40);
      // 54000: an index row over btree's limit (incompressible source, indexed by idx_logs_source).
      const tooBig = makeRow({ source: randomBytes(6000).toString('base64') });
      // 22007/22008: a timestamp PostgreSQL cannot hold.
      const badTime = makeRow({ timestampUs: 9.9e18 });
      rows.splice(7, 0, tooBig);
      rows.splice(31, 0, badTime);
      const origin = { payload: new Uint8Array([1, 2, 3]), headers: { 'Nats-Msg-Id': 'x' }, streamName: 'SWARM', streamCreatedUs: nowUs(), streamSeq: 42 };
      const carefulBefore = await metricValue('mycelis_memory_store_careful_writes_total', { why: 'rows' });
      const r = await w.write({
        rows,
        rejects: [makeReject()],
        registry: [],
        originOf: (i) => (rows[i] === tooBig ? origin : undefined),
      });
      assert.equal(r.rowsPath, 'bisect');
      assert.equal(r.inserted, 40);
      assert.equal(r.rejected, 3);
      assert.equal(r.attempts, 1, 'the careful write after a refused optimistic one is not a retry');
      assert.equal(await metricValue('mycelis_memory_store_careful_writes_total', { why: 'rows' }), carefulBefore + 1);
      const stored = await db.pool.query('SELECT id::text FROM log_entries WHERE id = ANY($1::uuid[])', [rows.map((x) => x.id)]);
      const ids = new Set(stored.rows.map((x: { id: string }) => x.id));
      assert.equal(ids.size, 40);
      assert.ok(!ids.has(tooBig.id) && !ids.has(badTime.id));
      const dl = await db.pool.query(
        `SELECT reason, sqlstate, detail, payload, headers, stream_seq::int AS stream_seq FROM ingest_rejects
         WHERE reason = 'db_rejected' AND (detail LIKE $1 OR detail LIKE $2)`,
        [`row ${tooBig.id}:%`, `row ${badTime.id}:%`],
      );
      assert.equal(dl.rowCount, 2);
      const big = dl.rows.find((x: { detail: string }) => x.detail.includes(tooBig.id));
      assert.match(big.sqlstate, /^54/);
      assert.deepEqual([...big.payload], [1, 2, 3]);
      assert.deepEqual(big.headers, { 'Nats-Msg-Id': 'x' });
      assert.equal(big.stream_seq, 42);
      const time = dl.rows.find((x: { detail: string }) => x.detail.includes(badTime.id));
      assert.match(time.sqlstate, /^22/);
      assert.equal(JSON.parse(Buffer.from(time.payload).toString('utf8')).id, badTime.id);
    });
  }

  it("leaves a rejected row's agent out of the registry and skips an agent state PostgreSQL cannot hold, committing the rest", async () => {
    const tag = randomBytes(4).toString('hex');
    const good = makeRow({ source: `reg-good-${tag}` });
    // A timestamp PostgreSQL cannot hold: the row is dead-lettered, and so is its registry event.
    const badRow = makeRow({ source: `reg-badrow-${tag}`, timestampUs: 9.9e18 });
    const rows = [good, badRow];
    const registry = [makeEvent({ agentId: good.source }), makeEvent({ agentId: badRow.source }), makeEvent({ agentId: `reg-other-${tag}` })];
    // An agent id too long for the registry's primary key (54000): only that state is skipped.
    const hugeAgent = randomBytes(6000).toString('base64');
    const r = await writer.write({
      rows,
      rejects: [],
      registry: [...registry, makeEvent({ agentId: hugeAgent })],
      registryRows: [0, 1, 0, 0],
    });
    assert.equal(r.inserted, 1);
    assert.equal(r.rejected, 1);
    assert.equal(r.agentsUpdated, 2);
    const agents = await db.pool.query<{ agent_id: string }>('SELECT agent_id FROM agent_registry WHERE agent_id = ANY($1::text[]) ORDER BY 1', [
      [good.source, badRow.source, `reg-other-${tag}`, hugeAgent],
    ]);
    assert.deepEqual(agents.rows.map((x) => x.agent_id), [good.source, `reg-other-${tag}`]);
  });

  it('an agent state PostgreSQL refuses sends the whole batch to the careful path: rows stored once, the rest of the registry written', async () => {
    const tag = randomBytes(4).toString('hex');
    const rows = makeRows(10).map((r, i) => ({ ...r, source: `careful-${tag}-${i % 3}` }));
    const hugeAgent = randomBytes(6000).toString('base64');
    const carefulBefore = await metricValue('mycelis_memory_store_careful_writes_total', { why: 'registry' });
    const seen: CommitRange[] = [];
    const off = writer.onCommit((c) => seen.push(c));
    const r = await writer.write({
      rows,
      rejects: [],
      registry: [...rows.map((x) => makeEvent({ agentId: x.source })), makeEvent({ agentId: hugeAgent })],
    });
    off();
    assert.equal(await metricValue('mycelis_memory_store_careful_writes_total', { why: 'registry' }), carefulBefore + 1);
    assert.equal(r.rowsPath, 'copy');
    assert.equal(r.inserted, 10);
    assert.equal(r.duplicates, 0);
    assert.equal(r.agentsUpdated, 3);
    assert.equal(r.attempts, 1);
    // One commit heard, with exactly the careful attempt's rows and seqs (the optimistic one left nothing).
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]!.committed?.seqs, Array.from({ length: 10 }, (_, i) => r.firstSeq + i));
    const stored = await db.pool.query<{ seq: string }>('SELECT seq::text FROM log_entries WHERE id = ANY($1::uuid[]) ORDER BY seq', [rows.map((x) => x.id)]);
    assert.deepEqual(stored.rows.map((x) => Number(x.seq)), seen[0]!.committed?.seqs);
    const agents = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM agent_registry WHERE agent_id LIKE $1', [`careful-${tag}-%`]);
    assert.equal(agents.rows[0]!.n, 3);
  });

  it("a commit's prevSeq is the newest seq in every partition, also one attached after the writer prepared its statement", async () => {
    const w = new BatchWriter(db, logger);
    const heard: CommitRange[] = [];
    const off = w.onCommit((c) => heard.push(c));
    try {
      await w.write({ rows: makeRows(3), rejects: [], registry: [] }); // prepares on its connections
      await w.write({ rows: makeRows(3), rejects: [], registry: [] });
      // Another writer (another replica) commits into a partition that did not exist when it prepared.
      await db.pool.query(`CREATE TABLE log_entries_ptest PARTITION OF log_entries FOR VALUES FROM ('2031-01-01') TO ('2031-01-02')`);
      const far = makeRow({ timestampUs: Date.UTC(2031, 0, 1, 12) * 1000 });
      const ins = await db.pool.query<{ seq: string }>(
        `INSERT INTO log_entries (id, seq, trace_id, timestamp, level, source, intent, message, context, team_id, subject, received_at)
         VALUES ($1, nextval('log_entries_seq'), '', '2031-01-01T12:00:00Z', 'INFO', 'a', 'text', 'm', '{}', '', 's', now()) RETURNING seq::text`,
        [far.id],
      );
      const r = await w.write({ rows: makeRows(2), rejects: [], registry: [] });
      assert.equal(heard.at(-1)!.committed!.prevSeq, Number(ins.rows[0]!.seq));
      assert.equal(r.firstSeq, Number(ins.rows[0]!.seq) + 1);
    } finally {
      off();
      await db.pool.query('DROP TABLE IF EXISTS log_entries_ptest');
    }
  });

  it('stores dead letters with raw bytes and headers', async () => {
    const rej = makeReject({ subject: `swarm.dl.${randomBytes(4).toString('hex')}`, reason: 'too_deep' });
    const r = await writer.write({ rows: [], rejects: [rej], registry: [] });
    assert.equal(r.rejected, 1);
    assert.equal(r.rowsPath, 'none');
    const res = await db.pool.query('SELECT payload, headers, reason, detail, stream_seq::int AS s FROM ingest_rejects WHERE subject = $1', [
      rej.subject,
    ]);
    assert.equal(res.rowCount, 1);
    assert.deepEqual([...res.rows[0].payload], [...rej.payload]);
    assert.deepEqual(res.rows[0].headers, rej.headers);
    assert.equal(res.rows[0].reason, 'too_deep');
    assert.equal(res.rows[0].s, 7);
  });

  it('stores a JetStream message as a dead letter once, however often it is delivered; another incarnation of the stream is another message', async () => {
    const subject = `swarm.dl.${randomBytes(4).toString('hex')}`;
    const created = nowUs() - 60_000_000;
    const stream = { streamName: 'SWARM', streamCreatedUs: created };
    const invalid = makeReject({ ...stream, subject, streamSeq: 901, reason: 'invalid_json' });
    // A row PostgreSQL rejects (a timestamp it cannot hold), from the message at sequence 902.
    const badRow = makeRow({ subject, timestampUs: 9.9e18 });
    const origin = { payload: new Uint8Array([9, 0, 2]), headers: {}, ...stream, streamSeq: 902 };
    const batch = { rows: [badRow], rejects: [invalid], registry: [], originOf: () => origin };
    const storedBefore = await metricValue('mycelis_memory_store_rejects_total');
    const skippedBefore = await metricValue('mycelis_memory_store_rejects_duplicate_total');

    const first = await writer.write(batch);
    assert.equal(first.rejected, 2);
    assert.equal(first.rejectDuplicates, 0);
    assert.deepEqual([...first.rejectedByReason].sort(), [['db_rejected', 1], ['invalid_json', 1]]);
    // Redelivered after its batch committed (the ack was lost): received again, later, by another batch.
    const again = await writer.write({ ...batch, rejects: [{ ...invalid, receivedAtUs: nowUs() }] });
    assert.equal(again.rejected, 0);
    assert.equal(again.rejectDuplicates, 2);
    assert.equal(again.rejectedByReason.size, 0);
    // Twice in one batch (redelivered while its first delivery was still held): once.
    const seq903 = makeReject({ ...stream, subject, streamSeq: 903 });
    const twice = await writer.write({ rows: [], rejects: [seq903, { ...seq903, receivedAtUs: nowUs() }], registry: [] });
    assert.deepEqual([twice.rejected, twice.rejectDuplicates], [1, 1]);
    assert.equal(await metricValue('mycelis_memory_store_rejects_total'), storedBefore + 3);
    assert.equal(await metricValue('mycelis_memory_store_rejects_duplicate_total'), skippedBefore + 3);

    // The stream deleted and created again numbers from 1 once more: the same bytes at the same sequence
    // are another message, kept; so is a message without a stream (core mode) at that sequence.
    const recreated = await writer.write({
      rows: [],
      rejects: [
        { ...invalid, streamCreatedUs: created + 30_000_000 },
        { ...invalid, streamName: '', streamCreatedUs: 0 },
        { ...invalid, streamName: '', streamCreatedUs: 0 },
      ],
      registry: [],
    });
    assert.deepEqual([recreated.rejected, recreated.rejectDuplicates], [3, 0]);

    const res = await db.pool.query<{ seq: string; reason: string; stream: string; created_us: string | null; n: number }>(
      `SELECT stream_seq::text AS seq, reason, stream_name AS stream, (extract(epoch FROM stream_created_at) * 1000000)::bigint::text AS created_us, count(*)::int AS n
       FROM ingest_rejects WHERE subject = $1 OR detail LIKE $2 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
      [subject, `row ${badRow.id}:%`],
    );
    assert.deepEqual(res.rows, [
      { seq: '901', reason: 'invalid_json', stream: '', created_us: null, n: 2 },
      { seq: '901', reason: 'invalid_json', stream: 'SWARM', created_us: String(created), n: 1 },
      { seq: '901', reason: 'invalid_json', stream: 'SWARM', created_us: String(created + 30_000_000), n: 1 },
      { seq: '902', reason: 'db_rejected', stream: 'SWARM', created_us: String(created), n: 1 },
      { seq: '903', reason: 'decode_error', stream: 'SWARM', created_us: String(created), n: 1 },
    ]);
  });

  it('folds registry events over the stored state and upserts once per agent', async () => {
    const t0 = nowUs();
    const agent = `agent-${randomBytes(3).toString('hex')}`;
    const r1 = await writer.write({
      rows: [],
      rejects: [],
      registry: [
        makeEvent({ agentId: agent, timeUs: t0, streamSeq: 1, status: 'BUSY', meta: { battery: 90, model: 'x' } }),
        makeEvent({ agentId: agent, timeUs: t0 + 10, streamSeq: 2, status: 'ERROR', meta: null, errorMessage: 'boom' }),
      ],
    });
    assert.equal(r1.agentsUpdated, 1);
    const read = async () =>
      (
        await db.pool.query(
          `SELECT team_id, status, meta, last_error_summary, status_seq::int AS sq,
                  (extract(epoch FROM status_at) * 1000000)::bigint::text AS at FROM agent_registry WHERE agent_id = $1`,
          [agent],
        )
      ).rows[0];
    let row = await read();
    assert.equal(row.status, 'ERROR');
    assert.equal(row.team_id, 'team-1');
    assert.deepEqual(row.meta, { battery: 90, model: 'x' });
    assert.equal(row.last_error_summary, 'boom');
    assert.equal(Number(row.at), t0 + 10);
    assert.equal(row.sq, 2);
    // An older event changes nothing but may not move anything back; a newer one applies over the stored state.
    await writer.write({ rows: [], rejects: [], registry: [makeEvent({ agentId: agent, timeUs: t0 - 5, status: 'IDLE' })] });
    assert.equal((await read()).status, 'ERROR');
    await writer.write({
      rows: [],
      rejects: [],
      registry: [makeEvent({ agentId: agent, timeUs: t0 + 20, streamSeq: 3, status: 'IDLE', meta: { battery: 70 } })],
    });
    row = await read();
    assert.equal(row.status, 'IDLE');
    assert.deepEqual(row.meta, { battery: 70, model: 'x' });
  });

  it('notifies commits in process and through LISTEN (another replica)', async () => {
    const other = await openDatabase(
      { kind: 'postgres', url: tdb.url, redactedUrl: tdb.url, sslMode: undefined, poolMax: 2, embeddedDataDir: '' },
      logger,
    );
    const local = new CommitNotifier(db, writer, logger);
    const remote = new CommitNotifier(other, null, logger); // hears only NOTIFY
    const seenLocal: number[] = [];
    const seenRemote: number[] = [];
    const withRows = new Map<number, { prevSeq: number; seqs: readonly number[] }>();
    local.onCommit((c) => {
      seenLocal.push(c.lastSeq);
      if (c.committed) withRows.set(c.lastSeq, { prevSeq: c.committed.prevSeq, seqs: c.committed.seqs });
    });
    remote.onCommit((c) => seenRemote.push(c.lastSeq));
    await local.start();
    await remote.start();
    try {
      const r = await writer.write({ rows: makeRows(5), rejects: [], registry: [] });
      await waitFor('remote notification', () => seenRemote.includes(r.lastSeq));
      await waitFor('local notification', () => seenLocal.includes(r.lastSeq));
      assert.equal(await remote.head(), r.lastSeq);
      // Our own commit also comes back through NOTIFY: it is emitted once.
      const r2 = await writer.write({ rows: makeRows(3), rejects: [], registry: [] });
      await waitFor('remote notification 2', () => seenRemote.includes(r2.lastSeq));
      assert.equal(seenLocal.filter((s) => s === r.lastSeq).length, 1);
      // In process, a commit carries its rows (and the newest seq before them), for the live fan-out.
      assert.deepEqual(withRows.get(r2.lastSeq), { prevSeq: r.lastSeq, seqs: [r2.lastSeq - 2, r2.lastSeq - 1, r2.lastSeq] });
      // A commit by another replica's writer reaches this process through NOTIFY, without rows.
      const r3 = await new BatchWriter(other, logger).write({ rows: makeRows(2), rejects: [], registry: [] });
      await waitFor('the other writer\'s commit heard locally', () => seenLocal.includes(r3.lastSeq));
      assert.equal(withRows.has(r3.lastSeq), false);
    } finally {
      await local.stop();
      await remote.stop();
      await other.close();
    }
  });

  it('LISTEN reconnects after its connection is killed and emits the head', async () => {
    const n = new CommitNotifier(db, null, logger);
    const seen: number[] = [];
    n.onCommit((c) => seen.push(c.lastSeq));
    await n.start();
    try {
      await db.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mycelis-memory-listen' AND datname = current_database()",
      );
      // Committed while the listener is (probably) down: must still be reported after the reconnect.
      const r = await writer.write({ rows: makeRows(2), rejects: [], registry: [] });
      await waitFor('head after reconnect', () => seen.some((s) => s >= r.lastSeq), { timeoutMs: 20_000 });
    } finally {
      await n.stop();
    }
  });

  it('retention deletes only old log rows (here: in the default partition) and old dead letters, in batches', async () => {
    const oldTime = nowUs() - 30 * 86_400_000_000; // 30 days: before every partition, so in the default one
    const old = makeRows(25, { timestampUs: oldTime, source: 'retention-agent' });
    const fresh = makeRows(5, { source: 'retention-agent' });
    const oldReject = makeReject({ subject: 'swarm.retention.old', receivedAtUs: oldTime });
    const freshReject = makeReject({ subject: 'swarm.retention.fresh' });
    await writer.write({ rows: [...old, ...fresh], rejects: [oldReject, freshReject], registry: [] });
    const ret = new StoreMaintenance(db, { logRetentionMs: 86_400_000, deadLetterRetentionMs: 86_400_000, partitions: DEFAULT_PARTITION_SPEC }, logger, { batchSize: 10 });
    const out = await ret.runOnce();
    assert.ok(out.trimmed >= 25, `deleted ${out.trimmed}`);
    const left = await db.pool.query("SELECT count(*)::int AS n FROM log_entries WHERE source = 'retention-agent'");
    assert.equal(left.rows[0].n, 5);
    const rej = await db.pool.query("SELECT subject FROM ingest_rejects WHERE subject LIKE 'swarm.retention.%'");
    assert.deepEqual(rej.rows.map((x: { subject: string }) => x.subject), ['swarm.retention.fresh']);
  });

  it('a non-retryable error rejects with a typed StoreError carrying the cause', async () => {
    const c = new pg.Client({ connectionString: tdb.url });
    await c.connect();
    try {
      await c.query('ALTER TABLE ingest_rejects RENAME TO ingest_rejects_moved');
      await assert.rejects(writer.write({ rows: [], rejects: [makeReject()], registry: [] }), (err: Error) => {
        assert.equal(err.name, 'StoreError');
        assert.equal((err.cause as { code?: string }).code, '42P01');
        return true;
      });
    } finally {
      await c.query('ALTER TABLE ingest_rejects_moved RENAME TO ingest_rejects');
      await c.end();
    }
  });
});
