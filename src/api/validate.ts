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
  type SearchLogsRequest,
  SearchLogsRequest_Order,
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
export const MAX_QUERY_CHARS = 1024;

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

function validateRange(since: Timestamp | undefined, until: Timestamp | undefined): { sinceUs: number | null; untilUs: number | null } {
  const sinceUs = validateTimestamp(since, 'since');
  const untilUs = validateTimestamp(until, 'until');
  if (sinceUs !== null && untilUs !== null && untilUs < sinceUs) {
    throw new InvalidArgumentError('until', 'must not be before since');
  }
  return { sinceUs, untilUs };
}

/** The keyset position (event time, seq) of a page token's body. */
function keysetPosition(p: Record<string, unknown>): { timestampUs: number; seq: number } {
  const timestampUs = p['t'];
  const seq = p['s'];
  if (typeof timestampUs !== 'number' || !Number.isSafeInteger(timestampUs) || typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new InvalidArgumentError('page_token', 'malformed page token');
  }
  return { timestampUs, seq };
}

export function validateQueryLogs(req: QueryLogsRequest): ValidQueryLogs {
  const filter = validateLogFilter(req.filter);
  const pageSize = validatePageSize(req.pageSize ?? 0);
  const { sinceUs, untilUs } = validateRange(req.since, req.until);
  const hash = requestHash(['logs', canonicalFilter(filter), sinceUs, untilUs]);
  const token = req.pageToken ?? '';
  const after = token === '' ? null : keysetPosition(decodePageToken('logs', token, hash, 'page_token'));
  return { filter, pageSize, sinceUs, untilUs, hash, after };
}

export type SearchOrder = 'newest' | 'relevance';

export interface ValidSearchLogs extends ValidQueryLogs {
  /** The query text as PostgreSQL's websearch_to_tsquery reads it. */
  readonly query: string;
  readonly order: SearchOrder;
  /** RELEVANCE pages: the previous page's last rank, as PostgreSQL printed it (exact for a real). */
  readonly afterRank: string | null;
  /** RELEVANCE pages after the first: the oldest match the first page ranked (null: rank the newest). */
  readonly rankFrom: { timestampUs: number; seq: number } | null;
  /** RELEVANCE pages after the first: the first page's window (matches with seq >= this; null: the whole log). */
  readonly rankWindow: number | null;
}

// A real as PostgreSQL prints it (shortest exact form): digits, optional fraction and exponent.
const REAL_TEXT = /^-?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

export function validateSearchLogs(req: SearchLogsRequest): ValidSearchLogs {
  const query = (req.query ?? '').trim();
  if (query === '') throw new InvalidArgumentError('query', 'required: one or more words, "quoted phrases", -exclusions');
  if (query.length > MAX_QUERY_CHARS) throw new InvalidArgumentError('query', `longer than ${MAX_QUERY_CHARS} characters (${query.length})`);
  if (query.includes('\u0000')) throw new InvalidArgumentError('query', 'must not contain NUL (\\u0000)');
  const filter = validateLogFilter(req.filter);
  const pageSize = validatePageSize(req.pageSize ?? 0);
  const { sinceUs, untilUs } = validateRange(req.since, req.until);
  let order: SearchOrder;
  const o = req.order ?? SearchLogsRequest_Order.ORDER_UNSPECIFIED;
  if (o === SearchLogsRequest_Order.ORDER_UNSPECIFIED || o === SearchLogsRequest_Order.ORDER_NEWEST) order = 'newest';
  else if (o === SearchLogsRequest_Order.ORDER_RELEVANCE) order = 'relevance';
  else throw new InvalidArgumentError('order', `unknown order ${String(o)}: expected ORDER_NEWEST or ORDER_RELEVANCE`);
  const hash = requestHash(['search', query, order, canonicalFilter(filter), sinceUs, untilUs]);
  const token = req.pageToken ?? '';
  let after: ValidQueryLogs['after'] = null;
  let afterRank: string | null = null;
  let rankFrom: ValidSearchLogs['rankFrom'] = null;
  let rankWindow: number | null = null;
  if (token !== '') {
    const p = decodePageToken('search', token, hash, 'page_token');
    after = keysetPosition(p);
    if (order === 'relevance') {
      const r = p['r'];
      if (typeof r !== 'string' || !REAL_TEXT.test(r)) throw new InvalidArgumentError('page_token', 'malformed page token');
      afterRank = r;
      // Tokens of earlier versions have no ranked set: their later pages rank the newest matches.
      if (p['ft'] !== undefined || p['fs'] !== undefined) rankFrom = keysetPosition({ t: p['ft'], s: p['fs'] });
      // Tokens of earlier versions have no window: their later pages rank in the whole log.
      const fw = p['fw'];
      if (fw !== undefined) {
        if (typeof fw !== 'number' || !Number.isSafeInteger(fw) || fw < 1 || rankFrom === null) throw new InvalidArgumentError('page_token', 'malformed page token');
        rankWindow = fw;
      }
    }
  }
  return { query, order, filter, pageSize, sinceUs, untilUs, hash, after, afterRank, rankFrom, rankWindow };
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
