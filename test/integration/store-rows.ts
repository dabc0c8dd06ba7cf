// Row and event factories shared by the store tests.
import { randomBytes } from 'node:crypto';
import { uuidV7 } from '../../src/domain/identity.js';
import { nowUs } from '../../src/domain/time.js';
import type { LogRow, RegistryEvent, RejectRow } from '../../src/domain/types.js';

/** A row as ingest makes one: its id a UUIDv7 whose prefix is the row's event time (ms). */
export function makeRow(over: Partial<LogRow> = {}): LogRow {
  const t = nowUs();
  const ts = over.timestampUs ?? t;
  return {
    id: uuidV7(Math.floor(ts / 1000), randomBytes(16).toString('hex')),
    traceId: 'trace-1',
    timestampUs: t,
    level: 'INFO',
    source: 'agent-a',
    intent: 'text',
    message: 'hello\tworld\\ with "quotes"\nand a newline',
    context: JSON.stringify({ source_agent_id: 'agent-a', note: 'tab\there', uni: 'é∑😀' }),
    teamId: 'team-1',
    subject: 'swarm.agent.agent-a.output',
    receivedAtUs: t,
    ...over,
  };
}

export function makeRows(n: number, over: Partial<LogRow> = {}): LogRow[] {
  return Array.from({ length: n }, () => makeRow(over));
}

export function makeReject(over: Partial<RejectRow> = {}): RejectRow {
  return {
    subject: 'swarm.agent.x.output',
    headers: { 'Content-Type': 'application/json' },
    payload: new Uint8Array([0x00, 0xff, 0x7b, 0x0a]),
    reason: 'decode_error',
    detail: 'not a MsgEnvelope',
    // No stream (as in core mode): these never meet each other as copies of one JetStream message.
    streamName: '',
    streamCreatedUs: 0,
    streamSeq: 7,
    receivedAtUs: nowUs(),
    ...over,
  };
}

export function makeEvent(over: Partial<RegistryEvent> = {}): RegistryEvent {
  const t = nowUs();
  return {
    agentId: 'agent-a',
    eventTeam: 'team-1',
    subjectTeam: '',
    timeUs: t,
    streamSeq: 1,
    serverTimeUs: t,
    status: 'BUSY',
    meta: { battery: 80 },
    errorMessage: null,
    ...over,
  };
}
