// `mycelis-memory publish`: realistic swarm traffic (src/cli/traffic.ts) onto NATS with core
// publishes, optionally paced. Pacing works in batches: each tick publishes everything due by
// then, so high rates cost no timer per message. Needs NATS only, never a database.
import { connect, headers as natsHeaders, type MsgHdrs, type NatsConnection } from 'nats';
import { ConfigError, loadNatsConfig, type NatsConfig } from '../config/config.js';
import { natsOptions } from '../ingest/nats-connection.js';
import { intFlag, numberFlag, parseFlags, stringFlag } from './args.js';
import { CliError, type CliIo, type Command, UsageError } from './command.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { describe, exitCodeFor } from './failure.js';
import { defaultTeamCount, generateTraffic, isValidSubjectPrefix, TRAFFIC_MIXES, type TrafficKind, type TrafficMix } from './traffic.js';

const FLUSH_EVERY = 5000; // a round trip to the server every N messages bounds the client's buffer
const PROGRESS_EVERY_MS = 2000;
const TICK_MS = 10; // shortest sleep between paced batches

export const publishCommand: Command = {
  name: 'publish',
  summary: 'publish realistic sample swarm traffic to NATS',
  usage: `Usage: mycelis-memory publish [flags]

Publishes realistic Mycelis swarm traffic (protobuf, core NATS): heartbeats with status, battery and
location on swarm.prod.agent.<id>.heartbeat; tool calls and results (some failing) on
swarm.team.<team>.agent.<id>.output; text on swarm.agent.<id>.output; events with a swarm_context on
swarm.team.<team>.internal.trigger; LogEntry errors on swarm.log.<id>; and the directive's verification
message (id test-id-2 from finance-bot, team finance) on swarm.smoke.test, first, with a fresh timestamp.
With --mix current, also what the current swarm sends besides protobuf (mostly still heartbeats):
signal envelopes (JSON) on swarm.team.<team>.signal.status|result and .internal.command, telemetry
envelopes on swarm.team.<team>.telemetry, mission events on swarm.mission.events.<run>, scheduler
JSON on swarm.team.<team>.internal.trigger, proto3-JSON envelopes, and plain text: answers on
swarm.team.<team>.internal.response, user input on swarm.global.input.user, interjections on
swarm.agent.<id>.interjection.

Flags:
  -n, --count N            messages to publish (default 100)
      --mix M              protobuf | current: the swarm/v1 messages only, or everything the current
                           swarm sends (default protobuf)
      --rate N             messages per second; 0 = as fast as possible (default 0)
      --agents N           distinct agents (default 10)
      --teams N            teams the agents are spread over (default: one per 25 agents, at least 2)
      --subject-prefix P   replaces the leading "swarm" of every subject (default swarm)
      --type-headers M     auto | always | never: send a Mycelis-Type header naming the message type
                           (auto: only when --subject-prefix is not "swarm", so LogEntry messages stay
                           recognisable; default auto)
      --server URL         NATS server (default $NATS_URL, else nats://127.0.0.1:4222); credentials and
                           TLS come from NATS_TOKEN, NATS_USER/NATS_PASSWORD, NATS_CREDS_FILE, NATS_TLS_*
      --seed N             seed for the generated content (default 1)
  -q, --quiet              no progress lines (the summary line is still printed)
  -h, --help               this help

Prints progress every 2 s on long runs and a summary line (count, seconds, rate) to stderr.`,
  run: runPublish,
};

interface PublishPlan {
  count: number;
  rate: number;
  agents: number;
  teams: number;
  prefix: string;
  seed: number;
  typeHeaders: boolean;
  mix: TrafficMix;
  quiet: boolean;
  servers: string[];
  nats: NatsConfig;
}

function plan(args: string[], io: CliIo): PublishPlan {
  const cmd = publishCommand;
  const { values } = parseFlags(cmd, args, {
    count: { type: 'string', short: 'n' },
    rate: { type: 'string' },
    agents: { type: 'string' },
    teams: { type: 'string' },
    'subject-prefix': { type: 'string' },
    'type-headers': { type: 'string' },
    mix: { type: 'string' },
    server: { type: 'string' },
    seed: { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
  });
  const count = intFlag(cmd, values, 'count', 100, 0, Number.MAX_SAFE_INTEGER);
  const rate = numberFlag(cmd, values, 'rate', 0, 10_000_000);
  const agents = intFlag(cmd, values, 'agents', 10, 1, 1_000_000);
  const teams = intFlag(cmd, values, 'teams', defaultTeamCount(agents), 1, agents);
  const seed = intFlag(cmd, values, 'seed', 1, 0, 2 ** 32 - 1);
  const prefix = stringFlag(values, 'subject-prefix') ?? 'swarm';
  if (!isValidSubjectPrefix(prefix)) {
    throw new UsageError(`--subject-prefix must be one or more dot-separated NATS tokens without wildcards, got ${JSON.stringify(prefix)}`, cmd);
  }
  const th = stringFlag(values, 'type-headers') ?? 'auto';
  if (th !== 'auto' && th !== 'always' && th !== 'never') {
    throw new UsageError(`--type-headers must be auto, always or never, got ${JSON.stringify(th)}`, cmd);
  }
  const mix = stringFlag(values, 'mix') ?? 'protobuf';
  if (!(TRAFFIC_MIXES as readonly string[]).includes(mix)) {
    throw new UsageError(`--mix must be ${TRAFFIC_MIXES.join(' or ')}, got ${JSON.stringify(mix)}`, cmd);
  }
  let nats: NatsConfig;
  try {
    nats = loadNatsConfig(io.env);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(`invalid configuration: ${err.message}`, EXIT.CONFIG, { cause: err });
    throw err;
  }
  const server = stringFlag(values, 'server');
  if (server !== undefined && !/^((nats|tls|ws|wss):\/\/)?[^\s,]+$/.test(server)) {
    throw new UsageError(`--server must be a NATS URL such as nats://127.0.0.1:4222, got ${JSON.stringify(server)}`, cmd);
  }
  return {
    count,
    rate,
    agents,
    teams,
    prefix,
    seed,
    typeHeaders: th === 'always' || (th === 'auto' && prefix !== 'swarm'),
    mix: mix as TrafficMix,
    quiet: values['quiet'] === true,
    servers: server !== undefined ? [server] : [...nats.servers],
    nats,
  };
}

async function runPublish(args: string[], io: CliIo): Promise<ExitCode> {
  const p = plan(args, io);
  const where = p.servers.join(',');
  let nc: NatsConnection;
  try {
    nc = await connect({
      ...natsOptions(p.nats, 'mycelis-memory-publish'),
      servers: p.servers,
      // A one-shot tool: fail fast when the server is not there, ride out a short blip mid-run.
      waitOnFirstConnect: false,
      maxReconnectAttempts: 10,
      timeout: 5000,
    });
  } catch (err) {
    const code = exitCodeFor(err);
    throw new CliError(
      `cannot connect to NATS at ${where}: ${describe(err)}`,
      code === EXIT.UNAUTHENTICATED ? code : EXIT.CONNECT,
      { cause: err },
    );
  }

  let interrupted = false;
  const onSigint = (): void => {
    interrupted = true;
  };
  process.once('SIGINT', onSigint);
  const kinds = new Map<TrafficKind, number>();
  const headerCache = new Map<string, MsgHdrs>();
  const hdrsFor = (h: Record<string, string> | undefined): MsgHdrs | undefined => {
    if (!h) return undefined;
    const key = JSON.stringify(h);
    let v = headerCache.get(key);
    if (!v) {
      v = natsHeaders();
      for (const [k, val] of Object.entries(h)) v.set(k, val);
      headerCache.set(key, v);
    }
    return v;
  };

  const traffic = generateTraffic({ count: p.count, agents: p.agents, teams: p.teams, subjectPrefix: p.prefix, seed: p.seed, typeHeaders: p.typeHeaders, mix: p.mix });
  const start = performance.now();
  let sent = 0;
  let lastFlush = 0;
  let lastProgress = start;
  try {
    while (sent < p.count && !interrupted) {
      const now = performance.now();
      // Paced: message k (0-based) is due at start + k/rate, so the first goes at once and the
      // last at (count-1)/rate seconds.
      const due = p.rate > 0 ? Math.min(p.count, Math.floor(((now - start) / 1000) * p.rate) + 1) : Math.min(p.count, sent + FLUSH_EVERY);
      while (sent < due) {
        const next = traffic.next();
        if (next.done) break;
        const m = next.value;
        const h = hdrsFor(m.headers);
        nc.publish(m.subject, m.data, h ? { headers: h } : undefined);
        kinds.set(m.kind, (kinds.get(m.kind) ?? 0) + 1);
        sent++;
      }
      if (sent - lastFlush >= FLUSH_EVERY) {
        await nc.flush();
        lastFlush = sent;
      }
      const t = performance.now();
      if (!p.quiet && t - lastProgress >= PROGRESS_EVERY_MS && sent < p.count) {
        lastProgress = t;
        const s = (t - start) / 1000;
        io.stderr.write(`publishing: ${sent}/${p.count} messages, ${s.toFixed(1)}s, ${Math.round(sent / s)} msg/s\n`);
      }
      if (p.rate > 0 && sent < p.count) {
        const nextDueMs = start + (sent / p.rate) * 1000;
        await sleep(Math.max(TICK_MS, nextDueMs - performance.now()));
      }
    }
    await nc.flush();
  } catch (err) {
    throw new CliError(`publishing to NATS at ${where} failed after ${sent} messages: ${describe(err)}`, exitCodeFor(err), { cause: err });
  } finally {
    process.removeListener('SIGINT', onSigint);
    await nc.close().catch(() => undefined);
  }
  const secs = (performance.now() - start) / 1000;
  const mix = [...kinds.entries()].map(([k, n]) => `${k}=${n}`).join(' ');
  io.stderr.write(
    `${interrupted ? 'interrupted: ' : ''}published ${sent} messages in ${secs.toFixed(2)}s (${Math.round(sent / Math.max(secs, 1e-6))} msg/s) ` +
      `to ${where} under ${p.prefix}.> [${mix}]\n`,
  );
  return interrupted ? EXIT.INTERRUPTED : EXIT.OK;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
