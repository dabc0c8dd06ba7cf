// The subcommand dispatcher: `mycelis-memory <command> [flags]`. Later commands (tail, registry,
// dead-letter replay) register here the same way.
import { CliError, type CliIo, type Command, UsageError } from './command.js';
import { EXIT, EXIT_CODES_HELP, type ExitCode } from './exit-codes.js';
import { describe, exitCodeFor } from './failure.js';
import { deadLettersCommand } from './dead-letters.js';
import { migrateCommand } from './migrate.js';
import { publishCommand } from './publish.js';
import { registryCommand } from './registry.js';
import { searchCommand } from './search.js';
import { serveCommand } from './serve.js';
import { tailCommand } from './tail.js';
import { traceCommand } from './trace.js';

export const COMMANDS: readonly Command[] = [serveCommand, migrateCommand, publishCommand, tailCommand, searchCommand, traceCommand, registryCommand, deadLettersCommand];

export function mainUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length), 'help'.length) + 2;
  return `Usage: mycelis-memory <command> [flags]

Memory for the Mycelis agent swarm: NATS swarm traffic into PostgreSQL, served over gRPC and Connect.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join('\n')}
  ${'help'.padEnd(width)}this help, or "help <command>" for a command's flags

Configuration comes from the environment (DATABASE_URL or DB_*, NATS_URL, ...; see the README).

${EXIT_CODES_HELP}`;
}

const isHelpFlag = (a: string): boolean => a === '--help' || a === '-h';

/** Runs one CLI invocation. Never throws: every failure becomes a message on stderr and an exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<ExitCode | undefined> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(mainUsage() + '\n');
    return EXIT.USAGE;
  }
  if (name === 'help' || isHelpFlag(name)) {
    const topic = rest[0];
    if (topic === undefined) {
      io.stdout.write(mainUsage() + '\n');
      return EXIT.OK;
    }
    const cmd = COMMANDS.find((c) => c.name === topic);
    if (!cmd) {
      io.stderr.write(`mycelis-memory: unknown command ${JSON.stringify(topic)}\n\n${mainUsage()}\n`);
      return EXIT.USAGE;
    }
    io.stdout.write(cmd.usage + '\n');
    return EXIT.OK;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    io.stderr.write(`mycelis-memory: unknown command ${JSON.stringify(name)}\n\n${mainUsage()}\n`);
    return EXIT.USAGE;
  }
  // A help flag anywhere among the flags (parseArgs never lets "-h" through as a flag's value).
  if (rest.some(isHelpFlag)) {
    io.stdout.write(cmd.usage + '\n');
    return EXIT.OK;
  }
  try {
    return await cmd.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`mycelis-memory ${cmd.name}: ${err.message}\n\n${(err.command ?? cmd).usage}\n`);
      return err.exitCode;
    }
    if (err instanceof CliError) {
      io.stderr.write(`mycelis-memory: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr.write(`mycelis-memory ${cmd.name}: ${describe(err)}\n`);
    return exitCodeFor(err);
  }
}
