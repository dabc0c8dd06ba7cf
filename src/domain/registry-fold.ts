// The registry projection (DESIGN 3.3): fold one batch of RegistryEvents over the stored agent states.
// Pure; the batch writer reads the stored rows of the batch's agents, calls foldRegistry, and upserts
// what it returns.
//
// Invariants kept here:
// - Order is by event time, ties by stream sequence. An event that is not strictly newer than the newest
//   applied one (status_at, status_seq) never changes status, meta or the error summary. That makes a
//   replay of an old heartbeat after a newer status a no-op, and the same event applied twice idempotent.
// - last_seen is the greatest NATS server time ever seen: it never moves back, whatever the event order.
// - Events arrive in any order within a batch: each agent's events are sorted before folding, so the
//   result does not depend on arrival order.

import type { AgentState, RegistryEvent, ReportedStatus } from './types.js';

export const DEFAULT_TEAM = 'default';
export const MAX_ERROR_SUMMARY_CHARS = 500;
/** Never registered (DESIGN 3.3). */
export const UNKNOWN_AGENT = 'unknown';

/**
 * Returns the new state of every agent the events touch (sorted by agent id, so upserts take row
 * locks in a stable order). `stored` holds the current rows of (at least) those agents; an agent
 * absent from it is new and starts IDLE.
 */
export function foldRegistry(
  stored: ReadonlyMap<string, AgentState>,
  events: readonly RegistryEvent[],
): AgentState[] {
  const byAgent = new Map<string, RegistryEvent[]>();
  for (const ev of events) {
    if (ev.agentId === '' || ev.agentId === UNKNOWN_AGENT) continue;
    const list = byAgent.get(ev.agentId);
    if (list === undefined) byAgent.set(ev.agentId, [ev]);
    else list.push(ev);
  }
  const out: AgentState[] = [];
  for (const [agentId, list] of byAgent) {
    if (list.length > 1) list.sort(compareEvents);
    let state = stored.get(agentId) ?? null;
    for (const ev of list) state = applyEvent(state, ev);
    if (state !== null) out.push(state);
  }
  out.sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
  return out;
}

/** Event order of DESIGN 3.3: event time, then stream sequence. */
export function compareEvents(a: RegistryEvent, b: RegistryEvent): number {
  return a.timeUs - b.timeUs || a.streamSeq - b.streamSeq;
}

/** True when an event at (timeUs, streamSeq) is strictly newer than the newest applied one. */
export function isNewer(state: AgentState, timeUs: number, streamSeq: number): boolean {
  return timeUs > state.statusAtUs || (timeUs === state.statusAtUs && streamSeq > state.statusSeq);
}

/** Applies one event to one agent's state (null = not registered yet). */
export function applyEvent(state: AgentState | null, ev: RegistryEvent): AgentState {
  if (state === null) return newAgent(ev);
  const lastSeenUs = Math.max(state.lastSeenUs, ev.serverTimeUs);
  if (!isNewer(state, ev.timeUs, ev.streamSeq)) {
    // Older or the same event again: only liveness may advance (server time, monotonic).
    return lastSeenUs === state.lastSeenUs ? state : { ...state, lastSeenUs };
  }
  return {
    agentId: state.agentId,
    // The event's team wins; otherwise keep the stored one (the subject team and "default" only
    // ever fill in a team that is missing).
    teamId: ev.eventTeam !== '' ? ev.eventTeam : state.teamId !== '' ? state.teamId : fallbackTeam(ev),
    status: nextStatus(state.status, ev.status),
    lastSeenUs,
    statusAtUs: ev.timeUs,
    statusSeq: ev.streamSeq,
    meta: ev.meta === null ? state.meta : { ...state.meta, ...ev.meta },
    lastErrorSummary: nextErrorSummary(state.lastErrorSummary, ev.errorMessage),
  };
}

function newAgent(ev: RegistryEvent): AgentState {
  return {
    agentId: ev.agentId,
    teamId: ev.eventTeam !== '' ? ev.eventTeam : fallbackTeam(ev),
    // A new agent starts IDLE; its first event may already say otherwise.
    status: nextStatus('IDLE', ev.status),
    lastSeenUs: ev.serverTimeUs,
    statusAtUs: ev.timeUs,
    statusSeq: ev.streamSeq,
    meta: ev.meta === null ? {} : { ...ev.meta },
    lastErrorSummary: nextErrorSummary(null, ev.errorMessage),
  };
}

function fallbackTeam(ev: RegistryEvent): string {
  return ev.subjectTeam !== '' ? ev.subjectTeam : DEFAULT_TEAM;
}

/** An event that implies no status leaves it unchanged, except that an OFFLINE agent that speaks is IDLE again. */
function nextStatus(current: ReportedStatus, implied: ReportedStatus | null): ReportedStatus {
  if (implied !== null) return implied;
  return current === 'OFFLINE' ? 'IDLE' : current;
}

/** The latest non-blank error message wins; a blank one is no error. */
function nextErrorSummary(current: string | null, message: string | null): string | null {
  if (message === null) return current;
  const summary = summarizeError(message);
  return summary === '' ? current : summary;
}

/** Trims whitespace and cuts to 500 UTF-16 units without splitting a surrogate pair. */
export function summarizeError(message: string): string {
  const trimmed = message.trim();
  if (trimmed.length <= MAX_ERROR_SUMMARY_CHARS) return trimmed;
  let end = MAX_ERROR_SUMMARY_CHARS;
  const last = trimmed.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return trimmed.slice(0, end);
}
