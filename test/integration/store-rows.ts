// Row and event factories shared by the store tests.
import { randomUUID } from 'node:crypto';
import { nowUs } from '../../src/domain/time.js';
import type { LogRow, RegistryEvent, RejectRow } from '../../src/domain/types.js';

export function makeRow(over: Partial<LogRow> = {}): LogRow {
  const t = nowUs();
  return {
    id: randomUUID(),
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
