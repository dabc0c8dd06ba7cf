// The bench's current-swarm phase (issue 22): what the swarm sends today besides its protobuf, measured
// the way the ingest phase measures protobuf, in the same run.
//
//   1. drains: a prefilled stream -> the built service -> a fresh database, timed from the first row's
//      receive time to the last commit, with the CPU of the service, its PostgreSQL backends and the
//      nats-server per event: the protobuf mix, the current-swarm mix (`publish --mix current`), and one
//      stream per format (protobuf, proto_json, signal, telemetry, mission_event, json, text);
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
  protobufMix: Drain;
  currentMix: Drain;
  /** currentMix events/s over protobufMix events/s, same run. */
  ratioCurrentToProtobuf: number;
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

async function drain(ctx: MixedContext, label: string, msgs: TrafficMessage[]): Promise<Drain> {
  const stream = `BENCH_MIXED_${label.toUpperCase()}`;
  const formats: Record<string, number> = {};
  let bytes = 0;
  for (const m of msgs) {
    formats[FORMAT_OF[m.kind]] = (formats[FORMAT_OF[m.kind]] ?? 0) + 1;
    bytes += m.data.length;
  }
  await createStream(ctx.nc, stream);
  const jsm = await ctx.nc.jetstreamManager();
  try {
    await publishAll(ctx.nc, msgs);
    await until(async () => (await jsm.streams.info(stream)).state.messages >= msgs.length, 120_000, 100, `${label}: the stream to hold every event`);
    const db = await ctx.freshDb(`mixed_${label}`);
    const svc = await startBenchService(ctx.serviceEnv(db, stream), ctx.nodeFlags);
    const mon = new RssMonitor(svc.pid);
    const cpu = serviceCpuTracker(svc.pid, db.name, ctx.nats.storeDir);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const stored = async (): Promise<{ rows: number; dead: number }> => {
        const r = await c.query<{ rows: string; dead: string }>('SELECT (SELECT count(*) FROM log_entries)::text AS rows, (SELECT count(*) FROM ingest_rejects)::text AS dead');
        return { rows: Number(r.rows[0]!.rows), dead: Number(r.rows[0]!.dead) };
      };
      await until(async () => {
        const s = await stored();
        return s.rows + s.dead >= msgs.length;
      }, 600_000, 25, `${label}: the service to commit every event`);
      const t1 = nowMs();
      const cpuSeconds = cpu.stop();
      const peakRssMb = mon.peakMb();
      mon.stop();
      const s = await stored();
      const t0 = Number((await c.query<{ t0: string }>('SELECT (extract(epoch FROM min(received_at)) * 1000)::text AS t0 FROM log_entries')).rows[0]!.t0);
      const seconds = (t1 - t0) / 1000;
      const perEvent: Record<string, number> = {};
      let total = 0;
      for (const [k, v] of Object.entries(cpuSeconds)) {
        perEvent[k] = Math.round((v / msgs.length) * 1e7) / 10;
        total += v;
      }
      perEvent['total'] = Math.round((total / msgs.length) * 1e7) / 10;
      const d: Drain = {
        events: msgs.length,
        rows: s.rows,
        deadLetters: s.dead,
        seconds,
        eventsPerSec: msgs.length / seconds,
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

export async function mixedPhase(ctx: MixedContext, events: number, perFormat: number): Promise<MixedResult> {
  ctx.log(`current swarm: ${events} events of the protobuf mix, then of the current mix, then ${perFormat} per format`);
  const protobufMix = await drain(ctx, 'protobuf_mix', build(events, 'protobuf'));
  const currentMix = await drain(ctx, 'current_mix', build(events, 'current'));
  const perFormatResult: Record<string, Drain> = {};
  const decodeUsPerMessage: Record<string, number> = {};
  for (const f of FORMATS) {
    const msgs = build(perFormat, 'current', kindsOf(f));
    decodeUsPerMessage[f] = decodeCost(msgs.slice(0, 5000));
    perFormatResult[f] = await drain(ctx, f, msgs);
  }
  decodeUsPerMessage['current_mix'] = decodeCost(build(5000, 'current'));
  ctx.log(`decode (normalize alone), µs per message: ${JSON.stringify(decodeUsPerMessage)}`);
  return { protobufMix, currentMix, ratioCurrentToProtobuf: currentMix.eventsPerSec / protobufMix.eventsPerSec, perFormat: perFormatResult, decodeUsPerMessage };
}
