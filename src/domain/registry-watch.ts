// What WatchRegistry calls a change, and whom it concerns (DESIGN 3.3, issue 15). Pure.
//
// An agent changes for a watcher when its effective status, reported status, team, meta or error
// summary changes; last_seen alone (every heartbeat) is not a change, except where it moves the
// effective status (OFFLINE by silence, or back from it).

/** One agent as a watcher sees it. Times in µs since epoch. */
export interface AgentView {
  readonly agentId: string;
  readonly teamId: string;
  /** As stored: the status the events implied. */
  readonly reported: string;
  /** OFFLINE once silent past the threshold, else `reported`. */
  readonly effective: string;
  readonly lastSeenUs: number;
  readonly statusAtUs: number | null;
  /** The stored meta as PostgreSQL prints jsonb (a canonical text: equal meta, equal text), or null. */
  readonly metaText: string | null;
  readonly lastErrorSummary: string;
}

/** The effective status (DESIGN 3.3): OFFLINE when now - last_seen > the threshold. */
export function effectiveStatus(reported: string, lastSeenUs: number, nowUs: number, offlineAfterUs: number): string {
  return nowUs - lastSeenUs > offlineAfterUs ? 'OFFLINE' : reported;
}

/** When an agent that is not OFFLINE goes OFFLINE by silence: the first instant after this one. */
export function offlineDeadlineUs(lastSeenUs: number, offlineAfterUs: number): number {
  return lastSeenUs + offlineAfterUs;
}

export const CHANGE_FIELDS = ['status', 'reported_status', 'team_id', 'meta', 'last_error_summary'] as const;
export type ChangeField = (typeof CHANGE_FIELDS)[number];

/** The fields that differ (every field for a new agent); empty = no change a watcher hears of. */
export function changedFields(prev: AgentView | undefined, next: AgentView): ChangeField[] {
  if (prev === undefined) return [...CHANGE_FIELDS];
  const out: ChangeField[] = [];
  if (prev.effective !== next.effective) out.push('status');
  if (prev.reported !== next.reported) out.push('reported_status');
  if (prev.teamId !== next.teamId) out.push('team_id');
  if (prev.metaText !== next.metaText) out.push('meta');
  if (prev.lastErrorSummary !== next.lastErrorSummary) out.push('last_error_summary');
  return out;
}

/** A watcher's filter: empty sets match everything. */
export interface WatchFilter {
  readonly teamIds: ReadonlySet<string>;
  readonly statuses: ReadonlySet<string>;
}

export function viewMatches(f: WatchFilter, teamId: string, effective: string): boolean {
  return (f.teamIds.size === 0 || f.teamIds.has(teamId)) && (f.statuses.size === 0 || f.statuses.has(effective));
}

/**
 * Whether a change concerns a watcher: the agent matched its filter before or matches it after (so a
 * watcher of OFFLINE agents also hears of one coming back, and a team's watcher of one leaving).
 */
export function changeConcerns(f: WatchFilter, before: { teamId: string; effective: string } | null, after: { teamId: string; effective: string }): boolean {
  return viewMatches(f, after.teamId, after.effective) || (before !== null && viewMatches(f, before.teamId, before.effective));
}
