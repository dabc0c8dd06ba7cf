// The stream hub's live queues, in memory: a record queued for several streams counts its bytes once,
// and once every stream has taken it nothing is counted; each stream takes its records in order; the
// gauges read the counts when /metrics is scraped. (The hub's database side is covered by
// test/integration/api-stream-*.test.ts; here the reader only answers the head, 0.)
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StreamHub, streamBufferedBytes, type CommitSource, type StreamBatch } from '../../src/api/stream-hub.js';
import type { LogRow } from '../../src/domain/types.js';
import { createLogger } from '../../src/logger.js';
import { metricsRegistry } from '../../src/metrics.js';
import type { CommittedRows } from '../../src/store/batch-writer.js';
import { NO_FILTER, type LogReader, type LogRowFilter } from '../../src/store/log-reader.js';

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
