// GetTrace: one workflow across agents. The records in event-time order (capped), and the agents in
// order of their first record with their counts and first/last times. When the records fit, the
// agents are summarized from them; when they were cut, from the whole trace in SQL (one GROUP BY), so
// the summary always describes the whole trace.
import { NotFoundError } from '../../errors.js';
import { usToTimestamp } from '../../domain/time.js';
import { GetTraceResponse, type TraceAgent } from '../../gen/mycelis/memory/v1/memory.js';
import type { StoredLogRow } from '../../store/log-reader.js';
import type { TraceAgentRow, TraceReader } from '../../store/trace-reader.js';
import { encodeCursor } from '../cursor.js';
import { toLogRecord } from '../log-record.js';
import { encodeRecordElement } from '../wire-encode.js';

/** Records one response carries at most. */
export const MAX_TRACE_RECORDS = 10_000;
/**
 * Bytes of message and context one response carries, about: the first record past it ends the
 * response (`truncated`). Most gRPC clients refuse messages over 4 MiB by default (grpc-go, grpc-js,
 * grpcurl), so a response stays below that. The database cuts first on stored sizes (so a huge trace
 * never travels here whole), this process again on the text it got (stored values may be compressed).
 */
export const MAX_TRACE_BYTES = 3 * 1024 * 1024;

const ERROR_LEVELS: ReadonlySet<string> = new Set(['ERROR', 'FATAL']);

/** The agents of a trace from its rows (event-time order): first appearance, counts, latest team. */
export function summarizeAgents(rows: readonly StoredLogRow[]): TraceAgentRow[] {
  const byAgent = new Map<string, { agentId: string; teamId: string; records: number; errors: number; firstUs: number; lastUs: number }>();
  for (const r of rows) {
    let a = byAgent.get(r.source);
    if (!a) byAgent.set(r.source, (a = { agentId: r.source, teamId: '', records: 0, errors: 0, firstUs: r.timestampUs, lastUs: r.timestampUs }));
    a.records++;
    if (ERROR_LEVELS.has(r.level)) a.errors++;
    if (r.teamId !== '') a.teamId = r.teamId;
    if (r.timestampUs < a.firstUs) a.firstUs = r.timestampUs;
    if (r.timestampUs > a.lastUs) a.lastUs = r.timestampUs;
  }
  return [...byAgent.values()];
}

function toTraceAgent(a: TraceAgentRow): TraceAgent {
  return {
    agentId: a.agentId,
    teamId: a.teamId,
    records: a.records,
    errors: a.errors,
    firstAt: usToTimestamp(a.firstUs),
    lastAt: usToTimestamp(a.lastUs),
  };
}

interface TraceParts {
  readonly rows: StoredLogRow[];
  readonly agents: TraceAgentRow[];
  readonly more: boolean;
}

async function readTrace(reader: TraceReader, traceId: string, signal: AbortSignal): Promise<TraceParts> {
  const read = await reader.rows(traceId, MAX_TRACE_RECORDS, MAX_TRACE_BYTES, signal);
  let { rows, more } = read;
  let bytes = 0;
  for (let i = 0; i < rows.length; i++) {
    bytes += rows[i]!.approxBytes;
    if (bytes > MAX_TRACE_BYTES && i > 0) {
      rows = rows.slice(0, i);
      more = true;
      break;
    }
  }
  if (rows.length === 0) throw new NotFoundError('trace_id', `no records with trace id ${JSON.stringify(traceId)}`);
  const agents = more ? await reader.agents(traceId, signal) : summarizeAgents(rows);
  return { rows, agents, more };
}

/** The response without its records. */
function envelope(traceId: string, { agents, more }: TraceParts): GetTraceResponse {
  let startUs = Number.POSITIVE_INFINITY;
  let endUs = Number.NEGATIVE_INFINITY;
  let total = 0;
  for (const a of agents) {
    startUs = Math.min(startUs, a.firstUs);
    endUs = Math.max(endUs, a.lastUs);
    total += a.records;
  }
  return {
    traceId,
    records: [],
    agents: agents.map(toTraceAgent),
    startedAt: usToTimestamp(startUs),
    endedAt: usToTimestamp(endUs),
    truncated: more,
    totalRecords: total,
  };
}

export async function getTrace(reader: TraceReader, traceId: string, signal: AbortSignal): Promise<GetTraceResponse> {
  const parts = await readTrace(reader, traceId, signal);
  return { ...envelope(traceId, parts), records: parts.rows.map(toLogRecord) };
}

/**
 * The same response already encoded (the gRPC port writes these bytes as they are): the records by the
 * wire encoder StreamLogs uses (src/api/wire-encode.ts, `LogRecord.decode` of its bytes equals
 * toLogRecord), the rest by ts-proto. Building the generic records (Struct.wrap of every context) and
 * encoding them was a quarter of the service's CPU per GetTrace, and the garbage behind another quarter
 * (profile of 1,200 calls of 173 records on average: bench/README.md).
 */
export async function getTraceEncoded(reader: TraceReader, traceId: string, signal: AbortSignal): Promise<Buffer> {
  const parts = await readTrace(reader, traceId, signal);
  const head = GetTraceResponse.encode(envelope(traceId, parts)).finish();
  let total = head.length;
  const elements: Buffer[] = new Array<Buffer>(parts.rows.length);
  for (let i = 0; i < parts.rows.length; i++) {
    const row = parts.rows[i]!;
    // A view of the encoder's shared slab: copied below, never written to.
    const el = encodeRecordElement(row, encodeCursor(row.seq));
    elements[i] = el;
    total += el.length;
  }
  const out = Buffer.allocUnsafe(total);
  out.set(head, 0);
  let pos = head.length;
  for (const el of elements) {
    out.set(el, pos);
    // The element is `tag(1, LEN) len LogRecord` (StreamLogsResponse.records = 1); here the records
    // are GetTraceResponse field 2: the tag is one byte either way. Fields may come in any order.
    out[pos] = RECORDS_TAG;
    pos += el.length;
  }
  return out;
}

/** GetTraceResponse.records = 2, wire type LEN. */
const RECORDS_TAG = (2 << 3) | 2;
