// `mycelis-memory registry`: the agent registry (GetRegistry) as a table, once or refreshed (--watch).
// Everything shown comes from the service: the effective status (OFFLINE after AGENT_OFFLINE_AFTER is
// the service's decision) and "12s ago" measured against the response's as_of, the service's clock,
// so a skewed operator clock cannot make agents look fresher or staler than they are.
import { toJsonString, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import { AgentSchema, AgentStatus, type Agent } from '../../web/gen/mycelis/memory/v1/memory_pb.js';
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
  -w, --watch              redraw every --interval seconds until Ctrl-C
      --interval SECONDS   refresh period for --watch (default 2)
      --json               one JSON object per agent per line (the Agent in proto3 JSON)

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
    const table = renderTable(snap, paint, columns());
    // On a terminal, redraw in place; in a pipe, append each refresh after a blank line.
    if (watch && tty) io.stdout.write('\x1b[H\x1b[2J' + table + '\n');
    else io.stdout.write(table + (watch ? '\n\n' : '\n'));
  };
  try {
    let first = true;
    for (;;) {
      try {
        print(await fetchRegistry(handle, teamIds, statuses, stop.signal));
      } catch (err) {
        if (stop.signal.aborted) return EXIT.INTERRUPTED;
        // The first fetch decides the exit code; while watching, a restart or blip is shown and ridden out.
        if (first || !watch || !isTransient(err)) throw clientFailure(err, opts, 'registry');
        io.stderr.write(`registry: cannot reach ${opts.target} (${describe(err)}); retrying\n`);
      }
      first = false;
      if (!watch) return EXIT.OK;
      await sleep(intervalS * 1000, stop.signal);
      if (stop.signal.aborted) return EXIT.INTERRUPTED;
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw clientFailure(err, opts, 'registry');
  } finally {
    process.removeListener('SIGINT', onSigint);
    handle.close();
  }
}
