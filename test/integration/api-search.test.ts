// SearchLogs against the real PostgreSQL (migration 006's generated tsvector + GIN), over both ports
// (grpc-js; Connect JSON and binary, gRPC-Web): words, phrases, exclusions, `or` over the messages (not the context),
// the QueryLogs filters and range, ranked hits with highlighted snippets, keyset pages in both orders
// (every match exactly once, stable while new rows arrive), rows in the default partition and in a
// partition created later, INVALID_ARGUMENT naming the field for bad queries, and UNAUTHENTICATED.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Message } from '@bufbuild/protobuf';
import { ConnectError } from '@connectrpc/connect';
import {
  SearchLogsResponse,
  SearchLogsRequest_Order as Order,
  type LogFilter,
  type SearchLogsRequest,
  type SearchLogsResponse as SearchLogsResponseT,
} from '../../src/gen/mycelis/memory/v1/memory.js';
import { fromEs } from '../../src/api/connect-service.js';
import { nowUs, usToTimestamp } from '../../src/domain/time.js';
import type { LogRow } from '../../src/domain/types.js';
import { DAY_MS, ensureLogPartitions, listLogPartitions } from '../../src/store/partitions.js';
import { makeRow } from './store-rows.js';
import { openEnv, unary, type Env } from './api-harness.js';
import { client, service, startHttpApi, type HttpApi, type Kind } from './connect-harness.js';

const run = promisify(execFile);
const TOKEN = 'tok-search-7d1e';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const KINDS: Kind[] = ['connect-json-h1', 'connect-binary-h2c', 'grpc-web-h1', 'grpc-web-binary-h2c'];
const mSearch = service.methods.find((m) => m.name === 'SearchLogs')!;

function md(token: string | null = TOKEN): grpc.Metadata {
  const m = new grpc.Metadata();
  if (token !== null) m.set('authorization', `Bearer ${token}`);
  return m;
}

const noFilter = (): LogFilter => ({ agentIds: [], teamIds: [], levels: [], intents: [], traceId: '' });

function req(query: string, over: Partial<SearchLogsRequest> = {}): SearchLogsRequest {
  return { query, filter: noFilter(), pageSize: 0, pageToken: '', since: undefined, until: undefined, order: Order.ORDER_UNSPECIFIED, ...over };
}

const messages = (r: SearchLogsResponseT): string[] => r.hits.map((h) => h.record!.entry!.message);

describe('api: SearchLogs, both ports', { timeout: 120_000 }, () => {
  let env: Env;
  let api: HttpApi;
  const t0 = nowUs() - 3_600_000_000; // an hour ago: inside the partitions migrate created
  const at = (minutes: number): number => t0 + minutes * 60_000_000;
  const row = (minutes: number, message: string, over: Partial<LogRow> = {}): LogRow =>
    makeRow({ timestampUs: at(minutes), message, context: '{}', traceId: 'search-wf', ...over });

  const search = (r: SearchLogsRequest, meta = md()): Promise<SearchLogsResponseT> => unary(api.client.searchLogs.bind(api.client) as never, r, meta);

  before(async () => {
    env = await openEnv('search');
    api = await startHttpApi(env, { API_TOKENS: TOKEN });
    await env.writer.write({
      rows: [
        row(1, 'open /etc/shadow: Permission denied', { source: 'coder', level: 'ERROR', teamId: 'red' }),
        row(2, 'permission granted, denied nothing', { source: 'coder', teamId: 'red' }),
        row(3, 'Denied: the permission was revoked', { source: 'planner', teamId: 'blue', level: 'WARN' }),
        row(4, 'shell: permission denied (publickey)', { source: 'planner', teamId: 'blue', context: JSON.stringify({ tool: 'shell', nested: { deep: ['Quokka sighting'] } }) }),
        row(5, 'nothing to see here', { source: 'scout', teamId: 'blue', context: JSON.stringify({ quokka: 1, note: 'key names are not searched' }) }),
        row(6, 'weather: quokka fog', { source: 'scout', teamId: 'green' }),
      ],
      rejects: [],
      registry: [],
    });
  });
  after(async () => {
    await api?.closeAll();
    await env?.close();
  });

  it('words, "phrases", -exclusions and or, case-insensitive, over the message (not the context), newest first', async () => {
    assert.deepEqual(messages(await search(req('permission denied'))), [
      'shell: permission denied (publickey)',
      'Denied: the permission was revoked',
      'permission granted, denied nothing',
      'open /etc/shadow: Permission denied',
    ]);
    assert.deepEqual(messages(await search(req('"permission denied"'))), ['shell: permission denied (publickey)', 'open /etc/shadow: Permission denied']);
    assert.deepEqual(messages(await search(req('permission denied -granted -"publickey"'))), ['Denied: the permission was revoked', 'open /etc/shadow: Permission denied']);
    assert.deepEqual(messages(await search(req('QUOKKA or revoked'))), ['weather: quokka fog', 'Denied: the permission was revoked']);
    // PostgreSQL's parser keeps a path whole: /etc/shadow is one word.
    assert.deepEqual(messages(await search(req('/etc/shadow'))), ['open /etc/shadow: Permission denied']);
    // The context is not searched (migration 006's scope): neither its keys nor its string values.
    assert.deepEqual(messages(await search(req('quokka'))), ['weather: quokka fog']);
    assert.deepEqual(messages(await search(req('sighting'))), []);
    assert.deepEqual(messages(await search(req('nomatchatall'))), []);
  });

  it('the QueryLogs filters and range narrow the search', async () => {
    const f = (over: Partial<LogFilter>): LogFilter => ({ ...noFilter(), ...over });
    assert.deepEqual(messages(await search(req('permission', { filter: f({ agentIds: ['planner'] }) }))), ['shell: permission denied (publickey)', 'Denied: the permission was revoked']);
    assert.deepEqual(messages(await search(req('permission', { filter: f({ teamIds: ['red'], levels: ['error'] }) }))), ['open /etc/shadow: Permission denied']);
    assert.deepEqual(messages(await search(req('permission', { filter: f({ traceId: 'other' }) }))), []);
    assert.deepEqual(
      messages(await search(req('permission', { since: usToTimestamp(at(2)), until: usToTimestamp(at(4)) }))),
      ['Denied: the permission was revoked', 'permission granted, denied nothing'],
    );
  });

  it('each hit has a rank and a snippet of its message highlighting the matched words', async () => {
    const res = await search(req('permission denied'));
    for (const h of res.hits) assert.ok(h.rank > 0, `rank ${h.rank}`);
    const byMsg = new Map(res.hits.map((h) => [h.record!.entry!.message, h.snippet]));
    assert.equal(byMsg.get('open /etc/shadow: Permission denied'), 'open /etc/shadow: «Permission» «denied»');
    assert.match(byMsg.get('shell: permission denied (publickey)')!, /^shell: «permission» «denied» \(publickey/);
    // RELEVANCE: the phrase-like rows rank above the ones with the words apart, ties newest first.
    const rel = await search(req('permission denied', { order: Order.ORDER_RELEVANCE }));
    const ranks = rel.hits.map((h) => h.rank);
    assert.deepEqual([...ranks].sort((a, b) => b - a), ranks);
    assert.equal(rel.hits.length, 4);
  });

  it('a long message gives a short snippet; huge messages are stored and searchable', async () => {
    const long = `${'lorem ipsum '.repeat(5000)}needle-in-haystack ${'dolor sit '.repeat(5000)}`;
    const hugeWords = Array.from({ length: 60_000 }, (_, i) => `w${i.toString(36)}x`).join(' ');
    await env.writer.write({
      rows: [row(10, long, { source: 'long' }), row(11, `${hugeWords} ${'y'.repeat(3000)} zebra`, { source: 'huge', context: JSON.stringify({ s: hugeWords }) })],
      rejects: [],
      registry: [],
    });
    const [h] = (await search(req('needle'))).hits;
    assert.ok(h && h.snippet.length <= 301 && h.snippet.includes('«needle»'), h?.snippet);
    assert.equal((await search(req('w1x'))).hits[0]?.record?.entry?.source, 'huge');
  });

  it('pages: every match exactly once in (timestamp, seq) order, stable while newer rows arrive; RELEVANCE pages likewise', async () => {
    // 25 rows sharing a word, several at the same timestamp (seq breaks the tie).
    await env.writer.write({ rows: Array.from({ length: 25 }, (_, i) => row(20 + Math.floor(i / 3), `paging marmot ${i}`, { source: `p${i % 4}` })), rejects: [], registry: [] });
    for (const order of [Order.ORDER_NEWEST, Order.ORDER_RELEVANCE]) {
      const seen: string[] = [];
      let token = '';
      let pages = 0;
      do {
        const r = await search(req('marmot', { pageSize: 4, pageToken: token, order }));
        seen.push(...r.hits.map((x) => x.record!.id));
        token = r.nextPageToken;
        pages++;
        // A newer match committed mid-way is not on a later page (the keyset is behind it).
        if (pages === 2) await env.writer.write({ rows: [row(59, 'late marmot')], rejects: [], registry: [] });
      } while (token !== '');
      assert.equal(new Set(seen).size, seen.length, 'no duplicates');
      assert.equal(seen.length, 25 + (order === Order.ORDER_NEWEST ? 0 : 1), 'all of them');
      if (order === Order.ORDER_NEWEST) {
        const all = await search(req('marmot', { pageSize: 1000 }));
        // The same order as one big page (minus the late one, newest of all).
        assert.deepEqual(seen, all.hits.slice(1).map((x) => x.record!.id));
        const ts = all.hits.map((x) => [Number(x.record!.entry!.timestamp!.seconds) * 1e9 + x.record!.entry!.timestamp!.nanos, Number(x.record!.seq)] as const);
        assert.ok(ts.every((v, i) => i === 0 || v[0] < ts[i - 1]![0] || (v[0] === ts[i - 1]![0] && v[1] < ts[i - 1]![1])), 'newest first, then seq');
      }
    }
    // A token belongs to its request.
    const first = await search(req('marmot', { pageSize: 2 }));
    await assert.rejects(search(req('paging', { pageSize: 2, pageToken: first.nextPageToken })), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^page_token: .*different filter/.test(e.details));
    await assert.rejects(search(req('marmot', { pageSize: 2, pageToken: first.nextPageToken, order: Order.ORDER_RELEVANCE })), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^page_token/.test(e.details));
  });

  it('rows in the default partition and in a partition created later are found', async () => {
    // 20 days back: no partition covers it (migrate created 7 days back), so it lands in the default one.
    const old = nowUs() - 20 * DAY_MS * 1000;
    await env.writer.write({ rows: [makeRow({ timestampUs: old, message: 'ancient wombat', context: '{}' })], rejects: [], registry: [] });
    assert.deepEqual(messages(await search(req('wombat'))), ['ancient wombat']);
    const created = await ensureLogPartitions(env.db.pool, { intervalMs: DAY_MS, behindMs: 25 * DAY_MS, aheadMs: 3 * DAY_MS });
    assert.ok(created.adopted >= 1, 'the row moved into a new partition');
    const parts = await listLogPartitions(env.db.pool);
    const holder = await env.db.pool.query<{ p: string }>(`SELECT tableoid::regclass::text AS p FROM log_entries WHERE search @@ websearch_to_tsquery('simple', 'wombat')`);
    assert.ok(parts.some((p) => p.name === holder.rows[0]?.p && !p.isDefault), `in ${holder.rows[0]?.p}`);
    assert.deepEqual(messages(await search(req('wombat'))), ['ancient wombat']);
    const idx = await env.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_am a ON a.oid = (SELECT relam FROM pg_class WHERE oid = i.indexrelid)
        WHERE c.relname = $1 AND a.amname = 'gin'`,
      [holder.rows[0]!.p],
    );
    assert.equal(idx.rows[0]!.n, 1, 'the new partition has the GIN index');
  });

  it('the same answer on every Connect and gRPC-Web variant', async () => {
    const r = req('permission denied', { pageSize: 3 });
    const a = await search(r);
    for (const kind of KINDS) {
      const c = client(api.baseUrl, kind);
      const res = fromEs(mSearch.output, SearchLogsResponse, (await c['searchLogs']!(r, { headers: AUTH })) as Message);
      assert.deepEqual(res, a, kind);
      const next = fromEs(mSearch.output, SearchLogsResponse, (await c['searchLogs']!({ ...r, pageToken: a.nextPageToken }, { headers: AUTH })) as Message);
      assert.deepEqual(messages(next), ['open /etc/shadow: Permission denied'], kind);
    }
  });

  it('server reflection describes SearchLogs: buf curl lists it and calls it with no .proto files', { timeout: 120_000 }, async () => {
    const url = `http://${api.address}`;
    const buf = (...args: string[]): Promise<{ stdout: string }> =>
      run('npx', ['buf', 'curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args], { timeout: 60_000 });
    assert.match((await buf('--list-methods', url)).stdout, /^mycelis\.memory\.v1\.MemoryService\/SearchLogs$/m);
    const res = await buf('-H', `authorization: Bearer ${TOKEN}`, '-d', '{"query": "\\"permission denied\\"", "order": "ORDER_RELEVANCE"}', `${url}/mycelis.memory.v1.MemoryService/SearchLogs`);
    const body = JSON.parse(res.stdout) as { hits: { record: { entry: { message: string } }; snippet: string; rank: number }[] };
    assert.deepEqual(body.hits.map((h) => h.record.entry.message).sort(), ['open /etc/shadow: Permission denied', 'shell: permission denied (publickey)']);
    assert.ok(body.hits.every((h) => h.rank > 0 && h.snippet.includes('«')));
  });

  it('bad queries are INVALID_ARGUMENT naming the field, never INTERNAL; no token is UNAUTHENTICATED; on both ports', async () => {
    const codeOf = async (p: Promise<unknown>): Promise<[number, string]> => {
      try {
        await p;
      } catch (err) {
        if (err instanceof ConnectError) return [err.code, err.rawMessage];
        const e = err as grpc.ServiceError;
        return [e.code, e.details];
      }
      throw new Error('expected a failure');
    };
    const cases: [SearchLogsRequest, grpc.Metadata, number, RegExp][] = [
      [req(''), md(), grpc.status.INVALID_ARGUMENT, /^query: required/],
      [req('   '), md(), grpc.status.INVALID_ARGUMENT, /^query: required/],
      [req('!!! :: &|'), md(), grpc.status.INVALID_ARGUMENT, /^query: .*no word to search for/],
      [req('-'), md(), grpc.status.INVALID_ARGUMENT, /^query: .*no word/],
      [req('x'.repeat(1025)), md(), grpc.status.INVALID_ARGUMENT, /^query: longer than 1024/],
      [req('a\u0000b'), md(), grpc.status.INVALID_ARGUMENT, /^query: must not contain NUL/],
      [req('ok', { pageSize: 1001 }), md(), grpc.status.INVALID_ARGUMENT, /^page_size/],
      [req('ok', { pageToken: 'garbage' }), md(), grpc.status.INVALID_ARGUMENT, /^page_token/],
      [req('ok', { filter: { ...noFilter(), levels: ['LOUD'] } }), md(), grpc.status.INVALID_ARGUMENT, /^filter\.levels\[0\]/],
      [req('ok', { since: usToTimestamp(at(5)), until: usToTimestamp(at(1)) }), md(), grpc.status.INVALID_ARGUMENT, /^until/],
      [req('ok', { order: 7 as Order }), md(), grpc.status.INVALID_ARGUMENT, /^order: unknown order 7/],
      [req('ok'), md(null), grpc.status.UNAUTHENTICATED, /authorization/],
      [req('ok'), md('wrong'), grpc.status.UNAUTHENTICATED, /invalid bearer token/],
    ];
    for (const [r, meta, code, msg] of cases) {
      const [gc, gm] = await codeOf(search(r, meta));
      assert.equal(gc, code, `gRPC ${r.query.slice(0, 20)}: ${gm}`);
      assert.match(gm, msg);
      const headers = meta.get('authorization').length > 0 ? { authorization: String(meta.get('authorization')[0]) } : {};
      for (const kind of KINDS) {
        if ((r.order as number) === 7 && kind.startsWith('connect-json')) continue; // JSON cannot carry an unknown enum number by name
        const [cc, cm] = await codeOf(client(api.baseUrl, kind)['searchLogs']!(r, { headers }) as Promise<unknown>);
        assert.equal(cc, code, `${kind} ${r.query.slice(0, 20)}: ${cm}`);
        assert.match(cm, msg);
      }
    }
  });
});
