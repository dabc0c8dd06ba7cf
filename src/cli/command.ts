// The shape every subcommand shares, and the errors that carry an exit code to src/cli.ts.
import type { ExitCode } from './exit-codes.js';
import { EXIT } from './exit-codes.js';

/** Where a command writes: stdout for results, stderr for diagnostics, progress and summaries. */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface Command {
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** Full usage text for `mycelis-memory help <name>` and `<name> --help`. */
  readonly usage: string;
  /**
   * Runs with the arguments after the command name; resolves to the process exit code, or to
   * undefined when the command keeps running on its own (serve) and ends the process itself.
   */
  run(args: string[], io: CliIo): Promise<ExitCode | undefined>;
}

/** A mistake in how the CLI was invoked: printed with the command's usage, exit 64. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly exitCode = EXIT.USAGE;
  constructor(
    message: string,
    readonly command?: Command,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A failure with a chosen exit code, printed as one line `mycelis-memory: <message>`. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
