// The registry projection (DESIGN 3.3): fold one batch of RegistryEvents over the stored agent states.
// Pure; the batch writer reads the stored rows of the batch's agents, calls foldRegistry, and upserts
// what it returns.
//
// Invariants kept here — the result is the same whatever the order and batching of the events (a
// restart redelivers a killed process's unacked messages after newer ones; issue 7 asks for a registry
// identical to a clean run). Each field is the value of the newest event, by (event time, stream seq),
// that carries that field, tracked with its own (time, seq):
// - status: the newest status-implying event (status_set_at/seq); an OFFLINE it set reads IDLE once any
//   newer event exists (the agent spoke again). status_at/seq = the newest event of any kind.
// - team: the newest event with its own team (team_at/seq); without one, the subject team, else
//   "default", from the first event applied (exact only when an agent's subject team does not change).
// - last_error_summary: the newest event with a non-blank error message (last_error_at/seq). This
//   departs from DESIGN 3.3's literal "an event that is not newer never changes the error summary".
// - meta: each key is the value of the newest event, by (event time, stream seq), that carried it, tracked
//   with its own (time, seq) in metaAt (migration 007). In event order this is DESIGN 3.3's shallow merge
//   of heartbeat/status data; out of order (an older heartbeat redelivered after a newer event) its keys
//   are merged where no newer event set them, as they would have been in order. This departs from DESIGN
//   3.3's literal "an event that is not newer never changes meta", as last_error_summary does, so that
//   a crash's redeliveries leave the same registry as a clean run (docs/design-choices.md). A key stored
//   before 007 has no time: it counts as coming from the newest applied event.
// - last_seen is the greatest NATS server time ever seen: a max, so order-independent.
// - The same event applied twice is idempotent (every comparison is strict).
// Times of 0 µs or less order as "never" (0/0 is how the stored row says none).

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
  return after(timeUs, streamSeq, state.statusAtUs, state.statusSeq);
}

function after(timeUs: number, seq: number, thanUs: number, thanSeq: number): boolean {
  return timeUs > thanUs || (timeUs === thanUs && seq > thanSeq);
}

/** Applies one event to one agent's state (null = not registered yet). Returns `state` itself when nothing changes. */
export function applyEvent(state: AgentState | null, ev: RegistryEvent): AgentState {
  const s = state ?? newAgent(ev);
  const newest = after(ev.timeUs, ev.streamSeq, s.statusAtUs, s.statusSeq);
  const lastSeenUs = Math.max(s.lastSeenUs, ev.serverTimeUs);

  let { status, statusSetAtUs, statusSetSeq } = s;
  if (ev.status !== null) {
    if (after(ev.timeUs, ev.streamSeq, statusSetAtUs, statusSetSeq)) {
      // A newer event of any kind was already applied: it spoke after this OFFLINE.
      status = ev.status === 'OFFLINE' && !newest ? 'IDLE' : ev.status;
      statusSetAtUs = ev.timeUs;
      statusSetSeq = ev.streamSeq;
    }
  } else if (status === 'OFFLINE' && after(ev.timeUs, ev.streamSeq, statusSetAtUs, statusSetSeq)) {
    status = 'IDLE';
  }

  let { teamId, teamAtUs, teamSeq } = s;
  if (ev.eventTeam !== '') {
    if (after(ev.timeUs, ev.streamSeq, teamAtUs, teamSeq)) {
      teamId = ev.eventTeam;
      teamAtUs = ev.timeUs;
      teamSeq = ev.streamSeq;
    }
  } else if (teamId === '') {
    // The subject team and "default" only ever fill in a team that is missing.
    teamId = fallbackTeam(ev);
  }

  let { lastErrorSummary, lastErrorAtUs, lastErrorSeq } = s;
  const summary = ev.errorMessage === null ? '' : summarizeError(ev.errorMessage);
  if (summary !== '' && after(ev.timeUs, ev.streamSeq, lastErrorAtUs, lastErrorSeq)) {
    lastErrorSummary = summary;
    lastErrorAtUs = ev.timeUs;
    lastErrorSeq = ev.streamSeq;
  }

  let meta = s.meta;
  let metaAt = s.metaAt;
  if (ev.meta !== null) {
    for (const [key, value] of Object.entries(ev.meta)) {
      const at = Object.hasOwn(metaAt, key) ? metaAt[key]! : Object.hasOwn(meta, key) ? [s.statusAtUs, s.statusSeq] : null;
      if (at !== null && !after(ev.timeUs, ev.streamSeq, at[0], at[1])) continue;
      if (meta === s.meta) {
        meta = { ...s.meta };
        metaAt = { ...s.metaAt };
      }
      setOwn(meta, key, value);
      setOwn(metaAt, key, [ev.timeUs, ev.streamSeq]);
    }
  }
  const statusAtUs = newest ? ev.timeUs : s.statusAtUs;
  const statusSeq = newest ? ev.streamSeq : s.statusSeq;

  if (
    state !== null &&
    !newest &&
    lastSeenUs === s.lastSeenUs &&
    status === s.status &&
    statusSetAtUs === s.statusSetAtUs &&
    statusSetSeq === s.statusSetSeq &&
    teamId === s.teamId &&
    teamAtUs === s.teamAtUs &&
    teamSeq === s.teamSeq &&
    lastErrorAtUs === s.lastErrorAtUs &&
    lastErrorSeq === s.lastErrorSeq &&
    meta === s.meta
  ) {
    return state; // an old event that moves nothing: the writer skips the row
  }
  return {
    agentId: s.agentId,
    teamId,
    status,
    lastSeenUs,
    statusAtUs,
    statusSeq,
    meta,
    metaAt,
    lastErrorSummary,
    statusSetAtUs,
    statusSetSeq,
    teamAtUs,
    teamSeq,
    lastErrorAtUs,
    lastErrorSeq,
  };
}

/** Before its first event: IDLE, no team, nothing applied (every event is newer). */
function newAgent(ev: RegistryEvent): AgentState {
  return {
    agentId: ev.agentId,
    teamId: '',
    status: 'IDLE',
    lastSeenUs: ev.serverTimeUs,
    statusAtUs: Number.NEGATIVE_INFINITY,
    statusSeq: 0,
    meta: {},
    metaAt: {},
    lastErrorSummary: null,
    statusSetAtUs: 0,
    statusSetSeq: 0,
    teamAtUs: 0,
    teamSeq: 0,
    lastErrorAtUs: 0,
    lastErrorSeq: 0,
  };
}

/** Sets an own property, whatever the key (`__proto__` from a sender's JSON stays a plain key, as spread keeps it). */
function setOwn(target: object, key: string, value: unknown): void {
  // Only `__proto__` needs defining (assignment would set the prototype); every other key of these plain
  // objects (fresh, or spread copies: no setters) is set by assignment, which keeps them fast objects.
  if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else (target as Record<string, unknown>)[key] = value;
}

function fallbackTeam(ev: RegistryEvent): string {
  return ev.subjectTeam !== '' ? ev.subjectTeam : DEFAULT_TEAM;
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
