// QueryLogs: newest first by (timestamp, seq) over [since, until), keyset pages whose token is bound to
// the request's filter and range.
import type { QueryLogsResponse } from '../../gen/mycelis/memory/v1/memory.js';
import type { LogReader } from '../../store/log-reader.js';
import { encodePageToken } from '../cursor.js';
import { toLogRecord } from '../log-record.js';
import type { ValidQueryLogs } from '../validate.js';

export async function queryLogs(reader: LogReader, v: ValidQueryLogs, signal: AbortSignal): Promise<QueryLogsResponse> {
  const rows = await reader.queryPage(v.filter, { sinceUs: v.sinceUs, untilUs: v.untilUs, after: v.after, limit: v.pageSize + 1 }, signal);
  const more = rows.length > v.pageSize;
  const page = more ? rows.slice(0, v.pageSize) : rows;
  const last = page[page.length - 1];
  return {
    records: page.map(toLogRecord),
    nextPageToken: more && last ? encodePageToken('logs', v.hash, { t: last.timestampUs, s: last.seq }) : '',
  };
}
