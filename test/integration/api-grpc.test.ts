// MemoryService over grpc-js against the real PostgreSQL: GetRegistry, QueryLogs, StreamLogs (tail,
// live, resume), auth, MAX_STREAMS, reflection, health, shutdown, query cancellation, buf curl.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { service as healthService } from 'grpc-health-check';
import { AgentStatus, type GetRegistryResponse, type QueryLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import { encodeCursor } from '../../src/api/cursor.js';
import { cancellableQuery } from '../../src/store/log-reader.js';
import { CancelledError } from '../../src/errors.js';
import { nowUs } from '../../src/domain/time.js';
import { waitFor } from '../helpers/wait.js';
import { makeEvent, makeRow } from './store-rows.js';
import { openEnv, startApi, StreamCollector, unary, type Api, type Env } from './api-harness.js';

const run = promisify(execFile);

describe('api: MemoryService over gRPC', () => {
  let env: Env;
  let api: Api;

  before(async () => {
    env = await openEnv('api_grpc');
    api = await startApi(env, { AGENT_OFFLINE_AFTER: '2s', KEEPALIVE_INTERVAL: '500ms', STREAM_BUFFER: '500' });
  });
  after(async () => {
    await api?.close();
    await env?.close();
  });

  const getRegistry = (req: object, md?: grpc.Metadata): Promise<GetRegistryResponse> =>
    unary(api.client.getRegistry.bind(api.client) as never, { teamIds: [], statuses: [], pageSize: 0, pageToken: '', ...req }, md);
  const queryLogs = (req: object): Promise<QueryLogsResponse> =>
    unary(api.client.queryLogs.bind(api.client) as never, { pageSize: 0, pageToken: '', ...req });

  it('GetRegistry: pages by agent_id, filters by team and effective status, OFFLINE past the threshold', async () => {
    const now = nowUs();
    const events = Array.from({ length: 25 }, (_, i) =>
      makeEvent({
        agentId: `reg-${String(i).padStart(2, '0')}`,
        eventTeam: i % 2 === 0 ? 'red' : 'blue',
        status: i % 3 === 0 ? 'BUSY' : 'IDLE',
        timeUs: now,
        serverTimeUs: i === 7 ? now - 60_000_000 : now,
        meta: { i },
      }),
    );
    await env.writer.write({ rows: [], rejects: [], registry: events });

    const seen: string[] = [];
    let token = '';
    let asOf: string | undefined;
    let pages = 0;
    do {
      const res = await getRegistry({ pageSize: 10, pageToken: token });
      pages++;
      assert.ok(res.agents.length <= 10);
      asOf ??= res.asOf?.seconds;
      assert.equal(res.asOf?.seconds, asOf, 'later pages keep the first page as_of');
      seen.push(...res.agents.map((a) => a.agentId));
      token = res.nextPageToken;
    } while (token !== '');
    assert.equal(pages, 3);
    assert.deepEqual(seen, events.map((e) => e.agentId).sort());

    const red = await getRegistry({ teamIds: ['red'], pageSize: 1000 });
    assert.equal(red.agents.length, 13);
    assert.ok(red.agents.every((a) => a.teamId === 'red'));

    const offline = await getRegistry({ statuses: [AgentStatus.AGENT_STATUS_OFFLINE] });
    assert.deepEqual(offline.agents.map((a) => a.agentId), ['reg-07']);
    assert.equal(offline.agents[0]!.reportedStatus, AgentStatus.AGENT_STATUS_IDLE);
    assert.deepEqual(offline.agents[0]!.meta, { i: 7 });

    // An agent seen just now turns OFFLINE once silent longer than AGENT_OFFLINE_AFTER (2 s).
    const fresh = await getRegistry({ teamIds: ['red'], statuses: [AgentStatus.AGENT_STATUS_BUSY] });
    assert.ok(fresh.agents.some((a) => a.agentId === 'reg-00'));
    await waitFor(
      'reg-00 OFFLINE',
      async () => (await getRegistry({ statuses: [AgentStatus.AGENT_STATUS_OFFLINE] })).agents.some((a) => a.agentId === 'reg-00'),
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    const again = await getRegistry({ teamIds: ['red'], pageSize: 1000 });
    const a0 = again.agents.find((a) => a.agentId === 'reg-00')!;
    assert.equal(a0.status, AgentStatus.AGENT_STATUS_OFFLINE);
    assert.equal(a0.reportedStatus, AgentStatus.AGENT_STATUS_BUSY);

    // A page token reused with another filter is INVALID_ARGUMENT.
    const first = await getRegistry({ pageSize: 5 });
    await assert.rejects(getRegistry({ pageSize: 5, teamIds: ['red'], pageToken: first.nextPageToken }), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
      assert.match(e.details, /page_token/);
      return true;
    });
  });

  it('QueryLogs: newest first by (timestamp, seq) over [since, until), keyset pages, filters', async () => {
    const base = 1_800_000_000_000_000; // fixed event times, distinct from other tests' rows
    const rows = Array.from({ length: 250 }, (_, i) =>
      makeRow({ source: i % 5 === 0 ? 'q-five' : 'q-other', timestampUs: base + Math.floor(i / 2) * 1_000_000, intent: 'query-test', level: i % 7 === 0 ? 'ERROR' : 'INFO' }),
    );
    await env.writer.write({ rows, rejects: [], registry: [] });
    const filter = { agentIds: [], teamIds: [], levels: [], intents: ['query-test'], traceId: '' };
    const got: { ts: number; seq: number }[] = [];
    let token = '';
    let pages = 0;
    do {
      const res = await queryLogs({ filter, pageSize: 100, pageToken: token });
      pages++;
      for (const r of res.records) got.push({ ts: Number(r.entry!.timestamp!.seconds), seq: Number(r.seq) });
      token = res.nextPageToken;
    } while (token !== '');
    assert.equal(pages, 3);
    assert.equal(got.length, 250);
    for (let i = 1; i < got.length; i++) {
      const a = got[i - 1]!;
      const b = got[i]!;
      assert.ok(a.ts > b.ts || (a.ts === b.ts && a.seq > b.seq), `order at ${i}`);
    }
    assert.equal(new Set(got.map((g) => g.seq)).size, 250);

    const sinceS = base / 1e6 + 10;
    const untilS = base / 1e6 + 20;
    const ranged = await queryLogs({ filter, pageSize: 1000, since: { seconds: String(sinceS), nanos: 0 }, until: { seconds: String(untilS), nanos: 0 } });
    assert.equal(ranged.records.length, 20);
    assert.ok(ranged.records.every((r) => Number(r.entry!.timestamp!.seconds) >= sinceS && Number(r.entry!.timestamp!.seconds) < untilS));

    const five = await queryLogs({ filter: { ...filter, agentIds: ['q-five'], levels: ['error'] }, pageSize: 1000 });
    assert.equal(five.records.length, rows.filter((r) => r.source === 'q-five' && r.level === 'ERROR').length);
    assert.ok(five.records.every((r) => r.entry!.agentId === 'q-five' && r.entry!.level === 'ERROR'));

    // Literal matching: a LIKE pattern matches nothing.
    const like = await queryLogs({ filter: { ...filter, agentIds: ['q-%'] } });
    assert.equal(like.records.length, 0);

    const p1 = await queryLogs({ filter, pageSize: 10 });
    await assert.rejects(queryLogs({ filter: { ...filter, agentIds: ['q-five'] }, pageSize: 10, pageToken: p1.nextPageToken }), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
      assert.match(e.details, /^page_token: /);
      return true;
    });
    await assert.rejects(queryLogs({ pageSize: 1001 }), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^page_size: /.test(e.details));
    await assert.rejects(
      queryLogs({ filter: { ...filter, levels: ['INFO', 'NOPE'] } }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^filter\.levels\[1\]: /.test(e.details),
    );
  });

  it('StreamLogs: tail then live, in seq order; bad inputs; OUT_OF_RANGE beyond the newest', async () => {
    const filter = { agentIds: ['tail-agent'], teamIds: [], levels: [], intents: [], traceId: '' };
    await env.writer.write({ rows: Array.from({ length: 30 }, (_, i) => makeRow({ source: 'tail-agent', message: `m${i}` })), rejects: [], registry: [] });
    const s = new StreamCollector(api.client, { filter, tail: 10 });
    await waitFor('tail', () => s.records.length >= 10);
    const { rows: dbRows } = await env.db.pool.query<{ s: string }>("SELECT seq::text AS s FROM log_entries WHERE source = 'tail-agent' ORDER BY seq");
    assert.deepEqual(s.records.map((r) => r.seq), dbRows.slice(-10).map((r) => Number(r.s)));
    await env.writer.write({ rows: Array.from({ length: 5 }, () => makeRow({ source: 'tail-agent' })), rejects: [], registry: [] });
    await env.writer.write({ rows: Array.from({ length: 5 }, () => makeRow({ source: 'someone-else' })), rejects: [], registry: [] });
    await waitFor('live', () => s.records.length >= 15);
    const { rows: all } = await env.db.pool.query<{ s: string }>("SELECT seq::text AS s FROM log_entries WHERE source = 'tail-agent' ORDER BY seq");
    assert.deepEqual(s.records.map((r) => r.seq), all.slice(-15).map((r) => Number(r.s)));
    // Keepalives (empty records, current cursor) arrive while nothing matches.
    const before = s.responses.length;
    await waitFor('keepalive', () => s.responses.slice(before).some((r) => r.records.length === 0 && r.cursor !== ''), { timeoutMs: 5000 });
    s.cancel();

    const bad = async (req: object, code: grpc.status, field: RegExp): Promise<void> => {
      const c = new StreamCollector(api.client, req);
      await waitFor('error', () => c.error);
      assert.equal(c.error!.code, code, c.error!.details);
      assert.match(c.error!.details, field);
    };
    await bad({ tail: 5, afterCursor: encodeCursor(1) }, grpc.status.INVALID_ARGUMENT, /^after_cursor: /);
    await bad({ tail: 10_001 }, grpc.status.INVALID_ARGUMENT, /^tail: /);
    await bad({ afterCursor: 'bogus' }, grpc.status.INVALID_ARGUMENT, /^after_cursor: /);
    await bad({ afterCursor: encodeCursor(10_000_000) }, grpc.status.OUT_OF_RANGE, /^after_cursor: /);
  });

  it('StreamLogs: read 500, cancel, resume with the last cursor: the next record is the 501st', async () => {
    const head = await api.core.logReader.maxSeq();
    const filter = { agentIds: ['resume-agent'], teamIds: [], levels: [], intents: [], traceId: '' };
    for (let b = 0; b < 4; b++) {
      await env.writer.write({ rows: Array.from({ length: 250 }, (_, i) => makeRow({ source: 'resume-agent', message: `r${b * 250 + i}` })), rejects: [], registry: [] });
    }
    const first = new StreamCollector(api.client, { filter, afterCursor: encodeCursor(head) });
    await waitFor('500 records', () => first.records.length >= 500);
    first.cancel();
    const last = first.records[499]!;
    const second = new StreamCollector(api.client, { filter, afterCursor: last.cursor });
    await waitFor('resumed', () => second.records.length >= 500);
    second.cancel();
    const { rows } = await env.db.pool.query<{ id: string }>(
      "SELECT id::text FROM log_entries WHERE source = 'resume-agent' ORDER BY seq",
    );
    assert.equal(rows.length, 1000);
    assert.equal(second.records[0]!.id, rows[500]!.id);
    assert.deepEqual([...first.records.slice(0, 500), ...second.records.slice(0, 500)].map((r) => r.id), rows.map((r) => r.id));
  });

  it('a cancelled client cancels its long query in PostgreSQL', async () => {
    const ac = new AbortController();
    const marker = `cancel-probe-${process.pid}`;
    const q = cancellableQuery(env.db, `SELECT pg_sleep(60), '${marker}'`, [], ac.signal, 'probe');
    await waitFor('query running', async () => {
      const r = await env.db.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1", [`%${marker}%`]);
      return r.rows[0].n === 1;
    });
    const t0 = Date.now();
    ac.abort();
    await assert.rejects(q, CancelledError);
    const { rows } = await env.db.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND query NOT LIKE '%pg_stat_activity%'", [`%${marker}%`]);
    assert.equal(rows[0].n, 0, 'the statement no longer runs');
    assert.ok(Date.now() - t0 < 30_000);
  });

  it('reflection v1 and v1alpha: list services, file_by_filename for every imported file, file_containing_symbol', async () => {
    for (const pkg of ['grpc.reflection.v1', 'grpc.reflection.v1alpha']) {
      const ask = (field: number, value: string): Promise<Uint8Array> =>
        new Promise((resolve, reject) => {
          const client = new grpc.Client(api.address, grpc.credentials.createInsecure());
          const call = client.makeBidiStreamRequest(
            `/${pkg}.ServerReflection/ServerReflectionInfo`,
            (b: Buffer) => b,
            (b: Buffer) => b,
          );
          call.on('data', (b: Buffer) => {
            resolve(new Uint8Array(b));
            call.end();
            client.close();
          });
          call.on('error', reject);
          call.write(Buffer.from(new BinaryWriter().tag(field, WireType.LengthDelimited).string(value).finish()));
        });
      const filesOf = (resp: Uint8Array): string[] => {
        const names: string[] = [];
        const r = new BinaryReader(resp);
        while (r.pos < r.len) {
          const [no, wt] = r.tag();
          if (no === 4) {
            const fr = new BinaryReader(r.bytes());
            while (fr.pos < fr.len) {
              const [fno, fwt] = fr.tag();
              if (fno === 1) names.push(fromBinary(FileDescriptorProtoSchema, fr.bytes()).name);
              else fr.skip(fwt, fno);
            }
          } else if (no === 7) throw new Error('error_response');
          else r.skip(wt, no);
        }
        return names;
      };
      const list = await ask(7, '*');
      assert.ok(Buffer.from(list).includes(Buffer.from('mycelis.memory.v1.MemoryService')));
      for (const f of ['mycelis/memory/v1/memory.proto', 'mycelis/swarm/v1/swarm.proto', 'google/protobuf/struct.proto', 'google/protobuf/timestamp.proto', 'google/protobuf/any.proto']) {
        const names = filesOf(await ask(3, f));
        assert.equal(names[0], f);
      }
      const bySymbol = filesOf(await ask(4, 'mycelis.memory.v1.MemoryService'));
      assert.deepEqual(new Set(bySymbol), new Set(['mycelis/memory/v1/memory.proto', 'google/protobuf/struct.proto', 'google/protobuf/timestamp.proto', 'mycelis/swarm/v1/swarm.proto', 'google/protobuf/any.proto']));
      assert.deepEqual(filesOf(await ask(4, 'mycelis.swarm.v1.LogEntry'))[0], 'mycelis/swarm/v1/swarm.proto');
      // gRPC's own services are described too (grpcurl describe, buf curl by name).
      assert.deepEqual(filesOf(await ask(4, 'grpc.health.v1.Health')), ['grpc/health/v1/health.proto']);
      assert.deepEqual(filesOf(await ask(4, 'grpc.health.v1.Health.Check')), ['grpc/health/v1/health.proto']);
      assert.deepEqual(filesOf(await ask(4, 'grpc.reflection.v1alpha.ServerReflection')), ['grpc/reflection/v1alpha/reflection.proto']);
      assert.deepEqual(filesOf(await ask(3, 'grpc/reflection/v1/reflection.proto')), ['grpc/reflection/v1/reflection.proto']);
      await assert.rejects(ask(3, 'nope.proto').then(filesOf), /error_response/);
    }
  });

  it('buf curl over reflection: list services and methods, health by name, GetRegistry, QueryLogs', { timeout: 120_000 }, async () => {
    const url = `http://${api.address}`;
    const buf = (...args: string[]): Promise<{ stdout: string }> =>
      run('npx', ['buf', 'curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args], { timeout: 60_000 });
    const methods = await buf('--list-methods', url);
    assert.match(methods.stdout, /mycelis\.memory\.v1\.MemoryService\/StreamLogs/);
    assert.match(methods.stdout, /mycelis\.memory\.v1\.MemoryService\/GetRegistry/);
    // Reflection lists every service the port serves, through either reflection version.
    const served = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection', 'mycelis.memory.v1.MemoryService'];
    for (const version of ['grpc-v1', 'grpc-v1alpha']) {
      const services = await buf('--reflect-protocol', version, '--list-services', url);
      assert.deepEqual(services.stdout.trim().split('\n').sort(), served, version);
    }
    for (const m of ['grpc.health.v1.Health/Check', 'grpc.health.v1.Health/List', 'grpc.health.v1.Health/Watch', 'grpc.reflection.v1.ServerReflection/ServerReflectionInfo']) {
      assert.ok(methods.stdout.split('\n').includes(m), m);
    }
    // A health check by name, its request and response types taken from reflection.
    for (const service of ['mycelis.memory.v1.MemoryService', 'liveness', '']) {
      const check = await buf('-d', JSON.stringify({ service }), `${url}/grpc.health.v1.Health/Check`);
      assert.deepEqual(JSON.parse(check.stdout), { status: 'SERVING' }, service);
    }
    const list = await buf(`${url}/grpc.health.v1.Health/List`);
    assert.equal((JSON.parse(list.stdout) as { statuses: Record<string, { status: string }> }).statuses['liveness']?.status, 'SERVING');
    // The reflection service describes itself: buf curl can call it by name like any other.
    const self = await buf('-d', '{"list_services": ""}', `${url}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`);
    const selfJson = JSON.parse(self.stdout) as { listServicesResponse: { service: { name: string }[] } };
    assert.deepEqual(selfJson.listServicesResponse.service.map((s) => s.name).sort(), served);
    const reg = await buf('-d', '{"team_ids":["blue"],"page_size":3}', `${url}/mycelis.memory.v1.MemoryService/GetRegistry`);
    const regJson = JSON.parse(reg.stdout) as { agents: { agentId: string; teamId: string }[]; nextPageToken?: string };
    assert.equal(regJson.agents.length, 3);
    assert.ok(regJson.agents.every((a) => a.teamId === 'blue'));
    const direct = await unary(api.client.getRegistry.bind(api.client) as never, { teamIds: ['blue'], statuses: [], pageSize: 3, pageToken: '' });
    assert.deepEqual(regJson.agents.map((a) => a.agentId), (direct as GetRegistryResponse).agents.map((a) => a.agentId));
    const q = await buf('-d', '{"filter":{"intents":["query-test"]},"page_size":2}', `${url}/mycelis.memory.v1.MemoryService/QueryLogs`);
    const qJson = JSON.parse(q.stdout) as { records: { id: string; entry: { intent: string } }[]; nextPageToken: string };
    assert.equal(qJson.records.length, 2);
    assert.ok(qJson.records.every((r) => r.entry.intent === 'query-test'));
    assert.ok(qJson.nextPageToken.length > 0);
  });

  it('health: "", MemoryService and liveness SERVING without auth', async () => {
    const Health = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');
    const h = new Health(api.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      check(req: { service: string }, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
    };
    for (const service of ['', 'mycelis.memory.v1.MemoryService', 'liveness']) {
      const r = await new Promise<{ status: string }>((res, rej) => h.check({ service }, (e, v) => (e ? rej(e) : res(v))));
      assert.equal(r.status, 'SERVING', service);
    }
    h.close();
  });
});

describe('api: auth, MAX_STREAMS and shutdown', () => {
  let env: Env;
  before(async () => {
    env = await openEnv('api_auth');
  });
  after(async () => {
    await env?.close();
  });

  it('requires a bearer token for MemoryService calls; health stays open', async () => {
    const api = await startApi(env, { API_TOKENS: 'Tok-One,tok-two' });
    try {
      const call = (auth: string | undefined): Promise<unknown> => {
        const md = new grpc.Metadata();
        if (auth !== undefined) md.set('authorization', auth);
        return unary(api.client.getRegistry.bind(api.client) as never, { teamIds: [], statuses: [], pageSize: 0, pageToken: '' }, md);
      };
      for (const bad of [undefined, 'Bearer wrong', 'Bearer tok-one', 'Tok-One', 'Basic Tok-One']) {
        await assert.rejects(call(bad), (e: grpc.ServiceError) => {
          assert.equal(e.code, grpc.status.UNAUTHENTICATED, String(bad));
          assert.ok(!e.details.includes('Tok-One'));
          return true;
        });
      }
      await call('Bearer Tok-One');
      await call('bearer tok-two');
      const s = new StreamCollector(api.client, {});
      await waitFor('stream rejected', () => s.error);
      assert.equal(s.error!.code, grpc.status.UNAUTHENTICATED);
      const Health = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');
      const h = new Health(api.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
        check(req: { service: string }, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
      };
      const r = await new Promise<{ status: string }>((res, rej) => h.check({ service: 'liveness' }, (e, v) => (e ? rej(e) : res(v))));
      assert.equal(r.status, 'SERVING');
      h.close();
    } finally {
      await api.close();
    }
  });

  it('RESOURCE_EXHAUSTED past MAX_STREAMS; a slot frees when a stream ends', async () => {
    const api = await startApi(env, { MAX_STREAMS: '3' });
    try {
      const open = [0, 1, 2].map(() => new StreamCollector(api.client, {}));
      await waitFor('3 streams open', () => open.every((s) => s.responses.length > 0));
      const fourth = new StreamCollector(api.client, {});
      await waitFor('rejected', () => fourth.error);
      assert.equal(fourth.error!.code, grpc.status.RESOURCE_EXHAUSTED);
      open[0]!.cancel();
      await waitFor('slot freed', () => api.core.openStreamCount === 2);
      const fifth = new StreamCollector(api.client, {});
      await waitFor('fifth open', () => fifth.responses.length > 0);
      for (const s of [...open, fifth]) s.cancel();
    } finally {
      await api.close();
    }
  });

  it('shutdown: health NOT_SERVING, streams end with a final response carrying their cursor', async () => {
    const api = await startApi(env, {});
    const s = new StreamCollector(api.client, {});
    await waitFor('open', () => s.responses.length > 0);
    await env.writer.write({ rows: [makeRow({ source: 'shutdown-agent' })], rejects: [], registry: [] });
    await waitFor('record', () => s.records.length === 1);
    await api.close();
    await waitFor('ended', () => s.ended || s.error);
    assert.equal(s.error, null);
    assert.ok(s.ended);
    const final = s.responses[s.responses.length - 1]!;
    assert.equal(final.records.length, 0);
    assert.equal(final.cursor, encodeCursor(s.records[0]!.seq));
    assert.equal(api.core.openStreamCount, 0);
  });
});
