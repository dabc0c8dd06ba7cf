// Reads of agent_registry for the API: keyset pages by agent_id, filtered by team and by EFFECTIVE
// status. The effective status (OFFLINE once now - last_seen exceeds the offline threshold, else the
// reported status) is computed in SQL against ONE `as_of` instant, so a page, its filter and the
// as_of the response reports always agree. Later pages reuse the first page's as_of (carried in the
// page token), so an agent cannot change status between pages of one listing.
import { cancellableQuery, type PoolHolder } from './log-reader.js';

export interface RegistryPageQuery {
  /** Empty = all teams. */
  readonly teamIds: readonly string[];
  /** Effective statuses (IDLE, BUSY, OFFLINE, ERROR); empty = all. */
  readonly statuses: readonly string[];
  /** Exclusive keyset position; '' = from the start. */
  readonly afterAgentId: string;
  readonly limit: number;
  /** The instant to evaluate effective status at; null = the database's current time. */
  readonly asOfUs: number | null;
  readonly offlineAfterMs: number;
}

export interface StoredAgent {
  readonly agentId: string;
  readonly teamId: string;
  /** As stored (the status the events implied). */
  readonly reportedStatus: string;
  readonly effectiveStatus: string;
  readonly lastSeenUs: number;
  readonly statusAtUs: number | null;
  readonly meta: Record<string, unknown> | null;
  readonly lastErrorSummary: string;
}

export interface RegistryPage {
  readonly agents: StoredAgent[];
  readonly asOfUs: number;
}

interface RawAgent {
  as_of_us: string;
  agent_id: string | null;
  team_id: string;
  status: string;
  effective: string;
  last_seen_us: string;
  status_at_us: string | null;
  meta: string | null;
  last_error_summary: string | null;
}

/** One agent row as WatchRegistry reads it: meta as jsonb text (compared, parsed only when sent). */
export interface RegistryRow {
  readonly agentId: string;
  readonly teamId: string;
  readonly reportedStatus: string;
  readonly lastSeenUs: number;
  readonly statusAtUs: number | null;
  readonly metaText: string | null;
  readonly lastErrorSummary: string;
  /** The revision of the commit that last wrote the row (migration 005). */
  readonly rev: number;
}

export interface RegistryRead {
  readonly rows: RegistryRow[];
  /** The greatest rev the read's snapshot holds (loadAll), or of the rows read (changedSince). */
  readonly head: number;
  /** The database's clock when the statement ran, µs. */
  readonly nowUs: number;
}

interface RawRegistryRow {
  now_us: string;
  head: string | null;
  agent_id: string | null;
  team_id: string;
  status: string;
  last_seen_us: string;
  status_at_us: string | null;
  meta: string | null;
  last_error_summary: string | null;
  rev: string;
}

const ROW_COLUMNS = `g.agent_id, g.team_id, g.status, (extract(epoch FROM g.last_seen) * 1000000)::bigint::text AS last_seen_us,
  (extract(epoch FROM g.status_at) * 1000000)::bigint::text AS status_at_us, g.meta::text AS meta, g.last_error_summary, g.rev::text AS rev`;
const NOW_US = `(extract(epoch FROM statement_timestamp()) * 1000000)::bigint::text`;

function toRegistryRead(raw: RawRegistryRow[], afterRev: number): RegistryRead {
  const rows: RegistryRow[] = [];
  let head = afterRev;
  for (const r of raw) {
    if (r.head !== null) head = Math.max(head, Number(r.head));
    if (r.agent_id === null) continue;
    const rev = Number(r.rev);
    if (rev > head) head = rev;
    rows.push({
      agentId: r.agent_id,
      teamId: r.team_id,
      reportedStatus: r.status,
      lastSeenUs: Number(r.last_seen_us),
      statusAtUs: r.status_at_us === null ? null : Number(r.status_at_us),
      metaText: r.meta,
      lastErrorSummary: r.last_error_summary ?? '',
      rev,
    });
  }
  return { rows, head, nowUs: Number(raw[0]?.now_us ?? 0) };
}

export class RegistryReader {
  constructor(private readonly db: PoolHolder) {}

  async page(q: RegistryPageQuery, signal?: AbortSignal): Promise<RegistryPage> {
    // The LEFT JOIN keeps one row (with NULL agent) when nothing matches, so as_of is always returned.
    const rows = await cancellableQuery<RawAgent>(
      this.db,
      `WITH a AS (
         SELECT coalesce(TIMESTAMPTZ 'epoch' + $4::bigint * INTERVAL '1 microsecond', statement_timestamp()) AS as_of
       )
       SELECT (extract(epoch FROM a.as_of) * 1000000)::bigint::text AS as_of_us,
              r.agent_id, r.team_id, r.status, r.effective, r.last_seen_us, r.status_at_us, r.meta, r.last_error_summary
         FROM a
         LEFT JOIN LATERAL (
           SELECT agent_id, team_id, status, effective, last_seen_us, status_at_us, meta, last_error_summary
             FROM (
               SELECT g.agent_id, g.team_id, g.status,
                      CASE WHEN a.as_of - g.last_seen > $5::bigint * INTERVAL '1 millisecond' THEN 'OFFLINE' ELSE g.status END AS effective,
                      (extract(epoch FROM g.last_seen) * 1000000)::bigint::text AS last_seen_us,
                      (extract(epoch FROM g.status_at) * 1000000)::bigint::text AS status_at_us,
                      g.meta::text AS meta, g.last_error_summary
                 FROM agent_registry g
                WHERE ($1::text[] IS NULL OR g.team_id = ANY($1::text[]))
                  AND g.agent_id > $3::text
             ) e
            WHERE ($2::text[] IS NULL OR e.effective = ANY($2::text[]))
            ORDER BY e.agent_id ASC
            LIMIT $6
         ) r ON true
        ORDER BY r.agent_id ASC`,
      [
        q.teamIds.length === 0 ? null : [...q.teamIds],
        q.statuses.length === 0 ? null : [...q.statuses],
        q.afterAgentId,
        q.asOfUs,
        q.offlineAfterMs,
        q.limit,
      ],
      signal,
      'registry read',
    );
    const asOfUs = Number(rows[0]?.as_of_us ?? 0);
    const agents: StoredAgent[] = [];
    for (const r of rows) {
      if (r.agent_id === null) continue;
      agents.push({
        agentId: r.agent_id,
        teamId: r.team_id,
        reportedStatus: r.status,
        effectiveStatus: r.effective,
        lastSeenUs: Number(r.last_seen_us),
        statusAtUs: r.status_at_us === null ? null : Number(r.status_at_us),
        meta: r.meta === null ? null : (JSON.parse(r.meta) as Record<string, unknown>),
        lastErrorSummary: r.last_error_summary ?? '',
      });
    }
    return { agents, asOfUs };
  }

  /**
   * The whole registry and the greatest rev in the same snapshot (one statement), so reading
   * changedSince(head) afterwards misses nothing and repeats nothing.
   */
  async loadAll(signal?: AbortSignal): Promise<RegistryRead> {
    const raw = await cancellableQuery<RawRegistryRow>(
      this.db,
      `SELECT ${NOW_US} AS now_us, (SELECT coalesce(max(rev), 0) FROM agent_registry)::text AS head, ${ROW_COLUMNS}
         FROM (SELECT 1) one LEFT JOIN agent_registry g ON true`,
      [],
      signal,
      'registry load',
    );
    return toRegistryRead(raw, 0);
  }

  /**
   * Agents written by commits after revision `afterRev`, ascending by rev, at most `limit`. Commits
   * take revisions under the commit lock, so a later call with the returned head misses no commit.
   */
  async changedSince(afterRev: number, limit: number, signal?: AbortSignal): Promise<RegistryRead> {
    const raw = await cancellableQuery<RawRegistryRow>(
      this.db,
      `SELECT ${NOW_US} AS now_us, NULL::text AS head, r.*
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (
           SELECT ${ROW_COLUMNS} FROM agent_registry g WHERE g.rev > $1::bigint ORDER BY g.rev LIMIT $2
         ) r ON true
        ORDER BY r.rev::bigint`,
      [afterRev, limit],
      signal,
      'registry changes',
    );
    return toRegistryRead(raw, afterRev);
  }
}
