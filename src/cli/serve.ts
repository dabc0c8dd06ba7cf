// `mycelis-memory serve`: the service itself. Configuration is checked before anything is loaded, so
// an invalid variable costs one line and exit 2; main.ts is imported only then.
import { createServiceLogger } from '../logger.js';
import { parseFlags } from './args.js';
import { CliError, type CliIo, type Command } from './command.js';
import { loadCliConfig } from './config-errors.js';
import { describe, exitCodeFor } from './failure.js';
import { BUFFER_POOL_BYTES } from '../config/memory-budget.js';
import { applyV8Limits } from './v8-limits.js';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'run the service (ingest from NATS into PostgreSQL, serve the gRPC/Connect API)',
  usage: `Usage: mycelis-memory serve

Runs the service, configured from the environment only (see the README's table of variables).
With no database variable it runs on the embedded store under ./.data. Logs go to stdout: readable
lines on a terminal, pino JSON lines anywhere else (LOG_FORMAT=auto|json|pretty chooses).
SIGTERM or SIGINT shut it down gracefully: stop ingesting, commit and ack, end streams, close.

An invalid variable prints one line, "mycelis-memory: invalid configuration: <VAR>: <detail>", and
exits 2; failing to reach NATS or PostgreSQL at start exits 3; any other start-up failure exits 1.`,
  async run(args: string[], io: CliIo) {
    parseFlags(serveCommand, args, {});
    const config = loadCliConfig(io);
    // May replace the process with itself plus the memory budget's V8 flags (and not return).
    const v8Limits = applyV8Limits(config);
    // Pools of small Buffers below MALLOC_MMAP_THRESHOLD_ (memory-budget.ts: BUFFER_POOL_BYTES).
    Buffer.poolSize = BUFFER_POOL_BYTES;
    const logger = await createServiceLogger(config.logLevel, config.logFormat);
    const { runService } = await import('../main.js');
    const { startBufferGovernor } = await import('../buffer-governor.js');
    // ArrayBuffer bytes L/32 above their low point ask V8 for a full collection (buffer-governor.ts).
    startBufferGovernor(config.memory.limitBytes / 32, logger);
    try {
      // runService installs its own SIGTERM/SIGINT handling and keeps the process alive.
      await runService(config, logger, { v8Limits });
    } catch (err) {
      logger.fatal({ err }, 'failed to start');
      // The process exits right after: let the asynchronous destination write the fatal line first.
      await new Promise<void>((resolve) => logger.flush(() => resolve()));
      throw new CliError(`failed to start: ${describe(err)}`, exitCodeFor(err), { cause: err });
    }
    return undefined;
  },
};
