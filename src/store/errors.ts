// Store failures, classified once here so the writer, the notifier and the API agree on what is
// transient (retry) and what is the data's fault (dead-letter) and what is a bug (surface).

/** A database operation failed in a way retrying will not fix. `sqlstate` when PostgreSQL said why. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly sqlstate: string | undefined;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.sqlstate = sqlstateOf(options?.cause);
  }
}

/** The embedded data directory is held by another live process. */
export class StoreLockedError extends Error {
  override readonly name = 'StoreLockedError';
  constructor(
    readonly directory: string,
    readonly holderPid: number,
  ) {
    super(
      `embedded store directory ${directory} is in use by process ${holderPid}: PGlite is single-process ` +
        `(stop that process, or set DATABASE_URL for PostgreSQL)`,
    );
  }
}

/** A migration file was changed after it was applied, or a migration failed. */
export class MigrationError extends Error {
  override readonly name = 'MigrationError';
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options);
  }
}

export function sqlstateOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

const RETRYABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);
const RETRYABLE_MESSAGES =
  /Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|Client was closed|the database system is (starting up|shutting down)|terminating connection/i;

/**
 * Transient: connection loss (class 08, admin/crash shutdown 57P01-57P03, socket errors), serialization
 * failure (40001), deadlock (40P01), too many connections (53300). Everything else is not retried.
 */
export function isRetryable(err: unknown): boolean {
  const state = sqlstateOf(err);
  if (state !== undefined) {
    return (
      state.startsWith('08') ||
      state === '57P01' ||
      state === '57P02' ||
      state === '57P03' ||
      state === '40001' ||
      state === '40P01' ||
      state === '53300'
    );
  }
  if (typeof err === 'object' && err !== null) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && RETRYABLE_NODE_CODES.has(code)) return true;
    const errors = (err as { errors?: unknown }).errors; // AggregateError from dual-stack connect
    if (Array.isArray(errors) && errors.some(isRetryable)) return true;
    const message = (err as { message?: unknown }).message;
    if (typeof message === 'string' && RETRYABLE_MESSAGES.test(message)) return true;
  }
  return false;
}

/** The row's data is at fault (class 22 data exception, 23 integrity except 23505, 54 limits): dead-letter it. */
export function isDataError(err: unknown): boolean {
  const state = sqlstateOf(err);
  if (state === undefined) return false;
  return state.startsWith('22') || (state.startsWith('23') && state !== '23505') || state.startsWith('54');
}

/** The connection is no longer usable (release it destroyed, never back to the pool). */
export function isConnectionError(err: unknown): boolean {
  const state = sqlstateOf(err);
  if (state !== undefined) return state.startsWith('08') || state.startsWith('57P');
  return isRetryable(err);
}

/** Exponential backoff with jitter: 100 ms, 200 ms, … capped at maxMs. */
export function backoffMs(attempt: number, maxMs = 5_000): number {
  const base = Math.min(maxMs, 100 * 2 ** Math.min(attempt - 1, 16));
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/** Resolves after ms, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
