// Exit codes of the operator CLI, distinct so scripts can react (documented in `mycelis-memory help`).
export const EXIT = {
  OK: 0,
  /** Anything that went wrong at run time and is not covered below. */
  FAILURE: 1,
  /** An environment variable has an invalid value (one line on stderr names it). */
  CONFIG: 2,
  /** NATS, PostgreSQL or the service could not be reached. */
  CONNECT: 3,
  /** The service refused our credentials. */
  UNAUTHENTICATED: 4,
  /** Unknown command, unknown flag or bad flag value (EX_USAGE of sysexits.h). */
  USAGE: 64,
  /** Stopped by Ctrl-C (SIGINT) after printing what was done. */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `Exit codes:
  0   success
  1   runtime failure
  2   invalid configuration (the message names the environment variable)
  3   cannot connect (NATS, PostgreSQL or the service)
  4   unauthenticated
  64  usage error (unknown command or flag, bad flag value)
  130 interrupted (Ctrl-C)`;
