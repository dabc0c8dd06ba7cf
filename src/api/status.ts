// The ONE place where typed errors become gRPC status codes (the Connect port maps the same way).
// A client's mistake is never INTERNAL; anything unexpected is INTERNAL, logged with its cause, and
// the client sees a generic message (no internals, no SQL).
import { status as GrpcStatus, Metadata, type ServiceError } from '@grpc/grpc-js';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from '../logger.js';
import {
  CancelledError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  ResourceExhaustedError,
  ShuttingDownError,
  UnauthenticatedError,
  UnavailableError,
} from '../errors.js';

export interface MappedStatus {
  readonly code: GrpcStatus;
  readonly message: string;
}

/** Maps any thrown value to a status code and a client-safe message. Logs what maps to INTERNAL. */
export function toStatus(err: unknown, log: Logger, method: string): MappedStatus {
  if (err instanceof InvalidArgumentError) return { code: GrpcStatus.INVALID_ARGUMENT, message: err.message };
  if (err instanceof OutOfRangeError) return { code: GrpcStatus.OUT_OF_RANGE, message: err.message };
  if (err instanceof NotFoundError) return { code: GrpcStatus.NOT_FOUND, message: err.message };
  if (err instanceof UnauthenticatedError) return { code: GrpcStatus.UNAUTHENTICATED, message: err.message };
  if (err instanceof ResourceExhaustedError) return { code: GrpcStatus.RESOURCE_EXHAUSTED, message: err.message };
  if (err instanceof UnavailableError) {
    log.warn({ err, method }, 'unavailable');
    return { code: GrpcStatus.UNAVAILABLE, message: err.message };
  }
  if (err instanceof ShuttingDownError) return { code: GrpcStatus.UNAVAILABLE, message: err.message };
  if (err instanceof CancelledError) return { code: GrpcStatus.CANCELLED, message: err.message };
  log.error({ err, method }, 'internal error');
  return { code: GrpcStatus.INTERNAL, message: 'internal error' };
}

export function toServiceError(err: unknown, log: Logger, method: string): Partial<ServiceError> {
  const s = toStatus(err, log, method);
  return { code: s.code, details: s.message, metadata: new Metadata() };
}

/**
 * The same mapping for the Connect port. Connect's Code shares gRPC's numbering; the library turns
 * the code into the HTTP status the Connect protocol defines (invalid_argument and out_of_range 400, not_found 404,
 * unauthenticated 401, resource_exhausted 429, unavailable 503, internal 500). A ConnectError raised
 * by the library itself (a request it cannot parse, a bad timeout header) keeps its own code.
 * The cause is kept for logs, never sent to the client.
 */
export function toConnectError(err: unknown, log: Logger, method: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const s = toStatus(err, log, method);
  return new ConnectError(s.message, s.code as number as Code, undefined, undefined, err);
}
