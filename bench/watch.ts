// The WatchRegistry phase of `npm run bench`: a registry of 10,000 agents kept alive by heartbeats,
// 1,000 watchers (some unfiltered, most on one team, every one with a snapshot), then 100 agents fall
// silent one after another. Measured: how long after last_seen + AGENT_OFFLINE_AFTER each watcher that
// should hear of it receives the OFFLINE change (target p99 <= 1 s), that no live agent is reported
// OFFLINE, how long the 1,000 snapshots took, and the service's CPU and RSS meanwhile.
import type { NatsConnection } from 'nats';
import type { MemoryServiceClient } from '../src/gen/mycelis/memory/v1/memory.js';
import { MessageType, MsgEnvelope } from '../src/gen/mycelis/swarm/v1/swarm.js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { WatchRegistryRequest, RegistryChange_Kind } from '../src/gen/mycelis/memory/v1/memory.js';
import { nowMs, sleep, summarize, until, type Summary } from './lib.js';

export interface WatchOptions {
  readonly agents: number;
  readonly watchers: number;
  readonly silent: number;
  readonly offlineAfterMs: number;
  readonly teams: number;
}

export interface WatchResult {
  agents: number;
  watchers: number;
  unfilteredWatchers: number;
  silentAgents: number;
  offlineAfterMs: number;
  /** From opening the watchers until every one had its snapshot and LIVE. */
  snapshotsMs: number;
  /** Receive time minus (last_seen + AGENT_OFFLINE_AFTER), per delivery of a silent agent's OFFLINE. */
  offlineDeliveryMs: Summary;
  deliveriesExpected: number;
  deliveriesReceived: number;
  /** OFFLINE changes received for agents that never went silent (must be 0). */
  falseOffline: number;
  heartbeatsPerSec: number;
}

/** What a watcher needs from a RegistryChange, read straight from the wire (no Struct decode). */
interface LightChange {
  kind: number;
  agentId: string;
  status: number;
  lastSeenMs: number;
}

function decodeLightChange(buf: Uint8Array): LightChange {
  const out: LightChange = { kind: 0, agentId: '', status: 0, lastSeenMs: 0 };
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 3 && wt === WireType.Varint) out.kind = r.int32();
    else if (no === 1 && wt === WireType.LengthDelimited) {
      const a = new BinaryReader(r.bytes());
      while (a.pos < a.len) {
        const [an, aw] = a.tag();
        if (an === 1 && aw === WireType.LengthDelimited) out.agentId = a.string();
        else if (an === 3 && aw === WireType.Varint) out.status = a.int32();
        else if (an === 5 && aw === WireType.LengthDelimited) {
          const t = new BinaryReader(a.bytes());
          let s = 0;
          let n = 0;
          while (t.pos < t.len) {
            const [tn, tw] = t.tag();
            if (tn === 1) s = Number(t.int64());
            else if (tn === 2) n = t.int32();
            else t.skip(tw, tn);
          }
          out.lastSeenMs = s * 1000 + n / 1e6;
        } else a.skip(aw, an);
      }
    } else r.skip(wt, no);
  }
  return out;
}

const agentId = (i: number): string => `watch-agent-${String(i).padStart(5, '0')}`;
const teamOf = (i: number, teams: number): string => `watch-team-${i % teams}`;

function heartbeat(i: number, teams: number, n: number): { subject: string; data: Uint8Array } {
  const id = agentId(i);
  const now = nowMs();
  const env: MsgEnvelope = {
    id: `hb-${id}-${n}`,
    timestamp: { seconds: String(Math.floor(now / 1000)), nanos: Math.floor((now % 1000) * 1e6) },
    sourceAgentId: id,
    type: MessageType.MESSAGE_TYPE_EVENT,
    payload: { $case: 'event', value: { eventType: 'heartbeat', streamId: 'main', data: { status: i % 5 === 0 ? 'BUSY' : 'IDLE', battery: 0.5 } } },
    traceId: '',
    spanId: '',
    teamId: teamOf(i, teams),
    swarmContext: undefined,
  };
  return { subject: `swarm.prod.agent.${id}.heartbeat`, data: MsgEnvelope.encode(env).finish() };
}

export async function watchPhase(
  nc: NatsConnection,
  clients: MemoryServiceClient[],
  o: WatchOptions,
  registryCount: () => Promise<number>,
  log: (m: string) => void,
): Promise<WatchResult> {
  // 1. Every agent heartbeats once; wait for the registry.
  let hbs = 0;
  for (let i = 0; i < o.agents; i++) {
    const m = heartbeat(i, o.teams, hbs++);
    nc.publish(m.subject, m.data);
    if (i % 2000 === 1999) await nc.flush();
  }
  await nc.flush();
  await until(async () => (await registryCount()) >= o.agents, 120_000, 100, 'every agent registered');

  // 2. Keep every agent alive (each heard from about 3 times per threshold) while the watchers connect.
  const silentFrom = o.agents - o.silent; // agents [silentFrom, agents) fall silent in step 4
  const silentAt = new Map<string, number>(); // agent -> when its last heartbeat was published
  let stopBeats = false;
  const beatEveryMs = o.offlineAfterMs / 3;
  // Paced by the clock, not by timer ticks: a busy bench process sends late heartbeats in bursts
  // rather than fewer of them (too few would let live agents go OFFLINE and measure the harness).
  const beater = (async () => {
    const start = nowMs();
    let sent = 0;
    while (!stopBeats) {
      const due = Math.floor(((nowMs() - start) / beatEveryMs) * o.agents);
      for (; sent < due; sent++) {
        const i = sent % o.agents;
        if (i >= silentFrom && silentAt.has(agentId(i))) continue;
        const m = heartbeat(i, o.teams, hbs++);
        nc.publish(m.subject, m.data);
      }
      await sleep(20);
    }
  })();

  // 3. The watchers: a tenth unfiltered, the rest one team each; all with a snapshot.
  const unfiltered = Math.max(1, Math.round(o.watchers / 10));
  const samples: number[] = [];
  let received = 0;
  let falseOffline = 0;
  let live = 0;
  const calls: { cancel(): void }[] = [];
  const opened = nowMs();
  let expected = 0;
  const watchersOfTeam = new Map<string, number>();
  for (let w = 0; w < o.watchers; w++) {
    const team = w < unfiltered ? null : teamOf(w, o.teams);
    if (team) watchersOfTeam.set(team, (watchersOfTeam.get(team) ?? 0) + 1);
    const client = clients[w % clients.length]!;
    const call = client.makeServerStreamRequest<WatchRegistryRequest, LightChange>(
      '/mycelis.memory.v1.MemoryService/WatchRegistry',
      (req) => Buffer.from(WatchRegistryRequest.encode(req).finish()),
      decodeLightChange,
      { teamIds: team ? [team] : [], statuses: [], snapshot: true },
    );
    call.on('data', (c: LightChange) => {
      if (c.kind === RegistryChange_Kind.KIND_LIVE) live++;
      if (c.kind !== RegistryChange_Kind.KIND_CHANGE || c.status !== 3 /* OFFLINE */) return;
      const at = nowMs();
      if (!silentAt.has(c.agentId)) {
        falseOffline++;
        return;
      }
      received++;
      samples.push(at - (c.lastSeenMs + o.offlineAfterMs));
    });
    call.on('error', () => undefined);
    calls.push(call);
  }
  await until(() => live >= o.watchers, 300_000, 50, 'every watcher to have its snapshot');
  const snapshotsMs = nowMs() - opened;
  log(`watch: ${o.watchers} watchers have their snapshot of ${o.agents} agents after ${Math.round(snapshotsMs)} ms`);

  // 4. Silence, one agent every 50 ms.
  for (let i = silentFrom; i < o.agents; i++) {
    const m = heartbeat(i, o.teams, hbs++);
    nc.publish(m.subject, m.data);
    silentAt.set(agentId(i), nowMs());
    expected += unfiltered + (watchersOfTeam.get(teamOf(i, o.teams)) ?? 0);
    await sleep(50);
  }
  const beatsStarted = nowMs();
  const beatsBefore = hbs;
  await until(() => received >= expected, o.offlineAfterMs + 60_000, 100, 'every OFFLINE delivered').catch((err: unknown) => log(String(err)));
  const heartbeatsPerSec = ((hbs - beatsBefore) * 1000) / (nowMs() - beatsStarted);
  stopBeats = true;
  await beater;
  for (const c of calls) c.cancel();
  return {
    agents: o.agents,
    watchers: o.watchers,
    unfilteredWatchers: unfiltered,
    silentAgents: o.silent,
    offlineAfterMs: o.offlineAfterMs,
    snapshotsMs,
    offlineDeliveryMs: summarize(samples),
    deliveriesExpected: expected,
    deliveriesReceived: received,
    falseOffline,
    heartbeatsPerSec,
  };
}
