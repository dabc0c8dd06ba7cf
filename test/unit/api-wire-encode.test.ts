// The live fan-out's hand-written record encoder (src/api/wire-encode.ts) against ts-proto: for
// realistic rows (the traffic generator through the normalizer) and edge cases, decoding its bytes
// gives exactly toLogRecord(row); key order in a context does not change the bytes; and cursors (v2,
// CRC-32) round-trip while v1 cursors saved before an upgrade still decode.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { decodeCursor, encodeCursor } from '../../src/api/cursor.js';
import { capContextDepth, MAX_CONTEXT_LEVELS, TRUNCATED_VALUE } from '../../src/api/wire-encode.js';
import { StreamLogsResponseSchema } from '../../web/gen/mycelis/memory/v1/memory_pb.js';
import { encodeStreamResponse, toLogRecord, toWireRecord } from '../../src/api/log-record.js';
import { generateTraffic } from '../../src/cli/traffic.js';
import { normalizeMessage } from '../../src/domain/normalize.js';
import { LogRecord, StreamLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import type { StoredLogRow } from '../../src/store/log-reader.js';

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

/** Decodes one records element (strip tag + length) with ts-proto. */
function decodeElement(chunk: Uint8Array): LogRecord {
  const res = StreamLogsResponse.decode(chunk);
  assert.equal(res.records.length, 1);
  return res.records[0]!;
}

function assertSame(row: StoredLogRow, label: string): void {
  const got = decodeElement(toWireRecord(row).chunk);
  assert.deepEqual(got, LogRecord.decode(LogRecord.encode(toLogRecord(row)).finish()), label);
}

function nest(depth: number): unknown {
  let v: unknown = { leaf: [1, 'two', null, true] };
  for (let i = 0; i < depth; i++) v = i % 2 ? { k: v, n: i } : [v, i];
  return v;
}

describe('wire encoder: the bytes ts-proto would decode to the same record', () => {
  it('realistic rows from the traffic generator through the normalizer', () => {
    let n = 0;
    let seq = 1;
    for (const m of generateTraffic({ count: 3000, agents: 50, teams: 5, seed: 7, clock: () => 1_764_000_000_000, subjectPrefix: 'swarm' })) {
      const r = normalizeMessage(
        { subject: m.subject, data: m.data, headers: m.headers ? new Map(Object.entries(m.headers)) : undefined, streamName: 'S', streamCreatedUs: 1, streamSeq: seq, serverTimeUs: 1_764_000_000_000_000, receivedAtUs: 1_764_000_000_500_000 },
        { isLogEntrySubject: (s) => s.includes('.log'), maxEventBytes: 1 << 20 },
      );
      if (!r.ok) continue;
      const row = { ...r.row, seq: seq++, context: JSON.parse(r.row.context) as Record<string, unknown>, approxBytes: 0 };
      assertSame(row, `row ${seq}`);
      n++;
    }
    assert.ok(n > 2500, `${n} rows checked`);
  });

  it('edge cases: empty strings, unicode, numbers, deep nesting, no context, times around 1970 and far ahead', () => {
    const cases: Partial<StoredLogRow>[] = [
      { traceId: '', source: '', teamId: '', intent: '', message: '', level: '', subject: '', id: '' },
      { message: 'é∑😀 \u2028 "q" \\ \t\n', source: 'agent-ü', context: { 'ключ': 'значение', '😀': ['😀', ''], '': '' } },
      { context: { a: 0, b: -0, c: 0.1, d: 1e308, e: -1e-308, f: Number.MAX_SAFE_INTEGER, g: -12345.678, h: 5e-324 } },
      { context: { t: true, f: false, n: null, s: '', o: {}, l: [], ll: [[], [[]]] } },
      { context: nest(30) as Record<string, unknown> },
      { context: nest(40) as Record<string, unknown> },
      { context: null },
      { timestampUs: 0, receivedAtUs: 0 },
      { timestampUs: -1, receivedAtUs: -1_500_000 },
      { timestampUs: -62_135_596_800_000_000, receivedAtUs: 253_402_300_799_999_999 },
      { timestampUs: 1_000_000, receivedAtUs: 999_999 },
      { seq: 0 },
      { seq: Number.MAX_SAFE_INTEGER },
      { seq: 2 ** 32 + 5 },
      { message: 'x'.repeat(70_000), context: { big: 'y'.repeat(200_000) } },
    ];
    for (const [i, c] of cases.entries()) assertSame(stored(c), `case ${i}: ${JSON.stringify(c).slice(0, 80)}`);
  });

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
    assert.deepEqual(viaTsProto, LogRecord.decode(LogRecord.encode(toLogRecord(row)).finish()));
    const ref = LogRecord.encode(toLogRecord(row)).finish();
    assert.deepEqual(Buffer.from(chunk.subarray(chunk.length - ref.length)), Buffer.from(ref));
    // Shallow contexts are passed through untouched (no copy).
    const shallow = { a: { b: [1, { c: 2 }] } };
    assert.equal(capContextDepth(shallow), shallow);
  });

  it('a context gives the same bytes whatever its key order (jsonb reorders keys)', () => {
    const a = stored({ context: { zeta: 1, alpha: { y: [1, { b: 2, a: 1 }], x: 'x' }, mid: null } });
    const b = stored({ context: { mid: null, alpha: { x: 'x', y: [1, { a: 1, b: 2 }] }, zeta: 1 } });
    assert.deepEqual(toWireRecord(a).chunk, toWireRecord(b).chunk);
  });

  it('a response of several encoded records decodes to the records and the cursor', () => {
    const rows = [stored({ seq: 1 }), stored({ seq: 2, context: null }), stored({ seq: 300, message: 'm' })];
    const bytes = encodeStreamResponse(rows.map(toWireRecord), encodeCursor(300));
    const res = StreamLogsResponse.decode(bytes);
    assert.deepEqual(res.records, rows.map((r) => LogRecord.decode(LogRecord.encode(toLogRecord(r)).finish())));
    assert.equal(res.cursor, encodeCursor(300));
  });
});

describe('cursors', () => {
  it('round-trip, and pin the v2 format', () => {
    for (const seq of [0, 1, 42, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER]) assert.equal(decodeCursor(encodeCursor(seq), 'after_cursor'), seq);
    assert.equal(encodeCursor(42), 'AgAAAAAAAAAqehUChw');
  });

  it('a v1 cursor (sha256 checksum) saved before an upgrade still decodes', () => {
    const buf = Buffer.alloc(13);
    buf.writeUInt8(1, 0);
    buf.writeBigUInt64BE(123_456n, 1);
    createHash('sha256').update('mycelis-cursor').update(buf.subarray(0, 9)).digest().subarray(0, 4).copy(buf, 9);
    assert.equal(decodeCursor(buf.toString('base64url'), 'after_cursor'), 123_456);
    buf[12] = buf[12]! ^ 1;
    assert.throws(() => decodeCursor(buf.toString('base64url'), 'after_cursor'), /after_cursor.*checksum/);
  });

  it('tampered, truncated and unknown-version cursors are rejected, naming the field', () => {
    const good = Buffer.from(encodeCursor(77), 'base64url');
    const flip = Buffer.from(good);
    flip[8] = flip[8]! ^ 1;
    assert.throws(() => decodeCursor(flip.toString('base64url'), 'after_cursor'), /after_cursor.*checksum mismatch/);
    assert.throws(() => decodeCursor(good.subarray(0, 12).toString('base64url'), 'after_cursor'), /after_cursor.*wrong length/);
    const v9 = Buffer.from(good);
    v9[0] = 9;
    assert.throws(() => decodeCursor(v9.toString('base64url'), 'after_cursor'), /after_cursor.*unsupported version 9/);
    assert.throws(() => decodeCursor('not a cursor!', 'after_cursor'), /after_cursor/);
  });
});
