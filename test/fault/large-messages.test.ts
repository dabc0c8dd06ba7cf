// Issue 13: memory is bounded by bytes, and large messages do not stall ingest. The built service as a
// process with production defaults (MEMORY_LIMIT unset: the 512Mi budget of k8s/base, ACK_WAIT 10 s,
// INGEST_BATCH_SIZE 5,000).
// - 1,000 valid tool results of 512 KiB (LLM agents return fetched pages and files) while 10
//   unfiltered live tails are open: every one stored once, whole; the peak resident set (VmHWM) stays
//   at or under 300 MB; every tail has received records in commit order with no gap and no duplicate
//   (a prefix of the log). The 10 tails share this one test process, which also publishes: they fall
//   behind and catch up from PostgreSQL (at ~10 ms a 512 KiB row), so waiting for each to have all 1,000
//   takes minutes on a 2-core host; with MYCELIS_LARGE_TESTS=1 the test waits for that too.
// - With MYCELIS_LARGE_TESTS=1 also: no gap of more than 5 s in the commit sequence, and 2,000 hostile
//   messages (250 of them ~1 MiB) among 2,000 valid ones all accounted for, exactly once, within 20 s.
//   Timing bounds are the benchmark's (`npm run bench -- --only large` reports the gap, and its
//   numbers are in the README); on a shared host a test cannot hold them.
// The tails read raw responses and take only each record's seq (decoding 5 GB of records in the test
// process would compete with the service for the CPU the bound is about).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { connect, headers as natsHeaders, type NatsConnection } from 'nats';
import type pg from 'pg';
import { MessageType, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';
import { startService, type ServiceProcess } from '../helpers/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, dropStreamAndClose, uniqueNatsNames, type NatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { prng } from '../integration/ingest-harness.js';
import { RawTail } from '../helpers/raw-tail.js';
import { assertionPool, consumerDrained, countOf, rssMiB, scrapeMetric, serviceEnv } from './fault-helpers.js';

const MiB = 1024 * 1024;
const LARGE = 1_000;
const LARGE_BYTES = 512 * 1024;
const TAILS = 10;
const PEAK_BOUND_MB = 300; // the bound, in MB (10^6 bytes)
const GAP_BOUND_MS = 5_000;
const HOSTILE = 2_000;
const HOSTILE_BIG = 250;
const VALID = 2_000;
const HOSTILE_BOUND_MS = 20_000;

function toolResult(id: string, agent: string, size: number): Uint8Array {
  const now = Date.now();
  return MsgEnvelope.encode({
    id,
    timestamp: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1_000_000 },
    sourceAgentId: agent,
    type: MessageType.MESSAGE_TYPE_TOOL_RESULT,
    payload: { $case: 'toolResult', value: { callId: `call-${id}`, result: { content: `${id} `.padEnd(size, 'page text ') }, isError: false, errorMessage: '' } },
    traceId: `trace-${id}`,
    spanId: '',
    teamId: 'readers',
  }).finish();
}

const FULL = process.env['MYCELIS_LARGE_TESTS'] === '1';

describe('fault: large messages with production defaults', { timeout: 600_000 }, () => {
  let nc: NatsConnection;
  const cleanup: (() => Promise<void>)[] = [];

  before(async () => {
    nc = await connect({ servers: SHARED_NATS_URL });
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await nc?.close();
  });

  async function scenario(label: string): Promise<{ names: NatsNames; pool: pg.Pool; svc: ServiceProcess; db: TestDatabase }> {
    const names = uniqueNatsNames(label);
    const db = await createTestDatabase(label);
    const pool = assertionPool(db.url);
    const env = serviceEnv(db.env, SHARED_NATS_URL, names);
    assert.equal(env['ACK_WAIT'] ?? env['MEMORY_LIMIT'] ?? env['INGEST_BATCH_SIZE'], undefined, 'production defaults');
    const svc = await startService({ env });
    cleanup.push(async () => {
      await svc.stop();
      await dropStreamAndClose(await connect({ servers: SHARED_NATS_URL }), names.stream);
      await pool.end();
      await db.drop();
    });
    return { names, pool, svc, db };
  }

  /** Samples the row count every 100 ms until `total`; returns the longest time without a new row. */
  async function longestGap(pool: pg.Pool, total: number, timeoutMs: number): Promise<{ gapMs: number; doneMs: number }> {
    const start = performance.now();
    let last = start;
    let lastCount = 0;
    let gapMs = 0;
    for (;;) {
      const n = await countOf(pool, 'SELECT 1 FROM log_entries');
      const now = performance.now();
      if (n > lastCount) {
        gapMs = Math.max(gapMs, now - last);
        last = now;
        lastCount = n;
      }
      if (n >= total) return { gapMs, doneMs: now - start };
      if (now - start > timeoutMs) throw new Error(`${n} of ${total} rows after ${timeoutMs} ms (longest gap so far ${gapMs.toFixed(0)} ms)`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it(`${LARGE.toLocaleString('en')} x 512 KiB with ${TAILS} live tails: peak RSS <= ${PEAK_BOUND_MB} MB, no gap over 5 s, exactly once`, async () => {
    const { names, pool, svc } = await scenario('large');
    // One connection per tail, as ten tails are in practice (ten clients), with grpc-js's default
    // 64 KiB flow-control window. Ten streams of 512 KiB records over ONE HTTP/2 connection are served
    // very unevenly (the first streams first: one run had 603 records on the first tail and 15 on
    // the last), so a shared connection's last tail could still hold fewer than 20 records minutes
    // after the log was complete (CI, three test files at a time); one connection each, every tail
    // moves at the same pace.
    const clients = Array.from({ length: TAILS }, () => new grpc.Client(svc.grpcAddress, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
    const tails = clients.map((c) => new RawTail(c));
    await waitFor('the tails attached', async () => {
      const text = await (await fetch(`${svc.httpBase}/metrics`)).text();
      return /mycelis_memory_api_stream_subscribers (\d+)/.exec(text)?.[1] === String(TAILS);
    });
    /** Where the tails stand (for a failure's message). */
    const tailState = async (): Promise<string> => {
      const metric = (name: string, labels: Record<string, string> = {}): Promise<number> => scrapeMetric(svc.httpBase, `mycelis_memory_api_stream_${name}`, labels).catch(() => NaN);
      return (
        `tails have ${tails.map((t) => t.seqs.length).join(', ')} of ${LARGE} records; ${await metric('fallbacks_total')} fallbacks to the database, ` +
        `catch-up rows from the window ${await metric('catchup_rows_total', { source: 'window' })}, from the database ${await metric('catchup_rows_total', { source: 'database' })}, ` +
        `${await metric('subscribers')} attached, hub head ${await metric('hub_head_seq')}`
      );
    };
    const before = rssMiB(svc);
    const published = (async () => {
      for (let i = 0; i < LARGE; i++) {
        nc.publish(`${names.prefix}.agent.reader-${i % 20}.output`, toolResult(`large-${i}`, `reader-${i % 20}`, LARGE_BYTES));
        if (i % 20 === 19) await nc.flush();
      }
      await nc.flush();
    })();
    const { gapMs, doneMs } = await longestGap(pool, LARGE, 400_000);
    await published;
    if (FULL) {
      await waitFor('every tail has every record', () => tails.every((t) => t.seqs.length >= LARGE || t.error !== null), { timeoutMs: 400_000, intervalMs: 100 }).catch(async (e: unknown) => {
        throw new Error(`${(e as Error).message}: ${await tailState()}`, { cause: e });
      });
    } else {
      // Catching up from the database for a while is part of what the bound covers.
      await waitFor('the tails catching up', () => tails.every((t) => t.seqs.length >= 20 || t.error !== null), { timeoutMs: 120_000, intervalMs: 100 }).catch(async (e: unknown) => {
        throw new Error(`${(e as Error).message}: ${await tailState()}`, { cause: e });
      });
    }
    const rss = rssMiB(svc);
    const fallbacks = await scrapeMetric(svc.httpBase, 'mycelis_memory_api_stream_fallbacks_total');
    for (const t of tails) t.cancel();
    for (const c of clients) c.close();
    const peakMB = (rss.peak * MiB) / 1e6;
    console.log(
      `${LARGE} x 512 KiB, ${TAILS} tails: stored in ${(doneMs / 1000).toFixed(1)} s (${((LARGE * LARGE_BYTES) / MiB / (doneMs / 1000)).toFixed(0)} MiB/s), ` +
        `longest gap ${gapMs.toFixed(0)} ms, ${fallbacks} stream fallbacks to the database; RSS before ${before.now.toFixed(0)} MiB, peak ${peakMB.toFixed(0)} MB (${rss.peak.toFixed(0)} MiB), Node ${process.versions.node}`,
    );
    await waitFor('consumer drained', () => consumerDrained(SHARED_NATS_URL, names.stream, names.consumer), { timeoutMs: 30_000 });
    const r = await pool.query<{ n: number; d: number; big: number }>(
      'SELECT count(*)::int AS n, count(DISTINCT id)::int AS d, count(*) FILTER (WHERE length(context::text) > $1)::int AS big FROM log_entries',
      [LARGE_BYTES - 1024],
    );
    assert.deepEqual(r.rows[0], { n: LARGE, d: LARGE, big: LARGE }, 'each stored once, whole');
    const stored = (await pool.query<{ s: string }>('SELECT seq::text AS s FROM log_entries ORDER BY seq')).rows.map((x) => Number(x.s));
    for (const [i, t] of tails.entries()) {
      assert.equal(t.error, null, `tail ${i} failed: ${t.error?.message}`);
      if (FULL) assert.equal(t.seqs.length, LARGE, `tail ${i}: every record once`);
      // In commit order, no gap, no duplicate: what it has is the log's first records.
      assert.deepEqual(t.seqs, stored.slice(0, t.seqs.length), `tail ${i}: a prefix of the log (${t.seqs.length} records)`);
    }
    assert.ok(peakMB <= PEAK_BOUND_MB, `peak RSS ${peakMB.toFixed(0)} MB over ${PEAK_BOUND_MB} MB`);
    if (FULL) assert.ok(gapMs <= GAP_BOUND_MS, `a gap of ${gapMs.toFixed(0)} ms in the commit sequence`);
  });

  it(`${HOSTILE.toLocaleString('en')} hostile (${HOSTILE_BIG} of ~1 MiB) among ${VALID.toLocaleString('en')} valid: all accounted for within 20 s, exactly once`, { skip: FULL ? false : 'a timing bound: set MYCELIS_LARGE_TESTS=1 (the hostile mix without the bound is in test/fault/poison-flood.test.ts)' }, async () => {
    const { names, pool } = await scenario('hostile-big');
    const rand = prng(1313);
    const randomBytes = (n: number): Uint8Array => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
      b[0] = 0xff; // not '{' or '[': not tried as JSON; and never valid UTF-8, so never text
      return b;
    };
    const BIG = randomBytes(MiB - 4096); // NATS max_payload is 1 MiB, headers included
    const hostile = (i: number): Uint8Array => {
      if (i % 8 === 0) {
        const b = BIG.slice();
        b[1] = i & 0xff; // distinct bytes, same size
        b[2] = i >> 8;
        return b;
      }
      switch (i % 4) {
        case 1:
          return toolResult(`trunc-${i}`, 'hostile', 300).slice(0, 200); // cut inside the payload
        case 2:
          return new Uint8Array(0);
        default:
          return randomBytes(1 + Math.floor(rand() * 2000));
      }
    };
    assert.equal(Array.from({ length: HOSTILE }, (_, i) => i % 8 === 0).filter(Boolean).length, HOSTILE_BIG);
    const start = performance.now();
    for (let i = 0; i < HOSTILE; i++) {
      const h = natsHeaders();
      h.set('Fault-N', String(i));
      nc.publish(`${names.prefix}.hostile.x`, hostile(i), { headers: h });
      nc.publish(`${names.prefix}.agent.valid-${i % 50}.output`, toolResult(`valid-${i}`, `valid-${i % 50}`, 400));
      if (i % 50 === 49) await nc.flush();
    }
    await nc.flush();
    const publishedMs = performance.now() - start;
    await waitFor(
      'every message stored or dead-lettered',
      async () => (await countOf(pool, 'SELECT 1 FROM log_entries')) >= VALID && (await countOf(pool, 'SELECT 1 FROM ingest_rejects')) >= HOSTILE,
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    const doneMs = performance.now() - start;
    console.log(`${HOSTILE} hostile (${HOSTILE_BIG} x ~1 MiB) + ${VALID} valid: published in ${(publishedMs / 1000).toFixed(1)} s, all accounted for ${(doneMs / 1000).toFixed(1)} s after the first publish`);
    await waitFor('consumer drained', () => consumerDrained(SHARED_NATS_URL, names.stream, names.consumer), { timeoutMs: 30_000 });
    const rows = await pool.query<{ n: number; d: number }>('SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM log_entries');
    assert.deepEqual(rows.rows[0], { n: VALID, d: VALID }, 'every valid message stored once');
    const dead = await pool.query<{ n: number; d: number; big: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT headers->>'Fault-N')::int AS d, count(*) FILTER (WHERE length(payload) = $1)::int AS big FROM ingest_rejects`,
      [BIG.length],
    );
    assert.deepEqual(dead.rows[0], { n: HOSTILE, d: HOSTILE, big: HOSTILE_BIG }, 'every hostile message dead-lettered once, whole');
    assert.ok(doneMs <= HOSTILE_BOUND_MS, `all accounted for ${doneMs.toFixed(0)} ms after the first publish (bound ${HOSTILE_BOUND_MS} ms)`);
  });
});
