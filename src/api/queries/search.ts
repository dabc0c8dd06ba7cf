// SearchLogs: full text over the log (src/store/search-reader.ts), the same filters, range and keyset
// paging as QueryLogs (newest first by (timestamp, seq)), or by relevance ((rank, timestamp, seq)) among
// the newest 10,000 matches (RANK_MATCHES; the token carries the oldest one ranked).
// A query with no searchable word is INVALID_ARGUMENT on `query`, checked before any page is read.
import { InvalidArgumentError } from '../../errors.js';
import type { SearchLogsResponse } from '../../gen/mycelis/memory/v1/memory.js';
import type { SearchReader } from '../../store/search-reader.js';
import { encodePageToken } from '../cursor.js';
import { toLogRecord } from '../log-record.js';
import type { ValidSearchLogs } from '../validate.js';

export async function searchLogs(reader: SearchReader, v: ValidSearchLogs, signal: AbortSignal): Promise<SearchLogsResponse> {
  const parsed = await reader.parseQuery(v.query, signal);
  if (parsed.terms === 0) {
    throw new InvalidArgumentError('query', `${JSON.stringify(v.query)} has no word to search for (only punctuation or operators)`);
  }
  const { rows, rankFrom } = await reader.page(
    v.filter,
    {
      query: v.query, order: v.order, sinceUs: v.sinceUs, untilUs: v.untilUs, after: v.after, afterRank: v.afterRank,
      rankFrom: v.rankFrom, limit: v.pageSize + 1, parsed: parsed.text,
    },
    signal,
  );
  const more = rows.length > v.pageSize;
  const page = more ? rows.slice(0, v.pageSize) : rows;
  const last = page[page.length - 1];
  let nextPageToken = '';
  if (more && last) {
    const position: Record<string, string | number> = { t: last.row.timestampUs, s: last.row.seq };
    if (v.order === 'relevance') {
      position['r'] = last.rankText;
      // The ranked set: from the oldest match the first page ranked (src/store/search-reader.ts).
      const from = v.rankFrom ?? rankFrom;
      if (from !== null) {
        position['ft'] = from.timestampUs;
        position['fs'] = from.seq;
      }
    }
    nextPageToken = encodePageToken('search', v.hash, position);
  }
  return {
    hits: page.map((h) => ({ record: toLogRecord(h.row), snippet: h.snippet, rank: Number(h.rankText) })),
    nextPageToken,
  };
}
