import { pino, type Logger } from 'pino';
import type { LogFormat, LogLevel } from './config/config.js';

export type { Logger };

/**
 * The one pino root of the process. Components take `logger.child({ component })` once, at
 * construction, never per message. Secrets (DB password, API tokens, NATS credentials) are never
 * passed to a logger; the redact list is a second line of defence for headers.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'mycelis-memory' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['authorization', '*.authorization', 'headers.authorization', '*.headers.authorization', 'password', '*.password', 'token', '*.token'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ sync: false }),
  );
}

/** Readable lines for a person: LOG_FORMAT=pretty, or auto on a terminal. JSON everywhere else. */
export function wantsPrettyLogs(format: LogFormat, stdoutIsTerminal: boolean): boolean {
  return format === 'pretty' || (format === 'auto' && stdoutIsTerminal);
}

/**
 * The service's logger on stdout: pino JSON lines (containers, CI, pipes, log shippers), or, when
 * wantsPrettyLogs, the same records rendered by pino-pretty in this thread —
 * `12:04:05.123 INFO  [ingest] batch committed {"rows":5000}` — coloured on a terminal. pino-pretty is
 * loaded only then, so JSON deployments never load it.
 */
export async function createServiceLogger(
  level: LogLevel,
  format: LogFormat,
  stdout: NodeJS.WriteStream & { fd?: number } = process.stdout,
): Promise<Logger> {
  const terminal = stdout.isTTY === true;
  if (!wantsPrettyLogs(format, terminal)) return createLogger(level);
  const { default: pretty } = await import('pino-pretty');
  return createLogger(
    level,
    pretty({
      destination: 1,
      // Synchronous on a terminal: lines appear as they happen, and the last ones before an exit are kept.
      sync: true,
      colorize: terminal,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,service,component',
      messageFormat: '{if component}[{component}] {end}{msg}',
      singleLine: true,
      // Errors keep their stack, on the lines below.
      errorLikeObjectKeys: ['err', 'error'],
    }),
  );
}
