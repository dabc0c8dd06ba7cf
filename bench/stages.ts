// Issue 17: where the service's CPU per event goes, stage by stage, on the bench's own messages (the
// same ones the drains read), in the bench process. Each stage is the service's own code called
// alone in a loop over the messages (its inputs prepared by the stages before it, outside the
// timing), the fastest of `rounds` passes after a warm-up pass, in µs per event:
//
//   decode        decodeBinary (ts-proto, strict UTF-8)            src/domain/formats/swarm-v1.ts
//   validate      checkV1                                          swarm-v1.ts
//   render JSON   contextV1 (the context column's proto3 JSON)     formats/proto-json.ts
//   facts         factsV1 (the normalization table)                swarm-v1.ts
//   id            deriveRowId (UUIDv7 from SHA-256)                src/domain/identity.ts
//   wire fast path readEnvelopeFast (formats/wire-envelope.ts): envelope bytes -> facts + context in
//                 one pass, instead of decode + validate + render JSON + facts (µs per event of all
//                 messages; LogEntry subjects are not read by it)
//   normalize     normalizeMessage, the whole (the fast path where it answers, else the stages above;
//                 plus id and row assembly: sanitizing, subject parsing, flat strings); and the same
//                 with the fast path off (the reference path only)
//   COPY text     encodeCopyRows, per batch of 5,000              src/store/batch-writer.ts
//   registry fold foldRegistry, per batch of 5,000 (from empty)   src/domain/registry-fold.ts
//
// and the bare pipelines' decode + plain JSON (ts-proto, protobufjs). What the stages do not cover
// (NATS client, pg driver and socket, the event loop, GC of the drain's garbage, the commit's
// awaits) is the service's measured Node CPU per event minus `normalize`, `COPY text` and `registry fold`.
import type { TrafficMessage } from '../src/cli/traffic.js';
import { checkV1, contextV1, decodeBinary, factsV1, type DecodedV1 } from '../src/domain/formats/swarm-v1.js';
import type { Facts } from '../src/domain/formats/facts.js';
import { deriveRowId } from '../src/domain/identity.js';
import { readEnvelopeFast } from '../src/domain/formats/wire-envelope.js';
import { normalizeMessage, type IncomingMessage } from '../src/domain/normalize.js';
import { foldRegistry } from '../src/domain/registry-fold.js';
import { compileSubjectMatcher } from '../src/domain/subjects.js';
import type { LogRow, RegistryEvent } from '../src/domain/types.js';
import { encodeCopyRows } from '../src/store/batch-writer.js';
import { decodeRowProtobufjs, decodeRowTsProto } from './baselines.js';

export interface StageProfile {
  events: number;
  rounds: number;
  /** µs per event, fastest pass. */
  usPerEvent: Record<string, number>;
  /** decode + validate + render JSON + facts + id: the parts normalize is made of. */
  partsSum: number;
}

const BATCH = 5000;

function timeUs(f: () => void): number {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / 1000;
}

export function profileStages(all: readonly TrafficMessage[], opts: { sample?: number; rounds?: number } = {}): StageProfile {
  const msgs = all.slice(0, opts.sample ?? 50_000);
  const n = msgs.length;
  const rounds = opts.rounds ?? 3;
  const isLog = compileSubjectMatcher(['swarm.log.>']);
  const nowUs = Date.now() * 1000;
  const incoming: IncomingMessage[] = msgs.map((m, i) => ({
    subject: m.subject,
    data: m.data,
    headers: m.headers ? new Map(Object.entries(m.headers)) : undefined,
    streamName: 'BENCH_INGEST',
    streamCreatedUs: nowUs - 60_000_000,
    streamSeq: i + 1,
    serverTimeUs: nowUs,
    receivedAtUs: nowUs,
  }));
  const logSubject = incoming.map((m) => isLog(m.subject));

  // Inputs of each stage, from the stage before (protobuf messages only: the bench's traffic is all protobuf).
  const decoded: (DecodedV1 | null)[] = incoming.map((m, i) => {
    const d = decodeBinary(m.data, logSubject[i]!);
    return 'reason' in d ? null : d;
  });
  const facts: (Facts | null)[] = decoded.map((d) => (d === null ? null : factsV1(d)));
  const rows: LogRow[] = [];
  const events: RegistryEvent[] = [];
  for (const m of incoming) {
    const r = normalizeMessage(m, { isLogEntrySubject: isLog, maxEventBytes: 1 << 20 });
    if (r.ok) {
      rows.push(r.row);
      if (r.registry !== null) events.push(r.registry);
    }
  }
  let sink = 0;
  const stages: [string, () => void][] = [
    ['decode (ts-proto)', () => {
      for (let i = 0; i < n; i++) sink += decodeBinary(incoming[i]!.data, logSubject[i]!) === null ? 1 : 0;
    }],
    ['validate', () => {
      for (const d of decoded) if (d !== null) sink += checkV1(d) === null ? 1 : 0;
    }],
    ['render context JSON', () => {
      const c = { stripped: 0 };
      for (const d of decoded) if (d !== null) sink += (contextV1(d, c) as string).length;
    }],
    ['facts', () => {
      for (const d of decoded) if (d !== null) sink += factsV1(d).intent.length;
    }],
    ['id', () => {
      for (let i = 0; i < n; i++) {
        const f = facts[i];
        if (f === undefined || f === null) continue;
        const m = incoming[i]!;
        sink += deriveRowId({ envelopeId: f.envelopeId, sourceAsSent: f.sourceAsSent, timestamp: f.timestamp, payload: m.data, streamName: m.streamName, streamCreatedUs: m.streamCreatedUs, streamSeq: m.streamSeq, serverTimeUs: m.serverTimeUs }).id.length;
      }
    }],
    ['wire fast path (envelope bytes -> facts + context)', () => {
      for (let i = 0; i < n; i++) if (!logSubject[i]) sink += readEnvelopeFast(incoming[i]!.data) === null ? 0 : 1;
    }],
    ['normalize (whole)', () => {
      const o = { isLogEntrySubject: isLog, maxEventBytes: 1 << 20 };
      for (const m of incoming) sink += normalizeMessage(m, o).ok ? 1 : 0;
    }],
    ['normalize (whole, reference path only)', () => {
      const o = { isLogEntrySubject: isLog, maxEventBytes: 1 << 20, wireFastPath: false };
      for (const m of incoming) sink += normalizeMessage(m, o).ok ? 1 : 0;
    }],
    ['COPY text', () => {
      let buf: Buffer = Buffer.allocUnsafe(1 << 20);
      for (let i = 0; i < rows.length; i += BATCH) {
        const r = encodeCopyRows(rows.slice(i, i + BATCH), i + 1, null, buf);
        buf = r.buf;
        sink += r.at;
      }
    }],
    ['registry fold', () => {
      for (let i = 0; i < events.length; i += BATCH) sink += foldRegistry(new Map(), events.slice(i, i + BATCH)).length;
    }],
    ['bare: ts-proto decode + toJSON', () => {
      for (const m of incoming) sink += decodeRowTsProto(m.subject, m.data).context.length;
    }],
    ['bare: protobufjs decode + plain JSON', () => {
      for (const m of incoming) sink += decodeRowProtobufjs(m.subject, m.data).context.length;
    }],
  ];
  const best = new Map<string, number>();
  for (const [, f] of stages) f(); // warm-up: JIT, caches
  for (let r = 0; r < rounds; r++) {
    for (const [name, f] of stages) {
      const us = timeUs(f) / n;
      best.set(name, Math.min(best.get(name) ?? Infinity, us));
    }
  }
  if (sink === -1) process.stderr.write(''); // keep the loops' results alive
  const usPerEvent: Record<string, number> = {};
  for (const [name, us] of best) usPerEvent[name] = Math.round(us * 100) / 100;
  const partsSum = ['decode (ts-proto)', 'validate', 'render context JSON', 'facts', 'id'].reduce((s, k) => s + best.get(k)!, 0);
  return { events: n, rounds, usPerEvent, partsSum: Math.round(partsSum * 100) / 100 };
}
