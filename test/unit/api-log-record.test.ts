// The live fan-out's record encoding (src/api/log-record.ts toWireRecord, src/api/wire-encode.ts)
// against ts-proto, which QueryLogs uses (toLogRecord): for realistic rows (the traffic generator
// through the normalizer) and edge cases, `LogRecord.decode` of the hand-written bytes equals
// `toLogRecord(row)`; with a context whose keys are already sorted the bytes are ts-proto's exactly;
// a context's key order does not change the bytes; a response made of encoded records decodes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { encodeCursor } from '../../src/api/cursor.js';
import { encodeStreamResponse, toLogRecord, toWireRecord } from '../../src/api/log-record.js';
import { capContextDepth, MAX_CONTEXT_LEVELS, TRUNCATED_VALUE } from '../../src/api/wire-encode.js';
import { generateTraffic } from '../../src/cli/traffic.js';
import { normalizeMessage } from '../../src/domain/normalize.js';
import { LogRecord, StreamLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import type { StoredLogRow } from '../../src/store/log-reader.js';
import { StreamLogsResponseSchema } from '../../web/gen/mycelis/memory/v1/memory_pb.js';

function stored(over: Partial<StoredLogRow> = {}): StoredLogRow {
  return {
    id: '0190c3f1-7e0a-7000-8000-0123456789ab',
    seq: 42,
    traceId: 'trace-1',
    timestampUs: 1_764_000_000_123_456,
    level: 'INFO',
    source: 'agent-1',
    intent: 'text',
    message: 'hello',
    context: { a: 1 },
    approxBytes: 0,
    teamId: 'team-1',
    subject: 'swarm.agent.agent-1.output',
    receivedAtUs: 1_764_000_000_200_000,
    ...over,
  };
}

/** Splits a records element into its header (tag 1 LEN + varint length) and the LogRecord bytes. */
function body(chunk: Uint8Array): Uint8Array {
  assert.equal(chunk[0], 0x0a, 'tag: field 1, LEN');
  let len = 0;
  let i = 1;
  for (let shift = 1; ; shift *= 128) {
    const b = chunk[i++]!;
    len += (b & 0x7f) * shift;
    if (b < 0x80) break;
  }
  assert.equal(chunk.length - i, len, 'the length prefix covers exactly the rest');
  return chunk.subarray(i);
}

const decodeElement = (chunk: Uint8Array): LogRecord => LogRecord.decode(body(chunk));
const tsProtoBytes = (row: StoredLogRow): Buffer => Buffer.from(LogRecord.encode(toLogRecord(row)).finish());

function assertSameRecord(row: StoredLogRow, label: string): Uint8Array {
  const chunk = toWireRecord(row).chunk;
  assert.deepEqual(decodeElement(chunk), toLogRecord(row), label);
  return chunk;
}

/** A copy with every object's keys in sorted order (what ts-proto then writes in the same order). */
function sortedDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedDeep);
  if (typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort()) out[k] = sortedDeep((v as Record<string, unknown>)[k]);
  return out;
}

/** Keys like "7" are enumerated in numeric order by JS whatever the insertion order: ts-proto cannot write them sorted. */
function hasIndexKey(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  if (!Array.isArray(v) && Object.keys(v).some((k) => /^(0|[1-9][0-9]*)$/.test(k))) return true;
  return Object.values(v).some(hasIndexKey);
}

/** With sorted keys the encoder's LogRecord bytes are ts-proto's, byte for byte (field order, omitted defaults). */
function assertTsProtoBytes(row: StoredLogRow, label: string): void {
  const sorted = { ...row, context: sortedDeep(row.context) as Record<string, unknown> | null };
  assert.deepEqual(Buffer.from(body(toWireRecord(sorted).chunk)), tsProtoBytes(sorted), label);
}

function nest(depth: number, shape: 'mixed' | 'arrays' | 'objects'): unknown {
  let v: unknown = { leaf: [1, 'two', null, true] };
  for (let i = 0; i < depth; i++) {
    const asArray = shape === 'arrays' || (shape === 'mixed' && i % 2 === 0);
    v = asArray ? [v, i] : { k: v, n: i };
  }
  return v;
}

/** Realistic rows, built the way the stream hub builds them (a literal, the context parsed from its JSON). */
function realisticRows(count: number): StoredLogRow[] {
  const rows: StoredLogRow[] = [];
  let seq = 1;
  for (const m of generateTraffic({ count, agents: 50, teams: 5, seed: 7, clock: () => 1_764_000_000_000, subjectPrefix: 'swarm' })) {
    const r = normalizeMessage(
      { subject: m.subject, data: m.data, headers: m.headers ? new Map(Object.entries(m.headers)) : undefined, streamName: 'S', streamCreatedUs: 1, streamSeq: seq, serverTimeUs: 1_764_000_000_000_000, receivedAtUs: 1_764_000_000_500_000 },
      { isLogEntrySubject: (s) => s.includes('.log'), maxEventBytes: 1 << 20 },
    );
    if (!r.ok) continue;
    const x = r.row;
    rows.push({
      id: x.id, seq: seq++, traceId: x.traceId, timestampUs: Math.trunc(x.timestampUs), level: x.level, source: x.source, intent: x.intent,
      message: x.message, context: JSON.parse(x.context) as Record<string, unknown> | null, approxBytes: 0, teamId: x.teamId,
      subject: x.subject, receivedAtUs: Math.trunc(x.receivedAtUs),
    });
  }
  return rows;
}

describe('toWireRecord: bytes that ts-proto decodes to toLogRecord(row)', () => {
  it('realistic rows from the traffic generator through the normalizer; earlier records are never overwritten', () => {
    const rows = realisticRows(3000);
    assert.equal(rows.length, 3000, 'every generated message normalizes');
    const kept: [Uint8Array, Buffer][] = [];
    for (const row of rows) {
      const chunk = assertSameRecord(row, `seq ${row.seq}`);
      assert.equal(hasIndexKey(row.context), false);
      assertTsProtoBytes(row, `seq ${row.seq} (sorted keys)`);
      kept.push([chunk, Buffer.from(chunk)]);
    }
    // ~2 MB of records: many slabs filled. Every record handed out still holds its own bytes.
    for (const [chunk, copy] of kept) assert.deepEqual(Buffer.from(chunk), copy);
  });

  it('carries the fields filters look at', () => {
    const row = stored({ seq: 9, source: 's', teamId: 't', level: 'WARN', intent: 'i', traceId: 'tr' });
    const { chunk, ...fields } = toWireRecord(row);
    // `queues`: held by no live queue yet (the stream hub counts the queues that take it).
    assert.deepEqual(fields, { seq: 9, source: 's', teamId: 't', level: 'WARN', intent: 'i', traceId: 'tr', queues: 0 });
    assert.ok(chunk.length > 0);
  });

  const cases: [string, Partial<StoredLogRow>][] = [
    ['every string empty (proto3 defaults, omitted)', { traceId: '', source: '', teamId: '', intent: '', message: '', level: '', subject: '', id: '' }],
    ['unicode, astral characters, escapes', { message: 'é∑😀 \u2028 "q" \\ \t\n\u0000', source: 'agent-ü', context: { 'ключ': 'значение', '😀': ['😀', '', '𝄞x'], '': '', '\uffff': 1, 'é': { '𝄞': '😀😀' } } }],
    ['long non-ASCII strings and strings around the 128-unit ASCII limit', { message: 'ü'.repeat(300), context: { a: 'x'.repeat(128), b: 'y'.repeat(129), c: 'z'.repeat(127) + 'é', d: '😀'.repeat(100) } }],
    ['numbers', { context: { a: 0, b: -0, c: 0.1, d: 1e308, e: -1e-308, f: Number.MAX_SAFE_INTEGER, g: -12345.678, h: 5e-324, i: -1.7976931348623157e308 } }],
    ['null, booleans, empty objects and lists', { context: { t: true, f: false, n: null, s: '', o: {}, l: [], ll: [[], [[]], [null, false, 0, '']] } }],
    ['objects and lists 30 levels deep', { context: nest(30, 'mixed') as Record<string, unknown> }],
    ['lists 64 deep (cut at 32)', { context: { deep: nest(64, 'arrays') } }],
    ['objects 64 deep (cut at 32)', { context: nest(64, 'objects') as Record<string, unknown> }],
    ['mixed 64 deep (cut at 32)', { context: { deep: nest(64, 'mixed') } }],
    ['no context', { context: null }],
    ['an empty context', { context: {} }],
    ['the epoch', { timestampUs: 0, receivedAtUs: 0 }],
    ['just before 1970', { timestampUs: -1, receivedAtUs: -1_500_000 }],
    ['year 1 and year 9999', { timestampUs: -62_135_596_800_000_000, receivedAtUs: 253_402_300_799_999_999 }],
    ['whole seconds and no seconds', { timestampUs: 1_000_000, receivedAtUs: 999_999 }],
    ['seq 0', { seq: 0 }],
    ['the largest seq', { seq: Number.MAX_SAFE_INTEGER }],
    ['seq above 2^32', { seq: 2 ** 32 + 5 }],
    ['records larger than a slab', { message: 'x'.repeat(70_000), context: { big: 'y'.repeat(200_000), more: ['é'.repeat(50_000)] } }],
  ];
  for (const [label, over] of cases) {
    it(`edge case: ${label}`, () => {
      const row = stored(over);
      assertSameRecord(row, label);
      if (!hasIndexKey(row.context)) assertTsProtoBytes(row, `${label} (sorted keys)`);
    });
  }

  it('lone surrogates become U+FFFD, as ts-proto writes them', () => {
    const row = stored({ message: 'a\ud800b', context: { '\udc00': 'x\ud83d', ok: '😀' } });
    assert.deepEqual(decodeElement(toWireRecord(row).chunk), toLogRecord(stored({ message: 'a\ufffdb', context: { '\ufffd': 'x\ufffd', ok: '😀' } })));
    assertTsProtoBytes(row, 'lone surrogates');
  });

  it('values JSON does not have: undefined as ts-proto writes it, a bigint refused without harming other records', () => {
    const row = stored({ context: { a: undefined, b: [undefined, 1], c: 'c' } });
    assert.deepEqual(Buffer.from(body(toWireRecord(row).chunk)), tsProtoBytes(row));

    const before = toWireRecord(stored({ seq: 1 })).chunk;
    const beforeCopy = Buffer.from(before);
    assert.throws(() => toWireRecord(stored({ seq: 2, context: { z: 'half-written', a: 1n } })), TypeError);
    const after = stored({ seq: 3, message: 'after' });
    assertSameRecord(after, 'the record after a failed one');
    assert.deepEqual(Buffer.from(before), beforeCopy);
  });
});

describe('Struct key order', () => {
  it('a context gives the same bytes whatever its key order (jsonb reorders keys)', () => {
    const a = stored({ context: { zeta: 1, alpha: { y: [1, { b: 2, a: 1 }], x: 'x' }, mid: null, '10': 'ten', '9': 'nine', 'é': 1, '😀': 2, '\uffff': 3 } });
    // jsonb's order: shorter keys first, then bytewise.
    const b = stored({ context: { '9': 'nine', '10': 'ten', 'é': 1, mid: null, '😀': 2, '\uffff': 3, zeta: 1, alpha: { x: 'x', y: [1, { a: 1, b: 2 }] } } });
    assert.deepEqual(toWireRecord(a).chunk, toWireRecord(b).chunk);
  });

  it('map entries are written in sorted key order', () => {
    const row = stored({ context: { zeta: 1, beta: { d: 1, c: 2 }, alpha: 2, mid: 3 } });
    const ctx = decodeElement(toWireRecord(row).chunk).entry!.contextSnapshot!;
    // Struct.decode builds the object in wire order.
    assert.deepEqual(Object.keys(ctx), ['alpha', 'beta', 'mid', 'zeta']);
    assert.deepEqual(Object.keys(ctx['beta'] as object), ['c', 'd']);
  });
});

describe('context depth', () => {
  it('contexts nested deeper than 32 levels are cut there in responses, so every common decoder reads them', () => {
    // 64 levels (DESIGN 3.1's ingest limit) is ~190 nested messages; ts-proto and protobuf-es stop at 100.
    let deep: unknown = 'bottom';
    for (let i = 0; i < 63; i++) deep = i % 3 === 2 ? [deep] : { ['k' + i]: deep };
    const row = stored({ context: { top: deep } });
    const chunk = toWireRecord(row).chunk;
    const viaTsProto = decodeElement(chunk);
    const viaEs = fromBinary(StreamLogsResponseSchema, chunk);
    assert.equal(viaEs.records.length, 1);
    // Walk down: levels 1..32 are Structs/lists, the value inside level 32 is the marker.
    let v: unknown = viaTsProto.entry!.contextSnapshot;
    let levels = 0;
    while (typeof v === 'object' && v !== null) {
      levels++;
      v = Array.isArray(v) ? v[0] : Object.values(v)[0];
    }
    assert.equal(levels, MAX_CONTEXT_LEVELS);
    assert.equal(v, TRUNCATED_VALUE);
    // The ts-proto path (QueryLogs) applies the same cut: same record, same bytes.
    assert.deepEqual(viaTsProto, toLogRecord(row));
    assert.deepEqual(Buffer.from(body(chunk)), tsProtoBytes(row));
    // Shallow contexts are passed through untouched (no copy).
    const shallow = { a: { b: [1, { c: 2 }] } };
    assert.equal(capContextDepth(shallow), shallow);
  });
});

describe('encodeStreamResponse', () => {
  it('a response of several encoded records decodes to the records and the cursor', () => {
    const rows = [stored({ seq: 1 }), stored({ seq: 2, context: null }), stored({ seq: 300, message: 'm'.repeat(200), context: { k: ['é', 2] } })];
    const bytes = encodeStreamResponse(rows.map(toWireRecord), encodeCursor(300));
    const res = StreamLogsResponse.decode(bytes);
    assert.deepEqual(res.records, rows.map(toLogRecord));
    assert.equal(res.cursor, encodeCursor(300));
  });

  it('no records (a cursor-only response), and no cursor', () => {
    assert.deepEqual(StreamLogsResponse.decode(encodeStreamResponse([], encodeCursor(7))), { records: [], cursor: encodeCursor(7) });
    const res = StreamLogsResponse.decode(encodeStreamResponse([toWireRecord(stored())], ''));
    assert.deepEqual(res, { records: [toLogRecord(stored())], cursor: '' });
  });
});
