// `mycelis-memory search "<query>"`: full-text search of the log (SearchLogs). One line per hit: event
// time, level, agent, team, the highlighted snippet and the trace id (for `trace`). Follows pages up to
// --limit hits and says how to continue (--page-token).
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { toJsonString } from '@bufbuild/protobuf';
import { SearchHitSchema, SearchLogsRequest_Order, type SearchHit } from '../../web/gen/mycelis/memory/v1/memory_pb.js';
import { intFlag, parseFlags, stringFlag } from './args.js';
import { CLIENT_FLAG_OPTIONS, CLIENT_FLAGS_HELP, clientFailure, clientOptions, createMemoryClient } from './client.js';
import { UsageError, type CliIo, type Command } from './command.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { isoTime, LEVEL_STYLE, oneLine, painter, useColour, type Paint } from './terminal.js';

const LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

export const searchCommand: Command = {
  name: 'search',
  summary: 'full-text search of the log (SearchLogs): words, "phrases", -exclusions, or',
  usage: `Usage: mycelis-memory search "<query>" [flags]

Searches the messages and the contexts' string values of the whole log. The query: words (all must
occur; case-insensitive, no stemming), "quoted phrases", -word or -"phrase" to exclude, \`or\` between
terms. Example: mycelis-memory search '"permission denied" -publickey' --team ops --since 2h
Prints one line per hit, newest first (or by rank with --relevance): time, level, agent, [team], the
snippet with the matched words highlighted, the trace id (see \`mycelis-memory trace\`).

Filters (repeatable; values of one flag are alternatives, different flags all apply):
      --agent ID           source agent id
      --team ID            team id
      --level L            DEBUG, INFO, WARN, ERROR or FATAL
      --intent I           intent (e.g. heartbeat, tool_call, text)
      --trace ID           trace id (one)
      --since T            event time from T: an ISO 8601 time, or an age such as 30m, 2h, 7d
      --until T            event time before T (same forms)

Results:
      --relevance          highest rank first, among the newest 10,000 matches (a phrase: those of
                           the newest rows that hold 1,000 or more)
      --limit N            print at most N hits, following pages (default 20, at most 100000)
      --page-token TOKEN   continue where an earlier search stopped (printed on stderr)
      --json               one JSON object per line: the SearchHit in proto3 JSON (record, snippet, rank)

${CLIENT_FLAGS_HELP}`,
  run: runSearch,
};

const AGE = /^(\d+(?:\.\d+)?)(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** An ISO 8601 time or an age ("30m", "2h", "7d") before `nowMs`, as ms since epoch. */
export function parseTimeFlag(cmd: Command, name: string, raw: string, nowMs: number): number {
  const age = AGE.exec(raw.trim());
  if (age) return nowMs - Number(age[1]) * UNIT_MS[age[2]!]!;
  const ms = Date.parse(raw);
  if (!/^\d{4}-\d{2}-\d{2}/.test(raw.trim()) || !Number.isFinite(ms)) {
    throw new UsageError(`--${name} must be an ISO 8601 time (2026-12-05T06:00:00Z) or an age (30m, 2h, 7d), got ${JSON.stringify(raw)}`, cmd);
  }
  return ms;
}

/** The snippet with «highlights» in bold (on a terminal), the markers kept otherwise. */
export function paintSnippet(snippet: string, paint: Paint, colour: boolean): string {
  const flat = oneLine(snippet);
  if (!colour) return flat;
  return flat.replace(/«([^»]*)»/g, (_m, word: string) => paint('bold', paint('yellow', word)));
}

export function formatHit(hit: SearchHit, paint: Paint, colour: boolean): string {
  const e = hit.record?.entry;
  const level = (e?.level || 'INFO').toUpperCase();
  const agent = e?.source || e?.agentId || 'unknown';
  const team = e?.teamId ? paint('dim', `[${e.teamId}]`) + ' ' : '';
  const trace = e?.traceId ? ' ' + paint('dim', `trace=${e.traceId}`) : '';
  return `${paint('dim', isoTime(e?.timestamp))} ${paint(LEVEL_STYLE[level] ?? 'green', level.padEnd(5))} ${paint('bold', oneLine(agent))} ${team}${paintSnippet(hit.snippet, paint, colour)}${trace}`;
}

async function runSearch(args: string[], io: CliIo): Promise<ExitCode> {
  const cmd = searchCommand;
  const { values, positionals } = parseFlags(
    cmd,
    args,
    {
      ...CLIENT_FLAG_OPTIONS,
      agent: { type: 'string', multiple: true },
      team: { type: 'string', multiple: true },
      level: { type: 'string', multiple: true },
      intent: { type: 'string', multiple: true },
      trace: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      relevance: { type: 'boolean' },
      limit: { type: 'string' },
      'page-token': { type: 'string' },
      json: { type: 'boolean' },
    },
    { positionals: true },
  );
  if (positionals.length !== 1 || positionals[0]!.trim() === '') throw new UsageError('give exactly one query (quote it: search "permission denied")', cmd);
  const query = positionals[0]!;
  const opts = clientOptions(cmd, values, io.env);
  const list = (name: string): string[] => {
    const v = (values as Record<string, unknown>)[name];
    return Array.isArray(v) ? v.map(String) : [];
  };
  const levels = list('level').map((l) => l.toUpperCase());
  for (const l of levels) {
    if (!LEVELS.includes(l)) throw new UsageError(`--level must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(l)}`, cmd);
  }
  const now = Date.now();
  const sinceRaw = stringFlag(values, 'since');
  const untilRaw = stringFlag(values, 'until');
  const since = sinceRaw === undefined ? undefined : timestampFromMs(parseTimeFlag(cmd, 'since', sinceRaw, now));
  const until = untilRaw === undefined ? undefined : timestampFromMs(parseTimeFlag(cmd, 'until', untilRaw, now));
  const limit = intFlag(cmd, values, 'limit', 20, 1, 100_000);
  const filter = { agentIds: list('agent'), teamIds: list('team'), levels, intents: list('intent'), traceId: stringFlag(values, 'trace') ?? '' };
  const order = values['relevance'] === true ? SearchLogsRequest_Order.RELEVANCE : SearchLogsRequest_Order.NEWEST;
  const json = values['json'] === true;
  const colour = !json && useColour(io.stdout, io.env);
  const paint = painter(colour);

  const handle = createMemoryClient(opts);
  let pageToken = stringFlag(values, 'page-token') ?? '';
  let printed = 0;
  try {
    do {
      const pageSize = Math.min(1000, limit - printed);
      const res = await handle.client.searchLogs({ query, filter, pageSize, pageToken, since, until, order }, { timeoutMs: 60_000 });
      for (const hit of res.hits) io.stdout.write((json ? toJsonString(SearchHitSchema, hit) : formatHit(hit, paint, colour)) + '\n');
      printed += res.hits.length;
      pageToken = res.nextPageToken;
    } while (pageToken !== '' && printed < limit);
    if (printed === 0) io.stderr.write('search: no matches\n');
    else if (pageToken !== '') io.stderr.write(`search: ${printed} hits shown; more with --page-token ${pageToken}\n`);
    return EXIT.OK;
  } catch (err) {
    throw clientFailure(err, opts, 'search');
  } finally {
    handle.close();
  }
}
