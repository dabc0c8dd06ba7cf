// Issue 17: bytes allocated per event by each part of the service's ingest code and by the bare
// pipelines' decode, on the bench's own messages, in this process (v8 total_allocated_bytes around a
// pass; the young generation's garbage is what the scavenger has to walk past). `tsx bench/alloc.ts [N]`.
import v8 from 'node:v8';
import { randomUUID } from 'node:crypto';
import { readEnvelopeFast } from '../src/domain/formats/wire-envelope.js';
import { normalizeMessage, type IncomingMessage } from '../src/domain/normalize.js';
import { foldRegistry } from '../src/domain/registry-fold.js';
import { compileSubjectMatcher } from '../src/domain/subjects.js';
import type { LogRow, RegistryEvent } from '../src/domain/types.js';
import { encodeCopyRows } from '../src/store/batch-writer.js';
import { decodeRowProtobufjs, decodeRowTsProto } from './baselines.js';
import { buildMessages } from './lib.js';

const N = Number(process.argv[2] ?? 50_000);
const msgs = buildMessages(N, { agents: 1000, teams: 40, seed: 42 });
const isLog = compileSubjectMatcher(['swarm.log.>']);
const now = Date.now() * 1000;
const incoming: IncomingMessage[] = msgs.map((m, i) => ({
  subject: m.subject, data: m.data, headers: undefined, streamName: 'BENCH_INGEST', streamCreatedUs: now - 60e6, streamSeq: i + 1, serverTimeUs: now, receivedAtUs: now,
}));
const allocated = (): number => (v8.getHeapStatistics() as v8.HeapInfo & { total_allocated_bytes: number }).total_allocated_bytes;
function perEvent(name: string, f: () => void): void {
  f();
  const a = allocated();
  const t = performance.now();
  f();
  const us = ((performance.now() - t) * 1000) / N;
  console.log(`${name.padEnd(40)} ${String(Math.round((allocated() - a) / N)).padStart(6)} B/event  ${us.toFixed(2)} µs/event`);
}
const opts = { isLogEntrySubject: isLog, maxEventBytes: 1 << 20 };
let rows: LogRow[] = [];
let events: RegistryEvent[] = [];
perEvent('normalizeMessage (fast path)', () => {
  rows = []; events = [];
  for (const m of incoming) { const r = normalizeMessage(m, opts); if (r.ok) { rows.push(r.row); if (r.registry) events.push(r.registry); } }
});
perEvent('normalizeMessage (reference path)', () => { for (const m of incoming) normalizeMessage(m, { ...opts, wireFastPath: false }); });
perEvent('readEnvelopeFast', () => { for (const m of incoming) readEnvelopeFast(m.data); });
perEvent('encodeCopyRows (5,000 a batch)', () => { let buf: Buffer = Buffer.allocUnsafe(8 << 20); for (let i = 0; i < rows.length; i += 5000) buf = encodeCopyRows(rows.slice(i, i + 5000), 1, null, buf).buf; });
perEvent('foldRegistry (5,000 a batch)', () => { for (let i = 0; i < events.length; i += 5000) foldRegistry(new Map(), events.slice(i, i + 5000)); });
for (const [name, dec] of [['bare ts-proto', decodeRowTsProto], ['bare protobufjs', decodeRowProtobufjs]] as const) {
  perEvent(`${name}: decode + line`, () => {
    for (const m of msgs) { const r = dec(m.subject, m.data); void `${randomUUID()}\t${r.traceId}\t${r.ts}\t${r.level}\t${r.source}\t${r.intent}\t${r.message}\t${r.context}\t${r.team}\t${r.subject}\n`.length; }
  });
}
