// SearchLogs' pre-encoded response (the gRPC port, src/api/queries/search.ts searchLogsEncoded) decodes
// to exactly what the generic response (the Connect port, searchLogs) decodes to after ts-proto encodes
// it: records (contexts nested, deep, null, non-ASCII; large ones, so lengths take several varint
// bytes), snippets (empty, non-ASCII, highlighted), ranks (zero, tiny, large: float on the wire), the
// next page's token; with ts-proto and with protobuf-es. A query with no word is INVALID_ARGUMENT on both.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { InvalidArgumentError } from '../../src/errors.js';
import { encodeSearchResponse, searchLogs, searchLogsEncoded } from '../../src/api/queries/search.js';
import { SearchLogsRequest, SearchLogsRequest_Order as Order, SearchLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import { validateSearchLogs } from '../../src/api/validate.js';
import type { StoredLogRow } from '../../src/store/log-reader.js';
import { DEEP_CONTEXT, storedRow } from '../helpers/stored-rows.js';
import type { SearchPage, SearchReader, SearchRow } from '../../src/store/search-reader.js';
import { SearchLogsResponseSchema } from '../../web/gen/mycelis/memory/v1/memory_pb.js';

/** Row i: every other one of trace 'wf-1', newest first, a message the search finds. */
function row(i: number, over: Partial<StoredLogRow> = {}): StoredLogRow {
  return storedRow(i, { traceId: i % 2 === 0 ? 'wf-1' : '', timestampUs: 1_764_000_000_000_000 - i * 1000, message: `permission denied at step ${i}`, ...over });
}
const deep = DEEP_CONTEXT;

const hit = (r: StoredLogRow, rankText: string, snippet: string): SearchRow => ({ row: r, rankText, snippet });

const hits: SearchRow[] = [
  ...Array.from({ length: 20 }, (_, i) => hit(row(i), String(0.0607927 / (i + 1)), `«permission» «denied» at step ${i}`)),
  hit(row(20, { context: null, message: '' }), '0', ''),
  hit(row(21, { context: deep }), '1e-20', 'é∑😀 «denied» …'),
  hit(row(22, { context: { big: 'x'.repeat(5000) }, message: 'm'.repeat(300) }), '0.1', 's'.repeat(400)),
  hit(row(23, { seq: 0 }), '3.4e+38', '«x»'),
];

/** A SearchReader over fixed rows (the SQL is the integration tests'): `limit` = page size + 1. */
function readerOf(rows: SearchRow[], terms = 2): SearchReader {
  return {
    parseQuery: async () => ({ terms, text: terms === 0 ? '' : "'permission' & 'denied'" }),
    page: async (_f: unknown, o: { limit: number }): Promise<SearchPage> => ({ rows: rows.slice(0, o.limit), rankFrom: { timestampUs: 1_763_000_000_000_000, seq: 7 }, rankWindow: 5 }),
  } as unknown as SearchReader;
}

const signal = new AbortController().signal;
const req = (over: Partial<SearchLogsRequest>) => validateSearchLogs(SearchLogsRequest.fromPartial({ query: 'permission denied', ...over }));

describe('SearchLogs: the pre-encoded response is the generic one', () => {
  it('hits, snippets, ranks and the page token decode the same (ts-proto and protobuf-es)', async () => {
    for (const [v, label] of [
      [req({ pageSize: 100 }), 'one page, no token'],
      [req({ pageSize: 10 }), 'newest, a token'],
      [req({ pageSize: 10, order: Order.ORDER_RELEVANCE }), 'relevance, a token'],
      [req({ pageSize: 1000 }), 'empty'],
    ] as const) {
      const reader = readerOf(label === 'empty' ? [] : hits);
      const generic = await searchLogs(reader, v, signal);
      const bytes = await searchLogsEncoded(reader, v, signal);
      const decoded = SearchLogsResponse.decode(bytes);
      assert.deepEqual(decoded, SearchLogsResponse.decode(SearchLogsResponse.encode(generic).finish()), label);
      // Field by field where the float's rounding does not enter; the rank as a float32.
      assert.equal(decoded.nextPageToken, generic.nextPageToken, label);
      assert.equal(decoded.hits.length, generic.hits.length, label);
      decoded.hits.forEach((h, i) => {
        assert.deepEqual(h.record, generic.hits[i]!.record, `${label}: record ${i}`);
        assert.equal(h.snippet, generic.hits[i]!.snippet, `${label}: snippet ${i}`);
        assert.equal(h.rank, Math.fround(generic.hits[i]!.rank), `${label}: rank ${i}`);
      });
      const es = fromBinary(SearchLogsResponseSchema, bytes);
      assert.deepEqual(es.hits.map((h) => [h.record?.id, h.snippet, h.rank]), decoded.hits.map((h) => [h.record?.id, h.snippet, h.rank]), label);
      assert.equal(es.nextPageToken, generic.nextPageToken, label);
    }
    assert.notEqual((await searchLogs(readerOf(hits), req({ pageSize: 10 }), signal)).nextPageToken, '');
  });

  it('the bytes are the length they say (one hit, every hit with a token, none)', () => {
    const one = encodeSearchResponse(hits.slice(0, 1), '');
    const all = encodeSearchResponse(hits, 'tok');
    assert.equal(SearchLogsResponse.decode(one).hits.length, 1);
    assert.equal(SearchLogsResponse.decode(all).hits.length, hits.length);
    assert.equal(encodeSearchResponse([], '').length, 0);
  });

  it('a RELEVANCE token carries the first page\'s ranked set and window; the next page hands both back to the reader', async () => {
    const asked: { rankFrom?: unknown; rankWindow?: unknown }[] = [];
    const first = { timestampUs: 1_763_000_000_000_000, seq: 7 };
    const reader = {
      parseQuery: async () => ({ terms: 2, text: "'permission' <-> 'denied'" }),
      page: async (_f: unknown, o: { limit: number; rankFrom?: unknown; rankWindow?: unknown }): Promise<SearchPage> => {
        asked.push({ rankFrom: o.rankFrom, rankWindow: o.rankWindow });
        // Only a first page says where its ranking starts and in which window.
        return { rows: hits.slice(0, o.limit), rankFrom: o.rankFrom ? null : first, rankWindow: o.rankFrom ? null : 640 };
      },
    } as unknown as SearchReader;
    const v1 = req({ pageSize: 5, order: Order.ORDER_RELEVANCE, query: '"permission denied"' });
    const page1 = await searchLogs(reader, v1, signal);
    const v2 = validateSearchLogs(SearchLogsRequest.fromPartial({ query: '"permission denied"', pageSize: 5, order: Order.ORDER_RELEVANCE, pageToken: page1.nextPageToken }));
    assert.deepEqual([v2.rankFrom, v2.rankWindow], [first, 640]);
    const page2 = await searchLogs(reader, v2, signal);
    assert.deepEqual(asked, [{ rankFrom: null, rankWindow: null }, { rankFrom: first, rankWindow: 640 }]);
    // The third page's token still carries the first page's set and window.
    const v3 = validateSearchLogs(SearchLogsRequest.fromPartial({ query: '"permission denied"', pageSize: 5, order: Order.ORDER_RELEVANCE, pageToken: page2.nextPageToken }));
    assert.deepEqual([v3.rankFrom, v3.rankWindow], [first, 640]);
  });

  it('a query with no word: INVALID_ARGUMENT on both', async () => {
    await assert.rejects(searchLogs(readerOf(hits, 0), req({}), signal), InvalidArgumentError);
    await assert.rejects(searchLogsEncoded(readerOf(hits, 0), req({}), signal), InvalidArgumentError);
  });
});
