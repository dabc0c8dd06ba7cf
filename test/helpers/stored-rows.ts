// Stored log rows as the readers hand them to the API, for the pre-encoded responses' unit tests:
// contexts nested, with null and non-ASCII values, and one nested deeper than the encoders keep.
import type { StoredLogRow } from '../../src/store/log-reader.js';

/** Row i of trace 'wf-1', one millisecond apart; `over` replaces any field. */
export function storedRow(i: number, over: Partial<StoredLogRow> = {}): StoredLogRow {
  return {
    id: `0190c3f1-7e0a-7000-8000-${i.toString(16).padStart(12, '0')}`,
    seq: 100 + i,
    traceId: 'wf-1',
    timestampUs: 1_764_000_000_000_000 + i * 1000,
    level: i % 4 === 3 ? 'ERROR' : 'INFO',
    source: `agent-${i % 3}`,
    intent: 'text',
    message: `step ${i}`,
    context: { i, nested: { list: [1, 'two', null, true, { deep: 'é∑😀' }] } },
    approxBytes: 300,
    teamId: i % 3 === 2 ? '' : 'team-a',
    subject: 'swarm.agent.x.output',
    receivedAtUs: 1_764_000_000_500_000 + i,
    ...over,
  };
}

/** A context nested 41 levels deep. */
export const DEEP_CONTEXT: Record<string, unknown> = (() => {
  let deep: Record<string, unknown> = { leaf: 'bottom' };
  for (let i = 0; i < 40; i++) deep = { d: deep };
  return deep;
})();
