// The bench's current-swarm phase (issue 22): what the swarm sends today besides its protobuf, measured
// the way the ingest phase measures protobuf, in the same run.
//
//   1. drains: a prefilled stream -> the built service -> a fresh database, with the CPU of the service,
//      its PostgreSQL backends and the nats-server per event: the protobuf mix, the current-swarm mix
//      (`publish --mix current`), and one stream per format (protobuf, proto_json, signal, telemetry,
//      mission_event, json, text). Each stream starts with a warm-up of protobuf-mix events; only what
//      follows it is measured (from the commit that completes the warm-up to the last commit), so the
//      service's start and JIT warm-up (about a second of CPU) are not spread over the events. The
//      boundary is a commit, so up to one batch (INGEST_BATCH_SIZE) of either side may fall across it;
//   2. decode: normalizeMessage alone, in this process, per format (µs of CPU per message): what each
//      reader costs, free of PostgreSQL and the host's noise.
import type { NatsConnection } from 'nats';
import pg from 'pg';
import { FORMAT_OF, generateTraffic, type TrafficKind, type TrafficMessage } from '../src/cli/traffic.js';
import { normalizeMessage } from '../src/domain/normalize.js';
import { compileSubjectMatcher } from '../src/domain/subjects.js';
import type { PrivateNats } from '../test/helpers/nats.js';
import type { TestDatabase } from '../test/helpers/pg.js';
import { createStream, fmt, nowMs, publishAll, RssMonitor, serviceCpuTracker, until } from './lib.js';
import { startBenchService } from './service.js';

export interface MixedContext {
  readonly nats: PrivateNats;
  readonly nc: NatsConnection;
  freshDb(label: string): Promise<TestDatabase>;
  serviceEnv(db: TestDatabase, stream: string): Record<string, string>;
  readonly nodeFlags: string[];
  log(msg: string): void;
}

export interface Drain {
  events: number;
  /** Rows and dead letters of the measured events (after the warm-up). */
  rows: number;
  deadLetters: number;
  seconds: number;
  eventsPerSec: number;
  /** µs of CPU per event: node, postgres, nats, total. */
  cpuUsPerEvent: Record<string, number>;
  peakRssMb: number;
  meanPayloadBytes: number;
  formats: Record<string, number>;
}

export interface MixedResult {
  /** Medians over the rounds (events/s; CPU per event per process); `rounds` holds each drain. */
  protobufMix: Drain;
  currentMix: Drain;
  /** currentMix events/s over protobufMix events/s, medians of alternating rounds in the same run. */
  ratioCurrentToProtobuf: number;
  rounds: { protobufMix: Drain[]; currentMix: Drain[] };
  perFormat: Record<string, Drain>;
  /** normalizeMessage alone, µs of CPU per message (median of rounds), per format. */
  decodeUsPerMessage: Record<string, number>;
}

export const FORMATS = ['protobuf', 'proto_json', 'signal', 'telemetry', 'mission_event', 'json', 'text'] as const;
const KINDS = Object.keys(FORMAT_OF) as TrafficKind[];
const kindsOf = (format: string): TrafficKind[] => KINDS.filter((k) => FORMAT_OF[k] === format && k !== 'smoke');

function build(n: number, mix: 'protobuf' | 'current', kinds?: TrafficKind[]): TrafficMessage[] {
  // Times from the clock (the JSON envelopes carry them): every event is "now", none is in the future.
  return [...generateTraffic({ count: n, agents: 1000, teams: 40, seed: 42, mix, ...(kinds ? { kinds } : {}) })];
}

async function drain(ctx: MixedContext, label: string, msgs: TrafficMessage[], warmup: TrafficMessage[]): Promise<Drain> {
  const stream = `BENCH_MIXED_${label.toUpperCase()}`;
  const W = warmup.length;
  const total = W + msgs.length;
  const formats: Record<string, number> = {};
  let bytes = 0;
  for (const m of msgs) {
    formats[FORMAT_OF[m.kind]] = (formats[FORMAT_OF[m.kind]] ?? 0) + 1;
    bytes += m.data.length;
  }
  await createStream(ctx.nc, stream);
  const jsm = await ctx.nc.jetstreamManager();
  try {
    await publishAll(ctx.nc, warmup);
    await publishAll(ctx.nc, msgs);
    await until(async () => (await jsm.streams.info(stream)).state.messages >= total, 120_000, 100, `${label}: the stream to hold every event`);
    const db = await ctx.freshDb(`mixed_${label}`);
    const svc = await startBenchService(ctx.serviceEnv(db, stream), ctx.nodeFlags);
    const mon = new RssMonitor(svc.pid);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      // Rows plus dead letters: every event is one or the other (a count per commit, read often).
      const committed = async (): Promise<number> => {
        const r = await c.query<{ n: string }>('SELECT ((SELECT count(*) FROM log_entries) + (SELECT count(*) FROM ingest_rejects))::text AS n');
        return Number(r.rows[0]!.n);
      };
      let atWarm = 0;
      await until(async () => (atWarm = await committed()) >= W, 600_000, 10, `${label}: the warm-up`);
      const t0 = nowMs();
      const cpu = serviceCpuTracker(svc.pid, db.name, ctx.nats.storeDir);
      await until(async () => (await committed()) >= total, 600_000, 10, `${label}: the service to commit every event`);
      const t1 = nowMs();
      const cpuSeconds = cpu.stop();
      const peakRssMb = mon.peakMb();
      mon.stop();
      const s = await c.query<{ rows: string; dead: string }>('SELECT (SELECT count(*) FROM log_entries)::text AS rows, (SELECT count(*) FROM ingest_rejects)::text AS dead');
      const measured = total - atWarm; // the events committed after the warm-up's last commit
      const seconds = (t1 - t0) / 1000;
      const perEvent: Record<string, number> = {};
      let cpuTotal = 0;
      for (const [k, v] of Object.entries(cpuSeconds)) {
        perEvent[k] = Math.round((v / measured) * 1e7) / 10;
        cpuTotal += v;
      }
      perEvent['total'] = Math.round((cpuTotal / measured) * 1e7) / 10;
      const d: Drain = {
        events: msgs.length,
        rows: Number(s.rows[0]!.rows) - W,
        deadLetters: Number(s.rows[0]!.dead),
        seconds,
        eventsPerSec: measured / seconds,
        cpuUsPerEvent: perEvent,
        peakRssMb,
        meanPayloadBytes: Math.round(bytes / msgs.length),
        formats,
      };
      ctx.log(`${label}: ${fmt(d.eventsPerSec)} events/s, CPU/event node ${perEvent['node']} + pg ${perEvent['postgres']} + nats ${perEvent['nats']} = ${perEvent['total']} µs, ${d.deadLetters} dead letters`);
      return d;
    } finally {
      await c.end();
      await svc.stop();
    }
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
  }
}

/** normalizeMessage alone over `msgs`, µs of CPU per message (median of 7 rounds after 2 warm-ups). */
function decodeCost(msgs: TrafficMessage[]): number {
  const opts = { isLogEntrySubject: compileSubjectMatcher(['swarm.log.>']), maxEventBytes: 1024 * 1024 };
  const now = Date.now() * 1000;
  const incoming = msgs.map((m, i) => ({ subject: m.subject, data: m.data, streamName: 'B', streamCreatedUs: 1, streamSeq: i + 1, serverTimeUs: now + 60_000_000, receivedAtUs: now }));
  const rounds: number[] = [];
  for (let r = 0; r < 9; r++) {
    const t = process.cpuUsage();
    for (const m of incoming) if (!normalizeMessage(m, opts).ok) throw new Error(`bench traffic dead-lettered on ${m.subject}`);
    const d = process.cpuUsage(t);
    if (r >= 2) rounds.push((d.user + d.system) / incoming.length);
  }
  rounds.sort((a, b) => a - b);
  return Math.round(rounds[Math.floor(rounds.length / 2)]! * 100) / 100;
}

/** The round whose events/s is the median (the lower middle one for an even count). */
function median(drains: Drain[]): Drain {
  const sorted = [...drains].sort((a, b) => a.eventsPerSec - b.eventsPerSec);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

export async function mixedPhase(ctx: MixedContext, events: number, perFormat: number, warmupEvents: number, rounds: number): Promise<MixedResult> {
  ctx.log(`current swarm: ${rounds} rounds of ${events} events of the protobuf mix and of the current mix, alternating; then ${perFormat} per format; ${warmupEvents} warm-up events before each`);
  // The warm-up has its own seed, so its ids differ from every measured event's.
  const warmup = [...generateTraffic({ count: warmupEvents, agents: 1000, teams: 40, seed: 7, mix: 'protobuf' })];
  const protobufMsgs = build(events, 'protobuf');
  const currentMsgs = build(events, 'current');
  const protobufRounds: Drain[] = [];
  const currentRounds: Drain[] = [];
  for (let r = 0; r < rounds; r++) {
    protobufRounds.push(await drain(ctx, 'protobuf_mix', protobufMsgs, warmup));
    currentRounds.push(await drain(ctx, 'current_mix', currentMsgs, warmup));
  }
  const protobufMix = median(protobufRounds);
  const currentMix = median(currentRounds);
  const perFormatResult: Record<string, Drain> = {};
  const decodeUsPerMessage: Record<string, number> = {};
  for (const f of FORMATS) {
    const msgs = build(perFormat, 'current', kindsOf(f));
    decodeUsPerMessage[f] = decodeCost(msgs.slice(0, 5000));
    perFormatResult[f] = await drain(ctx, f, msgs, warmup);
  }
  decodeUsPerMessage['current_mix'] = decodeCost(build(5000, 'current'));
  ctx.log(`decode (normalize alone), µs per message: ${JSON.stringify(decodeUsPerMessage)}`);
  return {
    protobufMix,
    currentMix,
    ratioCurrentToProtobuf: currentMix.eventsPerSec / protobufMix.eventsPerSec,
    rounds: { protobufMix: protobufRounds, currentMix: currentRounds },
    perFormat: perFormatResult,
    decodeUsPerMessage,
  };
}
