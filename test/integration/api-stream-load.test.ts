// StreamLogs under load, against the real PostgreSQL and the real BatchWriter: a stalled client
// (queue bounded in records and in bytes, database fallback, then every record in order), gapless hand-over for 20 streams
// opened while 20,000 rows commit as fast as possible, and cancellation of 100 streams releasing
// every gauge.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodeCursor } from '../../src/api/cursor.js';
import { StreamHub, streamBufferedBytes, streamBufferHighWater } from '../../src/api/stream-hub.js';
import { LogReader, NO_FILTER } from '../../src/store/log-reader.js';
import { waitFor } from '../helpers/wait.js';
import { makeRow } from './store-rows.js';
import { logger, metricValue, openEnv, startApi, StreamCollector, type Env } from './api-harness.js';

const BATCH = 500;

async function writeRows(env: Env, total: number, source: string, between?: (batchIndex: number) => void): Promise<void> {
  for (let b = 0; b * BATCH < total; b++) {
    between?.(b);
    const n = Math.min(BATCH, total - b * BATCH);
    await env.writer.write({ rows: Array.from({ length: n }, (_, i) => makeRow({ source, message: `${b}:${i}` })), rejects: [], registry: [] });
  }
}

/** `batches` commits of 10 rows of 100 KiB each. */
async function writeBigRows(env: Env, batches: number, source: string): Promise<void> {
  const big = 'x'.repeat(100 * 1024);
  for (let b = 0; b < batches; b++) {
    await env.writer.write({ rows: Array.from({ length: 10 }, (_, i) => makeRow({ source, message: `${b}:${i}:${big}` })), rejects: [], registry: [] });
  }
}

async function seqsAfter(env: Env, afterSeq: number): Promise<number[]> {
  const { rows } = await env.db.pool.query<{ s: string }>('SELECT seq::text AS s FROM log_entries WHERE seq > $1 ORDER BY seq', [afterSeq]);
  return rows.map((r) => Number(r.s));
}

function assertIncreasing(seqs: number[], label: string): void {
  for (let i = 1; i < seqs.length; i++) {
    if (!(seqs[i]! > seqs[i - 1]!)) assert.fail(`${label}: not increasing at ${i}: ${seqs[i - 1]} then ${seqs[i]}`);
  }
}

describe('api: StreamLogs under load', { timeout: 600_000 }, () => {
  let env: Env;
  before(async () => {
    env = await openEnv('api_stream_load');
  });
  after(async () => {
    await env?.close();
  });

  it('a client that stops reading while 20,000 rows arrive later gets every record in order; its queue stays bounded', async () => {
    const api = await startApi(env, { STREAM_BUFFER: '100', KEEPALIVE_INTERVAL: '1s' });
    try {
      const fallbacksBefore = await metricValue('mycelis_memory_api_stream_fallbacks_total');
      const start = await api.core.logReader.maxSeq();
      const s = new StreamCollector(api.client, { afterCursor: encodeCursor(start) });
      await waitFor('stream open', () => s.responses.length > 0);
      s.call.pause();
      await writeRows(env, 20_000, 'slow-reader');
      const stored = await seqsAfter(env, start);
      assert.equal(stored.length, 20_000, 'all stored while the client was stalled');
      // The stalled stream overflowed its bounded queue and fell back to the database.
      await waitFor('fallback', async () => (await metricValue('mycelis_memory_api_stream_fallbacks_total')) > fallbacksBefore);
      assert.ok(s.records.length < 20_000, 'the client really was stalled');
      s.call.resume();
      await waitFor('caught up', () => s.lastSeq === stored[stored.length - 1], { timeoutMs: 120_000 });
      assert.deepEqual(s.records.map((r) => r.seq), stored);
      assert.ok(streamBufferHighWater() <= 100, `buffer high-water ${streamBufferHighWater()} within STREAM_BUFFER`);
      assert.ok((await metricValue('mycelis_memory_api_stream_buffer_high_water')) <= 100);
      s.cancel();
    } finally {
      await api.close();
    }
  });

  it('bounded by bytes too: a stalled client while 300 records of 100 KiB arrive falls back to the database; every record in order', async () => {
    // MEMORY_LIMIT 128MiB: the streams' share is 4 MiB (each stream, and all together); STREAM_BUFFER's
    // 10,000 records alone would let this one queue 30 MB.
    const api = await startApi(env, { STREAM_BUFFER: '10000', KEEPALIVE_INTERVAL: '1s', MEMORY_LIMIT: '128MiB' });
    try {
      const limit = api.config.memory.streamBytes;
      assert.equal(limit, 4 * 1024 * 1024);
      const fallbacksBefore = await metricValue('mycelis_memory_api_stream_fallbacks_total');
      const start = await api.core.logReader.maxSeq();
      const s = new StreamCollector(api.client, { afterCursor: encodeCursor(start) });
      await waitFor('stream open', () => s.responses.length > 0);
      s.call.pause();
      await writeBigRows(env, 30, 'big-reader');
      const stored = await seqsAfter(env, start);
      assert.equal(stored.length, 300);
      await waitFor('fallback', async () => (await metricValue('mycelis_memory_api_stream_fallbacks_total')) > fallbacksBefore);
      const { highWater } = streamBufferedBytes();
      // One record past the bound at most (an empty queue takes one, however large).
      assert.ok(highWater <= limit + 110 * 1024, `streams held ${highWater} bytes (bound ${limit})`);
      const fromDbBefore = await metricValue('mycelis_memory_api_stream_catchup_rows_total', { source: 'database' });
      const receivedBeforeResume = s.records.length;
      s.call.resume();
      await waitFor('caught up', () => s.lastSeq === stored[stored.length - 1], { timeoutMs: 120_000 });
      assert.deepEqual(s.records.map((r) => r.seq), stored);
      assert.ok((await metricValue('mycelis_memory_api_stream_buffered_bytes')) <= limit + 110 * 1024);
      // 30 MB is far more than the hub's window (4 MiB): the stream read most of it from the database.
      const fromDb = (await metricValue('mycelis_memory_api_stream_catchup_rows_total', { source: 'database' })) - fromDbBefore;
      assert.ok(fromDb >= 100, `read back from the database: ${fromDb} rows (window: ${await metricValue('mycelis_memory_api_stream_catchup_rows_total', { source: 'window' })}, received before the resume ${receivedBeforeResume})`);
      s.cancel();
    } finally {
      await api.close();
    }
  });

  it('a stream that overflowed by a little catches up from the hub\'s recent window, not the database', async () => {
    // The hub itself, driven by hand: a stream whose generator is not resumed reads nothing (a gRPC
    // client's buffers would absorb an unknown amount first). Streams share 4 MiB: queues 2 MiB, the
    // window 4 MiB; 30 records of 100 KiB (3 MiB) overflow the queue and stay in the window.
    const hub = new StreamHub(new LogReader(env.db), env.notifier, { bufferLimit: 10_000, bufferBytes: 4 * 1024 * 1024, keepaliveMs: 60_000 }, logger);
    hub.start();
    const ac = new AbortController();
    const closing = new AbortController();
    try {
      const start = await new LogReader(env.db).maxSeq();
      await waitFor('hub ready', () => hub.headSeq >= start);
      const stream = hub.follow({ filter: NO_FILTER, afterSeq: start, tail: 0 }, ac.signal, closing.signal);
      const first = await stream.next();
      assert.equal(first.done, false);
      const fallbacksBefore = await metricValue('mycelis_memory_api_stream_fallbacks_total');
      await writeBigRows(env, 3, 'window-reader');
      const stored = await seqsAfter(env, start);
      assert.equal(stored.length, 30);
      await waitFor('the queue overflowed', async () => (await metricValue('mycelis_memory_api_stream_fallbacks_total')) > fallbacksBefore);
      const fromDbBefore = await metricValue('mycelis_memory_api_stream_catchup_rows_total', { source: 'database' });
      const fromWindowBefore = await metricValue('mycelis_memory_api_stream_catchup_rows_total', { source: 'window' });
      const seqs: number[] = [];
      while (seqs.length < stored.length) {
        const next = await stream.next();
        assert.equal(next.done, false);
        for (const r of next.value!.records) seqs.push(r.seq);
      }
      assert.deepEqual(seqs, stored, 'every record once, in order');
      assert.equal(await metricValue('mycelis_memory_api_stream_catchup_rows_total', { source: 'database' }), fromDbBefore, 'nothing read back from the database');
      assert.equal((await metricValue('mycelis_memory_api_stream_catchup_rows_total', { source: 'window' })) - fromWindowBefore, 30, 'all 30 from the window');
      ac.abort();
      await stream.return(undefined);
    } finally {
      ac.abort();
      hub.stop();
    }
  });

  it('gapless hand-over: 20 streams opened at random moments during 20,000 commits skip nothing and repeat nothing', async () => {
    const api = await startApi(env, { STREAM_BUFFER: '2000', KEEPALIVE_INTERVAL: '1s' });
    try {
      const base = await api.core.logReader.maxSeq();
      const streams: { s: StreamCollector; kind: 'tail' | 'cursor'; from: number; tail: number }[] = [];
      const opens: Promise<void>[] = [];
      const openOne = async (i: number): Promise<void> => {
        const head = await api.core.logReader.maxSeq();
        if (i % 2 === 0) {
          const tail = 1 + Math.floor(Math.random() * 3000);
          streams.push({ s: new StreamCollector(api.client, { tail }), kind: 'tail', from: 0, tail });
        } else {
          const from = base + Math.floor(Math.random() * (head - base + 1));
          streams.push({ s: new StreamCollector(api.client, { afterCursor: encodeCursor(from) }), kind: 'cursor', from, tail: 0 });
        }
      };
      // Random batch indexes (0..39) at which a stream opens, plus a random delay within the batch.
      const at = Array.from({ length: 20 }, () => Math.floor(Math.random() * 36));
      await writeRows(env, 20_000, 'gapless', (b) => {
        at.forEach((batch, i) => {
          if (batch === b) opens.push(new Promise((r) => setTimeout(r, Math.random() * 30)).then(() => openOne(i)));
        });
      });
      await Promise.all(opens);
      const all = await seqsAfter(env, 0);
      const last = all[all.length - 1]!;
      await waitFor('every stream caught up', () => streams.every((x) => x.s.lastSeq === last || x.s.error), { timeoutMs: 240_000, intervalMs: 200 });
      assert.equal(streams.length, 20);
      for (const [i, x] of streams.entries()) {
        assert.equal(x.s.error, null, `stream ${i} failed: ${x.s.error?.details}`);
        const got = x.s.records.map((r) => r.seq);
        assertIncreasing(got, `stream ${i}`);
        if (x.kind === 'cursor') {
          assert.deepEqual(got, all.filter((s) => s > x.from), `stream ${i} (after_cursor ${x.from})`);
        } else {
          // From its first record on, the stream is exactly the stored log: the tail and the live part
          // meet without a gap or a repeat.
          assert.ok(got.length > 0, `stream ${i} got records`);
          assert.deepEqual(got, all.filter((s) => s >= got[0]!), `stream ${i} (tail ${x.tail})`);
        }
        x.s.cancel();
      }
      assert.ok(streamBufferHighWater() <= 2000);
    } finally {
      await api.close();
    }
  });

  it('cancelling 100 streams (half blocked on a stalled reader) returns every gauge to zero', async () => {
    const api = await startApi(env, { STREAM_BUFFER: '100', KEEPALIVE_INTERVAL: '1s' });
    try {
      const start = await api.core.logReader.maxSeq();
      const streams = Array.from({ length: 100 }, () => new StreamCollector(api.client, { afterCursor: encodeCursor(start) }));
      await waitFor('all open', () => streams.every((s) => s.responses.length > 0));
      assert.equal(await metricValue('mycelis_memory_api_open_streams'), 100);
      streams.forEach((s, i) => {
        if (i % 2 === 0) s.call.pause();
      });
      await writeRows(env, 5_000, 'cancel-many');
      const stored = await seqsAfter(env, start);
      const last = stored[stored.length - 1]!;
      await waitFor('readers caught up', () => streams.every((s, i) => i % 2 === 0 || s.lastSeq === last), { timeoutMs: 120_000 });
      assert.ok(streams.some((s, i) => i % 2 === 0 && s.lastSeq < last), 'some streams are blocked');
      for (const s of streams) s.cancel();
      await waitFor('gauges at zero', async () => {
        const open = await metricValue('mycelis_memory_api_open_streams');
        const subs = await metricValue('mycelis_memory_api_stream_subscribers');
        const buffered = await metricValue('mycelis_memory_api_stream_buffered_records');
        return open === 0 && subs === 0 && buffered === 0 && api.core.openStreamCount === 0;
      });
    } finally {
      await api.close();
    }
  });
});
