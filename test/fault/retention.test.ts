// Fault scenario 10: retention under full-rate ingest. Events 10 days old (in the daily partitions a
// database that has run that long has) and new events; LOG_RETENTION=3d. Within one retention interval
// the old events are gone, by dropping their partitions: no row of them is deleted one by one (every
// DELETE the pass issues is counted: only dead letters and the default partition see any). Every new
// event is stored and none is touched, and a live StreamLogs tail open all along receives every one of
// them once, in seq order (the detach's short exclusive lock delays it, never breaks it). Old dead
// letters go in small batches.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { StoreMaintenance } from '../../src/store/maintenance.js';
import { DAY_MS, ensureLogPartitions, listLogPartitions, partitionSpecFor } from '../../src/store/partitions.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, dropStreamAndClose, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger, startHarness, type Harness } from '../integration/ingest-harness.js';
import { startApi, StreamCollector, type Api } from '../integration/api-harness.js';
import { countOf, publishTraffic } from './fault-helpers.js';

const names = uniqueNatsNames('retention');
const OLD_EVENTS = 20_000;
const OLD_DEAD = 3_000;
const NEW_EVENTS = 20_000;
const BATCH = 500;
const RETENTION_INTERVAL_MS = 60_000; // the default RETENTION_INTERVAL

describe('fault: retention by partition under full-rate ingest', { timeout: 180_000 }, () => {
  let tdb: TestDatabase;
  let h: Harness;
  let nc: NatsConnection;
  let notifier: CommitNotifier | undefined;
  let api: Api | undefined;

  before(async () => {
    tdb = await createTestDatabase('retention');
    nc = await connect({ servers: SHARED_NATS_URL });
    h = await startHarness(
      {
        ...tdb.env,
        STREAM_NAME: names.stream,
        CONSUMER_NAME: names.consumer,
        NATS_SUBJECTS: `${names.prefix}.>`,
        LOG_ENTRY_SUBJECTS: `${names.prefix}.log.>`,
        NATS_EXCLUDE_SUBJECTS: `${names.prefix}.council.*.request`,
      },
      SHARED_NATS_URL,
    );
  });
  after(async () => {
    await api?.close();
    await notifier?.stop();
    await h?.close();
    await dropStreamAndClose(nc, names.stream);
    await tdb?.drop();
  });

  it('drops the partitions of 10-day-old events within one interval while every new event is stored', async () => {
    const spec = partitionSpecFor(DAY_MS, h.config.ingest.streamMaxAgeMs);
    // The database has run for 10 days: its partitions reach back that far.
    await ensureLogPartitions(h.db.pool, spec, { nowMs: Date.now() - 10 * DAY_MS });
    const tenDaysAgo = Date.now() - 10 * DAY_MS;
    let tick = 0;
    await publishTraffic(nc, { count: OLD_EVENTS, agents: 50, subjectPrefix: names.prefix, typeHeaders: true, seed: 9, clock: () => tenDaysAgo + tick++ * 5 });
    await waitFor('old events stored', async () => (await countOf(h.sql, 'SELECT 1 FROM log_entries')) === OLD_EVENTS, { timeoutMs: 90_000 });
    const oldParts = new Set((await h.sql.query<{ p: string }>('SELECT DISTINCT tableoid::regclass::text AS p FROM log_entries')).rows.map((r) => r.p));
    assert.ok(![...oldParts].includes('log_entries_default'), `old events sit in their daily partitions: ${[...oldParts].join()}`);
    await h.sql.query(
      `INSERT INTO ingest_rejects (received_at, subject, payload, reason) SELECT now() - interval '10 days', 'old.subject', '\\x00', 'decode_error' FROM generate_series(1, $1)`,
      [OLD_DEAD],
    );
    await h.sql.query(`INSERT INTO ingest_rejects (received_at, subject, payload, reason) VALUES (now(), 'new.subject', '\\x01', 'decode_error')`);

    // Every DELETE the retention issues, and how many rows each removed.
    const deletes: { sql: string; n: number }[] = [];
    const pool = new Proxy(h.db.pool, {
      get(target, prop, receiver) {
        if (prop !== 'query') return Reflect.get(target, prop, receiver) as unknown;
        return async (text: string, params?: unknown[]) => {
          const res = await (target.query as (t: string, p?: unknown[]) => Promise<pg.QueryResult>).call(target, text, params);
          if (/^\s*DELETE/i.test(text)) deletes.push({ sql: text, n: res.rowCount ?? 0 });
          return res;
        };
      },
    });
    const retention = new StoreMaintenance(
      { ...h.db, pool },
      { logRetentionMs: 3 * DAY_MS, deadLetterRetentionMs: 3 * DAY_MS, partitions: spec },
      silentLogger,
      { batchSize: BATCH, intervalMs: RETENTION_INTERVAL_MS },
    );
    notifier = new CommitNotifier(h.db, h.writer, silentLogger);
    await notifier.start();
    api = await startApi({ tdb, db: h.db, writer: h.writer, notifier, close: async () => undefined });
    const tail = new StreamCollector(api.client, {});
    await waitFor('tail attached', () => tail.responses.length > 0);
    const published = publishTraffic(nc, { count: NEW_EVENTS, agents: 100, subjectPrefix: names.prefix, typeHeaders: true, seed: 10 });
    const started = Date.now();
    retention.start();
    let goneAfterMs = -1;
    try {
      await waitFor('old events and dead letters gone', async () => {
        const old = await countOf(h.sql, `SELECT 1 FROM log_entries WHERE timestamp < now() - interval '3 days'`);
        const oldDead = await countOf(h.sql, `SELECT 1 FROM ingest_rejects WHERE subject = 'old.subject'`);
        if (old === 0 && oldDead === 0 && goneAfterMs < 0) goneAfterMs = Date.now() - started;
        return old === 0 && oldDead === 0;
      }, { timeoutMs: RETENTION_INTERVAL_MS, intervalMs: 100 });
      assert.equal(await published, NEW_EVENTS);
      await waitFor('new events stored', async () => (await countOf(h.sql, 'SELECT 1 FROM log_entries')) === NEW_EVENTS, { timeoutMs: 90_000, intervalMs: 200 });
    } finally {
      await retention.stop();
    }
    process.stdout.write(`# old events gone ${goneAfterMs} ms after retention started (interval ${RETENTION_INTERVAL_MS} ms)\n`);
    await waitFor('the live tail has every new event', () => tail.records.length >= NEW_EVENTS || tail.error !== null, { timeoutMs: 60_000 });
    tail.cancel();
    assert.equal(tail.error, null);
    const newSeqs = (await h.sql.query<{ s: string }>('SELECT seq::text AS s FROM log_entries ORDER BY log_entries.seq')).rows.map((r) => Number(r.s));
    assert.deepEqual(tail.records.map((r) => r.seq), newSeqs, 'the live tail: every new event once, in seq order');
    const left = new Set((await listLogPartitions(h.db.pool)).map((p) => p.name));
    assert.deepEqual([...oldParts].filter((p) => left.has(p)), [], 'the old events\' partitions are gone');
    assert.equal(await countOf(h.sql, 'SELECT 1 FROM log_entries'), NEW_EVENTS, 'every new event stored, none deleted');
    assert.equal(await countOf(h.sql, 'SELECT 1 FROM ingest_rejects'), 1, 'the fresh dead letter stays');
    const logDeletes = deletes.filter((d) => !/ingest_rejects/.test(d.sql));
    assert.equal(logDeletes.reduce((s, d) => s + d.n, 0), 0, 'no log row deleted one by one');
    assert.ok(logDeletes.every((d) => /log_entries_default/.test(d.sql)), 'only the default partition is ever swept');
    const deadDeletes = deletes.filter((d) => /ingest_rejects/.test(d.sql)).map((d) => d.n);
    assert.equal(deadDeletes.reduce((s, n) => s + n, 0), OLD_DEAD);
    assert.ok(deadDeletes.every((n) => n <= BATCH), `every dead-letter DELETE at most ${BATCH} rows`);
  });
});
