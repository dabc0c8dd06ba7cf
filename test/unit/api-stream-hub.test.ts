// The stream hub's live queues, in memory: a record queued for several streams counts its bytes once,
// and once every stream has taken it nothing is counted; each stream takes its records in order; the
// gauges read the counts when /metrics is scraped. Its database pages, over a log in memory: streams
// reading the same rows share the pages (each row read once), a stream leaving does not cancel a read
// others wait for, shared pages stay within the pages allowance, and streams catching up at once read
// no more pages at a time than the allowance holds. (Against PostgreSQL: test/integration/api-stream-*.)
import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { describe, it } from 'node:test';
import { StreamHub, rowMatches, streamBufferedBytes, type CommitSource, type StreamBatch } from '../../src/api/stream-hub.js';
import type { LogRow } from '../../src/domain/types.js';
import { createLogger } from '../../src/logger.js';
import { metricsRegistry } from '../../src/metrics.js';
import type { CommittedRows } from '../../src/store/batch-writer.js';
import { NO_FILTER, type LogReader, type LogRowFilter, type StoredLogRow } from '../../src/store/log-reader.js';
import { waitFor } from '../helpers/wait.js';

function row(i: number, source: string): LogRow {
  return {
    id: `0190c3f1-7e0a-7000-8000-${String(i).padStart(12, '0')}`,
    traceId: `trace-${i}`,
    timestampUs: 1_764_000_000_000_000 + i,
    level: 'INFO',
    source,
    intent: 'text',
    message: `message ${i} `.repeat(1 + (i % 5)),
    context: JSON.stringify({ i, tags: ['a', 'b'] }),
    teamId: 'team-1',
    subject: `swarm.agent.${source}.output`,
    receivedAtUs: 1_764_000_000_100_000 + i,
  };
}

/** The gauges' values as a scrape reads them (both read at once, before the streams run again). */
async function gauges(): Promise<{ records: number; bytes: number }> {
  const get = (name: string): Promise<number> => {
    const m = metricsRegistry.getSingleMetric(name);
    assert.ok(m, name);
    return Promise.resolve(m.get()).then((v) => v.values[0]?.value ?? Number.NaN);
  };
  const [records, bytes] = await Promise.all([get('mycelis_memory_api_stream_buffered_records'), get('mycelis_memory_api_stream_buffered_bytes')]);
  return { records, bytes };
}

describe('stream hub: live queues', () => {
  it('a record queued for several streams counts once; taken by all, nothing is counted; every stream gets its records in order', async () => {
    let emit: ((c: { firstSeq: number; lastSeq: number; committed?: CommittedRows }) => void) | null = null;
    const commits: CommitSource = {
      onCommit(cb) {
        emit = cb;
        return () => undefined;
      },
    };
    const reader = { maxSeq: async () => 0 } as unknown as LogReader;
    const hub = new StreamHub(reader, commits, { bufferLimit: 1000, keepaliveMs: 60_000 }, createLogger('silent'));
    hub.start();
    const ac = new AbortController();
    const closing = new AbortController();
    const follow = (filter: LogRowFilter): { seqs: number[]; bytes: number[]; done: Promise<void> } => {
      const seqs: number[] = [];
      const bytes: number[] = [];
      const done = (async () => {
        const it = hub.follow({ filter, afterSeq: null, tail: 0 }, ac.signal, closing.signal);
        for await (const b of it as AsyncGenerator<StreamBatch>) {
          for (const r of b.records) {
            seqs.push(r.seq);
            bytes.push(r.chunk.length);
          }
        }
      })();
      return { seqs, bytes, done };
    };
    // Two unfiltered streams and one of agent-b's.
    const streams = [follow(NO_FILTER), follow(NO_FILTER), follow({ ...NO_FILTER, agentIds: ['agent-b'] })];
    try {
      while (hub.subscriberCount < 3) await new Promise((r) => setTimeout(r, 5));
      assert.equal(streamBufferedBytes().now, 0);

      const rows = Array.from({ length: 40 }, (_, i) => row(i + 1, i % 4 === 0 ? 'agent-b' : 'agent-a'));
      const seqs = rows.map((_, i) => i + 1);
      emit!({ firstSeq: 1, lastSeq: 40, committed: { prevSeq: 0, rows, seqs } });
      // The fan-out is synchronous; the streams take their records on a later turn.
      const queued = streamBufferedBytes().now;
      assert.ok(queued > 0);
      assert.deepEqual(await gauges(), { records: 40 + 40 + 10, bytes: queued });

      const want = [seqs, seqs, seqs.filter((s) => s % 4 === 1)];
      const deadline = Date.now() + 10_000;
      while (streams.some((s, i) => s.seqs.length < want[i]!.length) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      streams.forEach((s, i) => assert.deepEqual(s.seqs, want[i]));
      // Counted once: the bytes of the 40 distinct records, not of the 90 queue entries.
      assert.equal(queued, streams[0]!.bytes.reduce((a, b) => a + b, 0));
      assert.equal(streamBufferedBytes().now, 0);
      assert.deepEqual(await gauges(), { records: 0, bytes: 0 });

      // A second commit: the bytes counted once more are those of this commit's records only.
      const more = Array.from({ length: 8 }, (_, i) => row(41 + i, 'agent-b'));
      emit!({ firstSeq: 41, lastSeq: 48, committed: { prevSeq: 40, rows: more, seqs: more.map((_, i) => 41 + i) } });
      const second = streamBufferedBytes().now;
      while (streams.some((s) => s.seqs[s.seqs.length - 1] !== 48) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      for (const s of streams) assert.equal(s.seqs[s.seqs.length - 1], 48);
      assert.equal(second, streams[2]!.bytes.slice(-8).reduce((a, b) => a + b, 0));
      assert.equal(streamBufferedBytes().now, 0);
    } finally {
      ac.abort();
      hub.stop();
      await Promise.all(streams.map((s) => s.done));
    }
  });
});

/** Stored rows 1..n: agent-b every fourth, agent-a otherwise. */
function stored(n: number): StoredLogRow[] {
  return Array.from({ length: n }, (_, i) => {
    const r = row(i + 1, i % 4 === 0 ? 'agent-b' : 'agent-a');
    const context = JSON.parse(r.context) as Record<string, unknown>;
    return { ...r, seq: i + 1, context, approxBytes: r.context.length };
  });
}

/** A log in memory: every read recorded; reads wait for `gate` when it is set. */
class MemoryLog {
  readonly reads: { filter: LogRowFilter; after: number; rows: number }[] = [];
  gate: Promise<void> | null = null;
  constructor(readonly rows: StoredLogRow[]) {}
  readonly reader = {
    maxSeq: async (): Promise<number> => this.rows.length,
    readRange: async (filter: LogRowFilter, range: { afterSeq: number; upToSeq: number }, limit: number, signal?: AbortSignal): Promise<StoredLogRow[]> => {
      await new Promise((r) => setTimeout(r, 2));
      if (this.gate) await this.gate;
      signal?.throwIfAborted();
      const out = this.rows.filter((r) => r.seq > range.afterSeq && r.seq <= range.upToSeq && rowMatches(filter, r)).slice(0, limit);
      this.reads.push({ filter, after: range.afterSeq, rows: out.length });
      return out;
    },
  } as unknown as LogReader;
  unfilteredRowsRead(): number {
    return this.reads.filter((r) => r.filter === NO_FILTER || r.filter.agentIds.length === 0).reduce((n, r) => n + r.rows, 0);
  }
}

/** A stream resuming after `afterSeq`: the seqs it receives, until `until` seqs or its end. */
function resume(hub: StreamHub, filter: LogRowFilter, afterSeq: number, signal: AbortSignal, closing: AbortSignal): { seqs: number[]; error: unknown; done: Promise<void> } {
  const out = { seqs: [] as number[], error: null as unknown, done: Promise.resolve() };
  out.done = (async () => {
    try {
      for await (const b of hub.follow({ filter, afterSeq, tail: 0 }, signal, closing)) for (const r of b.records) out.seqs.push(r.seq);
    } catch (err) {
      out.error = err;
    }
  })();
  return out;
}

/** Waits for `cond` (the streams here run in this process: checked every 5 ms). */
const until = (what: string, cond: () => boolean): Promise<boolean> => waitFor(what, cond, { timeoutMs: 10_000, intervalMs: 5 });

const noCommits: CommitSource = { onCommit: () => () => undefined };

describe('stream hub: shared database pages', () => {
  it('six unfiltered streams resuming from the same cursor read each row from the database once, and each gets every row once, in order', async () => {
    const log = new MemoryLog(stored(300));
    const hub = new StreamHub(log.reader, noCommits, { bufferLimit: 1000, keepaliveMs: 60_000, pageSize: 20 }, createLogger('silent'));
    hub.start();
    const ac = new AbortController();
    const closing = new AbortController();
    setMaxListeners(20, ac.signal, closing.signal); // seven streams share them here
    const all = log.rows.map((r) => r.seq);
    const streams = [...Array.from({ length: 6 }, () => resume(hub, NO_FILTER, 0, ac.signal, closing.signal)), resume(hub, { ...NO_FILTER, agentIds: ['agent-b'] }, 0, ac.signal, closing.signal)];
    try {
      await until('every stream has its rows', () => streams.every((s, i) => s.seqs.length >= (i < 6 ? 300 : 75) || s.error !== null));
      for (const [i, s] of streams.entries()) {
        assert.equal(s.error, null, `stream ${i}`);
        assert.deepEqual(s.seqs, i < 6 ? all : all.filter((x) => x % 4 === 1), `stream ${i}`);
      }
      // Without sharing: 6 x 300.
      assert.equal(log.unfilteredRowsRead(), 300);
    } finally {
      ac.abort();
      hub.stop();
      await Promise.all(streams.map((s) => s.done));
    }
  });

  it('a stream that goes away while waiting for a shared read cancels only itself; the read goes on for the other', async () => {
    const log = new MemoryLog(stored(50));
    let open!: () => void;
    log.gate = new Promise<void>((r) => (open = r));
    const hub = new StreamHub(log.reader, noCommits, { bufferLimit: 1000, keepaliveMs: 60_000, pageSize: 20 }, createLogger('silent'));
    hub.start();
    const gone = new AbortController();
    const stays = new AbortController();
    const closing = new AbortController();
    const a = resume(hub, NO_FILTER, 0, gone.signal, closing.signal);
    const b = resume(hub, NO_FILTER, 0, stays.signal, closing.signal);
    try {
      await until('both attached', () => hub.subscriberCount === 2);
      await new Promise((r) => setTimeout(r, 20)); // both are waiting for the first page
      gone.abort();
      await a.done;
      open();
      await until('the other has every row', () => b.seqs.length >= 50 || b.error !== null);
      assert.equal(b.error, null);
      assert.deepEqual(b.seqs, log.rows.map((r) => r.seq));
      assert.ok(a.seqs.length === 0);
      assert.equal(log.unfilteredRowsRead(), 50, 'the first page read once, not cancelled with the stream that started it');
    } finally {
      stays.abort();
      hub.stop();
      await Promise.all([a.done, b.done]);
    }
  });

  it('shared pages stay within the pages allowance and are dropped once no stream uses them', async () => {
    // Rows of ~20 KB: the 400 encoded are ~8 MB, four times the allowance, if every page were kept.
    const big = 'x'.repeat(20_000);
    const log = new MemoryLog(stored(400).map((r) => ({ ...r, context: { ...r.context, big }, approxBytes: 20_000 })));
    // Streams share 64 KiB: a pages allowance of 2 MiB (two 1 MiB pages at least).
    const hub = new StreamHub(log.reader, noCommits, { bufferLimit: 1000, bufferBytes: 64 * 1024, keepaliveMs: 60_000, pageSize: 50 }, createLogger('silent'));
    hub.start();
    const ac = new AbortController();
    const closing = new AbortController();
    const streams = [resume(hub, NO_FILTER, 0, ac.signal, closing.signal), resume(hub, NO_FILTER, 200, ac.signal, closing.signal)];
    const sharedBytes = (): Promise<number> => metricValue('mycelis_memory_api_stream_shared_page_bytes');
    try {
      let most = 0;
      await waitFor(
        'both streams have their rows',
        async () => {
          most = Math.max(most, await sharedBytes());
          return streams.every((s) => s.seqs.length >= (s === streams[0] ? 400 : 200));
        },
        { timeoutMs: 10_000, intervalMs: 1 },
      );
      assert.deepEqual(streams[0]!.seqs, log.rows.map((r) => r.seq));
      assert.deepEqual(streams[1]!.seqs, log.rows.slice(200).map((r) => r.seq));
      assert.ok(most > 0, 'pages were kept');
      assert.ok(most <= 2 * 1024 * 1024, `${most} bytes of shared pages`);
      await waitFor('shared pages dropped', async () => (await sharedBytes()) === 0, { timeoutMs: 5_000 }).catch(() => undefined);
      assert.equal(await sharedBytes(), 0, 'dropped after a second without use');
    } finally {
      ac.abort();
      hub.stop();
      await Promise.all(streams.map((s) => s.done));
    }
  });
});

describe('stream hub: the pages allowance', () => {
  it('eight filtered streams catching up at once read at most two 1 MiB pages at a time, and each gets its rows', async () => {
    // Rows of about 4 KiB (their size estimate): a page is 256 rows, 1 MiB; the allowance is 2 MiB.
    const rows = stored(4000).map((r, i) => ({ ...r, source: `agent-${i % 8}`, approxBytes: 4096 }));
    const log = new MemoryLog(rows);
    let inFlight = 0;
    let most = 0;
    const read = log.reader.readRange.bind(log.reader);
    (log.reader as { readRange: LogReader['readRange'] }).readRange = async (...args) => {
      most = Math.max(most, ++inFlight);
      try {
        return await read(...args);
      } finally {
        inFlight--;
      }
    };
    const hub = new StreamHub(log.reader, noCommits, { bufferLimit: 1000, bufferBytes: 64 * 1024, keepaliveMs: 60_000 }, createLogger('silent'));
    hub.start();
    const ac = new AbortController();
    const closing = new AbortController();
    setMaxListeners(20, ac.signal, closing.signal);
    // The hub sizes pages by the rows it has seen lately: one stream reads the last ten first.
    const first = resume(hub, NO_FILTER, 3990, ac.signal, closing.signal);
    await until('the first stream has its rows', () => first.seqs.length >= 10 || first.error !== null);
    most = 0;
    const waitsBefore = await metricValue('mycelis_memory_api_stream_page_waits_total');
    const streams = [first, ...Array.from({ length: 8 }, (_, a) => resume(hub, { ...NO_FILTER, agentIds: [`agent-${a}`] }, 0, ac.signal, closing.signal))];
    try {
      await until('every stream has its rows', () => streams.every((s) => s.seqs.length >= (s === first ? 10 : 500) || s.error !== null));
      for (const [a, s] of streams.slice(1).entries()) {
        assert.equal(s.error, null);
        assert.deepEqual(s.seqs, rows.filter((r) => r.source === `agent-${a}`).map((r) => r.seq));
      }
      assert.ok(most <= 2, `${most} pages read at once`);
      assert.ok((await metricValue('mycelis_memory_api_stream_page_waits_total')) > waitsBefore, 'streams waited for the allowance');
    } finally {
      ac.abort();
      hub.stop();
      await Promise.all(streams.map((s) => s.done));
    }
  });
});

/** A metric's value as a scrape reads it (summed over its labels). */
async function metricValue(name: string): Promise<number> {
  const m = metricsRegistry.getSingleMetric(name);
  assert.ok(m, name);
  return (await m.get()).values.reduce((n, v) => n + v.value, 0);
}
