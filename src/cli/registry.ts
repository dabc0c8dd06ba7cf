// `mycelis-memory registry`: the agent registry as a table, once (GetRegistry) or followed live
// (--watch: WatchRegistry, a snapshot then every change as the service sees it, OFFLINE included).
// Everything shown comes from the service: the effective status (OFFLINE after AGENT_OFFLINE_AFTER is
// the service's decision) and "12s ago" measured against the service's clock (the response's as_of,
// or the watch's latest observed_at plus the time since), so a skewed operator clock cannot make
// agents look fresher or staler than they are.
import { toJsonString, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import {
  AgentSchema,
  AgentStatus,
  RegistryChange_Kind as Kind,
  RegistryChangeSchema,
  type Agent,
  type RegistryChange,
} from '../../web/gen/mycelis/memory/v1/memory_pb.js';
import { numberFlag, parseFlags } from './args.js';
import { CLIENT_FLAG_OPTIONS, CLIENT_FLAGS_HELP, clientFailure, clientOptions, createMemoryClient, isTransient, sleep, type ClientHandle } from './client.js';
import { CliError, type CliIo, type Command, UsageError } from './command.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { describe } from './failure.js';
import { ago, oneLine, padEndVisible, painter, STATUS_STYLE, truncate, tsMs, useColour, type Paint } from './terminal.js';

const STATUS_NAMES = ['IDLE', 'BUSY', 'OFFLINE', 'ERROR'] as const;
const PAGE_SIZE = 1000;

export const registryCommand: Command = {
  name: 'registry',
  summary: 'show the agents of a running service and their status (GetRegistry)',
  usage: `Usage: mycelis-memory registry [flags]

Prints the agent registry as a table: agent, effective status (OFFLINE once silent past the
service's AGENT_OFFLINE_AFTER; the reported status in brackets when it differs), team, last seen
(by the service's clock), a summary of the agent's metadata, and its last error.

Flags:
      --team ID            only these teams (repeatable)
      --status S           only agents with this effective status: IDLE, BUSY, OFFLINE, ERROR (repeatable)
  -w, --watch              follow the registry live (WatchRegistry) until Ctrl-C: on a terminal the
                           table is redrawn as agents change, with the latest changes under it; in a
                           pipe the table is printed once, then one line per change
      --interval SECONDS   on a terminal, redraw at least this often for the "last seen" ages (default 2)
      --json               one JSON object per agent per line (the Agent in proto3 JSON); with --watch,
                           every RegistryChange message (snapshot pages, LIVE, CHANGE, RESET;
                           keepalives left out) in proto3 JSON, one per line

${CLIENT_FLAGS_HELP}`,
  run: runRegistry,
};

export const STATUS_LABEL: Readonly<Record<number, string>> = {
  [AgentStatus.IDLE]: 'IDLE',
  [AgentStatus.BUSY]: 'BUSY',
  [AgentStatus.OFFLINE]: 'OFFLINE',
  [AgentStatus.ERROR]: 'ERROR',
  [AgentStatus.UNSPECIFIED]: 'UNKNOWN',
};

/** "battery=0.82 location=dock-3 …": scalar values first-level only, objects as {…}. */
export function metaSummary(meta: JsonObject | undefined, width: number): string {
  if (!meta) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(meta)) parts.push(`${k}=${scalar(v)}`);
  return truncate(oneLine(parts.join(' ')), width);
}

function scalar(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${v.length}]`;
  if (typeof v === 'object') return '{…}';
  return String(v);
}

export interface RegistrySnapshot {
  readonly agents: Agent[];
  readonly asOfMs: number;
}

export async function fetchRegistry(handle: ClientHandle, teamIds: string[], statuses: AgentStatus[], signal: AbortSignal): Promise<RegistrySnapshot> {
  const agents: Agent[] = [];
  let pageToken = '';
  let asOfMs: number | undefined;
  do {
    const res = await handle.client.getRegistry({ teamIds, statuses, pageSize: PAGE_SIZE, pageToken }, { signal, timeoutMs: 30_000 });
    agents.push(...res.agents);
    // Later pages are computed as of the first page's time (the page token carries it).
    asOfMs ??= tsMs(res.asOf);
    pageToken = res.nextPageToken;
  } while (pageToken);
  return { agents, asOfMs: asOfMs ?? Date.now() };
}

export function renderTable(snap: RegistrySnapshot, paint: Paint, columns: number): string {
  const header = ['AGENT', 'STATUS', 'TEAM', 'LAST SEEN', 'META', 'LAST ERROR'];
  const rows = snap.agents.map((a) => {
    const eff = STATUS_LABEL[a.status] ?? 'UNKNOWN';
    const rep = STATUS_LABEL[a.reportedStatus] ?? 'UNKNOWN';
    const status = eff === rep || a.reportedStatus === AgentStatus.UNSPECIFIED ? eff : `${eff} (${rep})`;
    const seen = tsMs(a.lastSeen);
    return {
      eff,
      cells: [oneLine(a.agentId), status, oneLine(a.teamId), seen === undefined ? '-' : ago(seen, snap.asOfMs), metaSummary(a.meta, 40), ''],
      error: oneLine(a.lastErrorSummary),
    };
  });
  const widths = header.slice(0, 5).map((h, i) => Math.max(h.length, ...rows.map((r) => [...r.cells[i]!].length)));
  const used = widths.reduce((s, w) => s + w + 2, 0);
  const errWidth = Math.max(20, columns - used);
  const line = (cells: string[], styleFor?: (i: number, text: string) => string): string =>
    cells
      .map((c, i) => {
        const text = i < 5 ? padEndVisible(c, widths[i]!) : c;
        return styleFor ? styleFor(i, text) : text;
      })
      .join('  ')
      .trimEnd();
  const out = [paint('bold', line(header))];
  for (const r of rows) {
    const cells = [...r.cells.slice(0, 5), truncate(r.error, errWidth)];
    out.push(
      line(cells, (i, text) => {
        if (i === 1) return paint(STATUS_STYLE[r.eff] ?? 'bold', text);
        if (r.eff === 'OFFLINE') return paint('grey', text);
        if (i === 5) return paint('red', text);
        return text;
      }),
    );
  }
  const counts = STATUS_NAMES.map((s) => `${rows.filter((r) => r.eff === s).length} ${s.toLowerCase()}`).join(', ');
  out.push(paint('dim', `${rows.length} agents (${counts}) as of ${new Date(snap.asOfMs).toISOString()}`));
  return out.join('\n');
}

async function runRegistry(args: string[], io: CliIo): Promise<ExitCode> {
  const cmd = registryCommand;
  const { values } = parseFlags(cmd, args, {
    ...CLIENT_FLAG_OPTIONS,
    team: { type: 'string', multiple: true },
    status: { type: 'string', multiple: true },
    watch: { type: 'boolean', short: 'w' },
    interval: { type: 'string' },
    json: { type: 'boolean' },
  });
  const opts = clientOptions(cmd, values, io.env);
  const raw = values as Record<string, unknown>;
  const teamIds = Array.isArray(raw['team']) ? raw['team'].map(String) : [];
  const statuses = (Array.isArray(raw['status']) ? raw['status'].map(String) : []).map((s) => {
    const i = (STATUS_NAMES as readonly string[]).indexOf(s.toUpperCase());
    if (i < 0) throw new UsageError(`--status must be one of ${STATUS_NAMES.join(', ')}, got ${JSON.stringify(s)}`, cmd);
    return (AgentStatus as unknown as Record<string, AgentStatus>)[STATUS_NAMES[i]!]!;
  });
  const intervalS = numberFlag(cmd, values, 'interval', 2, 3600);
  if (intervalS < 0.2) throw new UsageError('--interval must be at least 0.2 seconds', cmd);
  const watch = values['watch'] === true;
  const json = values['json'] === true;
  const tty = (io.stdout as { isTTY?: boolean }).isTTY === true;
  const paint = painter(!json && useColour(io.stdout, io.env));
  const columns = (): number => (tty ? ((io.stdout as { columns?: number }).columns ?? 120) : 160);

  const handle = createMemoryClient(opts);
  const stop = new AbortController();
  const onSigint = (): void => stop.abort();
  process.once('SIGINT', onSigint);
  const print = (snap: RegistrySnapshot): void => {
    if (json) {
      for (const a of snap.agents) io.stdout.write(toJsonString(AgentSchema, a) + '\n');
      return;
    }
    io.stdout.write(renderTable(snap, paint, columns()) + '\n');
  };
  try {
    if (watch) return await watchRegistry({ handle, teamIds, statuses, json, tty, paint, columns, intervalS, io, signal: stop.signal });
    try {
      print(await fetchRegistry(handle, teamIds, statuses, stop.signal));
      return EXIT.OK;
    } catch (err) {
      if (stop.signal.aborted) return EXIT.INTERRUPTED;
      throw clientFailure(err, opts, 'registry');
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw clientFailure(err, opts, 'registry');
  } finally {
    process.removeListener('SIGINT', onSigint);
    handle.close();
  }
}

/** "12:00:01 agent-a IDLE -> OFFLINE (silent)", "… team a -> b", "… meta", "… new agent, BUSY". */
export function describeChange(c: RegistryChange, paint: Paint): string {
  const a = c.agent!;
  const at = tsMs(c.observedAt);
  const when = paint('dim', at === undefined ? '-' : new Date(at).toISOString());
  const status = STATUS_LABEL[a.status] ?? 'UNKNOWN';
  const what: string[] = [];
  if (c.previousStatus === AgentStatus.UNSPECIFIED) what.push(`new agent, ${paint(STATUS_STYLE[status] ?? 'bold', status)}`);
  else {
    if (c.changedFields.includes('status')) {
      what.push(`${STATUS_LABEL[c.previousStatus] ?? 'UNKNOWN'} -> ${paint(STATUS_STYLE[status] ?? 'bold', status)}`);
    } else if (c.changedFields.includes('reported_status')) {
      what.push(`reported ${STATUS_LABEL[a.reportedStatus] ?? 'UNKNOWN'}`);
    }
    if (c.changedFields.includes('team_id')) what.push(`team ${oneLine(c.previousTeamId) || '-'} -> ${oneLine(a.teamId)}`);
    if (c.changedFields.includes('meta')) what.push(`meta ${metaSummary(a.meta, 60)}`);
    if (c.changedFields.includes('last_error_summary')) what.push(paint('red', `error: ${truncate(oneLine(a.lastErrorSummary), 80)}`));
  }
  return `${when} ${paint('bold', oneLine(a.agentId))} ${what.join('; ')}`;
}

interface WatchOptions {
  readonly handle: ClientHandle;
  readonly teamIds: string[];
  readonly statuses: AgentStatus[];
  readonly json: boolean;
  readonly tty: boolean;
  readonly paint: Paint;
  readonly columns: () => number;
  readonly intervalS: number;
  readonly io: CliIo;
  readonly signal: AbortSignal;
}

const RECENT_CHANGES = 8;

/**
 * Follows WatchRegistry: the snapshot (pages until LIVE) becomes the table, each CHANGE updates it
 * (an agent that no longer matches the filters leaves it), RESET starts a fresh snapshot. Reconnects
 * with backoff when the connection drops or the service restarts, with a fresh snapshot each time.
 */
async function watchRegistry(o: WatchOptions): Promise<ExitCode> {
  const { handle, io, paint } = o;
  const teams = new Set(o.teamIds);
  const wanted = new Set(o.statuses);
  const matches = (a: Agent): boolean => (teams.size === 0 || teams.has(a.teamId)) && (wanted.size === 0 || wanted.has(a.status));
  let agents = new Map<string, Agent>();
  let pending: Map<string, Agent> | null = null;
  let serverMs = Date.now();
  let localMs = Date.now();
  const recent: string[] = [];
  let everConnected = false;
  let attempt = 0;
  let dirty = false;
  let lastDraw = 0;

  const snapshot = (): RegistrySnapshot => ({
    agents: [...agents.values()].sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0)),
    asOfMs: serverMs + (Date.now() - localMs),
  });
  const draw = (): void => {
    dirty = false;
    lastDraw = Date.now();
    const lines = [renderTable(snapshot(), paint, o.columns())];
    if (recent.length > 0) lines.push('', paint('bold', 'Latest changes'), ...recent);
    io.stdout.write('\x1b[H\x1b[2J' + lines.join('\n') + '\n');
  };
  // On a terminal: redraw when something changed (at most 4 times a second) and every --interval.
  const timer = o.tty && !o.json ? setInterval(() => {
    if (dirty || Date.now() - lastDraw >= o.intervalS * 1000) draw();
  }, 250) : undefined;

  try {
    for (;;) {
      try {
        for await (const m of handle.client.watchRegistry({ teamIds: o.teamIds, statuses: o.statuses, snapshot: true }, { signal: o.signal })) {
          if (!everConnected || attempt > 0) {
            if (everConnected) io.stderr.write(`registry: reconnected to ${handle.options.target}\n`);
            everConnected = true;
            attempt = 0;
          }
          const at = tsMs(m.observedAt);
          if (at !== undefined) {
            serverMs = at;
            localMs = Date.now();
          }
          if (o.json && m.kind !== Kind.KEEPALIVE) io.stdout.write(toJsonString(RegistryChangeSchema, m) + '\n');
          switch (m.kind) {
            case Kind.RESET:
              pending = new Map();
              break;
            case Kind.SNAPSHOT:
              pending ??= new Map();
              for (const a of m.snapshot) pending.set(a.agentId, a);
              break;
            case Kind.LIVE:
              if (pending) agents = pending;
              pending = null;
              if (!o.json) {
                if (o.tty) draw();
                else io.stdout.write(renderTable(snapshot(), paint, o.columns()) + '\n');
              }
              break;
            case Kind.CHANGE: {
              const a = m.agent;
              if (!a) break;
              if (matches(a)) agents.set(a.agentId, a);
              else agents.delete(a.agentId);
              if (o.json) break;
              const line = describeChange(m, paint);
              if (o.tty) {
                recent.unshift(line);
                recent.length = Math.min(recent.length, RECENT_CHANGES);
                dirty = true;
              } else io.stdout.write(line + '\n');
              break;
            }
            default:
              break;
          }
        }
        if (o.signal.aborted) return EXIT.INTERRUPTED;
        io.stderr.write(`registry: the service at ${handle.options.target} ended the watch; reconnecting\n`);
      } catch (err) {
        if (o.signal.aborted) return EXIT.INTERRUPTED;
        // The first connection decides the exit code; later, a restart or blip is shown and ridden out.
        if (!everConnected || !isTransient(err)) throw clientFailure(err, handle.options, 'registry');
        if (attempt === 0) io.stderr.write(`registry: connection to ${handle.options.target} lost (${describe(err)}); reconnecting\n`);
      }
      attempt++;
      pending = null;
      await sleep(Math.min(5000, 250 * 2 ** Math.min(attempt - 1, 5)) * (0.5 + Math.random() / 2), o.signal);
      if (o.signal.aborted) return EXIT.INTERRUPTED;
    }
  } finally {
    if (timer) clearInterval(timer);
  }
}
