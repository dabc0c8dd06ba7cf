// `mycelis-memory trace <trace-id>`: one workflow across agents (GetTrace) as a timeline. One line per
// record in event-time order, with its offset from the trace's start, the time since the same agent's
// previous record, and one lane per agent: ● where the agent acts, │ while it is between its first and
// last record, so who handed over to whom reads top to bottom.
import { toJsonString } from '@bufbuild/protobuf';
import { GetTraceResponseSchema, type GetTraceResponse } from '../../web/gen/mycelis/memory/v1/memory_pb.js';
import { parseFlags } from './args.js';
import { CLIENT_FLAG_OPTIONS, CLIENT_FLAGS_HELP, clientFailure, clientOptions, createMemoryClient } from './client.js';
import { UsageError, type CliIo, type Command } from './command.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { LEVEL_STYLE, oneLine, padEndVisible, painter, truncate, tsMs, useColour, type Paint } from './terminal.js';

/** Agents that get a lane of their own; the rest share the last one. */
export const MAX_LANES = 12;

export const traceCommand: Command = {
  name: 'trace',
  summary: 'show one workflow across agents as a timeline (GetTrace)',
  usage: `Usage: mycelis-memory trace <trace-id> [flags]

Prints every record with this trace id in event-time order (the workflow as it happened, not as it
was committed), as a timeline: the offset from the trace's first record, the time since the same
agent's previous record, one lane per agent (● this record's agent, │ an agent between its first and
last record), level, agent and message. Above it, each agent with its records, errors and span.
At most 10,000 records (about 3 MiB) come back; the header says when the trace has more.

Flags:
      --json               the GetTraceResponse in proto3 JSON (one object)

${CLIENT_FLAGS_HELP}`,
  run: runTrace,
};

/** "0ms", "850ms", "12.4s", "3m05s", "2h04m". */
export function duration(ms: number): string {
  if (ms < 0) return `-${duration(-ms)}`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

export function renderTimeline(res: GetTraceResponse, paint: Paint, columns: number): string {
  const start = tsMs(res.startedAt) ?? 0;
  const end = tsMs(res.endedAt) ?? start;
  const out: string[] = [];
  const shown = res.records.length;
  out.push(
    paint('bold', `trace ${oneLine(res.traceId)}`) +
      `: ${res.totalRecords} record${res.totalRecords === 1 ? '' : 's'}, ${res.agents.length} agent${res.agents.length === 1 ? '' : 's'}, ${duration(end - start)}` +
      paint('dim', ` (${new Date(start).toISOString()} to ${new Date(end).toISOString()})`),
  );
  if (res.truncated) out.push(paint('yellow', `showing the first ${shown} records by event time (the trace has ${res.totalRecords})`));
  out.push('');

  // The agents, one lane each (in order of first appearance).
  const lanes = Math.min(res.agents.length, MAX_LANES);
  const laneOf = new Map<string, number>();
  res.agents.forEach((a, i) => laneOf.set(a.agentId, Math.min(i, MAX_LANES - 1)));
  const nameW = Math.min(24, Math.max(5, ...res.agents.map((a) => [...oneLine(a.agentId)].length)));
  const teamW = Math.min(20, Math.max(4, ...res.agents.map((a) => [...oneLine(a.teamId)].length)));
  out.push(paint('bold', `${'LANE'.padEnd(5)}${'AGENT'.padEnd(nameW + 2)}${'TEAM'.padEnd(teamW + 2)}${'RECORDS'.padStart(7)}  ${'ERRORS'.padStart(6)}  SPAN`));
  res.agents.forEach((a, i) => {
    const first = tsMs(a.firstAt) ?? start;
    const last = tsMs(a.lastAt) ?? first;
    const lane = i < MAX_LANES - 1 || res.agents.length === MAX_LANES ? String(i + 1) : `${MAX_LANES}+`;
    const errors = a.errors > 0 ? paint('red', String(a.errors).padStart(6)) : String(a.errors).padStart(6);
    out.push(
      `${lane.padEnd(5)}${padEndVisible(truncate(oneLine(a.agentId), nameW), nameW + 2)}${padEndVisible(truncate(oneLine(a.teamId), teamW), teamW + 2)}${String(a.records).padStart(7)}  ${errors}  ` +
        `${duration(last - first)}${paint('dim', ` from +${duration(first - start)}`)}`,
    );
  });
  out.push('');

  // The timeline. An agent's lane is "active" between its first and last record (of the whole trace).
  const span = res.agents.slice(0, lanes).map((a) => [tsMs(a.firstAt) ?? start, tsMs(a.lastAt) ?? end] as const);
  const offW = Math.max(7, duration(end - start).length + 1);
  const laneW = lanes * 2;
  const fixed = offW + 2 + 8 + 2 + laneW + 1 + 5 + 1 + nameW + 2;
  const msgW = Math.max(20, columns - fixed);
  out.push(paint('bold', `${'+OFFSET'.padStart(offW)}  ${'+AGENT'.padStart(8)}  ${[...Array(lanes).keys()].map((i) => String((i + 1) % 10)).join(' ').padEnd(laneW)} LEVEL ${'AGENT'.padEnd(nameW + 2)}MESSAGE`));
  const previous = new Map<string, number>();
  for (const rec of res.records) {
    const e = rec.entry;
    const agent = e?.source || e?.agentId || 'unknown';
    const at = tsMs(e?.timestamp) ?? start;
    const level = (e?.level || 'INFO').toUpperCase();
    const style = LEVEL_STYLE[level] ?? 'green';
    const prev = previous.get(agent);
    previous.set(agent, at);
    const lane = laneOf.get(agent) ?? lanes - 1;
    const cells: string[] = [];
    for (let i = 0; i < lanes; i++) {
      if (i === lane) cells.push(paint(style, '●'));
      else cells.push(at >= span[i]![0] && at <= span[i]![1] ? paint('dim', '│') : ' ');
    }
    const intent = e?.intent ?? '';
    const message = oneLine(e?.message ?? '');
    const body = message && message !== intent ? `${intent}: ${message}` : intent;
    out.push(
      `${`+${duration(at - start)}`.padStart(offW)}  ${(prev === undefined ? '-' : `+${duration(at - prev)}`).padStart(8)}  ${cells.join(' ')}${' '.repeat(Math.max(0, laneW - lanes * 2))} ` +
        `${paint(style, level.padEnd(5))} ${paint('bold', padEndVisible(truncate(oneLine(agent), nameW), nameW + 2))}${truncate(oneLine(body), msgW)}`,
    );
  }
  return out.join('\n');
}

async function runTrace(args: string[], io: CliIo): Promise<ExitCode> {
  const cmd = traceCommand;
  const { values, positionals } = parseFlags(cmd, args, { ...CLIENT_FLAG_OPTIONS, json: { type: 'boolean' } }, { positionals: true });
  if (positionals.length !== 1 || positionals[0] === '') throw new UsageError('give exactly one trace id', cmd);
  const traceId = positionals[0]!;
  const opts = clientOptions(cmd, values, io.env);
  const json = values['json'] === true;
  const handle = createMemoryClient(opts);
  try {
    const res = await handle.client.getTrace({ traceId }, { timeoutMs: 60_000 });
    if (json) io.stdout.write(toJsonString(GetTraceResponseSchema, res) + '\n');
    else {
      const tty = (io.stdout as { isTTY?: boolean }).isTTY === true;
      const columns = tty ? ((io.stdout as { columns?: number }).columns ?? 120) : 160;
      io.stdout.write(renderTimeline(res, painter(useColour(io.stdout, io.env)), columns) + '\n');
    }
    return EXIT.OK;
  } catch (err) {
    throw clientFailure(err, opts, 'trace');
  } finally {
    handle.close();
  }
}
