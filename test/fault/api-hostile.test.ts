// Fault scenarios 5 (API fuzz), 6 (injection) and 7 (auth + CORS), against the real API stack in
// process: a fresh database, MemoryCore, the grpc-js server and the Connect/gRPC-Web HTTP server, with
// API_TOKENS set and every log line captured (tokens must never appear in them).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createLogger } from '../../src/logger.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { MemoryCore } from '../../src/api/core.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/api/grpc-server.js';
import { startHttpServer, type RunningHttpServer } from '../../src/api/http-server.js';
import { MemoryServiceClient } from '../../src/gen/mycelis/memory/v1/memory.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { prng } from '../integration/ingest-harness.js';
import { service, transport, type Kind } from '../integration/connect-harness.js';

const TOKEN = 'S3cret-Token_abc123';
const OTHER_TOKEN = 'second-token-XYZ';
const ORIGIN = 'https://ui.example.com';
const logLines: string[] = [];
const logger = createLogger('trace', new Writable({ write(chunk: Buffer, _enc, cb) { logLines.push(chunk.toString()); cb(); } }));

const METHODS = ['streamLogs', 'getRegistry', 'queryLogs', 'getTrace', 'watchRegistry', 'searchLogs'] as const;
type Method = (typeof METHODS)[number];
const GRPC_PATH: Record<Method, string> = {
  streamLogs: '/mycelis.memory.v1.MemoryService/StreamLogs',
  getRegistry: '/mycelis.memory.v1.MemoryService/GetRegistry',
  queryLogs: '/mycelis.memory.v1.MemoryService/QueryLogs',
  getTrace: '/mycelis.memory.v1.MemoryService/GetTrace',
  watchRegistry: '/mycelis.memory.v1.MemoryService/WatchRegistry',
  searchLogs: '/mycelis.memory.v1.MemoryService/SearchLogs',
};
const isStream = (m: Method): boolean => m === 'streamLogs' || m === 'watchRegistry';
const KINDS: Kind[] = ['connect-json-h1', 'connect-binary-h2c', 'grpc-web-h1', 'grpc-web-binary-h2c'];
/** Every field name a rejection may name (proto names, with indexes and the filter prefix). */
const FIELD = /^(request: |(filter\.)?(agent_ids|team_ids|levels|intents|trace_id|page_size|page_token|since|until|after_cursor|tail|statuses|query|order)(\[\d+\])?(\.(seconds|nanos))?: )/;

/** Raw unary/stream call over grpc-js with bytes as the request (no client-side encoding). */
function rawGrpc(address: string, path: string, body: Buffer, md: grpc.Metadata, stream: boolean): Promise<{ code: number; details: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const ser = (b: Buffer): Buffer => b;
  const des = (b: Buffer): Buffer => b;
  return new Promise((resolve) => {
    const done = (code: number, details: string): void => {
      client.close();
      resolve({ code, details });
    };
    const deadline = Date.now() + 3000;
    if (stream) {
      const call = client.makeServerStreamRequest(path, ser, des, body, md, { deadline });
      call.on('data', () => {
        // a valid request: the stream opened; that is an answer, not an error
        call.cancel();
      });
      call.on('error', (e: grpc.ServiceError) => done(e.code, e.details));
      call.on('end', () => done(0, ''));
    } else {
      client.makeUnaryRequest(path, ser, des, body, md, { deadline }, (err) => done(err ? err.code : 0, err ? err.details : ''));
    }
  });
}

/** Queries that are tsquery syntax, SQL, or nothing at all: SearchLogs must take each as text to search. */
const SEARCH_QUERIES = [
  `'; DROP TABLE log_entries;--`, "x' OR '1'='1", 'a & b', 'a | !b', '!!!', '-', '--', '"unclosed', '""', 'a <-> b', 'a:*', 'a:A', '(a', 'a)',
  'or', 'or or or', '- - -', '-"', '\\', '%', '_', 'm', 'M -m', '"m m m"', 'x'.repeat(1024), 'x'.repeat(1025), 'a\u0000', '\ud800', '😀', 'é∑',
  `${'a '.repeat(500)}`, `${'"a" '.repeat(200)}`, `${'-a '.repeat(300)}`, `${'(('.repeat(300)}`,
];

describe('fault: hostile API clients (fuzz, injection, auth, CORS)', { timeout: 120_000 }, () => {
  let tdb: TestDatabase;
  let db: Database;
  let notifier: CommitNotifier;
  let config: Config;
  let core: MemoryCore;
  let grpcServer: RunningGrpcServer;
  let http: RunningHttpServer;
  let address: string;
  let baseUrl: string;
  const authMd = (): grpc.Metadata => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${TOKEN}`);
    return md;
  };

  before(async () => {
    tdb = await createTestDatabase('api_hostile');
    config = loadConfig({ ...tdb.env, HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', INGEST_MODE: 'off', API_TOKENS: `${TOKEN},${OTHER_TOKEN}`, CORS_ORIGINS: ORIGIN, LOG_LEVEL: 'trace' });
    db = await openDatabase(config.database, logger);
    await migrate(db.pool, logger);
    const writer = new BatchWriter(db, logger);
    notifier = new CommitNotifier(db, writer, logger);
    await notifier.start();
    core = new MemoryCore({ db, notifier, config, logger });
    grpcServer = await startGrpcServer({ config, core, logger });
    http = await startHttpServer({ config, core, health: grpcServer.health, logger });
    address = `127.0.0.1:${grpcServer.port}`;
    baseUrl = `http://127.0.0.1:${http.port}`;
    // Rows whose values look like SQL and LIKE patterns; they must only ever match literally.
    const hostileIds = [`'; DROP TABLE log_entries;--`, 'a%', 'a_c', 'abc', 'a\\%', '%', '_', `x' OR '1'='1`];
    const values: unknown[] = [];
    const tuples = hostileIds.flatMap((agent, i) =>
      [0, 1].map((k) => {
        values.push(randomUUID(), agent, agent, `intent${i}`);
        const b = values.length;
        return `($${b - 3}::uuid, '', now() - interval '${i * 2 + k} seconds', 'INFO', $${b - 2}, $${b}, 'm', '{}'::jsonb, nextval('log_entries_seq'), $${b - 1}, 'subj')`;
      }),
    );
    await db.pool.query(`INSERT INTO log_entries (id, trace_id, timestamp, level, source, intent, message, context, seq, team_id, subject) VALUES ${tuples.join(',')}`, values);
    await db.pool.query(`INSERT INTO agent_registry (agent_id, team_id, status, last_seen) SELECT unnest($1::text[]), unnest($1::text[]), 'IDLE', now()`, [hostileIds]);
  });
  after(async () => {
    await http?.shutdown(3000);
    await grpcServer?.shutdown(3000);
    await notifier?.stop();
    await db?.close();
    await tdb?.drop();
  });

  it('auth: every method on both ports rejects missing, malformed, wrong and differently-cased tokens', async () => {
    const bad: [string, string | undefined][] = [
      ['missing', undefined],
      ['empty', ''],
      ['no scheme', TOKEN],
      ['wrong', 'Bearer not-the-token'],
      ['upper-cased', `Bearer ${TOKEN.toUpperCase()}`],
      ['lower-cased', `Bearer ${TOKEN.toLowerCase()}`],
      ['prefix', `Bearer ${TOKEN.slice(0, -1)}`],
      ['extended', `Bearer ${TOKEN}x`],
      ['basic', `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`],
    ];
    const valid = { getRegistry: {}, queryLogs: { pageSize: 1 }, streamLogs: { tail: 1 }, getTrace: { traceId: 'no-such-trace' }, watchRegistry: { snapshot: true }, searchLogs: { query: 'm' } } as const;
    const grpcValid = {
      getRegistry: Buffer.alloc(0),
      queryLogs: Buffer.from([0x10, 0x01]),
      streamLogs: Buffer.from([0x18, 0x01]),
      getTrace: Buffer.concat([Buffer.from([0x0a, 13]), Buffer.from('no-such-trace')]),
      watchRegistry: Buffer.from([0x18, 0x01]),
      searchLogs: Buffer.from([0x0a, 0x01, 0x6d]),
    };
    // With a valid token: streams open (then the test cancels them), a trace with no records is NOT_FOUND.
    const grpcOk = (m: Method): number => (isStream(m) ? grpc.status.CANCELLED : m === 'getTrace' ? grpc.status.NOT_FOUND : 0);
    for (const method of METHODS) {
      for (const [label, value] of bad) {
        const md = new grpc.Metadata();
        if (value !== undefined) md.set('authorization', value);
        const r = await rawGrpc(address, GRPC_PATH[method], grpcValid[method], md, isStream(method));
        assert.equal(r.code, grpc.status.UNAUTHENTICATED, `gRPC ${method} with ${label} token: ${r.details}`);
        for (const kind of KINDS) {
          const c = createClient(service, transport(baseUrl, kind)) as unknown as Record<string, (req: object, opts?: object) => unknown>;
          const headers = value === undefined ? {} : { authorization: value };
          let code: Code | undefined;
          try {
            if (isStream(method)) {
              for await (const _ of c[method]!(valid[method], { headers, timeoutMs: 3000 }) as AsyncIterable<unknown>) break;
            } else await c[method]!(valid[method], { headers, timeoutMs: 3000 });
          } catch (err) {
            code = ConnectError.from(err).code;
          }
          assert.equal(code, Code.Unauthenticated, `${kind} ${method} with ${label} token`);
        }
      }
      // Either configured token works, on both ports.
      for (const token of [TOKEN, OTHER_TOKEN]) {
        const md = new grpc.Metadata();
        md.set('authorization', `bearer ${token}`);
        const r = await rawGrpc(address, GRPC_PATH[method], grpcValid[method], md, isStream(method));
        assert.equal(r.code, grpcOk(method), `gRPC ${method} with a valid token: ${r.details}`);
        const c = createClient(service, transport(baseUrl, 'connect-json-h1')) as unknown as Record<string, (req: object, opts?: object) => unknown>;
        if (isStream(method)) {
          for await (const _ of c[method]!(valid[method], { headers: { authorization: `Bearer ${token}` }, timeoutMs: 5000 }) as AsyncIterable<unknown>) break;
        } else {
          await (c[method]!(valid[method], { headers: { authorization: `Bearer ${token}` }, timeoutMs: 5000 }) as Promise<unknown>).catch((err: unknown) => {
            if (method !== 'getTrace' || ConnectError.from(err).code !== Code.NotFound) throw err;
          });
        }
      }
    }
    // Health and reflection stay open.
    for (const name of ['', 'mycelis.memory.v1.MemoryService', 'liveness']) {
      const client = new grpc.Client(address, grpc.credentials.createInsecure());
      const req = Buffer.concat([Buffer.from([0x0a, name.length]), Buffer.from(name)]);
      const res = await new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest('/grpc.health.v1.Health/Check', (b: Buffer) => b, (b: Buffer) => b, req, new grpc.Metadata(), (e, r) => (e ? reject(e) : resolve(r!))));
      client.close();
      assert.deepEqual([...res], [0x08, 0x01], `health ${JSON.stringify(name)} SERVING without a token`);
    }
    const refl = await rawGrpc(address, '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', Buffer.alloc(0), new grpc.Metadata(), true);
    assert.notEqual(refl.code, grpc.status.UNAUTHENTICATED, 'reflection is open');
    for (const path of ['/healthz', '/readyz', '/metrics']) assert.equal((await fetch(baseUrl + path)).status, 200, `${path} open`);
    // Tokens never appear in logs (neither the configured ones nor what clients presented).
    const all = logLines.join('');
    assert.ok(logLines.length > 0);
    for (const secret of [TOKEN, OTHER_TOKEN, TOKEN.toUpperCase(), TOKEN.toLowerCase(), TOKEN.slice(0, -1), 'not-the-token']) {
      assert.ok(!all.includes(secret), `a token appears in the logs: ${secret}`);
    }
  });

  it('CORS: allowed origin gets its headers and preflight; others get neither', async () => {
    const url = `${baseUrl}/mycelis.memory.v1.MemoryService/GetRegistry`;
    const pre = await fetch(url, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization,connect-protocol-version' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), ORIGIN);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/i);
    const evil = await fetch(url, { method: 'OPTIONS', headers: { origin: 'https://evil.example.com', 'access-control-request-method': 'POST' } });
    assert.equal(evil.status, 403);
    assert.equal(evil.headers.get('access-control-allow-origin'), null);
    const actual = await fetch(url, { method: 'POST', headers: { origin: ORIGIN, 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: '{}' });
    assert.equal(actual.status, 200);
    assert.equal(actual.headers.get('access-control-allow-origin'), ORIGIN);
    assert.match(actual.headers.get('vary') ?? '', /origin/i);
    const other = await fetch(url, { method: 'POST', headers: { origin: 'https://evil.example.com', 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: '{}' });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });

  it('injection: SQL text and LIKE wildcards in filters match only literally', async () => {
    const client = new MemoryServiceClient(address, grpc.credentials.createInsecure());
    const q = (filter: object): Promise<string[]> =>
      new Promise((resolve, reject) =>
        client.queryLogs({ filter: { agentIds: [], teamIds: [], levels: [], intents: [], traceId: '', ...filter }, pageSize: 1000, pageToken: '' }, authMd(), (e, r) =>
          e ? reject(e) : resolve(r.records.map((x) => x.entry!.source ?? '')),
        ),
      );
    for (const agent of [`'; DROP TABLE log_entries;--`, 'a%', 'a_c', '%', '_', 'a\\%', `x' OR '1'='1`]) {
      assert.deepEqual(await q({ agentIds: [agent] }), [agent, agent], `agent_ids ${agent}`);
      assert.equal((await q({ teamIds: [agent] })).length, 2, `team_ids ${agent}`);
    }
    assert.deepEqual(await q({ agentIds: ['a'] }), []);
    assert.deepEqual(await q({ traceId: `' OR ''='` }), []);
    assert.deepEqual(await q({ intents: ['intent%'] }), []);
    // SearchLogs: the query is text for websearch_to_tsquery, never SQL or raw tsquery syntax.
    for (const query of SEARCH_QUERIES) {
      const r = await new Promise<{ code: number; details: string; n: number }>((resolve) =>
        client.searchLogs({ query, filter: undefined, pageSize: 1000, pageToken: '', order: 0 }, authMd(), (e, res) =>
          resolve(e ? { code: e.code, details: e.details, n: 0 } : { code: 0, details: '', n: res.hits.length }),
        ),
      );
      if (r.code !== 0) {
        assert.equal(r.code, grpc.status.INVALID_ARGUMENT, `search ${JSON.stringify(query.slice(0, 40))}: ${r.details}`);
        assert.match(r.details, /^query: /);
      }
      if (query === 'm') assert.equal(r.n, 16, 'every row has the message "m"');
      if (query === 'M -m') assert.equal(r.n, 0);
    }
    const reg = await new Promise<string[]>((resolve, reject) =>
      client.getRegistry({ teamIds: ['%', 'a_c'], statuses: [], pageSize: 100, pageToken: '' }, authMd(), (e, r) => (e ? reject(e) : resolve(r.agents.map((a) => a.agentId).sort()))));
    assert.deepEqual(reg, ['%', 'a_c']);
    client.close();
    const t = await db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM log_entries`);
    assert.equal(t.rows[0]!.n, '16', 'the table is intact');
  });

  it('fuzz: random and boundary requests never get INTERNAL; every INVALID_ARGUMENT names the field', async () => {
    const rand = prng(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const big = (n: number, v: string): string[] => Array.from({ length: n }, () => v);
    const weird = ['', 'x'.repeat(257), 'x'.repeat(100_000), '\u0000', '\ud800', 'AAAA', '!!!', 'ZXlK', '-1', '9'.repeat(40), 'null', '%00'];
    const numbers = [-1, -2147483648, 2147483647, 4294967295, 1001, 10001, 0, 1, 1e9];
    const codes = new Map<string, number>();
    const note = (k: string): void => void codes.set(k, (codes.get(k) ?? 0) + 1);
    const check = (where: string, code: number | string, msg: string): void => {
      note(`${where.split(' ')[0]}:${code}`);
      assert.notEqual(code, grpc.status.INTERNAL, `${where}: INTERNAL (${msg})`);
      assert.notEqual(code, 'internal', `${where}: INTERNAL (${msg})`);
      assert.notEqual(code, grpc.status.UNKNOWN, `${where}: UNKNOWN (${msg})`);
      // Ours: "<field>: why". The Connect library's own JSON parse errors keep its code and name the
      // field as "cannot decode field mycelis.memory.v1.<Message>.<field>".
      if (code === grpc.status.INVALID_ARGUMENT || code === 'invalid_argument') {
        assert.ok(FIELD.test(msg) || /^cannot decode (field mycelis\.memory\.v1\.\w+\.\w+|message google\.protobuf\.\w+) /.test(msg), `${where}: the rejection names no field: ${msg}`);
      }
    };
    // 1. Random bytes as the protobuf request over gRPC.
    for (let i = 0; i < 150; i++) {
      const method = pick(METHODS);
      const body = Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)));
      const r = await rawGrpc(address, GRPC_PATH[method], body, authMd(), isStream(method));
      check(`grpc ${method} random ${body.toString('hex')}`, r.code, r.details);
    }
    // 2. Structured boundary values over gRPC (typed client) and Connect JSON (raw, including wrong types).
    const requests = (): Record<string, unknown>[] => [
      { filter: { agentIds: big(101, 'a') } },
      { filter: { agentIds: [pick(weird)] } },
      { filter: { levels: [pick(['info', 'VERBOSE', '', 'WARNING', 'x'.repeat(300)])] } },
      { filter: { traceId: pick(weird) } },
      { filter: { intents: big(Math.floor(rand() * 300), pick(weird)) } },
      { pageSize: pick(numbers) },
      { pageToken: pick(weird) },
      { afterCursor: pick(weird) },
      { tail: pick(numbers) },
      { afterCursor: pick(weird), tail: 5 },
      { since: { seconds: pick(['-99999999999999', '253402300800', '0', '-1']), nanos: pick([-1, 0, 1e9, 999999999]) } },
      { since: { seconds: '100', nanos: 0 }, until: { seconds: '50', nanos: 0 } },
      { teamIds: big(Math.floor(rand() * 200), pick(weird)) },
      { statuses: [pick([0, 5, -1, 99, 2147483647])] },
      { traceId: pick(weird) },
      { snapshot: pick([true, false]), teamIds: [pick(weird)] },
      { query: pick(weird) },
      { query: pick(SEARCH_QUERIES), order: pick([0, 1, 2, 3, -1, 2147483647]), pageSize: pick([0, 1, 1000]) },
      { query: pick(SEARCH_QUERIES), filter: { levels: [pick(['error', 'NOPE'])] }, pageToken: pick(weird) },
    ];
    for (let round = 0; round < 6; round++) {
      for (const req of requests()) {
        for (const method of METHODS) {
          // Connect JSON over HTTP/1.1, as a browser would send it (stream methods need the envelope: unary only here).
          if (!isStream(method)) {
            // proto3 JSON spells a Timestamp as RFC 3339: boundary values in that form too.
            const jsonReq = { ...req };
            if (jsonReq['since'] !== undefined && rand() < 0.5) {
              jsonReq['since'] = pick(['0001-01-01T00:00:00Z', '9999-12-31T23:59:59.999999999Z', '1969-12-31T23:59:59Z', '2026-01-01T00:00:00+14:00']);
              jsonReq['until'] = pick(['0001-01-01T00:00:00Z', '1970-01-01T00:00:00Z', undefined]);
            }
            const json = JSON.stringify(jsonReq);
            const res = await fetch(`${baseUrl}/mycelis.memory.v1.MemoryService/${method[0]!.toUpperCase()}${method.slice(1)}`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
              body: json,
            });
            const body = (await res.json()) as { code?: string; message?: string };
            check(`connect ${method} ${json.slice(0, 200)}`, body.code ?? res.status, body.message ?? '');
          }
        }
      }
    }
    // 3. Wrong JSON types and non-JSON bodies over Connect: the library's own parse errors, never INTERNAL.
    const wrongTypes = ['{"pageSize":"ten"}', '{"pageSize":1.5}', '{"pageSize":99999999999}', '{"filter":[]}', '{"filter":{"agentIds":"a"}}', '{"filter":{"agentIds":[1,2]}}', '{"statuses":["NOPE"]}', '{"since":"yesterday"}', '[]', 'null', '"x"', '{', 'x'.repeat(1000), '{"unknownField":1}', '{"pageToken":{}}', '{"traceId":5}', '{"traceId":["a"]}', '{"query":5}', '{"query":["a"]}', '{"query":"a","order":"SIDEWAYS"}', '{"query":"a","order":99}'];
    for (const method of ['GetRegistry', 'QueryLogs', 'GetTrace', 'SearchLogs']) {
      for (const body of wrongTypes) {
        const res = await fetch(`${baseUrl}/mycelis.memory.v1.MemoryService/${method}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body });
        const parsed = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
        assert.notEqual(parsed.code, 'internal', `${method} ${body}: ${parsed.message}`);
        assert.notEqual(parsed.code, 'unknown', `${method} ${body}: ${parsed.message}`);
        assert.ok(res.status < 500, `${method} ${body}: HTTP ${res.status}`);
      }
    }
    // The server is still up and answering.
    const client = new MemoryServiceClient(address, grpc.credentials.createInsecure());
    await new Promise<void>((resolve, reject) => client.getRegistry({ teamIds: [], statuses: [], pageSize: 1, pageToken: '' }, authMd(), (e) => (e ? reject(e) : resolve())));
    client.close();
    assert.ok([...codes.keys()].some((k) => k.endsWith(':3') || k.endsWith(':invalid_argument')), `fuzz produced rejections: ${JSON.stringify([...codes])}`);
  });
});
