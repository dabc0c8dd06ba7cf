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
}
