// Phases `restart` and `large` of `npm run bench` (issue 13): what operating the service costs.
//
// restart: a prefilled backlog of N events (default 50,000). The service is stopped once 5,000 rows are
//   committed - with SIGTERM (a rolling deploy), then in a second run with SIGKILL (OOMKill, node
//   loss) - and started again. Reported: how long the stop took, the seconds from the restart to the
//   moment every delivery the stopped process had received was acked (SIGTERM: handed back at once,
//   so this is the restart's own latency; SIGKILL: what the dead process held waits for ACK_WAIT,
//   timed from the kill), and the seconds to the whole drain.
// large: M valid tool results of 512 KiB (default 1,000) published at once into a running service
//   with production defaults, without and then with 10 unfiltered live tails open (gRPC, one client
//   process): events/s, MB/s of payload, the service's peak RSS over the drain, the longest time
//   without a new row (rows counted every 100 ms), and with tails how long after the last row every
//   tail had every record.
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection } from 'nats';
import pg from 'pg';
import { MessageType, MsgEnvelope } from '../src/gen/mycelis/swarm/v1/swarm.js';
import type { PrivateNats } from '../test/helpers/nats.js';
import type { TestDatabase } from '../test/helpers/pg.js';
import { RawTail } from '../test/helpers/raw-tail.js';
import { startBenchService, type BenchService } from './service.js';
import { buildMessages, createStream, fmt, nowMs, publishAll, RssMonitor, until } from './lib.js';

export interface OperationsOptions {
  readonly nats: PrivateNats;
  readonly nc: NatsConnection;
  readonly log: (msg: string) => void;
  readonly cleanup: (() => Promise<void>)[];
  readonly freshDb: (label: string) => Promise<TestDatabase>;
  readonly env: (db: TestDatabase, stream: string) => Record<string, string>;
  readonly nodeFlags: string[];
}

async function rows(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM log_entries')).rows[0]!.n);
  } finally {
    await c.end();
  }
}

async function start(o: OperationsOptions, env: Record<string, string>): Promise<BenchService> {
  const svc = await startBenchService(env, o.nodeFlags);
  o.cleanup.push(() => svc.stop());
  return svc;
}

async function restartOnce(o: OperationsOptions, signal: 'SIGTERM' | 'SIGKILL', events: number): Promise<Record<string, number>> {
  const db = await o.freshDb(`restart_${signal.toLowerCase()}`);
  const stream = `BENCH_RESTART_${signal}`;
  await createStream(o.nc, stream);
  const env = o.env(db, stream);
  // The service creates the consumer; the backlog then arrives while none runs.
  await (await start(o, env)).stop();
  await publishAll(o.nc, buildMessages(events, { agents: 1000, teams: 40, seed: 13 }));
  const jsm = await o.nc.jetstreamManager();
  const consumer = env['CONSUMER_NAME'] ?? 'mycelis-memory';
  let svc = await start(o, env);
  await until(async () => (await rows(db.url)) >= 5_000, 120_000, 10, '5,000 rows before the stop');
  const stopAt = nowMs();
  if (signal === 'SIGTERM') await svc.stop();
  else {
    svc.child.kill('SIGKILL');
    await new Promise((r) => svc.child.once('exit', r));
  }
  const stopMs = nowMs() - stopAt;
  const atStop = await jsm.consumers.info(stream, consumer);
  const delivered = atStop.delivered.stream_seq;
  const restartAt = nowMs();
  svc = await start(o, env);
  const upAt = nowMs();
  await until(async () => (await jsm.consumers.info(stream, consumer)).ack_floor.stream_seq >= delivered, 120_000, 20, 'the stopped process\'s deliveries acked');
  const resumedAt = nowMs();
  await until(async () => (await rows(db.url)) >= events, 300_000, 50, 'the whole backlog');
  const doneAt = nowMs();
  await svc.stop();
  await jsm.streams.delete(stream).catch(() => undefined);
  return {
    stopSeconds: stopMs / 1000,
    unackedAtStop: atStop.num_ack_pending,
    startSeconds: (upAt - restartAt) / 1000,
    // SIGTERM: from the restart (nothing waits for ACK_WAIT). SIGKILL: from the kill (ACK_WAIT runs from there).
    resumeSeconds: (resumedAt - (signal === 'SIGTERM' ? upAt : stopAt)) / 1000,
    drainSeconds: (doneAt - upAt) / 1000,
  };
}

export async function restartPhase(o: OperationsOptions, events: number): Promise<Record<string, unknown>> {
  const sigterm = await restartOnce(o, 'SIGTERM', events);
  o.log(`restart: SIGTERM at 5,000 of ${fmt(events, 0)}: stop ${sigterm['stopSeconds']!.toFixed(2)} s, the stopped process's deliveries acked ${sigterm['resumeSeconds']!.toFixed(2)} s after the restart`);
  const sigkill = await restartOnce(o, 'SIGKILL', events);
  o.log(`restart: SIGKILL at 5,000 of ${fmt(events, 0)}: the dead process's ${sigkill['unackedAtStop']} deliveries acked ${sigkill['resumeSeconds']!.toFixed(2)} s after the kill (ACK_WAIT 10 s)`);
  return { events, sigterm, sigkill };
}

function toolResult(i: number, size: number): Uint8Array {
  const now = Date.now();
  return MsgEnvelope.encode({
    id: `large-${i}`,
    timestamp: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1_000_000 },
    sourceAgentId: `reader-${i % 20}`,
    type: MessageType.MESSAGE_TYPE_TOOL_RESULT,
    payload: { $case: 'toolResult', value: { callId: `call-${i}`, result: { content: `${i} `.padEnd(size, 'page text ') }, isError: false, errorMessage: '' } },
    traceId: '',
    spanId: '',
    teamId: 'readers',
  }).finish();
}

export async function largePhase(o: OperationsOptions, count: number, size = 512 * 1024): Promise<Record<string, unknown>> {
  return { noTails: await largeRun(o, count, size, 0), tails10: await largeRun(o, count, size, 10) };
}

async function largeRun(o: OperationsOptions, count: number, size: number, tailCount: number): Promise<Record<string, unknown>> {
  const db = await o.freshDb(`large${tailCount}`);
  const stream = `BENCH_LARGE_${tailCount}`;
  await createStream(o.nc, stream);
  const svc = await start(o, o.env(db, stream));
  // One connection per tail, as ten tails are in practice: ten streams of 512 KiB records over one
  // HTTP/2 connection are served very unevenly (test/fault/large-messages.test.ts).
  const clients = Array.from({ length: tailCount }, () => new grpc.Client(`127.0.0.1:${svc.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  const tails = clients.map((c) => new RawTail(c));
  await until(async () => (await (await fetch(`http://127.0.0.1:${svc.httpPort}/metrics`)).text()).includes(`mycelis_memory_api_stream_subscribers ${tailCount}`), 30_000, 50, 'tails attached');
  const rss = new RssMonitor(svc.pid);
  rss.reset();
  const t0 = nowMs();
  const published = (async () => {
    for (let i = 0; i < count; i++) {
      o.nc.publish(`swarm.agent.reader-${i % 20}.output`, toolResult(i, size));
      if (i % 20 === 19) await o.nc.flush();
    }
    await o.nc.flush();
  })();
  // The longest time without a new row, from the first publish.
  let last = t0;
  let lastCount = 0;
  let gapMs = 0;
  await until(
    async () => {
      const n = await rows(db.url);
      const now = nowMs();
      if (n > lastCount) {
        gapMs = Math.max(gapMs, now - last);
        last = now;
        lastCount = n;
      }
      return n >= count;
    },
    900_000,
    100,
    `${count} large messages stored`,
  );
  await published;
  const seconds = (nowMs() - t0) / 1000;
  let tailsDoneAfterS: number | null = null;
  if (tailCount > 0) {
    await until(() => Promise.resolve(tails.every((t) => t.seqs.length >= count || t.error !== null)), 900_000, 100, 'every tail has every record');
    tailsDoneAfterS = (nowMs() - t0) / 1000 - seconds;
  }
  const peakMb = rss.peakMb();
  rss.stop();
  for (const t of tails) t.cancel();
  for (const c of clients) c.close();
  await svc.stop();
  await (await o.nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
  const r = {
    count,
    bytesEach: size,
    tails: tailCount,
    seconds,
    eventsPerSec: count / seconds,
    mbPerSec: (count * size) / 1e6 / seconds,
    peakRssMb: peakMb,
    longestCommitGapS: gapMs / 1000,
    tailsDoneAfterS,
    tailErrors: tails.filter((t) => t.error !== null).length,
  };
  o.log(
    `large: ${count} x ${size / 1024} KiB, ${tailCount} tails: stored in ${seconds.toFixed(1)} s: ${r.eventsPerSec.toFixed(1)} events/s, ${r.mbPerSec.toFixed(1)} MB/s, ` +
      `peak RSS ${peakMb} MB, longest gap ${r.longestCommitGapS.toFixed(1)} s` +
      (tailCount > 0 ? `, every tail complete ${tailsDoneAfterS!.toFixed(1)} s after the last row (${r.tailErrors} failed)` : ''),
  );
  return r;
}
