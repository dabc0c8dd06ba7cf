// `mycelis-memory dead-letters list|replay`: the operator's view of ingest_rejects (DESIGN 4).
// Replay republishes each dead letter's raw payload with its original subject and headers to NATS, so
// it goes through the normal ingest path again (a replay of a still-invalid message becomes a new
// dead letter; a replay of a message whose row already exists is deduplicated by its id). A dead letter
// is marked replayed_at only after NATS has acknowledged the flush of its page: a failure part-way
// leaves the rest unmarked, so running the command again continues where it stopped.
import { pino } from 'pino';
import { connect, headers as natsHeaders, type NatsConnection } from 'nats';
import { createLogger } from '../logger.js';
import { natsOptions } from '../ingest/nats-connection.js';
import { intFlag, parseFlags, stringFlag } from './args.js';
import { CliError, type CliIo, type Command, UsageError } from './command.js';
import { loadCliConfig } from './config-errors.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { describe, exitCodeFor } from './failure.js';
import { oneLine, truncate } from './terminal.js';
import type { DeadLetter, DeadLetterFilter } from '../store/dead-letters.js';
import { formatReplayOf, REPLAY_HEADER } from '../domain/normalize.js';

const PAGE = 500;
const REASONS = ['decode_error', 'invalid_json', 'no_payload', 'empty_log_entry', 'too_large', 'too_deep', 'missing_field', 'invalid_field', 'db_rejected'];

const FILTER_HELP = `Filters (combined with AND):
      --reason R           only this reason (repeatable): ${REASONS.join(', ')}
      --subject PATTERN    NATS subject pattern (* one token, > the rest), e.g. swarm.agent.*.output
      --id N               only this dead letter (repeatable)
      --since TIME         received at or after TIME: RFC 3339 (2026-01-02T15:04:05Z) or an age (90s, 15m, 12h, 7d)
      --until TIME         received before TIME (same forms)`;

export const deadLettersCommand: Command = {
  name: 'dead-letters',
  summary: 'list dead letters (invalid messages) or replay them through ingest',
  usage: `Usage: mycelis-memory dead-letters list [flags]
       mycelis-memory dead-letters replay [flags]

Dead letters are messages ingest could not store (undecodable, invalid, or rejected by PostgreSQL),
kept with their raw bytes, subject, headers and reason for DEAD_LETTER_RETENTION (default 7 days).
Reads the database configured by DATABASE_URL or DB_* (like the service).

list     prints them oldest first: id, received time, reason, subject, size, detail, replayed time.
replay   republishes each raw payload with its original subject and headers to NATS (NATS_URL and
         NATS_* credentials, or --server), where the normal ingest path takes it again, then marks it
         replayed. Only dead letters never replayed before, unless --again. Prints a summary on stderr.
         Each message also carries a ${REPLAY_HEADER} header naming the dead letter (and its stream
         sequence and first receive time): a message without an id or timestamp of its own is then
         stored once however often it is replayed, at the time it was first received.

${FILTER_HELP}
      --replayed           list: only dead letters already replayed
      --not-replayed       list: only dead letters never replayed
      --again              replay: include dead letters already replayed
  -n, --limit N            at most N (list default 100, replay default: all matching)
      --json               list: one JSON object per line (payload base64)
      --dry-run            replay: print what would be replayed, publish nothing
      --server URL         replay: NATS server (default $NATS_URL)`,
  run: runDeadLetters,
};

function parseTime(cmd: Command, name: string, raw: string | undefined, nowMs: number): number | undefined {
  if (raw === undefined) return undefined;
  const age = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(raw.trim());
  if (age) {
    const unit: Record<string, number> = { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8 };
    return nowMs - Number(age[1]) * unit[age[2]!]!;
  }
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(raw.trim())) {
    const t = Date.parse(raw.trim());
    if (Number.isFinite(t)) return t;
  }
  throw new UsageError(`--${name} must be an RFC 3339 time (2026-01-02T15:04:05Z) or an age such as 15m or 7d, got ${JSON.stringify(raw)}`, cmd);
}

function toJson(d: DeadLetter): Record<string, unknown> {
  return {
    id: d.id,
    receivedAt: d.receivedAt.toISOString(),
    subject: d.subject,
    headers: d.headers,
    reason: d.reason,
    detail: d.detail,
    sqlstate: d.sqlstate,
    streamSeq: d.streamSeq,
    replayedAt: d.replayedAt ? d.replayedAt.toISOString() : null,
    size: d.payload.length,
    payloadBase64: d.payload.toString('base64'),
  };
}

function tableLine(d: DeadLetter): string {
  return [
    d.id.padStart(8),
    d.receivedAt.toISOString(),
    d.reason.padEnd(15),
    truncate(oneLine(d.subject), 48).padEnd(48),
    `${d.payload.length}B`.padStart(9),
    truncate(oneLine(d.sqlstate ? `[${d.sqlstate}] ${d.detail}` : d.detail), 60),
    d.replayedAt ? `replayed ${d.replayedAt.toISOString()}` : '',
  ]
    .join('  ')
    .trimEnd();
}

async function runDeadLetters(args: string[], io: CliIo): Promise<ExitCode> {
  const cmd = deadLettersCommand;
  const { values, positionals } = parseFlags(
    cmd,
    args,
    {
      reason: { type: 'string', multiple: true },
      subject: { type: 'string' },
      id: { type: 'string', multiple: true },
      since: { type: 'string' },
      until: { type: 'string' },
      replayed: { type: 'boolean' },
      'not-replayed': { type: 'boolean' },
      again: { type: 'boolean' },
      limit: { type: 'string', short: 'n' },
      json: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      server: { type: 'string' },
    },
    { positionals: true },
  );
  const action = positionals[0];
  if (positionals.length !== 1 || (action !== 'list' && action !== 'replay')) {
    throw new UsageError(`expected exactly one action, list or replay, got ${JSON.stringify(positionals.join(' '))}`, cmd);
  }
  const raw = values as Record<string, unknown>;
  const reasons = Array.isArray(raw['reason']) ? raw['reason'].map(String) : [];
  for (const r of reasons) if (!REASONS.includes(r)) throw new UsageError(`--reason must be one of ${REASONS.join(', ')}, got ${JSON.stringify(r)}`, cmd);
  const ids = Array.isArray(raw['id']) ? raw['id'].map(String) : [];
  for (const id of ids) if (!/^\d{1,18}$/.test(id)) throw new UsageError(`--id must be a positive integer, got ${JSON.stringify(id)}`, cmd);
  const subject = stringFlag(values, 'subject');
  if (subject !== undefined && !/^[^\s.]+(\.[^\s.]+)*$/.test(subject)) {
    throw new UsageError(`--subject must be a NATS subject pattern such as swarm.agent.*.output, got ${JSON.stringify(subject)}`, cmd);
  }
  const now = Date.now();
  const sinceMs = parseTime(cmd, 'since', stringFlag(values, 'since'), now);
  const untilMs = parseTime(cmd, 'until', stringFlag(values, 'until'), now);
  if (values['replayed'] === true && values['not-replayed'] === true) throw new UsageError('--replayed and --not-replayed exclude each other', cmd);
  const listOnly = ['replayed', 'not-replayed', 'json'].filter((f) => values[f] === true);
  const replayOnly = ['again', 'dry-run'].filter((f) => values[f] === true).concat(values['server'] !== undefined ? ['server'] : []);
  if (action === 'replay' && listOnly.length > 0) throw new UsageError(`--${listOnly[0]} applies to list only`, cmd);
  if (action === 'list' && replayOnly.length > 0) throw new UsageError(`--${replayOnly[0]} applies to replay only`, cmd);
  const limit = intFlag(cmd, values, 'limit', action === 'list' ? 100 : Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
  const server = stringFlag(values, 'server');
  if (server !== undefined && !/^((nats|tls|ws|wss):\/\/)?[^\s,]+$/.test(server)) {
    throw new UsageError(`--server must be a NATS URL such as nats://127.0.0.1:4222, got ${JSON.stringify(server)}`, cmd);
  }

  const config = loadCliConfig(io);
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, pino.destination({ dest: 2, sync: true }));
  const [{ openDatabase }, store] = await Promise.all([import('../store/database.js'), import('../store/dead-letters.js')]);
  const target = config.database.kind === 'postgres' ? config.database.redactedUrl : `the embedded store in ${config.database.embeddedDataDir}`;
  let db: Awaited<ReturnType<typeof openDatabase>>;
  try {
    db = await openDatabase(config.database, logger);
    await db.pool.query('SELECT 1 FROM ingest_rejects LIMIT 0');
  } catch (err) {
    const code = exitCodeFor(err);
    throw new CliError(`cannot read dead letters from ${target}: ${describe(err)}`, code === EXIT.FAILURE ? EXIT.CONNECT : code, { cause: err });
  }
  const base: Omit<DeadLetterFilter, 'limit' | 'afterId'> = {
    reasons,
    subject,
    ids,
    sinceMs,
    untilMs,
    replayed: action === 'list' ? (values['replayed'] === true ? true : values['not-replayed'] === true ? false : undefined) : values['again'] === true ? undefined : false,
  };
  let nc: NatsConnection | undefined;
  try {
    if (action === 'list') {
      const rows = await store.listDeadLetters(db.pool, { ...base, limit });
      if (values['json'] === true) for (const d of rows) io.stdout.write(JSON.stringify(toJson(d)) + '\n');
      else {
        if (rows.length > 0) io.stdout.write(`${'ID'.padStart(8)}  ${'RECEIVED'.padEnd(24)}  ${'REASON'.padEnd(15)}  ${'SUBJECT'.padEnd(48)}  ${'SIZE'.padStart(9)}  DETAIL\n`);
        for (const d of rows) io.stdout.write(tableLine(d) + '\n');
      }
      io.stderr.write(`${rows.length} dead letter${rows.length === 1 ? '' : 's'}${rows.length === limit ? ` (limit ${limit} reached: use --limit)` : ''}\n`);
      return EXIT.OK;
    }

    const dryRun = values['dry-run'] === true;
    if (!dryRun) {
      const nats = config.nats;
      const servers = server !== undefined ? [server] : [...nats.servers];
      try {
        nc = await connect({ ...natsOptions(nats, 'mycelis-memory-replay'), servers, waitOnFirstConnect: false, maxReconnectAttempts: 10, timeout: 5000 });
      } catch (err) {
        const code = exitCodeFor(err);
        throw new CliError(`cannot connect to NATS at ${servers.join(',')}: ${describe(err)}`, code === EXIT.UNAUTHENTICATED ? code : EXIT.CONNECT, { cause: err });
      }
    }
    const byReason = new Map<string, number>();
    let done = 0;
    let afterId: string | undefined;
    // The dead letters that exist now, and only those: a still-invalid message replayed from an early
    // page comes back as a NEW dead letter (a higher id) while later pages are read, and must not be
    // replayed again by this run (it would loop for as long as ingest keeps up).
    const throughId = await store.newestDeadLetterId(db.pool);
    while (done < limit) {
      const page = await store.listDeadLetters(db.pool, { ...base, limit: Math.min(PAGE, limit - done), afterId, throughId });
      if (page.length === 0) break;
      for (const d of page) {
        if (dryRun) {
          io.stdout.write(tableLine(d) + '\n');
        } else {
          const h = natsHeaders();
          for (const [k, v] of Object.entries(d.headers)) h.set(k, String(v));
          // A dead letter of a replay keeps naming the message it first came from.
          if (!Object.keys(d.headers).some((k) => k.toLowerCase() === REPLAY_HEADER.toLowerCase())) {
            h.set(REPLAY_HEADER, formatReplayOf({ deadLetterId: d.id, streamSeq: Number(d.streamSeq), receivedUs: d.receivedAtUs }));
          }
          nc!.publish(d.subject, d.payload, { headers: h });
        }
        byReason.set(d.reason, (byReason.get(d.reason) ?? 0) + 1);
      }
      if (!dryRun) {
        // Marked only once the server has everything published so far (a round trip).
        await nc!.flush();
        await store.markReplayed(
          db.pool,
          page.map((d) => d.id),
        );
      }
      done += page.length;
      afterId = page[page.length - 1]!.id;
    }
    const mix = [...byReason.entries()].map(([r, n]) => `${r}=${n}`).join(' ');
    io.stderr.write(`${dryRun ? 'would replay' : 'replayed'} ${done} dead letter${done === 1 ? '' : 's'}${mix ? ` [${mix}]` : ''}${dryRun ? '' : ' to NATS'}\n`);
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`dead-letters ${action} failed: ${describe(err)}`, exitCodeFor(err), { cause: err });
  } finally {
    await nc?.close().catch(() => undefined);
    await db.close();
  }
}
