// GetTrace and WatchRegistry against the real PostgreSQL, over both ports (grpc-js; Connect JSON and
// binary, gRPC-Web) and two "replicas": two writers, commit notifiers and MemoryCores on one database,
// as two processes have. A trace whose rows two replicas committed out of event-time order; the caps;
// NOT_FOUND, INVALID_ARGUMENT and UNAUTHENTICATED; a watcher's snapshot pages, marker and changes
// (committed by either replica), filters, keepalives, OFFLINE by silence within 1 s of the threshold,
// a watcher that never reads (the writer and the other watchers never wait for it; it starts over from
// a snapshot), and cancellation releasing its slot.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Message } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  AgentStatus,
  GetTraceResponse,
  MemoryServiceClient,
  RegistryChange,
  RegistryChange_Kind as Kind,
  type Agent,
  type GetRegistryResponse,
  type GetTraceResponse as GetTraceResponseT,
  type WatchRegistryRequest,
} from '../../src/gen/mycelis/memory/v1/memory.js';
import { fromEs } from '../../src/api/connect-service.js';
import { MemoryCore } from '../../src/api/core.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/api/grpc-server.js';
import { startHttpServer } from '../../src/api/http-server.js';
import { loadConfig } from '../../src/config/config.js';
import { nowUs } from '../../src/domain/time.js';
import type { LogRow, RegistryEvent } from '../../src/domain/types.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { waitFor } from '../helpers/wait.js';
import { makeEvent, makeRow } from './store-rows.js';
import { logger, metricValue, openEnv, unary, type Env } from './api-harness.js';
import { client, service, startHttpApi, type HttpApi, type Kind as TransportKind, type MemoryClient } from './connect-harness.js';

const TOKEN = 'tok-trace-watch-51c2';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const KINDS: TransportKind[] = ['connect-json-h1', 'connect-binary-h2c', 'grpc-web-h1', 'grpc-web-binary-h2c'];
const mGetTrace = service.methods.find((m) => m.name === 'GetTrace')!;
const mWatch = service.methods.find((m) => m.name === 'WatchRegistry')!;

function md(token: string | null = TOKEN): grpc.Metadata {
  const m = new grpc.Metadata();
  if (token !== null) m.set('authorization', `Bearer ${token}`);
  return m;
}

/** One row per event (the registry changes ingest makes always come with their rows). */
function commit(writer: BatchWriter, events: RegistryEvent[], rows: LogRow[] = []): Promise<unknown> {
  return writer.write({ rows: [...rows, ...events.map((e) => makeRow({ source: e.agentId, teamId: e.eventTeam, traceId: '' }))], rejects: [], registry: events });
}

interface Watch {
  readonly msgs: RegistryChange[];
  readonly receivedAt: number[];
  error: { code: number; message: string } | null;
  ended: boolean;
  cancel(): void;
}

function watchGrpc(c: MemoryServiceClient, req: Partial<WatchRegistryRequest>, meta = md()): Watch & { call: grpc.ClientReadableStream<RegistryChange> } {
  const call = c.watchRegistry({ teamIds: [], statuses: [], snapshot: false, ...req }, meta);
  const w = { msgs: [] as RegistryChange[], receivedAt: [] as number[], error: null as Watch['error'], ended: false, call, cancel: () => call.cancel() };
  call.on('data', (m: RegistryChange) => {
    w.msgs.push(m);
    w.receivedAt.push(Date.now());
  });
  call.on('error', (e: grpc.ServiceError) => {
    w.error = { code: e.code, message: e.details };
  });
  call.on('end', () => {
    w.ended = true;
  });
  return w;
}

function watchConnect(c: MemoryClient, req: object, headers: Record<string, string> = AUTH): Watch {
  const abort = new AbortController();
  const w: Watch = { msgs: [], receivedAt: [], error: null, ended: false, cancel: () => abort.abort() };
  const it = c['watchRegistry']!(req, { headers, signal: abort.signal }) as AsyncIterable<Message>;
  void (async () => {
    try {
      for await (const m of it) {
        w.msgs.push(fromEs(mWatch.output, RegistryChange, m));
        w.receivedAt.push(Date.now());
      }
      w.ended = true;
    } catch (err) {
      const ce = ConnectError.from(err);
      w.error = { code: ce.code, message: ce.rawMessage };
    }
  })();
  return w;
}

/** A Connect watch the test can stop reading (its iterator is not advanced while paused). */
function pausableConnect(c: MemoryClient, req: object, headers: Record<string, string> = {}): Watch & { pause(): void; resume(): void } {
  const abort = new AbortController();
  let paused = false;
  let wakeUp: (() => void) | null = null;
  const w = {
    msgs: [] as RegistryChange[],
    receivedAt: [] as number[],
    error: null as Watch['error'],
    ended: false,
    cancel: () => abort.abort(),
    pause: () => {
      paused = true;
    },
    resume: () => {
      paused = false;
      wakeUp?.();
    },
  };
  const it = (c['watchRegistry']!(req, { headers, signal: abort.signal }) as AsyncIterable<Message>)[Symbol.asyncIterator]();
  void (async () => {
    try {
      for (;;) {
        while (paused) await new Promise<void>((r) => (wakeUp = r));
        const n = await it.next();
        if (n.done) break;
        w.msgs.push(fromEs(mWatch.output, RegistryChange, n.value));
        w.receivedAt.push(Date.now());
      }
      w.ended = true;
    } catch (err) {
      const ce = ConnectError.from(err);
      w.error = { code: ce.code, message: ce.rawMessage };
    }
  })();
  return w;
}

const kinds = (w: Watch): Kind[] => w.msgs.map((m) => m.kind);
const changesOf = (w: Watch, from = 0): RegistryChange[] => w.msgs.slice(from).filter((m) => m.kind === Kind.KIND_CHANGE);
const live = (w: Watch): number => w.msgs.findIndex((m) => m.kind === Kind.KIND_LIVE);
const snapshotAgents = (w: Watch, upTo = live(w)): Agent[] => w.msgs.slice(0, upTo).flatMap((m) => (m.kind === Kind.KIND_SNAPSHOT ? m.snapshot : []));

describe('api: GetTrace and WatchRegistry, both ports, two replicas', { timeout: 180_000 }, () => {
  let env: Env;
  let api: HttpApi;
  // The second replica: its own pool, writer, LISTEN connection, core and gRPC port.
  let dbB: Database;
  let writerB: BatchWriter;
  let notifierB: CommitNotifier;
  let coreB: MemoryCore;
  let serverB: RunningGrpcServer;
  let clientB: MemoryServiceClient;

  before(async () => {
    env = await openEnv('trace_watch');
    api = await startHttpApi(env, { API_TOKENS: TOKEN, KEEPALIVE_INTERVAL: '500ms' });
    dbB = await openDatabase({ kind: 'postgres', url: env.tdb.url, redactedUrl: env.tdb.url, sslMode: undefined, poolMax: 6, embeddedDataDir: '' }, logger);
    writerB = new BatchWriter(dbB, logger);
    notifierB = new CommitNotifier(dbB, writerB, logger);
    await notifierB.start();
    const configB = loadConfig({ ...env.tdb.env, HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', INGEST_MODE: 'off', API_TOKENS: TOKEN, KEEPALIVE_INTERVAL: '500ms' });
    coreB = new MemoryCore({ db: dbB, notifier: notifierB, config: configB, logger });
    serverB = await startGrpcServer({ config: configB, core: coreB, logger });
    clientB = new MemoryServiceClient(`127.0.0.1:${serverB.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    clientB?.close();
    await serverB?.shutdown(4000);
    await notifierB?.stop();
    await dbB?.close();
    await api?.closeAll();
    await env?.close();
  });

  const grpcTrace = (c: MemoryServiceClient, traceId: string, meta = md()): Promise<GetTraceResponseT> =>
    unary(c.getTrace.bind(c) as never, { traceId }, meta);
  const grpcRegistry = (c: MemoryServiceClient, req: object): Promise<GetRegistryResponse> =>
    unary(c.getRegistry.bind(c) as never, { teamIds: [], statuses: [], pageSize: 1000, pageToken: '', ...req }, md());

  it('GetTrace: a trace two replicas committed out of event-time order comes back as it happened, the same on every port', async () => {
    const t0 = nowUs() - 60_000_000;
    const row = (dt: number, source: string, over: Partial<LogRow> = {}): LogRow =>
      makeRow({ traceId: 'wf-1', timestampUs: t0 + dt * 1000, source, teamId: 'team-wf', message: `${source}@${dt}`, ...over });
    // Commit order differs from event order, and the commits alternate between the replicas.
    await writerB.write({ rows: [row(300, 'coder'), row(500, 'reviewer', { teamId: '' })], rejects: [], registry: [] });
    await env.writer.write({ rows: [row(100, 'coder', { teamId: 'team-old' }), row(400, 'coder', { level: 'ERROR', message: 'permission denied' })], rejects: [], registry: [] });
    await writerB.write({ rows: [row(200, 'planner'), row(0, 'planner'), makeRow({ traceId: 'other', source: 'coder' })], rejects: [], registry: [] });

    const a = await grpcTrace(api.client, 'wf-1');
    assert.deepEqual(a.records.map((r) => r.entry?.message), ['planner@0', 'coder@100', 'planner@200', 'coder@300', 'permission denied', 'reviewer@500']);
    assert.deepEqual(
      a.agents.map((g) => [g.agentId, g.teamId, g.records, g.errors, Number(g.firstAt!.seconds) * 1e6 + g.firstAt!.nanos / 1e3 - t0, Number(g.lastAt!.seconds) * 1e6 + g.lastAt!.nanos / 1e3 - t0]),
      [
        ['planner', 'team-wf', 2, 0, 0, 200_000],
        ['coder', 'team-wf', 3, 1, 100_000, 400_000],
        ['reviewer', '', 1, 0, 500_000, 500_000],
      ],
    );
    assert.deepEqual([a.traceId, a.truncated, a.totalRecords], ['wf-1', false, 6]);
    assert.deepEqual(a.startedAt, a.records[0]!.entry!.timestamp);
    assert.deepEqual(a.endedAt, a.records[5]!.entry!.timestamp);

    // The other replica, and every Connect/gRPC-Web variant (GET for Connect JSON: NO_SIDE_EFFECTS).
    assert.deepEqual(await grpcTrace(clientB, 'wf-1'), a);
    for (const kind of KINDS) {
      const res = fromEs(mGetTrace.output, GetTraceResponse, (await client(api.baseUrl, kind)['getTrace']!({ traceId: 'wf-1' }, { headers: AUTH })) as Message);
      assert.deepEqual(res, a, kind);
    }
  });

  it('GetTrace: NOT_FOUND, INVALID_ARGUMENT naming trace_id, UNAUTHENTICATED, on both ports', async () => {
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
    const cases: [string, grpc.Metadata, number, RegExp][] = [
      ['no-such-trace', md(), grpc.status.NOT_FOUND, /^trace_id: no records/],
      ['', md(), grpc.status.INVALID_ARGUMENT, /^trace_id: required/],
      ['x'.repeat(300), md(), grpc.status.INVALID_ARGUMENT, /^trace_id: longer than 256/],
      ['wf-1', md(null), grpc.status.UNAUTHENTICATED, /authorization/],
      ['wf-1', md('wrong'), grpc.status.UNAUTHENTICATED, /invalid bearer token/],
    ];
    for (const [traceId, meta, code, msg] of cases) {
      const [gc, gm] = await codeOf(grpcTrace(api.client, traceId, meta));
      assert.equal(gc, code, `gRPC ${traceId.slice(0, 20)}`);
      assert.match(gm, msg);
      const headers = meta.get('authorization').length > 0 ? { authorization: String(meta.get('authorization')[0]) } : {};
      for (const kind of KINDS) {
        const [cc, cm] = await codeOf(client(api.baseUrl, kind)['getTrace']!({ traceId }, { headers }) as Promise<unknown>);
        assert.equal(cc, code, `${kind} ${traceId.slice(0, 20)}`);
        assert.match(cm, msg);
      }
    }
  });

  it('GetTrace: capped at 10,000 records and about 3 MiB, truncated, agents and times over the whole trace', async () => {
    const t0 = nowUs() - 3_600_000_000;
    // 10,003 records: the cap keeps the first 10,000 by event time; the agents count all of them.
    const rows = Array.from({ length: 10_003 }, (_, i) =>
      makeRow({ traceId: 'wf-big', timestampUs: t0 + (10_003 - i) * 1000, source: `big-${i % 3}`, level: i % 1000 === 0 ? 'ERROR' : 'INFO', context: '{"i":1}' }),
    );
    await env.writer.write({ rows, rejects: [], registry: [] });
    const big = await grpcTrace(api.client, 'wf-big');
    assert.equal(big.records.length, 10_000);
    assert.equal(big.truncated, true);
    assert.equal(big.totalRecords, 10_003);
    const ts = big.records.map((r) => Number(r.entry!.timestamp!.seconds) * 1e6 + r.entry!.timestamp!.nanos / 1e3);
    assert.ok(ts.every((t, i) => i === 0 || t >= ts[i - 1]!), 'event-time order');
    assert.equal(ts[0], t0 + 1000);
    assert.deepEqual(big.agents.map((g) => g.records).reduce((s, n) => s + n, 0), 10_003);
    assert.deepEqual(big.agents.map((g) => g.agentId), ['big-0', 'big-2', 'big-1'], 'first appearance by event time (the last written is the earliest)');
    assert.equal(big.agents.reduce((s, g) => s + g.errors, 0), 11);
    assert.deepEqual(big.endedAt, { seconds: String(Math.floor((t0 + 10_003_000) / 1e6)), nanos: ((t0 + 10_003_000) % 1e6) * 1000 });

    // Twelve ~0.9 MiB contexts: the response stops near 3 MiB (default gRPC clients take 4 MiB), and
    // still counts all twelve.
    const huge = Array.from({ length: 12 }, (_, i) =>
      makeRow({ traceId: 'wf-huge', timestampUs: t0 + i * 1000, source: 'llm', context: JSON.stringify({ page: randomBytes(700_000).toString('base64') }) }),
    );
    await env.writer.write({ rows: huge, rejects: [], registry: [] });
    const cut = await grpcTrace(api.client, 'wf-huge');
    assert.ok(cut.records.length >= 2 && cut.records.length <= 4, `${cut.records.length} records of ~0.93 MiB within ~3 MiB`);
    assert.equal(cut.truncated, true);
    assert.equal(cut.totalRecords, 12);
    assert.deepEqual(cut.records.map((r) => r.id), huge.slice(0, cut.records.length).map((r) => r.id));
    // Compressible contexts are small as stored but not as sent: the cut holds on the text too.
    const airy = Array.from({ length: 12 }, (_, i) => makeRow({ traceId: 'wf-airy', timestampUs: t0 + i * 1000, source: 'llm', context: JSON.stringify({ page: 'ab'.repeat(350_000) }) }));
    await env.writer.write({ rows: airy, rejects: [], registry: [] });
    const airyCut = await grpcTrace(api.client, 'wf-airy');
    assert.ok(airyCut.records.length >= 2 && airyCut.records.length <= 4, `${airyCut.records.length} compressible records within ~3 MiB`);
    assert.deepEqual([airyCut.truncated, airyCut.totalRecords], [true, 12]);
  });

  it('WatchRegistry: snapshot pages, the LIVE marker, then each change from either replica, on every port', async () => {
    const now = nowUs();
    const agents = Array.from({ length: 1_200 }, (_, i) =>
      makeEvent({ agentId: `w-${String(i).padStart(4, '0')}`, eventTeam: i % 2 ? 'odd' : 'even', status: 'IDLE', meta: { i }, timeUs: now, serverTimeUs: now }),
    );
    await commit(env.writer, agents);
    const listed: Agent[] = [];
    for (let token = ''; ; ) {
      const page = await grpcRegistry(api.client, { pageToken: token });
      listed.push(...page.agents.filter((a) => a.agentId.startsWith('w-')));
      token = page.nextPageToken;
      if (!token) break;
    }

    const watches: [string, Watch][] = [
      ['grpc A', watchGrpc(api.client, { snapshot: true })],
      ['grpc B', watchGrpc(clientB, { snapshot: true })],
      ...KINDS.map((k): [string, Watch] => [k, watchConnect(client(api.baseUrl, k), { snapshot: true })]),
    ];
    const odd = watchGrpc(api.client, { teamIds: ['odd'] });
    await waitFor('snapshots and markers', () => watches.every(([, w]) => live(w) >= 0) && live(odd) >= 0);
    for (const [name, w] of watches) {
      assert.ok(live(w) >= 3, `${name}: 1,200 agents come in pages of at most 500 (${live(w)} pages)`);
      assert.ok(w.msgs.slice(0, live(w)).every((m) => m.kind === Kind.KIND_SNAPSHOT && m.snapshot.length <= 500), name);
      const snap = snapshotAgents(w).filter((a) => a.agentId.startsWith('w-'));
      assert.deepEqual(snap.map((a) => [a.agentId, a.status, a.teamId]), listed.map((a) => [a.agentId, a.status, a.teamId]), name);
    }
    assert.equal(live(odd), 0, 'no snapshot asked: the marker comes first');

    const t = (): number => nowUs();
    // 1. status (replica A)  2. meta (replica B)  3. a heartbeat that changes nothing (A)
    // 4. team odd -> even (B)  5. an error (A)  6. a new agent (B)
    await commit(env.writer, [makeEvent({ agentId: 'w-0001', eventTeam: 'odd', status: 'BUSY', meta: null, timeUs: t(), serverTimeUs: t() })]);
    await commit(writerB, [makeEvent({ agentId: 'w-0002', eventTeam: 'even', status: null, meta: { i: 2, mood: 'ok' }, timeUs: t(), serverTimeUs: t() })]);
    await commit(env.writer, [makeEvent({ agentId: 'w-0004', eventTeam: 'even', status: 'IDLE', meta: { i: 4 }, timeUs: t(), serverTimeUs: t() })]);
    await commit(writerB, [makeEvent({ agentId: 'w-0003', eventTeam: 'even', status: null, meta: null, timeUs: t(), serverTimeUs: t() })]);
    await commit(env.writer, [makeEvent({ agentId: 'w-0005', eventTeam: 'odd', status: 'ERROR', meta: null, errorMessage: 'disk full', timeUs: t(), serverTimeUs: t() })]);
    await commit(writerB, [makeEvent({ agentId: 'w-new', eventTeam: 'odd', status: 'BUSY', meta: { hello: true }, timeUs: t(), serverTimeUs: t() })]);

    const want = [
      ['w-0001', AgentStatus.AGENT_STATUS_IDLE, AgentStatus.AGENT_STATUS_BUSY, ['status', 'reported_status'], 'odd'],
      ['w-0002', AgentStatus.AGENT_STATUS_IDLE, AgentStatus.AGENT_STATUS_IDLE, ['meta'], 'even'],
      ['w-0003', AgentStatus.AGENT_STATUS_IDLE, AgentStatus.AGENT_STATUS_IDLE, ['team_id'], 'odd'],
      ['w-0005', AgentStatus.AGENT_STATUS_IDLE, AgentStatus.AGENT_STATUS_ERROR, ['status', 'reported_status', 'last_error_summary'], 'odd'],
      ['w-new', AgentStatus.AGENT_STATUS_UNSPECIFIED, AgentStatus.AGENT_STATUS_BUSY, ['status', 'reported_status', 'team_id', 'meta', 'last_error_summary'], ''],
    ];
    const summary = (c: RegistryChange): unknown[] => [c.agent!.agentId, c.previousStatus, c.agent!.status, c.changedFields, c.previousTeamId];
    for (const [name, w] of watches) {
      await waitFor(`${name}: five changes`, () => changesOf(w, live(w)).length >= 5);
      assert.deepEqual(changesOf(w, live(w)).map(summary), want, name);
    }
    const last = changesOf(watches[0]![1]).at(-1)!;
    assert.deepEqual(last.agent!.meta, { hello: true });
    assert.equal(changesOf(watches[0]![1]).find((c) => c.agent!.agentId === 'w-0005')!.agent!.lastErrorSummary, 'disk full');
    // The odd-team watcher: its agents, and w-0003 leaving the team (it matched before the change).
    await waitFor('odd watcher', () => changesOf(odd).length >= 4);
    assert.deepEqual(changesOf(odd).map((c) => c.agent!.agentId), ['w-0001', 'w-0003', 'w-0005', 'w-new']);
    assert.equal(changesOf(odd)[1]!.agent!.teamId, 'even');

    // Keepalives while nothing changes (KEEPALIVE_INTERVAL 500ms), with the service's time.
    const n = odd.msgs.length;
    await waitFor('keepalive', () => odd.msgs.slice(n).some((m) => m.kind === Kind.KIND_KEEPALIVE));
    const ka = odd.msgs.slice(n).find((m) => m.kind === Kind.KIND_KEEPALIVE)!;
    assert.ok(Math.abs(Number(ka.observedAt!.seconds) * 1000 - Date.now()) < 5000);

    for (const [, w] of watches) w.cancel();
    odd.cancel();
  });

  it('WatchRegistry: UNAUTHENTICATED and INVALID_ARGUMENT naming the field, on both ports', async () => {
    const g1 = watchGrpc(api.client, {}, md(null));
    const g2 = watchGrpc(api.client, { statuses: [AgentStatus.AGENT_STATUS_UNSPECIFIED] });
    const g3 = watchGrpc(api.client, { teamIds: ['ok', ''] });
    await waitFor('gRPC errors', () => g1.error && g2.error && g3.error);
    assert.equal(g1.error!.code, grpc.status.UNAUTHENTICATED);
    assert.deepEqual([g2.error!.code, g2.error!.message.split(':')[0]], [grpc.status.INVALID_ARGUMENT, 'statuses[0]']);
    assert.deepEqual([g3.error!.code, g3.error!.message.split(':')[0]], [grpc.status.INVALID_ARGUMENT, 'team_ids[1]']);
    for (const kind of KINDS) {
      const c1 = watchConnect(client(api.baseUrl, kind), {}, {});
      const c2 = watchConnect(client(api.baseUrl, kind), { statuses: [AgentStatus.AGENT_STATUS_UNSPECIFIED] });
      await waitFor(`${kind} errors`, () => c1.error && c2.error);
      assert.equal(c1.error!.code, Code.Unauthenticated, kind);
      assert.deepEqual([c2.error!.code, c2.error!.message.split(':')[0]], [Code.InvalidArgument, 'statuses[0]'], kind);
    }
  });

  it('WatchRegistry: an agent goes OFFLINE within 1 s of AGENT_OFFLINE_AFTER, and comes back', async () => {
    // A replica of its own with a 2 s threshold (the other agents of this database go OFFLINE there too:
    // the watchers filter on this test's team).
    const config = loadConfig({ ...env.tdb.env, HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', INGEST_MODE: 'off', AGENT_OFFLINE_AFTER: '2s', KEEPALIVE_INTERVAL: '500ms' });
    const core = new MemoryCore({ db: dbB, notifier: notifierB, config, logger });
    const server = await startGrpcServer({ config, core, logger });
    const c = new MemoryServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      const team = 'sleepy-team';
      const all = watchGrpc(c, { teamIds: [team], snapshot: true }, md(null));
      const offline = watchGrpc(c, { teamIds: [team], statuses: [AgentStatus.AGENT_STATUS_OFFLINE] }, md(null));
      await waitFor('markers', () => live(all) >= 0 && live(offline) >= 0);
      const seen = nowUs();
      await commit(env.writer, [
        makeEvent({ agentId: 'sleepy-1', eventTeam: team, status: 'BUSY', timeUs: seen, serverTimeUs: seen }),
        makeEvent({ agentId: 'sleepy-2', eventTeam: team, status: 'IDLE', timeUs: seen, serverTimeUs: seen + 700_000 }),
      ]);
      await waitFor('both OFFLINE', () => changesOf(offline).length >= 2, { timeoutMs: 10_000 });
      for (const [i, id] of ['sleepy-1', 'sleepy-2'].entries()) {
        const k = offline.msgs.findIndex((m) => m.kind === Kind.KIND_CHANGE && m.agent!.agentId === id);
        const ch = offline.msgs[k]!;
        assert.equal(ch.agent!.status, AgentStatus.AGENT_STATUS_OFFLINE);
        assert.equal(ch.previousStatus, i === 0 ? AgentStatus.AGENT_STATUS_BUSY : AgentStatus.AGENT_STATUS_IDLE);
        assert.deepEqual(ch.changedFields, ['status']);
        const lastSeenMs = Number(ch.agent!.lastSeen!.seconds) * 1000 + ch.agent!.lastSeen!.nanos / 1e6;
        const lateMs = offline.receivedAt[k]! - (lastSeenMs + 2000);
        console.log(`# ${id}: OFFLINE delivered ${lateMs.toFixed(0)} ms after last_seen + AGENT_OFFLINE_AFTER`);
        assert.ok(lateMs > -50 && lateMs <= 1000, `${id} delivered ${lateMs} ms after the threshold`);
      }
      // The unfiltered watcher saw them arrive (new agents), then go OFFLINE.
      await waitFor('all watcher', () => changesOf(all, live(all)).length >= 4);
      const seenAll = changesOf(all, live(all)).map((m) => [m.agent!.agentId, m.agent!.status]);
      // One commit brought both (in either order), then the silence, earliest deadline first.
      assert.deepEqual(seenAll.slice(0, 2).sort(), [
        ['sleepy-1', AgentStatus.AGENT_STATUS_BUSY],
        ['sleepy-2', AgentStatus.AGENT_STATUS_IDLE],
      ]);
      assert.deepEqual(seenAll.slice(2), [
        ['sleepy-1', AgentStatus.AGENT_STATUS_OFFLINE],
        ['sleepy-2', AgentStatus.AGENT_STATUS_OFFLINE],
      ]);
      // Speaking again: OFFLINE -> its reported status; the OFFLINE watcher sees it leave.
      await commit(writerB, [makeEvent({ agentId: 'sleepy-1', eventTeam: team, status: null, meta: null, timeUs: nowUs(), serverTimeUs: nowUs() })]);
      await waitFor('back', () => changesOf(offline).length >= 3);
      const back = changesOf(offline)[2]!;
      assert.deepEqual([back.agent!.agentId, back.previousStatus, back.agent!.status], ['sleepy-1', AgentStatus.AGENT_STATUS_OFFLINE, AgentStatus.AGENT_STATUS_BUSY]);
      all.cancel();
      offline.cancel();
    } finally {
      c.close();
      await server.shutdown(4000);
    }
  });

  it('WatchRegistry: a watcher that never reads slows nobody, holds a bounded log, then starts over from a snapshot (both ports)', async () => {
    const config = loadConfig({ ...env.tdb.env, HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', INGEST_MODE: 'off', KEEPALIVE_INTERVAL: '500ms' });
    const LOG_BYTES = 64 * 1024;
    const core = new MemoryCore({ db: env.db, notifier: env.notifier, config, logger, registryWatchLogBytes: LOG_BYTES });
    const server = await startGrpcServer({ config, core, logger });
    const http = await startHttpServer({ config, core, health: server.health, logger });
    const c = new MemoryServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    // The stuck watcher is another client, on a connection of its own. On one HTTP/2 connection a stream
    // left unread holds flow-control window its neighbours share, and one connection's streams are served
    // unevenly under load (bench/README.md, session 6): one run of the whole suite timed out here waiting
    // for the reader, which shared the stuck watcher's connection - a client's coupling, not the server's.
    const cStuck = new MemoryServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    try {
      const team = 'flood-team';
      const reader = watchGrpc(c, { teamIds: [team] }, md(null));
      const stuckGrpc = watchGrpc(cStuck, { teamIds: [team] }, md(null));
      const stuckConnect = pausableConnect(client(`http://127.0.0.1:${http.port}`, 'connect-binary-h2c'), { teamIds: [team] });
      await waitFor('markers', () => [reader, stuckGrpc, stuckConnect].every((w) => live(w) >= 0));
      // Never read again: HTTP/2 flow control stops the server's writes to them.
      stuckGrpc.call.pause();
      stuckConnect.pause();
      const resetsBefore = await metricValue('mycelis_memory_api_registry_watch_resets_total');
      let maxLogBytes = 0;
      const BATCHES = 40;
      const PER = 100;
      for (let b = 0; b < BATCHES; b++) {
        await commit(
          env.writer,
          Array.from({ length: PER }, (_, i) => makeEvent({ agentId: `flood-${i}`, eventTeam: team, status: 'BUSY', meta: { b, pad: 'x'.repeat(200) }, timeUs: nowUs(), serverTimeUs: nowUs() })),
        );
        maxLogBytes = Math.max(maxLogBytes, core.registryWatchStats.logBytes);
      }
      // The reading watcher got every change, each once, in commit order.
      await waitFor('reader caught up', () => changesOf(reader).length >= BATCHES * PER, { timeoutMs: 30_000 });
      const metas = changesOf(reader).map((m) => `${m.agent!.agentId}:${String((m.agent!.meta as { b: number }).b)}`);
      assert.equal(new Set(metas).size, BATCHES * PER);
      assert.ok(maxLogBytes <= LOG_BYTES, `the shared log held at most ${maxLogBytes} bytes (bound ${LOG_BYTES})`);
      for (const [name, stuck] of [['gRPC', stuckGrpc], ['Connect', stuckConnect]] as const) {
        assert.ok(changesOf(stuck).length < BATCHES * PER / 2, `the stuck ${name} watcher received ${changesOf(stuck).length} before stalling`);
      }
      assert.ok(core.registryWatchStats.behind > BATCHES * PER / 2, 'the stuck watchers stopped reading the log');

      // Once they read again: whatever the transport held, then RESET, a fresh snapshot, LIVE.
      stuckGrpc.call.resume();
      stuckConnect.resume();
      for (const [name, stuck] of [['gRPC', stuckGrpc], ['Connect', stuckConnect]] as const) {
        await waitFor(`${name}: reset and snapshot`, () => {
          const r = stuck.msgs.findIndex((m) => m.kind === Kind.KIND_RESET);
          return r >= 0 && stuck.msgs.slice(r).some((m) => m.kind === Kind.KIND_LIVE);
        });
        const r = stuck.msgs.findIndex((m) => m.kind === Kind.KIND_RESET);
        const l = r + stuck.msgs.slice(r).findIndex((m) => m.kind === Kind.KIND_LIVE);
        const snap = stuck.msgs.slice(r + 1, l).flatMap((m) => m.snapshot);
        // Followed by the changes after its position: the last known meta of every agent is the final one.
        const state = new Map(snap.map((a) => [a.agentId, (a.meta as { b: number }).b]));
        for (const ch of changesOf(stuck, l)) state.set(ch.agent!.agentId, (ch.agent!.meta as { b: number }).b);
        assert.equal(state.size, PER, name);
        assert.ok([...state.values()].every((b) => b === BATCHES - 1), `${name}: snapshot + later changes = the current registry`);
        assert.equal(stuck.error, null, name);
      }
      assert.ok((await metricValue('mycelis_memory_api_registry_watch_resets_total')) >= resetsBefore + 2);

      // Cancelling releases the watchers' slots.
      reader.cancel();
      stuckGrpc.cancel();
      stuckConnect.cancel();
      await waitFor('slots released', () => core.openStreamCount === 0 && core.registryWatchStats.watchers === 0);
    } finally {
      c.close();
      cStuck.close();
      await http.shutdown(4000);
      await server.shutdown(4000);
    }
  });
  it('WatchRegistry: a Connect client that vanishes while the server is blocked writing to it releases its slot', async () => {
    const config = loadConfig({ ...env.tdb.env, HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', INGEST_MODE: 'off', KEEPALIVE_INTERVAL: '1s' });
    const core = new MemoryCore({ db: env.db, notifier: env.notifier, config, logger });
    const server = await startGrpcServer({ config, core, logger });
    const http = await startHttpServer({ config, core, health: server.health, logger });
    try {
      // A raw HTTP/1.1 Connect stream whose reader stops reading: the socket's buffers fill and
      // connect-node blocks in write() (where it never finishes a handler on its own; STACK.md).
      const json = Buffer.from(JSON.stringify({ teamIds: ['vanish-team'] }));
      const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, json.length]), json]);
      let socket: Socket | undefined;
      const responded = new Promise<IncomingMessage>((resolve, reject) => {
        const req = httpRequest(`http://127.0.0.1:${http.port}/mycelis.memory.v1.MemoryService/WatchRegistry`, {
          method: 'POST',
          headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
          agent: false,
        });
        req.on('socket', (s) => {
          socket = s;
        });
        req.on('response', resolve);
        req.on('error', () => undefined);
        req.end(envelope);
        setTimeout(() => reject(new Error('no response headers')), 60_000).unref();
      });
      const res = await responded; // the LIVE marker flushed the headers
      res.pause();
      socket!.pause();
      const pad = 'x'.repeat(4000);
      let b = 0;
      await waitFor(
        'the server blocked writing',
        async () => {
          await commit(env.writer, Array.from({ length: 200 }, (_, i) => makeEvent({ agentId: `vanish-${i}`, eventTeam: 'vanish-team', meta: { b: b, pad }, timeUs: nowUs(), serverTimeUs: nowUs() })));
          b++;
          return core.registryWatchStats.behind >= 2000;
        },
        { timeoutMs: 90_000, intervalMs: 10 },
      );
      assert.equal(core.openStreamCount, 1);
      socket!.destroy();
      await waitFor('slot released', () => core.openStreamCount === 0 && core.registryWatchStats.watchers === 0, { timeoutMs: 20_000 });
    } finally {
      await http.shutdown(4000);
      await server.shutdown(4000);
    }
  });
});
