// GetRegistry: keyset pages of the registry by agent id, filtered by team and effective status, all
// computed against one as_of instant (carried by the page token to later pages).
import { usToTimestamp } from '../../domain/time.js';
import { AgentStatus, type Agent, type GetRegistryResponse } from '../../gen/mycelis/memory/v1/memory.js';
import type { RegistryReader } from '../../store/registry-reader.js';
import { encodePageToken } from '../cursor.js';
import type { ValidGetRegistry } from '../validate.js';

export const STATUS_TO_PROTO: Readonly<Record<string, AgentStatus>> = {
  IDLE: AgentStatus.AGENT_STATUS_IDLE,
  BUSY: AgentStatus.AGENT_STATUS_BUSY,
  OFFLINE: AgentStatus.AGENT_STATUS_OFFLINE,
  ERROR: AgentStatus.AGENT_STATUS_ERROR,
};

export function statusToProto(name: string): AgentStatus {
  return STATUS_TO_PROTO[name] ?? AgentStatus.AGENT_STATUS_UNSPECIFIED;
}

export async function getRegistry(reader: RegistryReader, v: ValidGetRegistry, offlineAfterMs: number, signal: AbortSignal): Promise<GetRegistryResponse> {
  const page = await reader.page(
    {
      teamIds: v.teamIds,
      statuses: v.statuses,
      afterAgentId: v.afterAgentId,
      limit: v.pageSize + 1,
      asOfUs: v.asOfUs,
      offlineAfterMs,
    },
    signal,
  );
  const more = page.agents.length > v.pageSize;
  const agents = more ? page.agents.slice(0, v.pageSize) : page.agents;
  const out: Agent[] = agents.map((a) => ({
    agentId: a.agentId,
    teamId: a.teamId,
    status: statusToProto(a.effectiveStatus),
    reportedStatus: statusToProto(a.reportedStatus),
    lastSeen: usToTimestamp(a.lastSeenUs),
    meta: a.meta ?? undefined,
    lastErrorSummary: a.lastErrorSummary,
    statusAt: a.statusAtUs === null ? undefined : usToTimestamp(a.statusAtUs),
  }));
  const last = agents[agents.length - 1];
  return {
    agents: out,
    nextPageToken: more && last ? encodePageToken('registry', v.hash, { a: last.agentId, t: page.asOfUs }) : '',
    asOf: usToTimestamp(page.asOfUs),
  };
}
