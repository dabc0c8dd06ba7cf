// `mycelis-memory tail`: the live log (StreamLogs) in a terminal or a pipe.
// Invariant: across reconnects no record is printed twice and none is skipped. The service sends a
// cursor with every response (keepalives too, and a final one when it shuts down); after a lost
// connection or a server-side end we reconnect with `after_cursor` = the last cursor received, which
// the service answers with every record committed after it (DESIGN 6). As a second guard, a record
// whose seq is not above the last printed one is dropped (records arrive in seq order).
import { toJsonString, type MessageInitShape } from '@bufbuild/protobuf';
import { LogRecordSchema, type LogRecord, type StreamLogsRequestSchema } from '../../web/gen/mycelis/memory/v1/memory_pb.js';
import { intFlag, parseFlags, stringFlag } from './args.js';
import { CLIENT_FLAG_OPTIONS, CLIENT_FLAGS_HELP, clientFailure, clientOptions, createMemoryClient, isTransient, sleep } from './client.js';
import type { CliIo, Command } from './command.js';
import { UsageError } from './command.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { describe } from './failure.js';
import { isoTime, LEVEL_STYLE, oneLine, painter, useColour, type Paint } from './terminal.js';

const LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const BACKOFF_START_MS = 250;
const BACKOFF_MAX_MS = 5000;

export const tailCommand: Command = {
  name: 'tail',
  summary: 'follow the live log of a running service (StreamLogs), resuming across restarts',
  usage: `Usage: mycelis-memory tail [flags]

Follows the log of a running service live, in commit order. Starts live (only new records) unless
--tail or --after is given. When the connection drops or the service restarts, reconnects with
backoff and resumes from the last cursor: no record is lost or printed twice. Ctrl-C stops and prints
the cursor to resume from (exit 130).

Filters (repeatable; values of one flag are alternatives, different flags all apply):
      --agent ID           source agent id
      --team ID            team id
      --level L            DEBUG, INFO, WARN, ERROR or FATAL
      --intent I           intent (e.g. heartbeat, tool_call, text)
      --trace ID           trace id (one)

Start:
      --tail N             begin with the last N matching records (at most 10000)
      --after CURSOR       begin after this cursor (printed by --json output and on Ctrl-C)
      --max N              exit 0 after printing N records

Output:
      --json               one JSON object per line: the LogRecord in proto3 JSON (id, cursor, seq,
                           entry{timestamp, level, agentId, teamId, intent, message, contextSnapshot, ...},
                           subject, ingestedAt)
      Text lines are coloured by level on a terminal (not when piped, not with NO_COLOR set).

${CLIENT_FLAGS_HELP}`,
  run: runTail,
};

export function formatRecordLine(rec: LogRecord, paint: Paint): string {
  const e = rec.entry;
  const level = (e?.level || 'INFO').toUpperCase();
  const agent = e?.source || e?.agentId || 'unknown';
  const team = e?.teamId ? paint('dim', `[${e.teamId}]`) + ' ' : '';
  const intent = e?.intent ?? '';
  const message = oneLine(e?.message ?? '');
  const trace = e?.traceId ? ' ' + paint('dim', `trace=${e.traceId}`) : '';
  const body = message && message !== intent ? `${intent}: ${message}` : intent;
  return `${paint('dim', isoTime(e?.timestamp))} ${paint(LEVEL_STYLE[level] ?? 'green', level.padEnd(5))} ${paint('bold', oneLine(agent))} ${team}${oneLine(body)}${trace}`;
}

async function runTail(args: string[], io: CliIo): Promise<ExitCode> {
  const cmd = tailCommand;
  const { values } = parseFlags(cmd, args, {
    ...CLIENT_FLAG_OPTIONS,
    agent: { type: 'string', multiple: true },
    team: { type: 'string', multiple: true },
    level: { type: 'string', multiple: true },
    intent: { type: 'string', multiple: true },
    trace: { type: 'string' },
    tail: { type: 'string' },
    after: { type: 'string' },
    max: { type: 'string' },
    json: { type: 'boolean' },
  });
  const opts = clientOptions(cmd, values, io.env);
  const list = (name: string): string[] => {
    const v = (values as Record<string, unknown>)[name];
    return Array.isArray(v) ? v.map(String) : [];
  };
  const levels = list('level').map((l) => l.toUpperCase());
  for (const l of levels) {
    if (!LEVELS.includes(l)) throw new UsageError(`--level must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(l)}`, cmd);
  }
  const tail = intFlag(cmd, values, 'tail', 0, 0, 10_000);
  const max = intFlag(cmd, values, 'max', 0, 0, Number.MAX_SAFE_INTEGER);
  const after = stringFlag(values, 'after');
  if (after !== undefined && tail > 0) throw new UsageError('--tail and --after exclude each other', cmd);
  if (after === '') throw new UsageError('--after needs a cursor', cmd);
  const filter = { agentIds: list('agent'), teamIds: list('team'), levels, intents: list('intent'), traceId: stringFlag(values, 'trace') ?? '' };
  const json = values['json'] === true;
  const paint = painter(!json && useColour(io.stdout, io.env));

  const handle = createMemoryClient(opts);
  const stop = new AbortController();
  const onSigint = (): void => stop.abort();
  process.once('SIGINT', onSigint);

  let cursor = after;
  let lastSeq = -1n;
  let printed = 0;
  let everConnected = false;
  let attempt = 0;
  try {
    for (;;) {
      const req: MessageInitShape<typeof StreamLogsRequestSchema> = cursor
        ? { filter, afterCursor: cursor }
        : { filter, tail: everConnected ? 0 : tail };
      let reconnected = false;
      try {
        for await (const res of handle.client.streamLogs(req, { signal: stop.signal })) {
          if (!reconnected) {
            reconnected = true;
            if (everConnected && attempt > 0) io.stderr.write(`tail: reconnected to ${opts.target}, resuming after ${cursor ?? 'the start'}\n`);
            everConnected = true;
            attempt = 0;
          }
          for (const rec of res.records) {
            if (rec.seq <= lastSeq) continue;
            lastSeq = rec.seq;
            io.stdout.write((json ? toJsonString(LogRecordSchema, rec) : formatRecordLine(rec, paint)) + '\n');
            printed++;
            if (max > 0 && printed >= max) {
              cursor = rec.cursor;
              return EXIT.OK;
            }
          }
          if (res.cursor) cursor = res.cursor;
        }
        // The service ended the stream (it is shutting down, with our cursor): follow it to its
        // restart or to another replica.
        if (stop.signal.aborted) return EXIT.INTERRUPTED;
        if (attempt === 0) io.stderr.write(`tail: the service at ${opts.target} ended the stream; reconnecting\n`);
      } catch (err) {
        if (stop.signal.aborted) return EXIT.INTERRUPTED;
        // Before the first successful connection, fail fast with a clear exit code (3, 4, 64).
        if (!everConnected || !isTransient(err)) throw clientFailure(err, opts, 'tail');
        // Once when the connection is lost, then every 10th failed attempt, not a line per retry.
        if (attempt === 0) io.stderr.write(`tail: connection to ${opts.target} lost (${describe(err)}); reconnecting\n`);
        else if (attempt % 10 === 0) io.stderr.write(`tail: still reconnecting to ${opts.target} (${describe(err)})\n`);
      }
      attempt++;
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** Math.min(attempt - 1, 10)) * (0.5 + Math.random() / 2);
      await sleep(delay, stop.signal);
      if (stop.signal.aborted) return EXIT.INTERRUPTED;
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    handle.close();
    if (stop.signal.aborted) {
      io.stderr.write(`\ntail: stopped after ${printed} records${cursor ? `; resume with --after ${cursor}` : ''}\n`);
    }
  }
}
