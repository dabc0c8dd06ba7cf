// Stored rows -> API records, and the pre-encoded wire form the live fan-out shares between streams.
//
// A StreamLogsResponse is `repeated LogRecord records = 1; string cursor = 2;`. On the wire a
// repeated message field is the concatenation of one `tag(1, LEN) varint(len) bytes` element per
// record, so a response for ANY subset of records is those elements concatenated, followed by the
// cursor field. Each record is therefore converted and encoded once (WireRecord.chunk) and every
// stream that receives it copies the same bytes into its response.
import { usToTimestamp } from '../domain/time.js';
import { LogRecord } from '../gen/mycelis/memory/v1/memory.js';
import type { StoredLogRow } from '../store/log-reader.js';
import { encodeCursor } from './cursor.js';
import { capContextDepth, encodeRecordElement, varintLen } from './wire-encode.js';

export function toLogRecord(r: StoredLogRow): LogRecord {
  return {
    id: r.id,
    cursor: encodeCursor(r.seq),
    entry: {
      timestamp: usToTimestamp(r.timestampUs),
      traceId: r.traceId,
      agentId: r.source,
      teamId: r.teamId,
      sourceUri: '',
      intent: r.intent,
      contextSnapshot: r.context === null ? undefined : capContextDepth(r.context),
      status: '',
      errorMessage: '',
      rawPayload: undefined,
      level: r.level,
      source: r.source,
      message: r.message,
    },
    subject: r.subject,
    ingestedAt: usToTimestamp(r.receivedAtUs),
    seq: String(r.seq),
  };
}

/** One record in wire form plus the fields filters look at (no parsed context kept). */
export interface WireRecord {
  readonly seq: number;
  readonly source: string;
  readonly teamId: string;
  readonly level: string;
  readonly intent: string;
  readonly traceId: string;
  /**
   * `tag(1, LEN) varint(len) LogRecord` : one element of StreamLogsResponse.records. A view of a slab
   * other records share (src/api/wire-encode.ts): copied into responses, never written to.
   */
  readonly chunk: Uint8Array;
  /**
   * How many live queues of the stream hub hold this record (src/api/stream-hub.ts keeps it; 0
   * elsewhere): its bytes count once in the queues' shared bound however many streams queue it.
   */
  queues: number;
}

/** Converts and encodes a row once (src/api/wire-encode.ts); every stream that takes it shares the bytes. */
export function toWireRecord(r: StoredLogRow): WireRecord {
  const chunk = encodeRecordElement(r, encodeCursor(r.seq));
  return { seq: r.seq, source: r.source, teamId: r.teamId, level: r.level, intent: r.intent, traceId: r.traceId, chunk, queues: 0 };
}

/** The encoded StreamLogsResponse {records, cursor}: the records' chunks, then the cursor field. */
export function encodeStreamResponse(records: readonly WireRecord[], cursor: string): Buffer {
  let total = 0;
  for (const r of records) total += r.chunk.length;
  const cursorLen = Buffer.byteLength(cursor, 'utf8');
  if (cursorLen > 0) total += 1 + varintLen(cursorLen) + cursorLen;
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const r of records) {
    out.set(r.chunk, pos);
    pos += r.chunk.length;
  }
  if (cursorLen > 0) {
    out[pos++] = 18; // field 2, LEN
    let n = cursorLen;
    while (n >= 0x80) {
      out[pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    out[pos++] = n;
    pos += out.write(cursor, pos, 'utf8');
  }
  if (pos !== total) throw new Error(`stream response encoding: wrote ${pos} of ${total} bytes`);
  return out;
}
