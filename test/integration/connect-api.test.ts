// MemoryService on the HTTP port (connect-node) against the real PostgreSQL, next to the grpc-js port
// over the same MemoryCore: Connect JSON/binary (HTTP/1.1, h2c, GET), gRPC-Web, curl and buf curl
// return what gRPC returns; StreamLogs tail + live + resume match gRPC record for record; CORS; auth
// and error codes with their HTTP statuses; health, readiness and /metrics; the blocked-stream
// cancellation fix; shutdown ending streams with their cursor.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as http from 'node:http';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { toJson, type Message } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import {
  GetRegistryResponse,
  QueryLogsResponse,
  type GetRegistryResponse as GetRegistryResponseT,
  type QueryLogsResponse as QueryLogsResponseT,
} from '../../src/gen/mycelis/memory/v1/memory.js';
import { fromEs, toEs } from '../../src/api/connect-service.js';
import { decodeCursor, encodeCursor } from '../../src/api/cursor.js';
import { startHttpServer } from '../../src/api/http-server.js';
import { MemoryCore } from '../../src/api/core.js';
import type { Config } from '../../src/config/config.js';
import { metricsRegistry } from '../../src/metrics.js';
import { waitFor } from '../helpers/wait.js';
import { makeEvent, makeRow } from './store-rows.js';
import { logger, metricValue, openEnv, StreamCollector, unary, type Env } from './api-harness.js';
import { client, ConnectStream as BaseConnectStream, service, startHttpApi, type HttpApi, type Kind, type MemoryClient } from './connect-harness.js';

const run = promisify(execFile);
const TOKEN = 'tok-connect-7f3a9c-secret';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const ORIGIN = 'https://ui.example.com';
const PATH = '/mycelis.memory.v1.MemoryService';
const KINDS: Kind[] = ['connect-json-h1', 'connect-binary-h2c', 'grpc-web-h1', 'grpc-web-binary-h2c'];

const method = (name: string) => service.methods.find((m) => m.name === name)!;

function grpcMd(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', AUTH.authorization);
  return md;
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function raw(base: string, reqMethod: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method: reqMethod, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A background stream reader that sends the test's bearer token unless told otherwise. */
class ConnectStream extends BaseConnectStream {
  constructor(c: MemoryClient, req: object, headers: Record<string, string> = AUTH) {
    super(c, req, headers);
  }
}

function isAccessControl(h: http.IncomingHttpHeaders): string[] {
  return Object.keys(h).filter((k) => k.startsWith('access-control-'));
}

describe('api: MemoryService over Connect and gRPC-Web (HTTP port)', () => {
  let env: Env;
  let api: HttpApi;

  before(async () => {
    env = await openEnv('connect_api');
    api = await startHttpApi(env, { API_TOKENS: `other-token,${TOKEN}`, CORS_ORIGINS: `${ORIGIN},http://localhost:5173`, KEEPALIVE_INTERVAL: '500ms', MAX_STREAMS: '8' });
    const now = Date.now() * 1000;
    await env.writer.write({
      rows: Array.from({ length: 40 }, (_, i) =>
        makeRow({ source: `same-${i % 4}`, intent: 'same-data', level: i % 5 === 0 ? 'ERROR' : 'INFO', timestampUs: now - i * 1000, context: JSON.stringify({ i, nested: { list: [1, 'two', null, true] } }) }),
      ),
      rejects: [],
      registry: Array.from({ length: 12 }, (_, i) => makeEvent({ agentId: `conn-agent-${String(i).padStart(2, '0')}`, eventTeam: i % 2 ? 'odd' : 'even', meta: { i, tags: ['a', 'b'] } })),
    });
  });
  after(async () => {
    await api?.closeAll();
    await env?.close();
  });

  /** A second HTTP server with its own MemoryCore (shutting one down closes its core's streams). */
  const extraServer = async (config: Config, opts: { health: { isReady: boolean }; ingestStatus?: () => object }): Promise<{ port: number; shutdown(t: number): Promise<void> }> => {
    const core = new MemoryCore({ db: env.db, notifier: env.notifier, config, logger });
    const srv = await startHttpServer({ config, core, logger, ...opts });
    return {
      port: srv.port,
      async shutdown(t) {
        await srv.shutdown(t);
        core.close();
      },
    };
  };
  const grpcRegistry = (req: object): Promise<GetRegistryResponseT> =>
    unary(api.client.getRegistry.bind(api.client) as never, { teamIds: [], statuses: [], pageSize: 0, pageToken: '', ...req }, grpcMd());
  const grpcQuery = (req: object): Promise<QueryLogsResponseT> =>
    unary(api.client.queryLogs.bind(api.client) as never, { pageSize: 0, pageToken: '', ...req }, grpcMd());

  it('Connect (JSON over HTTP/1.1 with GET, binary over h2c) and gRPC-Web return the same data as gRPC', async () => {
    const regReq = { teamIds: ['even'], pageSize: 4 };
    const qReq = { filter: { intents: ['same-data'], agentIds: [], teamIds: [], levels: [], traceId: '' }, pageSize: 15 };
    const gReg = await grpcRegistry(regReq);
    const gQuery = await grpcQuery(qReq);
    const gQuery2 = await grpcQuery({ ...qReq, pageToken: gQuery.nextPageToken });
    assert.equal(gReg.agents.length, 4);
    assert.equal(gQuery.records.length, 15);
    for (const kind of KINDS) {
      const c = client(api.baseUrl, kind);
      const reg = fromEs(method('GetRegistry').output, GetRegistryResponse, (await c['getRegistry']!(regReq, { headers: AUTH })) as Message);
      // as_of is the server's clock at the call; everything else must be identical.
      // (The registry page token embeds as_of, so it differs too; it must page the same way.)
      assert.deepEqual({ ...reg, asOf: undefined, nextPageToken: '' }, { ...gReg, asOf: undefined, nextPageToken: '' }, kind);
      assert.notEqual(reg.nextPageToken, '');
      const regNext = fromEs(method('GetRegistry').output, GetRegistryResponse, (await c['getRegistry']!({ ...regReq, pageToken: reg.nextPageToken }, { headers: AUTH })) as Message);
      const gRegNext = await grpcRegistry({ ...regReq, pageToken: gReg.nextPageToken });
      assert.deepEqual(regNext.agents, gRegNext.agents, kind);
      assert.ok(reg.asOf && Number(reg.asOf.seconds) >= Number(gReg.asOf!.seconds));
      const q = fromEs(method('QueryLogs').output, QueryLogsResponse, (await c['queryLogs']!(qReq, { headers: AUTH })) as Message);
      assert.deepEqual(q, gQuery, kind);
      // A page token from one transport works on another (same core, same token format).
      const q2 = fromEs(method('QueryLogs').output, QueryLogsResponse, (await c['queryLogs']!({ ...qReq, pageToken: gQuery.nextPageToken }, { headers: AUTH })) as Message);
      assert.deepEqual(q2, gQuery2, kind);
    }
  });

  it('plain JSON POST (curl), GET ?connect=v1&encoding=json&message=…, and unknown JSON fields', async () => {
    const qJson = toJson(method('QueryLogs').output, toEs(method('QueryLogs').output, QueryLogsResponse, await grpcQuery({ filter: { intents: ['same-data'], agentIds: ['same-1'], teamIds: [], levels: [], traceId: '' }, pageSize: 5 })));
    const body = JSON.stringify({ filter: { intents: ['same-data'], agentIds: ['same-1'] }, pageSize: 5, someFieldFromTheFuture: { x: 1 } });
    const { stdout } = await run('curl', ['-sS', '-X', 'POST', '-H', 'Content-Type: application/json', '-H', `Authorization: ${AUTH.authorization}`, '--data', body, `${api.baseUrl}${PATH}/QueryLogs`]);
    assert.deepEqual(JSON.parse(stdout), qJson);

    const message = encodeURIComponent(JSON.stringify({ filter: { intents: ['same-data'], agentIds: ['same-1'] }, pageSize: 5 }));
    const get = await raw(api.baseUrl, 'GET', `${PATH}/QueryLogs?connect=v1&encoding=json&message=${message}`, AUTH);
    assert.equal(get.status, 200, get.body);
    assert.match(String(get.headers['content-type']), /^application\/json/);
    assert.deepEqual(JSON.parse(get.body), qJson);

    const rJson = toJson(method('GetRegistry').output, toEs(method('GetRegistry').output, GetRegistryResponse, await grpcRegistry({ teamIds: ['odd'] })));
    const getReg = await raw(api.baseUrl, 'GET', `${PATH}/GetRegistry?connect=v1&encoding=json&message=${encodeURIComponent('{"teamIds":["odd"]}')}`, AUTH);
    assert.equal(getReg.status, 200, getReg.body);
    const parsed = JSON.parse(getReg.body) as { agents: unknown[]; asOf: string };
    assert.deepEqual(parsed.agents, (rJson as { agents: unknown[] }).agents);
    // StreamLogs has side effects on server resources: not callable with GET.
    const getStream = await raw(api.baseUrl, 'GET', `${PATH}/StreamLogs?connect=v1&encoding=json&message=%7B%7D`, AUTH);
    assert.notEqual(getStream.status, 200);
  });

  it('buf curl --protocol connect and --protocol grpcweb (schema from proto/) match gRPC', { timeout: 180_000 }, async () => {
    const gQuery = await grpcQuery({ filter: { intents: ['same-data'], agentIds: [], teamIds: [], levels: ['ERROR'], traceId: '' }, pageSize: 3 });
    const want = toJson(method('QueryLogs').output, toEs(method('QueryLogs').output, QueryLogsResponse, gQuery));
    for (const protocol of ['connect', 'grpcweb']) {
      const { stdout } = await run(
        'npx',
        ['buf', 'curl', '--schema', 'proto', '--protocol', protocol, '-H', `Authorization: ${AUTH.authorization}`, '-d', '{"filter":{"intents":["same-data"],"levels":["error"]},"page_size":3}', `${api.baseUrl}${PATH}/QueryLogs`],
        { timeout: 120_000 },
      );
      assert.deepEqual(JSON.parse(stdout), want, protocol);
    }
  });

  it('StreamLogs: tail then live, resumed by cursor, matches gRPC record for record', async () => {
    const filter = { agentIds: ['stream-conn'], teamIds: [], levels: [], intents: [], traceId: '' };
    await env.writer.write({ rows: Array.from({ length: 20 }, (_, i) => makeRow({ source: 'stream-conn', message: `s${i}` })), rejects: [], registry: [] });
    const g = new StreamCollector(api.client, { filter, tail: 10 }, grpcMd());
    const streams = KINDS.map((k) => new ConnectStream(client(api.baseUrl, k), { filter, tail: 10 }));
    await waitFor('tails', () => g.records.length >= 10 && streams.every((s) => s.records.length >= 10));
    for (let b = 0; b < 3; b++) {
      await env.writer.write({ rows: Array.from({ length: 7 }, () => makeRow({ source: 'stream-conn' })), rejects: [], registry: [] });
      await env.writer.write({ rows: Array.from({ length: 3 }, () => makeRow({ source: 'not-this-one' })), rejects: [], registry: [] });
    }
    await waitFor('live', () => g.records.length >= 31 && streams.every((s) => s.records.length >= 31));
    assert.equal(g.records.length, 31);
    for (const [i, s] of streams.entries()) {
      assert.deepEqual(s.records, g.records, KINDS[i]);
      assert.equal(s.error, null);
    }
    // Keepalives (empty records, current cursor) arrive over Connect too.
    const ka = streams[0]!;
    const seen = ka.responses.length;
    await waitFor('keepalive', () => ka.responses.slice(seen).some((r) => r.records.length === 0 && r.cursor !== ''), { timeoutMs: 5000 });
    for (const s of streams) s.cancel();
    g.cancel();

    // Resume from the 12th record's cursor: exactly the records after it, on every transport.
    const from = g.records[11]!;
    const resumed = KINDS.map((k) => new ConnectStream(client(api.baseUrl, k), { filter, afterCursor: from.cursor }));
    await waitFor('resumed', () => resumed.every((s) => s.records.length >= 19));
    for (const s of resumed) {
      assert.deepEqual(s.records.slice(0, 19), g.records.slice(12));
      s.cancel();
    }
    await waitFor('streams released', () => api.core.openStreamCount === 0);
  });

  it('CORS: an allowed origin gets the headers (preflight and actual); a disallowed one gets none and its preflight is refused', async () => {
    const preflight = (origin: string): Promise<RawResponse> =>
      raw(api.baseUrl, 'OPTIONS', `${PATH}/GetRegistry`, {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,connect-protocol-version,connect-timeout-ms,authorization,x-grpc-web,x-user-agent,grpc-timeout',
      });
    const ok = await preflight(ORIGIN);
    assert.equal(ok.status, 204);
    assert.equal(ok.headers['access-control-allow-origin'], ORIGIN);
    assert.match(String(ok.headers['access-control-allow-methods']), /POST/);
    assert.match(String(ok.headers['access-control-allow-methods']), /GET/);
    const allowed = String(ok.headers['access-control-allow-headers']).toLowerCase().split(/\s*,\s*/);
    for (const h of ['content-type', 'connect-protocol-version', 'connect-timeout-ms', 'grpc-timeout', 'x-grpc-web', 'x-user-agent', 'authorization', 'connect-accept-encoding', 'connect-content-encoding']) {
      assert.ok(allowed.includes(h), `preflight allows ${h}`);
    }
    const actual = await raw(api.baseUrl, 'POST', `${PATH}/GetRegistry`, { origin: ORIGIN, 'content-type': 'application/json', ...AUTH }, '{}');
    assert.equal(actual.status, 200);
    assert.equal(actual.headers['access-control-allow-origin'], ORIGIN);
    const exposed = String(actual.headers['access-control-expose-headers']).toLowerCase();
    for (const h of ['grpc-status', 'grpc-message', 'grpc-status-details-bin']) assert.ok(exposed.includes(h), `exposes ${h}`);
    // Errors are readable cross-origin too (the browser needs the code).
    const denied = await raw(api.baseUrl, 'POST', `${PATH}/GetRegistry`, { origin: ORIGIN, 'content-type': 'application/json' }, '{}');
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['access-control-allow-origin'], ORIGIN);

    for (const origin of ['https://evil.example.com', 'https://ui.example.com.evil.net', 'http://ui.example.com', 'null']) {
      const bad = await preflight(origin);
      assert.equal(bad.status, 403, origin);
      assert.deepEqual(isAccessControl(bad.headers), [], origin);
      const badActual = await raw(api.baseUrl, 'POST', `${PATH}/GetRegistry`, { origin, 'content-type': 'application/json', ...AUTH }, '{}');
      assert.deepEqual(isAccessControl(badActual.headers), [], origin);
    }
    // No CORS_ORIGINS at all: nothing is allowed.
    const closed = await extraServer({ ...api.config, api: { ...api.config.api, corsOrigins: [], httpPort: 0 } }, { health: { isReady: true } });
    try {
      const r = await raw(`http://127.0.0.1:${closed.port}`, 'OPTIONS', `${PATH}/GetRegistry`, { origin: ORIGIN, 'access-control-request-method': 'POST' });
      assert.equal(r.status, 403);
      assert.deepEqual(isAccessControl(r.headers), []);
    } finally {
      await closed.shutdown(2000);
    }
  });

  it('auth and bad input: Connect codes with the HTTP statuses of the Connect protocol', async () => {
    const post = (name: string, body: string, headers: Record<string, string> = AUTH): Promise<RawResponse> =>
      raw(api.baseUrl, 'POST', `${PATH}/${name}`, { 'content-type': 'application/json', ...headers }, body);
    const expectError = (r: RawResponse, status: number, code: string, message?: RegExp): void => {
      assert.equal(r.status, status, r.body);
      const e = JSON.parse(r.body) as { code: string; message?: string };
      assert.equal(e.code, code);
      if (message) assert.match(e.message ?? '', message);
      assert.ok(!r.body.includes(TOKEN));
    };
    expectError(await post('GetRegistry', '{}', {}), 401, 'unauthenticated');
    expectError(await post('GetRegistry', '{}', { authorization: 'Bearer wrong' }), 401, 'unauthenticated');
    expectError(await post('GetRegistry', '{}', { authorization: TOKEN }), 401, 'unauthenticated');
    expectError(await post('QueryLogs', '{"pageSize":1001}'), 400, 'invalid_argument', /^page_size: /);
    expectError(await post('QueryLogs', '{"filter":{"levels":["INFO","LOUD"]}}'), 400, 'invalid_argument', /^filter\.levels\[1\]: /);
    expectError(await post('GetRegistry', '{"pageToken":"not-a-token"}'), 400, 'invalid_argument', /^page_token: /);
    // A body the library cannot parse keeps the library's code (invalid_argument).
    expectError(await post('QueryLogs', '{"pageSize":'), 400, 'invalid_argument');
    expectError(await post('QueryLogs', '{"pageSize":"many"}'), 400, 'invalid_argument');

    // The same through the clients, for every protocol: codes survive gRPC-Web's trailers.
    for (const kind of KINDS) {
      const c = client(api.baseUrl, kind);
      await assert.rejects(c['getRegistry']!({}) as Promise<unknown>, (e: unknown) => ConnectError.from(e).code === Code.Unauthenticated, kind);
      await assert.rejects(c['queryLogs']!({ pageSize: 5000 }, { headers: AUTH }) as Promise<unknown>, (e: unknown) => {
        const ce = ConnectError.from(e);
        return ce.code === Code.InvalidArgument && /^page_size: /.test(ce.rawMessage);
      }, kind);
      const bad = async (req: object, code: Code, field: RegExp, headers: Record<string, string> = AUTH): Promise<void> => {
        const s = new ConnectStream(c, req, headers);
        await waitFor(`stream error ${kind}`, () => s.error);
        assert.equal(s.error!.code, code, `${kind}: ${s.error!.message}`);
        assert.match(s.error!.rawMessage, field);
      };
      await bad({ tail: 3 }, Code.Unauthenticated, /./, {});
      await bad({ tail: 5, afterCursor: encodeCursor(1) }, Code.InvalidArgument, /^after_cursor: /);
      await bad({ tail: 10_001 }, Code.InvalidArgument, /^tail: /);
      await bad({ afterCursor: 'bogus' }, Code.InvalidArgument, /^after_cursor: /);
      await bad({ afterCursor: encodeCursor(50_000_000) }, Code.OutOfRange, /^after_cursor: /);
    }

    // MAX_STREAMS (8) counts every transport; the next stream gets RESOURCE_EXHAUSTED.
    const open = [
      ...Array.from({ length: 4 }, () => new ConnectStream(client(api.baseUrl, 'connect-json-h1'), {})),
      ...Array.from({ length: 4 }, () => new StreamCollector(api.client, {}, grpcMd())),
    ];
    await waitFor('8 open', () => api.core.openStreamCount === 8);
    const over = new ConnectStream(client(api.baseUrl, 'grpc-web-h1'), {});
    await waitFor('exhausted', () => over.error);
    assert.equal(over.error!.code, Code.ResourceExhausted);
    for (const s of open) s.cancel();
    await waitFor('released', () => api.core.openStreamCount === 0);
  });

  it('/healthz, /readyz (JSON with database, NATS and ingest state) and /metrics (Prometheus text; counters move)', async () => {
    const live = await raw(api.baseUrl, 'GET', '/healthz');
    assert.equal(live.status, 200);
    const ready = await raw(api.baseUrl, 'GET', '/readyz');
    assert.equal(ready.status, 200, ready.body);
    assert.deepEqual(
      { ...(JSON.parse(ready.body) as object), openStreams: 0 },
      { status: 'ready', shuttingDown: false, database: 'ok', nats: 'off', ingest: { mode: 'off' }, openStreams: 0 },
    );
    assert.equal((await raw(api.baseUrl, 'POST', '/healthz', {}, 'x')).status, 405);

    // A service whose database probe fails is live but not ready; NATS state comes from ingest.
    const notReady = await extraServer(
      { ...api.config, api: { ...api.config.api, httpPort: 0 }, ingest: { ...api.config.ingest, mode: 'jetstream' } },
      { health: { isReady: false }, ingestStatus: () => ({ mode: 'jetstream', connected: false, lag: 12, lastCommitAt: null }) },
    );
    try {
      const base = `http://127.0.0.1:${notReady.port}`;
      assert.equal((await raw(base, 'GET', '/healthz')).status, 200);
      const r = await raw(base, 'GET', '/readyz');
      assert.equal(r.status, 503);
      const b = JSON.parse(r.body) as Record<string, unknown>;
      assert.equal(b['database'], 'unavailable');
      assert.equal(b['nats'], 'disconnected');
      assert.deepEqual(b['ingest'], { mode: 'jetstream', connected: false, lag: 12, lastCommitAt: null });
    } finally {
      await notReady.shutdown(2000);
    }

    const sample = async (name: string, labels: Record<string, string>): Promise<number> => {
      const text = (await raw(api.baseUrl, 'GET', '/metrics')).body;
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      let total = 0;
      for (const line of text.split('\n')) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
        if (m && m[1] === name && want.every((w) => (m[2] ?? '').split(/,(?=[a-zA-Z_])/).includes(w))) total += Number(m[3]);
      }
      return total;
    };
    const metrics = await raw(api.baseUrl, 'GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    // Strict Prometheus text exposition: every line is HELP, TYPE, or a sample with a numeric value.
    const lines = metrics.body.split('\n').filter((l) => l !== '');
    const typed = new Map<string, string>();
    for (const line of lines) {
      const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (t) {
        typed.set(t[1]!, t[2]!);
        continue;
      }
      if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue;
      const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)?\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
      assert.ok(s, `not Prometheus text: ${line}`);
      const base = s[1]!.replace(/_(bucket|sum|count)$/, '');
      assert.ok(typed.has(s[1]!) || typed.has(base), `sample before its TYPE: ${line}`);
    }
    for (const name of ['mycelis_memory_api_requests_total', 'mycelis_memory_api_request_duration_seconds', 'mycelis_memory_api_streams_open', 'mycelis_memory_api_open_streams', 'mycelis_memory_store_rows_inserted_total']) {
      assert.ok(typed.has(name), `exports ${name}`);
    }

    const okBefore = await sample('mycelis_memory_api_requests_total', { method: 'GetRegistry', protocol: 'connect', code: 'ok' });
    const webBefore = await sample('mycelis_memory_api_requests_total', { method: 'QueryLogs', protocol: 'grpc-web', code: 'invalid_argument' });
    const grpcBefore = await sample('mycelis_memory_api_requests_total', { method: 'GetRegistry', protocol: 'grpc', code: 'ok' });
    const latBefore = await sample('mycelis_memory_api_request_duration_seconds_count', { method: 'GetRegistry', protocol: 'connect' });
    const c = client(api.baseUrl, 'connect-json-h1');
    await c['getRegistry']!({}, { headers: AUTH });
    await c['getRegistry']!({}, { headers: AUTH });
    await assert.rejects(client(api.baseUrl, 'grpc-web-h1')['queryLogs']!({ pageSize: 5000 }, { headers: AUTH }) as Promise<unknown>);
    await grpcRegistry({});
    assert.equal(await sample('mycelis_memory_api_requests_total', { method: 'GetRegistry', protocol: 'connect', code: 'ok' }), okBefore + 2);
    assert.equal(await sample('mycelis_memory_api_requests_total', { method: 'QueryLogs', protocol: 'grpc-web', code: 'invalid_argument' }), webBefore + 1);
    assert.equal(await sample('mycelis_memory_api_requests_total', { method: 'GetRegistry', protocol: 'grpc', code: 'ok' }), grpcBefore + 1);
    assert.equal(await sample('mycelis_memory_api_request_duration_seconds_count', { method: 'GetRegistry', protocol: 'connect' }), latBefore + 2);

    // Streams open and close in the gauges; rows written move the store counter.
    const s1 = new ConnectStream(client(api.baseUrl, 'grpc-web-h1'), {});
    const s2 = new ConnectStream(client(api.baseUrl, 'connect-binary-h2c'), {});
    await waitFor('gauges up', async () => (await sample('mycelis_memory_api_streams_open', { protocol: 'grpc-web' })) === 1 && (await sample('mycelis_memory_api_streams_open', { protocol: 'connect' })) === 1);
    assert.equal(await sample('mycelis_memory_api_open_streams', {}), 2);
    const rowsBefore = await sample('mycelis_memory_store_rows_inserted_total', {});
    await env.writer.write({ rows: Array.from({ length: 9 }, () => makeRow({ source: 'metrics-agent' })), rejects: [], registry: [] });
    await waitFor('streamed', () => s1.records.length === 9 && s2.records.length === 9);
    assert.equal(await sample('mycelis_memory_store_rows_inserted_total', {}), rowsBefore + 9);
    s1.cancel();
    s2.cancel();
    await waitFor('gauges down', async () => (await sample('mycelis_memory_api_streams_open', {})) === 0 && (await sample('mycelis_memory_api_open_streams', {})) === 0);
    assert.ok((await sample('mycelis_memory_api_requests_total', { method: 'StreamLogs', protocol: 'grpc-web', code: 'canceled' })) >= 1);
  });
});

describe('api: Connect stream cancellation and shutdown', () => {
  let env: Env;
  before(async () => {
    env = await openEnv('connect_cancel');
  });
  after(async () => {
    await env?.close();
  });

  it('a client that vanishes while the server is blocked writing to it releases everything', { timeout: 120_000 }, async () => {
    const api = await startHttpApi(env, { STREAM_BUFFER: '10', KEEPALIVE_INTERVAL: '1s' });
    try {
      const fallbacksBefore = await metricValue('mycelis_memory_api_stream_fallbacks_total');
      // A raw HTTP/1.1 Connect stream whose reader never reads: the socket's buffers fill and
      // connect-node blocks in write().
      const json = Buffer.from('{}');
      const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, json.length]), json]);
      let socketOfClient: import('node:net').Socket | undefined;
      const responded = new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.request(`${api.baseUrl}${PATH}/StreamLogs`, {
          method: 'POST',
          headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
          agent: false,
        });
        req.on('socket', (s) => {
          socketOfClient = s;
        });
        req.on('response', resolve);
        req.on('error', () => undefined);
        req.end(envelope);
        setTimeout(() => reject(new Error('no response headers')), 60_000).unref();
      });
      await waitFor('stream open', () => api.core.openStreamCount === 1);
      // The first response (a keepalive) flushes the headers; then stop reading altogether.
      const res = await responded;
      res.pause();
      socketOfClient!.pause();
      const big = 'x'.repeat(4000);
      let written = 0;
      // Write until the stream's queue has overflowed more than once: the handler is not pulling,
      // i.e. connect-node is blocked writing to a client that does not read.
      await waitFor(
        'blocked writer',
        async () => {
          await env.writer.write({ rows: Array.from({ length: 500 }, () => makeRow({ source: 'flood', message: big })), rejects: [], registry: [] });
          written += 500;
          return (await metricValue('mycelis_memory_api_stream_fallbacks_total')) >= fallbacksBefore + 2 && written >= 5000;
        },
        { timeoutMs: 90_000, intervalMs: 10 },
      );
      assert.equal(api.core.openStreamCount, 1);
      assert.ok((await metricValue('mycelis_memory_api_stream_subscribers')) >= 0);
      // The client vanishes.
      socketOfClient!.destroy();
      await waitFor('stream released', async () =>
        api.core.openStreamCount === 0 &&
        (await metricValue('mycelis_memory_api_open_streams')) === 0 &&
        (await metricValue('mycelis_memory_api_streams_open')) === 0 &&
        (await metricValue('mycelis_memory_api_stream_subscribers')) === 0,
        { timeoutMs: 20_000 },
      );
    } finally {
      await api.closeAll();
    }
  });

  it('TLS: one port negotiates h2 and http/1.1 by ALPN; Connect and gRPC-Web work over both', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'connect-tls-'));
    try {
      const cert = join(dir, 'cert.pem');
      const key = join(dir, 'key.pem');
      await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=IP:127.0.0.1']);
      const api = await startHttpApi(env, { TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
      try {
        const ca = readFileSync(cert);
        for (const proto of ['h2', 'http/1.1']) {
          const sock = tls.connect({ host: '127.0.0.1', port: api.http.port, ca, ALPNProtocols: [proto] });
          await new Promise<void>((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject));
          assert.equal(sock.alpnProtocol, proto);
          sock.destroy();
        }
        await env.writer.write({ rows: [makeRow({ source: 'tls-agent' })], rejects: [], registry: [] });
        const baseUrl = `https://127.0.0.1:${api.http.port}`;
        const req = { filter: { agentIds: ['tls-agent'] } };
        for (const t of [
          createConnectTransport({ baseUrl, httpVersion: '2', nodeOptions: { ca } }),
          createConnectTransport({ baseUrl, httpVersion: '1.1', nodeOptions: { ca } }),
          createGrpcWebTransport({ baseUrl, httpVersion: '1.1', nodeOptions: { ca } }),
        ]) {
          const c = createClient(service, t) as unknown as MemoryClient;
          const q = fromEs(method('QueryLogs').output, QueryLogsResponse, (await c['queryLogs']!(req)) as Message);
          assert.deepEqual(q.records.map((r) => r.entry?.agentId), ['tls-agent']);
        }
        const health = await new Promise<number>((resolve, reject) => {
          https.get(`${baseUrl}/healthz`, { ca }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          }).on('error', reject);
        });
        assert.equal(health, 200);
      } finally {
        await api.closeAll();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('shutdown: Connect and gRPC-Web streams end with a final response carrying their cursor', async () => {
    const api = await startHttpApi(env, { KEEPALIVE_INTERVAL: '30s' });
    const filter = { agentIds: ['shutdown-agent'], teamIds: [], levels: [], intents: [], traceId: '' };
    await env.writer.write({ rows: Array.from({ length: 3 }, () => makeRow({ source: 'shutdown-agent' })), rejects: [], registry: [] });
    const streams = (['connect-json-h1', 'grpc-web-binary-h2c'] as const).map((k) => new ConnectStream(client(api.baseUrl, k), { filter, tail: 3 }));
    await waitFor('tails', () => streams.every((s) => s.records.length === 3));
    await api.http.shutdown(5000);
    await waitFor('ended', () => streams.every((s) => s.ended || s.error));
    const { rows } = await env.db.pool.query<{ seq: string }>('SELECT max(seq)::text AS seq FROM log_entries');
    for (const s of streams) {
      assert.equal(s.error, null, s.error?.message);
      assert.equal(s.ended, true);
      const last = s.responses[s.responses.length - 1]!;
      assert.ok(last.cursor !== '', 'final response carries a cursor');
      // Resuming from it loses nothing and repeats nothing: it is at or after the last record
      // received, and not beyond the newest committed one.
      const at = decodeCursor(last.cursor, 'cursor');
      assert.ok(at >= s.records[2]!.seq && at <= Number(rows[0]!.seq), `final cursor ${at}`);
    }
    await api.close();
  });
});
