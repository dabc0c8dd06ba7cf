// Request validation for the MemoryService core (DESIGN 6). Every bad input becomes an
// InvalidArgumentError whose `field` is the proto field path exactly as clients see it
// (snake_case, with indexes: "filter.levels[2]", "page_size", "after_cursor").
import { InvalidArgumentError } from '../errors.js';
import { LEVELS } from '../domain/types.js';
import type { LogRowFilter } from '../store/log-reader.js';
import {
  AgentStatus,
  type GetRegistryRequest,
  type GetTraceRequest,
  type LogFilter,
  type QueryLogsRequest,
  type StreamLogsRequest,
  type WatchRegistryRequest,
} from '../gen/mycelis/memory/v1/memory.js';
import type { Timestamp } from '../gen/google/protobuf/timestamp.js';
import { decodeCursor, decodePageToken, requestHash } from './cursor.js';

export const MAX_FILTER_VALUES = 100;
export const MAX_STRING_CHARS = 256;
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
export const MAX_TAIL = 10_000;

function checkString(value: string, field: string): void {
  if (value.length > MAX_STRING_CHARS) {
    throw new InvalidArgumentError(field, `longer than ${MAX_STRING_CHARS} characters (${value.length})`);
  }
  // PostgreSQL text cannot hold NUL (the query would fail with 22021, an INTERNAL); stored values
  // never contain one either (ingest strips it, DESIGN 3.1), so say so instead.
  if (value.includes('\u0000')) throw new InvalidArgumentError(field, 'must not contain NUL (\\u0000)');
}

function checkList(values: readonly string[] | undefined, field: string): string[] {
  const list = values ?? [];
  if (list.length > MAX_FILTER_VALUES) {
    throw new InvalidArgumentError(field, `more than ${MAX_FILTER_VALUES} values (${list.length})`);
  }
  list.forEach((v, i) => {
    if (v.length === 0) throw new InvalidArgumentError(`${field}[${i}]`, 'must not be empty');
    checkString(v, `${field}[${i}]`);
  });
  return [...list];
}

const LEVEL_SET: ReadonlySet<string> = new Set(LEVELS);

/** Validates and normalizes a LogFilter (levels upper-cased). `prefix` is the request field holding it. */
export function validateLogFilter(filter: LogFilter | undefined, prefix = 'filter'): LogRowFilter {
  const agentIds = checkList(filter?.agentIds, `${prefix}.agent_ids`);
  const teamIds = checkList(filter?.teamIds, `${prefix}.team_ids`);
  const levels = checkList(filter?.levels, `${prefix}.levels`).map((l, i) => {
    const up = l.toUpperCase();
    if (!LEVEL_SET.has(up)) {
      throw new InvalidArgumentError(`${prefix}.levels[${i}]`, `unknown level ${JSON.stringify(l)}: expected one of ${LEVELS.join(', ')}`);
    }
    return up;
  });
  const intents = checkList(filter?.intents, `${prefix}.intents`);
  const traceId = filter?.traceId ?? '';
  checkString(traceId, `${prefix}.trace_id`);
  return { agentIds, teamIds, levels, intents, traceId };
}

/** Canonical form of a filter for hashing: order and duplicates do not change the meaning. */
export function canonicalFilter(f: LogRowFilter): unknown {
  const c = (a: readonly string[]): string[] => [...new Set(a)].sort();
  return [c(f.agentIds), c(f.teamIds), c(f.levels), c(f.intents), f.traceId];
}

export function validatePageSize(pageSize: number, field = 'page_size'): number {
  if (!Number.isInteger(pageSize) || pageSize < 0) throw new InvalidArgumentError(field, `must be between 0 and ${MAX_PAGE_SIZE} (got ${pageSize})`);
  if (pageSize > MAX_PAGE_SIZE) throw new InvalidArgumentError(field, `must be at most ${MAX_PAGE_SIZE} (got ${pageSize})`);
  return pageSize === 0 ? DEFAULT_PAGE_SIZE : pageSize;
}

// Timestamp range accepted by protobuf's JSON mapping: 0001-01-01 .. 9999-12-31.
const MIN_SECONDS = -62_135_596_800;
const MAX_SECONDS = 253_402_300_799;

export function validateTimestamp(ts: Timestamp | undefined, field: string): number | null {
  if (ts === undefined) return null;
  const seconds = Number(ts.seconds);
  if (!Number.isSafeInteger(seconds) || seconds < MIN_SECONDS || seconds > MAX_SECONDS) {
    throw new InvalidArgumentError(field, 'seconds out of range (0001-01-01 to 9999-12-31)');
  }
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999) {
    throw new InvalidArgumentError(field, 'nanos must be between 0 and 999999999');
  }
  return seconds * 1_000_000 + Math.trunc(ts.nanos / 1000);
}

export interface ValidStreamRequest {
  readonly filter: LogRowFilter;
  /** Resume after this seq; null = not given. */
  readonly afterSeq: number | null;
  /** 0 = no tail. */
  readonly tail: number;
}

export function validateStreamLogs(req: StreamLogsRequest): ValidStreamRequest {
  const filter = validateLogFilter(req.filter);
  const tail = req.tail ?? 0;
  if (!Number.isInteger(tail) || tail < 0 || tail > MAX_TAIL) throw new InvalidArgumentError('tail', `must be at most ${MAX_TAIL} (got ${tail})`);
  const afterCursor = req.afterCursor ?? '';
  if (afterCursor !== '' && tail > 0) {
    throw new InvalidArgumentError('after_cursor', 'cannot be combined with tail: resume from a cursor or start with a tail, not both');
  }
  const afterSeq = afterCursor === '' ? null : decodeCursor(afterCursor, 'after_cursor');
  return { filter, afterSeq, tail };
}

export interface ValidQueryLogs {
  readonly filter: LogRowFilter;
  readonly pageSize: number;
  readonly sinceUs: number | null;
  readonly untilUs: number | null;
  readonly hash: string;
  readonly after: { timestampUs: number; seq: number } | null;
}

export function validateQueryLogs(req: QueryLogsRequest): ValidQueryLogs {
  const filter = validateLogFilter(req.filter);
  const pageSize = validatePageSize(req.pageSize ?? 0);
  const sinceUs = validateTimestamp(req.since, 'since');
  const untilUs = validateTimestamp(req.until, 'until');
  if (sinceUs !== null && untilUs !== null && untilUs < sinceUs) {
    throw new InvalidArgumentError('until', 'must not be before since');
  }
  const hash = requestHash(['logs', canonicalFilter(filter), sinceUs, untilUs]);
  let after: ValidQueryLogs['after'] = null;
  const token = req.pageToken ?? '';
  if (token !== '') {
    const p = decodePageToken('logs', token, hash, 'page_token');
    const timestampUs = p['t'];
    const seq = p['s'];
    if (typeof timestampUs !== 'number' || !Number.isSafeInteger(timestampUs) || typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
      throw new InvalidArgumentError('page_token', 'malformed page token');
    }
    after = { timestampUs, seq };
  }
  return { filter, pageSize, sinceUs, untilUs, hash, after };
}

const STATUS_NAMES: ReadonlyMap<number, string> = new Map([
  [AgentStatus.AGENT_STATUS_IDLE, 'IDLE'],
  [AgentStatus.AGENT_STATUS_BUSY, 'BUSY'],
  [AgentStatus.AGENT_STATUS_OFFLINE, 'OFFLINE'],
  [AgentStatus.AGENT_STATUS_ERROR, 'ERROR'],
]);

export interface ValidGetRegistry {
  readonly teamIds: string[];
  /** Stored status names (IDLE, BUSY, OFFLINE, ERROR). */
  readonly statuses: string[];
  readonly pageSize: number;
  readonly hash: string;
  readonly afterAgentId: string;
  /** The first page's as_of, carried by the token; null on the first page. */
  readonly asOfUs: number | null;
}

/** Registry status filters -> stored status names (IDLE, BUSY, OFFLINE, ERROR). */
function checkStatuses(raw: readonly AgentStatus[] | undefined, field: string): string[] {
  const list = raw ?? [];
  if (list.length > MAX_FILTER_VALUES) throw new InvalidArgumentError(field, `more than ${MAX_FILTER_VALUES} values (${list.length})`);
  return list.map((s, i) => {
    const name = STATUS_NAMES.get(s);
    if (name === undefined) {
      throw new InvalidArgumentError(`${field}[${i}]`, `unknown or unspecified status ${String(s)}: expected IDLE, BUSY, OFFLINE or ERROR`);
    }
    return name;
  });
}

export function validateGetRegistry(req: GetRegistryRequest): ValidGetRegistry {
  const teamIds = checkList(req.teamIds, 'team_ids');
  const statuses = checkStatuses(req.statuses, 'statuses');
  const pageSize = validatePageSize(req.pageSize ?? 0);
  const hash = requestHash(['registry', [...new Set(teamIds)].sort(), [...new Set(statuses)].sort()]);
  let afterAgentId = '';
  let asOfUs: number | null = null;
  const token = req.pageToken ?? '';
  if (token !== '') {
    const p = decodePageToken('registry', token, hash, 'page_token');
    const a = p['a'];
    const t = p['t'];
    if (typeof a !== 'string' || a === '' || typeof t !== 'number' || !Number.isSafeInteger(t)) {
      throw new InvalidArgumentError('page_token', 'malformed page token');
    }
    afterAgentId = a;
    asOfUs = t;
  }
  return { teamIds, statuses, pageSize, hash, afterAgentId, asOfUs };
}

/** GetTrace: the trace id, required. */
export function validateGetTrace(req: GetTraceRequest): string {
  const traceId = req.traceId ?? '';
  if (traceId === '') throw new InvalidArgumentError('trace_id', 'required');
  checkString(traceId, 'trace_id');
  return traceId;
}

export interface ValidWatchRegistry {
  /** Empty = all teams. */
  readonly teamIds: ReadonlySet<string>;
  /** Effective status names; empty = all. */
  readonly statuses: ReadonlySet<string>;
  readonly snapshot: boolean;
}

export function validateWatchRegistry(req: WatchRegistryRequest): ValidWatchRegistry {
  const teamIds = checkList(req.teamIds, 'team_ids');
  const statuses = checkStatuses(req.statuses, 'statuses');
  return { teamIds: new Set(teamIds), statuses: new Set(statuses), snapshot: req.snapshot === true };
}
