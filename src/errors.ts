// Typed errors shared by every layer. Each carries its cause; status codes are chosen only at the
// API edge (src/api), never here.

/** A client sent something we cannot accept. `field` names the request field (e.g. "filter.levels[2]"). */
export class InvalidArgumentError extends Error {
  override readonly name = 'InvalidArgumentError';
  constructor(
    readonly field: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${message}`, options);
  }
}

/** A cursor or page position beyond what exists (e.g. a cursor past the newest committed record). */
export class OutOfRangeError extends Error {
  override readonly name = 'OutOfRangeError';
  constructor(
    readonly field: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${message}`, options);
  }
}

/** What the request names does not exist (e.g. a trace id with no records). */
export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** The database (or another dependency) cannot be reached right now; the caller may retry. */
export class UnavailableError extends Error {
  override readonly name = 'UnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A limit was reached (e.g. MAX_STREAMS); the caller may retry later. */
export class ResourceExhaustedError extends Error {
  override readonly name = 'ResourceExhaustedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Missing or wrong credentials. The message never contains the token. */
export class UnauthenticatedError extends Error {
  override readonly name = 'UnauthenticatedError';
  constructor(message = 'missing or invalid bearer token') {
    super(message);
  }
}

/** The operation was cancelled by the caller (deadline or cancellation). */
export class CancelledError extends Error {
  override readonly name = 'CancelledError';
  constructor(message = 'cancelled', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The service is shutting down. */
export class ShuttingDownError extends Error {
  override readonly name = 'ShuttingDownError';
  constructor(message = 'the service is shutting down') {
    super(message);
  }
}
