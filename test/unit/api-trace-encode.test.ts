// GetTrace's pre-encoded response (the gRPC port, src/api/queries/trace.ts getTraceEncoded) decodes to
// exactly the generic response (the Connect port, getTrace): the records (contexts nested, deep, null,
// non-ASCII; large records of more than 127 bytes, so lengths take several varint bytes), the agents
// in order of first appearance, times, `truncated` and the total, with ts-proto and with protobuf-es;
// and a missing trace is NOT_FOUND on both.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { NotFoundError } from '../../src/errors.js';
import { getTrace, getTraceEncoded } from '../../src/api/queries/trace.js';
import { GetTraceResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import type { StoredLogRow } from '../../src/store/log-reader.js';
import { DEEP_CONTEXT, storedRow } from '../helpers/stored-rows.js';
import type { TraceAgentRow, TraceReader, TraceRows } from '../../src/store/trace-reader.js';
import { GetTraceResponseSchema } from '../../web/gen/mycelis/memory/v1/memory_pb.js';

const row = storedRow;
const deep = DEEP_CONTEXT;

/** A TraceReader over fixed rows (the SQL is the integration tests'). */
function readerOf(rows: StoredLogRow[], more = false, agents: TraceAgentRow[] = []): TraceReader {
  return {
    rows: async (): Promise<TraceRows> => ({ rows, more }),
    agents: async (): Promise<TraceAgentRow[]> => agents,
  } as unknown as TraceReader;
}

const signal = new AbortController().signal;

describe('GetTrace: the pre-encoded response is the generic one', () => {
  it('records, agents, times, truncated and total decode the same (ts-proto and protobuf-es)', async () => {
    const rows = [
      ...Array.from({ length: 30 }, (_, i) => row(i)),
      row(30, { context: null, message: '' }),
      row(31, { context: deep }),
      row(32, { context: { big: 'x'.repeat(5000) }, message: 'm'.repeat(300) }),
      row(33, { seq: 0 }),
    ];
    for (const [reader, label] of [
      [readerOf(rows), 'whole'],
      [readerOf(rows.slice(0, 5), true, [{ agentId: 'agent-9', teamId: 't', records: 50, errors: 2, firstUs: 1, lastUs: 2_000_000 }]), 'truncated'],
    ] as const) {
      const generic = await getTrace(reader, 'wf-1', signal);
      const bytes = await getTraceEncoded(reader, 'wf-1', signal);
      const decoded = GetTraceResponse.decode(bytes);
      assert.deepEqual(decoded, generic, label);
      assert.deepEqual(
        fromBinary(GetTraceResponseSchema, bytes).records.map((r) => r.id),
        generic.records.map((r) => r.id),
        label,
      );
      // ts-proto's own bytes of the generic response decode to the same (the order of fields differs).
      assert.deepEqual(GetTraceResponse.decode(GetTraceResponse.encode(generic).finish()), decoded, label);
    }
    const whole = GetTraceResponse.decode(await getTraceEncoded(readerOf(rows), 'wf-1', signal));
    assert.equal(whole.records.length, rows.length);
    assert.deepEqual(whole.agents.map((a) => a.agentId), ['agent-0', 'agent-1', 'agent-2']);
    assert.equal(whole.totalRecords, rows.length);
  });

  it('no records: NOT_FOUND on both', async () => {
    await assert.rejects(getTrace(readerOf([]), 'none', signal), NotFoundError);
    await assert.rejects(getTraceEncoded(readerOf([]), 'none', signal), NotFoundError);
  });
});
