// SearchLogs: full text over the log (src/store/search-reader.ts), the same filters, range and keyset
// paging as QueryLogs (newest first by (timestamp, seq)), or by relevance ((rank, timestamp, seq)) among
// the newest matches (10,000 at most, RANK_MATCHES; for a phrase those of the newest rows that hold 1,000
// or more, RANK_MIN_MATCHES; the token carries the oldest one ranked and that window).
// A query with no searchable word is INVALID_ARGUMENT on `query`, checked before any page is read.
import { InvalidArgumentError } from '../../errors.js';
import type { SearchLogsResponse } from '../../gen/mycelis/memory/v1/memory.js';
import type { SearchReader, SearchRow } from '../../store/search-reader.js';
import { encodeCursor, encodePageToken } from '../cursor.js';
import { toLogRecord } from '../log-record.js';
import { encodeRecordElement, varintLen } from '../wire-encode.js';
import type { ValidSearchLogs } from '../validate.js';

interface SearchParts {
  readonly hits: readonly SearchRow[];
  readonly nextPageToken: string;
}

async function readSearch(reader: SearchReader, v: ValidSearchLogs, signal: AbortSignal): Promise<SearchParts> {
  const parsed = await reader.parseQuery(v.query, signal);
  if (parsed.terms === 0) {
    throw new InvalidArgumentError('query', `${JSON.stringify(v.query)} has no word to search for (only punctuation or operators)`);
  }
  const { rows, rankFrom, rankWindow } = await reader.page(
    v.filter,
    {
      query: v.query, order: v.order, sinceUs: v.sinceUs, untilUs: v.untilUs, after: v.after, afterRank: v.afterRank,
      rankFrom: v.rankFrom, rankWindow: v.rankWindow, limit: v.pageSize + 1, parsed: parsed.text,
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
        // ...within the first page's window of the log (absent: the whole log).
        const window = v.rankFrom !== null ? v.rankWindow : rankWindow;
        if (window !== null) position['fw'] = window;
      }
    }
    nextPageToken = encodePageToken('search', v.hash, position);
  }
  return { hits: page, nextPageToken };
}

export async function searchLogs(reader: SearchReader, v: ValidSearchLogs, signal: AbortSignal): Promise<SearchLogsResponse> {
  const { hits, nextPageToken } = await readSearch(reader, v, signal);
  return {
    hits: hits.map((h) => ({ record: toLogRecord(h.row), snippet: h.snippet, rank: Number(h.rankText) })),
    nextPageToken,
  };
}

/**
 * The same response already encoded (the gRPC port writes these bytes as they are), as GetTrace's
 * (src/api/queries/trace.ts): each hit's record by the wire encoder StreamLogs uses (its element,
 * `tag(1, LEN) len LogRecord`, is SearchHit.record = 1 as it is), the snippet and rank after it.
 * `SearchLogsResponse.decode` of these bytes equals ts-proto's decoding of searchLogs' response
 * encoded (test/unit/api-search-encode.test.ts).
 */
export async function searchLogsEncoded(reader: SearchReader, v: ValidSearchLogs, signal: AbortSignal): Promise<Buffer> {
  const { hits, nextPageToken } = await readSearch(reader, v, signal);
  return encodeSearchResponse(hits, nextPageToken);
}

/** SearchLogsResponse {hits = 1 (SearchHit {record = 1, snippet = 2, rank = 3 (float)}), next_page_token = 2}. */
export function encodeSearchResponse(hits: readonly SearchRow[], nextPageToken: string): Buffer {
  const records: Buffer[] = new Array<Buffer>(hits.length);
  const snippetLens: number[] = new Array<number>(hits.length);
  const bodyLens: number[] = new Array<number>(hits.length);
  let total = 0;
  for (let i = 0; i < hits.length; i++) {
    const h = hits[i]!;
    // A view of the encoder's shared slab: copied below, never written to.
    const el = encodeRecordElement(h.row, encodeCursor(h.row.seq));
    records[i] = el;
    const sn = Buffer.byteLength(h.snippet, 'utf8');
    snippetLens[i] = sn;
    // ts-proto omits the proto3 defaults: an empty snippet, a zero rank.
    const body = el.length + (sn > 0 ? 1 + varintLen(sn) + sn : 0) + (Number(h.rankText) !== 0 ? 5 : 0);
    bodyLens[i] = body;
    total += 1 + varintLen(body) + body;
  }
  const token = Buffer.byteLength(nextPageToken, 'utf8');
  if (token > 0) total += 1 + varintLen(token) + token;
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  const varint = (n: number): void => {
    while (n >= 0x80) {
      out[pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    out[pos++] = n;
  };
  for (let i = 0; i < hits.length; i++) {
    const h = hits[i]!;
    out[pos++] = HITS_TAG;
    varint(bodyLens[i]!);
    out.set(records[i]!, pos);
    pos += records[i]!.length;
    const sn = snippetLens[i]!;
    if (sn > 0) {
      out[pos++] = SNIPPET_TAG;
      varint(sn);
      pos += out.write(h.snippet, pos, sn, 'utf8');
    }
    const rank = Number(h.rankText);
    if (rank !== 0) {
      out[pos++] = RANK_TAG;
      pos = out.writeFloatLE(rank, pos);
    }
  }
  if (token > 0) {
    out[pos++] = TOKEN_TAG;
    varint(token);
    pos += out.write(nextPageToken, pos, token, 'utf8');
  }
  if (pos !== total) throw new Error(`search response encoding: wrote ${pos} of ${total} bytes`);
  return out;
}

/** SearchLogsResponse.hits = 1, LEN. */
const HITS_TAG = (1 << 3) | 2;
/** SearchLogsResponse.next_page_token = 2, LEN. */
const TOKEN_TAG = (2 << 3) | 2;
/** SearchHit.snippet = 2, LEN. */
const SNIPPET_TAG = (2 << 3) | 2;
/** SearchHit.rank = 3, I32 (float). */
const RANK_TAG = (3 << 3) | 5;
