// src/ingest/pull-consumer.ts against a real nats-server: what the process holds is bounded by its
// credit in messages and in bytes (and only a finished message frees credit); a message larger than the
// byte credit is still taken, alone; a live request is always queued (two overlap); stop() lets the
// open pulls end, so that every message the server delivered reaches onMessage (none is lost in the
// client to wait out ACK_WAIT); a deleted consumer ends the pull with a PullError.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AckPolicy, connect, nanos, type JetStreamManager, type Msg, type NatsConnection } from 'nats';
import { Credit, parseAckSubject, PullConsumer, PullError } from '../../src/ingest/pull-consumer.js';
import { SHARED_NATS_URL, deleteStreamQuietly, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger } from './ingest-harness.js';

const names = uniqueNatsNames('pull');

describe('JetStream pull with credit', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let n = 0;

  before(async () => {
    nc = await connect({ servers: SHARED_NATS_URL });
    jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: names.stream, subjects: [`${names.prefix}.>`], no_ack: true });
  });
  after(async () => {
    await deleteStreamQuietly(nc, names.stream);
    await nc.close();
  });

  /** A fresh consumer over a fresh subject with `count` messages of `size` bytes in the stream. */
  async function filled(count: number, size: number): Promise<{ consumer: string; subject: string }> {
    const consumer = `c${++n}`;
    const subject = `${names.prefix}.s${n}`;
    await jsm.consumers.add(names.stream, { durable_name: consumer, ack_policy: AckPolicy.Explicit, ack_wait: nanos(30_000), filter_subject: subject, max_ack_pending: 100_000 });
    const body = new Uint8Array(size).fill(0x61);
    for (let i = 0; i < count; i++) nc.publish(subject, body);
    await nc.flush();
    await waitFor('messages in the stream', async () => (await jsm.consumers.info(names.stream, consumer)).num_pending === count);
    return { consumer, subject };
  }

  function puller(consumer: string, credit: Credit, onMessage: (m: Msg, bytes: number) => void): PullConsumer {
    return new PullConsumer(nc, credit, { stream: names.stream, consumer, expiresMs: 1_000, graceMs: 1_000, onMessage }, silentLogger);
  }

  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 300));

  it('holds at most maxMessages; finished messages free credit, and only then is more asked for', async () => {
    const { consumer } = await filled(100, 10);
    const credit = new Credit(40, 64 * 1024 * 1024);
    const held: { m: Msg; bytes: number }[] = [];
    let peak = 0;
    const p = puller(consumer, credit, (m, bytes) => {
      held.push({ m, bytes });
      peak = Math.max(peak, credit.messages);
    });
    p.start();
    await waitFor('40 delivered', () => held.length === 40);
    await settle();
    assert.equal(held.length, 40, 'nothing more while all credit is held');
    assert.equal((await jsm.consumers.info(names.stream, consumer)).num_ack_pending, 40);
    // Finished messages free their credit, and exactly that much more is asked for.
    const finish = (k: number): void => {
      for (const h of held.splice(0, k)) {
        h.m.respond(new TextEncoder().encode('+ACK'));
        credit.release(h.bytes);
      }
    };
    finish(5);
    await waitFor('5 more delivered', () => held.length === 40);
    await settle();
    assert.equal(credit.messages, 40);
    while (held.length > 0) {
      finish(held.length);
      await waitFor('more delivered or all done', async () => held.length > 0 || (await jsm.consumers.info(names.stream, consumer)).num_pending === 0);
    }
    await waitFor('all acked', async () => (await jsm.consumers.info(names.stream, consumer)).num_ack_pending === 0);
    assert.ok(peak <= 40, `peak held ${peak}`);
    await p.stop();
  });

  it('holds at most maxBytes (room for the largest message is kept for each pull)', async () => {
    const size = 100 * 1024;
    const { consumer } = await filled(60, size);
    const largest = (nc.info?.max_payload ?? 1024 * 1024) + 8192;
    const credit = new Credit(10_000, 2 * largest + 2 * size);
    const held: { m: Msg; bytes: number }[] = [];
    let peakBytes = 0;
    const p = puller(consumer, credit, (m, bytes) => {
      held.push({ m, bytes });
      peakBytes = Math.max(peakBytes, credit.bytes);
    });
    p.start();
    let seen = 0;
    while (seen < 60) {
      // Deliveries stop when less than the largest message fits: about 2 x 1 MiB of 100 KiB messages.
      await waitFor('deliveries', () => held.length > 0);
      await settle();
      seen += held.length;
      assert.ok(seen === 60 || credit.bytes > credit.maxBytes - largest, `stopped asking with ${credit.bytes} of ${credit.maxBytes} bytes held`);
      for (const h of held.splice(0)) {
        h.m.respond(new TextEncoder().encode('+ACK'));
        credit.release(h.bytes);
      }
    }
    assert.ok(peakBytes <= credit.maxBytes, `peak ${peakBytes} bytes held, credit ${credit.maxBytes}`);
    assert.ok(peakBytes > credit.maxBytes - largest, `peak ${peakBytes}: the credit was used`);
    await p.stop();
  });

  it('takes a message larger than the whole byte credit, alone', async () => {
    const { consumer } = await filled(2, 900 * 1024);
    const credit = new Credit(100, 256 * 1024);
    const got: number[] = [];
    const p = puller(consumer, credit, (m, bytes) => {
      got.push(m.data.length);
      // Finished later, so the second one must wait for it.
      setTimeout(() => {
        m.respond(new TextEncoder().encode('+ACK'));
        credit.release(bytes);
      }, 200);
    });
    p.start();
    await waitFor('the first large message', () => got.length === 1);
    assert.equal(credit.messages, 1);
    await waitFor('the second, after the first was finished', () => got.length === 2);
    assert.deepEqual(got, [900 * 1024, 900 * 1024]);
    await p.stop();
  });

  it('stop(): every message the server delivered reaches onMessage (nothing is dropped in the client)', async () => {
    const { consumer } = await filled(20_000, 50);
    let handedBack = 0;
    for (let round = 0; round < 3; round++) {
      const credit = new Credit(5_000, 64 * 1024 * 1024);
      const seen: Msg[] = [];
      const p = puller(consumer, credit, (m) => seen.push(m));
      p.start();
      // What the last round handed back comes first (JetStream's redelivery queue): take it all, so
      // that nothing but this round's deliveries is ack-pending when the round stops.
      await waitFor('deliveries under way', () => seen.length > 0 && seen.length >= handedBack, { intervalMs: 1 });
      await p.stop();
      const info = await jsm.consumers.info(names.stream, consumer);
      // Everything delivered to this consumer but not acked is what onMessage saw this round.
      assert.equal(info.num_ack_pending, seen.length, `round ${round}: delivered and unacked = seen by onMessage`);
      const seqs = new Set(seen.map((m) => parseAckSubject(m.reply ?? '')!.streamSeq));
      assert.equal(seqs.size, seen.length);
      // Hand them back, as the ingest does at a stop: the next round takes them at once.
      for (const m of seen) m.respond(new TextEncoder().encode('-NAK'));
      handedBack = seen.length;
      await nc.flush();
      await waitFor('handed back', async () => (await jsm.consumers.info(names.stream, consumer)).num_ack_pending <= seen.length);
    }
  });

  it('a live request is always queued: a second is sent when the first is half its life old', async () => {
    // nats-server 2.9 drops a redelivery it took for a request that turned out to have expired (it then
    // waits out another ACK_WAIT): the only request expiring is that hazard (pull-consumer.ts).
    const { consumer } = await filled(0, 1);
    const p = puller(consumer, new Credit(100, 10 * 1024 * 1024), () => undefined);
    p.start();
    const expiresMs = 1_000;
    let worst = Infinity;
    let maxOpen = 0;
    const until = Date.now() + 3.5 * expiresMs;
    await new Promise((r) => setTimeout(r, 20));
    while (Date.now() < until) {
      const now = Date.now();
      const open = p.openRequests;
      maxOpen = Math.max(maxOpen, open.length);
      worst = Math.min(worst, Math.max(0, ...open.map((r) => r.sentAt + expiresMs - now)));
      await new Promise((r) => setTimeout(r, 10));
    }
    await p.stop();
    assert.ok(worst >= 150, `at one moment the longest-lived open request had ${worst} ms left`);
    assert.equal(maxOpen, 2, 'two requests open at most');
    assert.ok(p.requestsSent >= 6, `${p.requestsSent} requests in 3.5 expiries: about two per expiry`);
  });

  it('a deleted consumer ends the pull with a PullError', async () => {
    const { consumer } = await filled(0, 1);
    const p = puller(consumer, new Credit(10, 10 * 1024 * 1024), () => undefined);
    p.start();
    await new Promise((r) => setTimeout(r, 100));
    await jsm.consumers.delete(names.stream, consumer);
    const err = await Promise.race([p.closed, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
    assert.ok(err instanceof PullError, `closed with ${String(err)}`);
    assert.match(err.message, /409|503/);
  });

  it('parses both forms of the ack subject', () => {
    assert.deepEqual(parseAckSubject('$JS.ACK.S.C.2.17.30.1700000000000000000.5'), { deliveryCount: 2, streamSeq: 17, timestampNanos: 1700000000000000000 });
    assert.deepEqual(parseAckSubject('$JS.ACK.dom.hash.S.C.1.9.10.1700000000000000000.0.tok'), { deliveryCount: 1, streamSeq: 9, timestampNanos: 1700000000000000000 });
    assert.equal(parseAckSubject('_INBOX.x'), null);
    assert.equal(parseAckSubject(''), null);
  });
});
