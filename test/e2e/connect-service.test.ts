// The built service as a process (`node dist/src/cli.js serve`) on a fresh database and a unique
// stream/subject prefix: the HTTP port serves the same data as the gRPC port to Connect (JSON and
// binary), gRPC-Web, curl (POST and GET) and buf curl; a Connect StreamLogs (tail, live, resume)
// matches the gRPC one record for record while events are ingested from NATS; CORS and auth answer
// with the right headers and statuses; /metrics moves with ingest and open streams; the token never
// appears in the logs (LOG_LEVEL=debug).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { toJson, type Message } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { fromEs, toEs } from '../../src/api/connect-service.js';
import { GetRegistryResponse, MemoryServiceClient, QueryLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import { waitFor } from '../helpers/wait.js';
import { StreamCollector, unary } from '../integration/api-harness.js';
import { client, ConnectStream, service, type Kind } from '../integration/connect-harness.js';
import { startStack, type Stack } from './operator-harness.js';

const run = promisify(execFile);
const TOKEN = 'e2e-connect-token-4b1d9e77';
const WRONG = 'e2e-wrong-token-0c0ffee0';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const ORIGIN = 'https://memory-ui.example.org';
const PATH = '/mycelis.memory.v1.MemoryService';
const method = (name: string) => service.methods.find((m) => m.name === name)!;

describe('e2e: MemoryService on the HTTP port of the running service', () => {
  let stack: Stack;
  let grpcClient: MemoryServiceClient;
  const md = (): grpc.Metadata => {
    const m = new grpc.Metadata();
    m.set('authorization', AUTH.authorization);
    return m;
  };

  before(async () => {
    stack = await startStack('connect_e2e', { API_TOKENS: TOKEN, CORS_ORIGINS: ORIGIN, LOG_LEVEL: 'debug', KEEPALIVE_INTERVAL: '1s' });
    grpcClient = new MemoryServiceClient(stack.grpcAddr, grpc.credentials.createInsecure());
  });
  after(async () => {
    grpcClient?.close();
    await stack?.close();
  });

  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
    const res = await fetch(`${stack.httpBase}/metrics`);
    assert.equal(res.status, 200);
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    let total = 0;
    for (const line of (await res.text()).split('\n')) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (m && m[1] === name && want.every((w) => (m[2] ?? '').split(/,(?=[a-zA-Z_])/).includes(w))) total += Number(m[3]);
    }
    return total;
  };

  it('ingested events: /metrics moves; Connect and gRPC-Web StreamLogs (tail, live, resume) match gRPC record for record', { timeout: 180_000 }, async () => {
    const storedBefore = await metric('mycelis_memory_ingest_rows_stored_total');
    await stack.publish(150, 11);
    await stack.waitRows(150);
    const committed = (await stack.rows()).length;
    await waitFor('ingest counter', async () => (await metric('mycelis_memory_ingest_rows_stored_total')) === storedBefore + committed);
    assert.ok((await metric('mycelis_memory_ingest_batches_total')) >= 1);
    // Node process metrics are served too (CPU, heap, event-loop lag).
    assert.ok((await metric('process_cpu_user_seconds_total')) > 0);
    assert.ok((await metric('nodejs_heap_size_used_bytes')) > 0);
    assert.ok((await metric('nodejs_eventloop_lag_p99_seconds')) > 0);

    const g = new StreamCollector(grpcClient, { tail: 40 }, md());
    const kinds: Kind[] = ['connect-json-h1', 'grpc-web-binary-h2c', 'connect-binary-h2c'];
    const cs = kinds.map((k) => new ConnectStream(client(stack.httpBase, k), { tail: 40 }, AUTH));
    await waitFor('tails', () => g.records.length >= 40 && cs.every((s) => s.records.length >= 40));
    assert.equal(await metric('mycelis_memory_api_streams_open', { protocol: 'connect' }), 2);
    assert.equal(await metric('mycelis_memory_api_streams_open', { protocol: 'grpc-web' }), 1);
    assert.equal(await metric('mycelis_memory_api_streams_open', { protocol: 'grpc' }), 1);

    await stack.publish(120, 12);
    await stack.waitRows(committed + 120);
    const total = (await stack.rows()).length;
    await waitFor('live', () => g.records.length >= 40 + total - committed && cs.every((s) => s.records.length >= 40 + total - committed));
    const all = await stack.rows();
    assert.deepEqual(g.records.map((r) => r.id), all.slice(-(40 + total - committed)).map((r) => r.id));
    for (const [i, s] of cs.entries()) {
      assert.deepEqual(s.records, g.records, kinds[i]);
      assert.equal(s.error, null);
    }
    for (const s of cs) s.cancel();
    g.cancel();
    await waitFor('streams closed', async () => (await metric('mycelis_memory_api_streams_open')) === 0 && (await metric('mycelis_memory_api_open_streams')) === 0);

    // Resume by cursor from the 25th record, over Connect: exactly what followed it.
    const from = g.records[24]!;
    const resumed = new ConnectStream(client(stack.httpBase, 'connect-json-h1'), { afterCursor: from.cursor }, AUTH);
    await waitFor('resumed', () => resumed.records.length >= g.records.length - 25);
    assert.deepEqual(resumed.records.slice(0, g.records.length - 25), g.records.slice(25));
    resumed.cancel();
    assert.ok((await metric('mycelis_memory_api_requests_total', { method: 'StreamLogs', protocol: 'connect' })) >= 2);
  });

  it('curl POST and GET, buf curl (connect, grpcweb) and the Connect/gRPC-Web clients return what gRPC returns', { timeout: 180_000 }, async () => {
    const gReg = await unary<object, GetRegistryResponse>(grpcClient.getRegistry.bind(grpcClient) as never, { teamIds: [], statuses: [], pageSize: 1000, pageToken: '' }, md());
    const gQuery = await unary<object, QueryLogsResponse>(grpcClient.queryLogs.bind(grpcClient) as never, { pageSize: 7, pageToken: '', filter: { agentIds: [], teamIds: [], levels: ['ERROR'], intents: [], traceId: '' } }, md());
    assert.ok(gReg.agents.length > 0);
    assert.ok(gQuery.records.length > 0);
    const qJson = toJson(method('QueryLogs').output, toEs(method('QueryLogs').output, QueryLogsResponse, gQuery));
    const regAgents = (toJson(method('GetRegistry').output, toEs(method('GetRegistry').output, GetRegistryResponse, gReg)) as { agents: unknown[] }).agents;

    const body = '{"filter":{"levels":["error"]},"pageSize":7}';
    const post = await run('curl', ['-sS', '-X', 'POST', '-H', 'Content-Type: application/json', '-H', `Authorization: Bearer ${TOKEN}`, '--data', body, `${stack.httpBase}${PATH}/QueryLogs`]);
    assert.deepEqual(JSON.parse(post.stdout), qJson);
    const get = await run('curl', ['-sS', '-H', `Authorization: Bearer ${TOKEN}`, `${stack.httpBase}${PATH}/QueryLogs?connect=v1&encoding=json&message=${encodeURIComponent(body)}`]);
    assert.deepEqual(JSON.parse(get.stdout), qJson);
    const getReg = await run('curl', ['-sS', '-H', `Authorization: Bearer ${TOKEN}`, `${stack.httpBase}${PATH}/GetRegistry?connect=v1&encoding=json&message=${encodeURIComponent('{"pageSize":1000}')}`]);
    assert.deepEqual((JSON.parse(getReg.stdout) as { agents: unknown[] }).agents, regAgents);

    for (const protocol of ['connect', 'grpcweb']) {
      const q = await run('npx', ['buf', 'curl', '--schema', 'proto', '--protocol', protocol, '-H', `Authorization: Bearer ${TOKEN}`, '-d', body, `${stack.httpBase}${PATH}/QueryLogs`], { timeout: 120_000 });
      assert.deepEqual(JSON.parse(q.stdout), qJson, protocol);
      const r = await run('npx', ['buf', 'curl', '--schema', 'proto', '--protocol', protocol, '-H', `Authorization: Bearer ${TOKEN}`, '-d', '{"page_size":1000}', `${stack.httpBase}${PATH}/GetRegistry`], { timeout: 120_000 });
      assert.deepEqual((JSON.parse(r.stdout) as { agents: unknown[] }).agents, regAgents, protocol);
    }

    for (const kind of ['connect-json-h1', 'connect-binary-h2c', 'grpc-web-h1', 'grpc-web-binary-h2c'] as const) {
      const c = client(stack.httpBase, kind);
      const q = fromEs(method('QueryLogs').output, QueryLogsResponse, (await c['queryLogs']!({ pageSize: 7, filter: { levels: ['ERROR'] } }, { headers: AUTH })) as Message);
      assert.deepEqual(q, gQuery, kind);
      const r = fromEs(method('GetRegistry').output, GetRegistryResponse, (await c['getRegistry']!({ pageSize: 1000 }, { headers: AUTH })) as Message);
      assert.deepEqual(r.agents, gReg.agents, kind);
    }
  });

  it('CORS, auth and bad input: headers, Connect codes and HTTP statuses; the token never appears in the logs', async () => {
    const preflight = (origin: string): Promise<Response> =>
      fetch(`${stack.httpBase}${PATH}/QueryLogs`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization,connect-protocol-version' } });
    const ok = await preflight(ORIGIN);
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
    assert.match(ok.headers.get('access-control-allow-headers') ?? '', /Authorization/);
    const bad = await preflight('https://elsewhere.example.org');
    assert.equal(bad.status, 403);
    assert.deepEqual([...bad.headers.keys()].filter((k) => k.startsWith('access-control-')), []);
    const actual = await fetch(`${stack.httpBase}${PATH}/GetRegistry`, { method: 'POST', headers: { origin: ORIGIN, 'content-type': 'application/json', ...AUTH }, body: '{}' });
    assert.equal(actual.status, 200);
    assert.equal(actual.headers.get('access-control-allow-origin'), ORIGIN);
    assert.match(actual.headers.get('access-control-expose-headers') ?? '', /Grpc-Status/);
    const foreign = await fetch(`${stack.httpBase}${PATH}/GetRegistry`, { method: 'POST', headers: { origin: 'https://elsewhere.example.org', 'content-type': 'application/json', ...AUTH }, body: '{}' });
    assert.equal(foreign.headers.get('access-control-allow-origin'), null);

    const post = async (name: string, body: string, headers: Record<string, string>): Promise<{ status: number; code: string; message: string }> => {
      const r = await fetch(`${stack.httpBase}${PATH}/${name}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      const j = (await r.json()) as { code: string; message?: string };
      return { status: r.status, code: j.code, message: j.message ?? '' };
    };
    assert.deepEqual((await post('GetRegistry', '{}', {})).status, 401);
    const wrong = await post('QueryLogs', '{}', { authorization: `Bearer ${WRONG}` });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.code, 'unauthenticated');
    const big = await post('QueryLogs', '{"pageSize":1001}', AUTH);
    assert.deepEqual([big.status, big.code], [400, 'invalid_argument']);
    assert.match(big.message, /^page_size: /);
    const tooMany = await post('GetRegistry', JSON.stringify({ teamIds: Array.from({ length: 101 }, (_, i) => `t${i}`) }), AUTH);
    assert.deepEqual([tooMany.status, tooMany.code], [400, 'invalid_argument']);
    const s = new ConnectStream(client(stack.httpBase, 'grpc-web-h1'), { afterCursor: 'garbage' }, AUTH);
    await waitFor('stream error', () => s.error);
    assert.equal(s.error!.code, Code.InvalidArgument);
    await assert.rejects(client(stack.httpBase, 'connect-binary-h2c')['getRegistry']!({}, { headers: { authorization: `Bearer ${WRONG}` } }) as Promise<unknown>, (e: unknown) => ConnectError.from(e).code === Code.Unauthenticated);

    const live = await fetch(`${stack.httpBase}/healthz`);
    assert.equal(live.status, 200);
    const ready = await fetch(`${stack.httpBase}/readyz`);
    assert.equal(ready.status, 200);
    const rb = (await ready.json()) as { database: string; nats: string; ingest: { mode: string; connected: boolean } };
    assert.equal(rb.database, 'ok');
    assert.equal(rb.nats, 'connected');
    assert.equal(rb.ingest.mode, 'jetstream');

    const out = stack.svc.output.join('\n');
    assert.ok(stack.svc.logs().length > 5, 'the service logged');
    assert.ok(!out.includes(TOKEN), 'the configured token never appears in the logs');
    assert.ok(!out.includes(WRONG), 'a presented token never appears in the logs');
  });
});
