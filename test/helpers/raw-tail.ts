// An unfiltered live StreamLogs tail over gRPC that keeps only each record's seq: it reads raw response
// bytes and skips everything else unread (decoding gigabytes of 512 KiB records in the client would
// compete with the service for the CPU a memory or latency bound is about). Used by
// test/fault/large-messages.test.ts and bench/operations.ts.
import type * as grpc from '@grpc/grpc-js';

/**
 * The seqs of a raw StreamLogsResponse: field 1 (records, length-delimited), each a LogRecord whose
 * field 6 is its seq (varint). Everything else is skipped unread.
 */
export function seqsOf(buf: Buffer): number[] {
  const out: number[] = [];
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = buf[i++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
  };
  const skip = (wire: number): void => {
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 2) {
      const n = varint(); // read before i is (i += varint() would add to the i from before the length)
      i += n;
    }
    else if (wire === 5) i += 4;
    else throw new Error(`wire type ${wire}`);
  };
  while (i < buf.length) {
    const tag = varint();
    if (tag >>> 3 !== 1 || (tag & 7) !== 2) {
      skip(tag & 7);
      continue;
    }
    const len = varint();
    const end = i + len;
    let seq = -1;
    while (i < end) {
      const t = varint();
      if (t >>> 3 === 6 && (t & 7) === 0) seq = varint();
      else skip(t & 7);
    }
    out.push(seq);
  }
  return out;
}

/** An unfiltered live tail that keeps only the seqs it receives. */
export class RawTail {
  readonly seqs: number[] = [];
  error: Error | null = null;
  private readonly call: grpc.ClientReadableStream<Buffer>;
  constructor(client: grpc.Client) {
    // StreamLogsRequest{} - no filter, no cursor, no tail: live from now.
    this.call = client.makeServerStreamRequest('/mycelis.memory.v1.MemoryService/StreamLogs', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0));
    this.call.on('data', (b: Buffer) => {
      for (const s of seqsOf(b)) this.seqs.push(s);
    });
    this.call.on('error', (e: Error) => {
      if (!/CANCELLED/.test(e.message)) this.error = e;
    });
  }
  cancel(): void {
    this.call.cancel();
  }
}

