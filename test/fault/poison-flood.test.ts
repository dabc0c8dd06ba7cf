// Fault scenario 4 (poison flood) and the dead-letter CLI. 10,000 hostile messages mixed with 10,000
// valid ones go through the built service: every valid one is stored once, every hostile one is
// accounted for (a dead letter with its reason; for the inputs DESIGN 3.1 says to sanitize, a stored
// row with the offending characters stripped; for JSON that is no swarm/v1 message and for text,
// a generic row, DESIGN 3.1.1), the process stays up and its RSS bounded.
// Then `mycelis-memory dead-letters list|replay` on what the flood left behind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { connect, headers as natsHeaders, type NatsConnection } from 'nats';
import * as grpc from '@grpc/grpc-js';
import { MessageType, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';
import { MemoryServiceClient } from '../../src/gen/mycelis/memory/v1/memory.js';
import { startService, type ServiceProcess } from '../helpers/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, dropStreamAndClose, uniqueNatsNames } from '../helpers/nats.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { prng } from '../integration/ingest-harness.js';
import { assertionPool, consumerDrained, countOf, publishTraffic, rssMiB, serviceEnv } from './fault-helpers.js';

const names = uniqueNatsNames('poison');
const P = names.prefix;
const rand = prng(4242);
const randomBytes = (n: number): Uint8Array => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
};
const ts = (ms: number): { seconds: string; nanos: number } => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
function envelope(id: string, agent: string, content: string): Uint8Array {
  return MsgEnvelope.encode({
    id,
    timestamp: ts(Date.now()),
    sourceAgentId: agent,
    type: MessageType.MESSAGE_TYPE_TEXT,
    payload: { $case: 'text', value: { content, recipientId: '', intent: 'inform', contextId: '' } },
    traceId: '',
    spanId: '',
    teamId: '',
  }).finish();
}
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
/** A Struct nested `depth` levels deep, in proto3 JSON. */
const deepJson = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
/** The same in protobuf: Struct{fields: {"a": Value{struct_value: …}}} nested `depth` levels. */
function deepStructBinary(depth: number): Uint8Array {
  let value: number[] = [0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]; // Value{number_value: 1}
  let struct: number[] = [];
  for (let i = 0; i < depth; i++) {
    const entry = [0x0a, 1, 0x61, 0x12, ...varint(value.length), ...value]; // fields entry {"a": value}
    struct = [0x0a, ...varint(entry.length), ...entry]; // Struct
    value = [0x2a, ...varint(struct.length), ...struct]; // Value{struct_value}
  }
  // MsgEnvelope{id: "deep", source_agent_id: "agent", event (5): {event_type (1): "deep", data (3): struct}}
  const event = [0x0a, 4, ...utf8('deep'), 0x1a, ...varint(struct.length), ...struct];
  return new Uint8Array([0x0a, 4, ...utf8('deep'), 0x1a, 5, ...utf8('agent'), 0x2a, ...varint(event.length), ...event]);
}
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

// Built once: the nesting copies O(depth^2) bytes (about 0.25 s of CPU per message at depth 1,000), and every copy is the same.
const DEEP_BINARY = deepStructBinary(1000);

interface Hostile {
  kind: string;
  subject: string;
  data: Uint8Array;
  headers?: Record<string, string>;
}

const NEAR_MAX = 1024 * 1024 - 4096; // NATS max_payload is 1 MiB: just under it, headers included
const ts3339 = (): string => new Date().toISOString();
/**
 * kind -> [count, builder, reasons allowed for its dead letters ('stored': every one is stored, sanitized
 * or as a generic row; a random payload that happens to be text is stored as text, see isText)]
 */
const KINDS: Record<string, [number, (i: number) => Uint8Array, readonly string[], Record<string, string>?]> = {
  random: [2990, () => randomBytes(1 + Math.floor(rand() * 300)), ['decode_error', 'no_payload', 'invalid_json']],
  truncated: [1500, (i) => {
    const full = envelope(`trunc-${i}`, 'truncator', 'x'.repeat(200));
    return full.slice(0, full.length - 1 - Math.floor(rand() * 150)); // cut inside the text payload
  }, ['decode_error']],
  // field 6 (text payload) as a varint: skipped as unknown, so no payload; or wire type 7 (invalid)
  wiretype: [1000, (i) => (i % 2 === 0 ? new Uint8Array([0x1a, 1, 0x61, 0x30, 0x01]) : new Uint8Array([0x1a, 1, 0x61, 0x37, 0x01])), ['no_payload', 'decode_error']],
  // A payload starting with '{' or '[' is tried as JSON first (DESIGN 3.1.1): then its reason is invalid_json.
  nearmax: [10, () => randomBytes(NEAR_MAX), ['decode_error', 'no_payload', 'invalid_json']],
  badutf8: [500, (i) => {
    const e = envelope(`utf8-${i}`, 'utf8', 'AAAA');
    const at = e.lastIndexOf(0x41);
    e[at] = 0xff; // inside the content string
    e[at - 1] = 0xfe;
    return e;
  }, ['decode_error']],
  nul: [500, (i) => envelope(`nul-${i}`, 'nul', `before\u0000after`), ['stored']],
  surrogate: [500, (i) => utf8(JSON.stringify({ id: `sur-${i}`, sourceAgentId: 'sur', timestamp: new Date().toISOString(), text: { content: 'x' } }).replace('"x"', '"a\\ud800b\\u0000c"')), ['stored']],
  deepjson: [500, (i) => utf8(`{"id":"deep-${i}","sourceAgentId":"deep","event":{"eventType":"x","data":${deepJson(1000)}}}`), ['too_deep']],
  deepbinary: [500, () => DEEP_BINARY, ['too_deep', 'decode_error']],
  // JSON that is no swarm/v1 message, and text: generic rows since issue 22 (dead letters before).
  notobject: [500, (i) => utf8(['[1,2,3]', '"just a string"', '42', 'null', 'true'][i % 5]!), ['stored'], { 'Content-Type': 'application/json' }],
  bracegarbage: [500, () => utf8('{not json at all'), ['stored']],
  empty: [500, () => new Uint8Array(0), ['no_payload', 'decode_error']],
  // The current swarm's JSON envelopes, broken: a dead letter naming the field.
  telemetrynosource: [200, (i) => utf8(JSON.stringify({ meta: { timestamp: ts3339(), trace_id: `t-${i}` }, signal_type: 'telemetry', payload: { i } })), ['missing_field']],
  signalwrongtype: [100, (i) => utf8(JSON.stringify({ meta: { timestamp: ts3339(), source_kind: 'mcp', agent_id: i }, text: 'x' })), ['invalid_field']],
  signalbadtime: [100, (i) => utf8(JSON.stringify({ meta: { timestamp: `yesterday ${i}`, payload_kind: 'status' }, text: 'x' })), ['invalid_field']],
  deepsignal: [100, (i) => utf8(`{"meta":{"payload_kind":"status","run_id":"${i}"},"payload":${deepJson(1000)}}`), ['too_deep']],
};
/** Valid UTF-8, no control character but tab, newline, carriage return, not only white space (DESIGN 3.1.1 text). */
function isText(b: Uint8Array): boolean {
  try {
    const s = new TextDecoder('utf-8', { fatal: true }).decode(b);
    return /\S/.test(s) && !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(s);
  } catch {
    return false;
  }
}
const HOSTILE_TOTAL = Object.values(KINDS).reduce((s, k) => s + k[0], 0);
const BIG_VALID = 5;
const VALID_TRAFFIC = 10_000 - BIG_VALID;

describe('fault: poison flood', { timeout: 240_000 }, () => {
  let tdb: TestDatabase;
  let pool: pg.Pool;
  let svc: ServiceProcess;
  let nc: NatsConnection;
  let env: Record<string, string>;

  before(async () => {
    tdb = await createTestDatabase('poison');
    pool = assertionPool(tdb.url);
    nc = await connect({ servers: SHARED_NATS_URL });
    env = serviceEnv(tdb.env, SHARED_NATS_URL, names);
    svc = await startService({ env });
  });
  after(async () => {
    await svc?.stop();
    await dropStreamAndClose(nc, names.stream);
    await pool?.end();
    await tdb?.drop();
  });

  it(`stores all 10,000 valid, accounts for all ${HOSTILE_TOTAL} hostile, stays up with bounded RSS`, async () => {
    assert.equal(HOSTILE_TOTAL, 10_000);
    const hostile: Hostile[] = [];
    for (const [kind, [n, build, , headers]] of Object.entries(KINDS)) {
      for (let i = 0; i < n; i++) hostile.push({ kind, subject: `${P}.hostile.${kind}`, data: build(i), headers: { ...headers, 'Fault-Kind': kind, 'Fault-N': `${kind}-${i}` } });
    }
    // Interleave: one hostile message after each valid one (valid traffic published in between).
    let h = 0;
    const sendHostile = (k: number): void => {
      for (const end = Math.min(hostile.length, h + k); h < end; h++) {
        const m = hostile[h]!;
        const hdrs = natsHeaders();
        for (const [key, v] of Object.entries(m.headers ?? {})) hdrs.set(key, v);
        nc.publish(m.subject, m.data, { headers: hdrs });
      }
    };
    const chunk = 1000;
    for (let seed = 1; h < hostile.length || seed <= VALID_TRAFFIC / chunk; seed++) {
      if (seed <= VALID_TRAFFIC / chunk) await publishTraffic(nc, { count: chunk, seed, agents: 50, subjectPrefix: P, typeHeaders: true });
      sendHostile(chunk);
      await nc.flush();
    }
    const rest = VALID_TRAFFIC % chunk;
    if (rest) await publishTraffic(nc, { count: rest, seed: 999, agents: 50, subjectPrefix: P, typeHeaders: true });
    for (let i = 0; i < BIG_VALID; i++) nc.publish(`${P}.agent.big.output`, envelope(`big-${i}`, 'big', 'y'.repeat(NEAR_MAX - 200)));
    await nc.flush();

    const sanitized = KINDS['nul']![0] + KINDS['surrogate']![0];
    const generic = KINDS['notobject']![0] + KINDS['bracegarbage']![0];
    const randomText = hostile.filter((m) => m.kind === 'random' && isText(m.data)).length;
    const stored = sanitized + generic + randomText;
    const deadExpected = HOSTILE_TOTAL - stored;
    await waitFor('every message stored or dead-lettered', async () => {
      const [rows, dead] = await Promise.all([countOf(pool, 'SELECT 1 FROM log_entries'), countOf(pool, 'SELECT 1 FROM ingest_rejects')]);
      return rows >= 10_000 + stored && dead >= deadExpected;
    }, { timeoutMs: 150_000, intervalMs: 250 });
    await waitFor('consumer drained', () => consumerDrained(SHARED_NATS_URL, names.stream, names.consumer), { timeoutMs: 60_000 });

    // Valid: exactly once each, including the five near-max ones.
    assert.equal(await countOf(pool, `SELECT 1 FROM log_entries WHERE subject NOT LIKE $1`, [`${P}.hostile.%`]), 10_000);
    assert.equal(await countOf(pool, `SELECT DISTINCT id FROM log_entries`), 10_000 + stored);
    assert.equal(await countOf(pool, `SELECT 1 FROM log_entries WHERE source = 'big' AND length(message) = $1`, [NEAR_MAX - 200]), BIG_VALID);
    // Sanitized: stored once each, with NUL and the lone surrogate stripped.
    const san = await pool.query<{ source: string; message: string; n: string }>(
      `SELECT source, message, count(*)::text AS n FROM log_entries WHERE subject IN ($1, $2) GROUP BY 1, 2 ORDER BY 1`, [`${P}.hostile.nul`, `${P}.hostile.surrogate`]);
    assert.deepEqual(san.rows, [{ source: 'nul', message: 'beforeafter', n: '500' }, { source: 'sur', message: 'abc', n: '500' }]);
    // Generic rows: the JSON values and the text, kept whole in the context.
    const gen = await pool.query<{ kind: string; intent: string; body: string | null; n: string }>(
      `SELECT split_part(subject, '.', 3) AS kind, intent, context->>'body' AS body, count(*)::text AS n FROM log_entries
       WHERE subject IN ($1, $2) GROUP BY 1, 2, 3`, [`${P}.hostile.notobject`, `${P}.hostile.bracegarbage`]);
    const byKey = (r: { kind: string; body: string | null }): string => `${r.kind} ${r.body}`;
    assert.deepEqual(gen.rows.sort((x, y) => byKey(x).localeCompare(byKey(y))), [
      { kind: 'bracegarbage', intent: 'text', body: '{not json at all', n: '500' },
      { kind: 'notobject', intent: 'json', body: '42', n: '100' },
      { kind: 'notobject', intent: 'json', body: '[1, 2, 3]', n: '100' },
      { kind: 'notobject', intent: 'json', body: 'just a string', n: '100' },
      { kind: 'notobject', intent: 'json', body: null, n: '100' },
      { kind: 'notobject', intent: 'json', body: 'true', n: '100' },
    ].sort((x, y) => byKey(x).localeCompare(byKey(y))));
    assert.equal(await countOf(pool, `SELECT 1 FROM log_entries WHERE subject = $1 AND intent = 'text'`, [`${P}.hostile.random`]), randomText, 'random bytes that are text');
    // Hostile: one dead letter each, with an expected reason and the exact bytes.
    const dead = await pool.query<{ kind: string; reason: string; n: string; distinct_n: string; bytes: string }>(
      `SELECT headers->>'Fault-Kind' AS kind, reason, count(*)::text AS n, count(DISTINCT headers->>'Fault-N')::text AS distinct_n,
              sum(length(payload))::text AS bytes FROM ingest_rejects GROUP BY 1, 2 ORDER BY 1, 2`);
    const perKind = new Map<string, number>();
    for (const r of dead.rows) {
      const spec = KINDS[r.kind];
      assert.ok(spec, `dead letter of unexpected kind ${r.kind}`);
      assert.ok(spec[2].includes(r.reason), `${r.kind} dead-lettered as ${r.reason}; expected one of ${spec[2].join(', ')}`);
      assert.equal(r.n, r.distinct_n, `${r.kind}: a message dead-lettered twice`);
      perKind.set(r.kind, (perKind.get(r.kind) ?? 0) + Number(r.n));
    }
    for (const [kind, [n, , reasons]] of Object.entries(KINDS)) {
      assert.equal(perKind.get(kind) ?? 0, reasons.includes('stored') ? 0 : kind === 'random' ? n - randomText : n, `dead letters of kind ${kind}`);
    }
    const isDead = (m: Hostile): boolean => !KINDS[m.kind]![2].includes('stored') && !(m.kind === 'random' && isText(m.data));
    const sentBytes = hostile.filter(isDead).reduce((s, m) => s + m.data.length, 0);
    assert.equal(dead.rows.reduce((s, r) => s + Number(r.bytes ?? 0), 0), sentBytes, 'dead letters keep the raw bytes');

    // Alive and answering, RSS bounded.
    assert.equal(svc.child.exitCode, null, 'the service is still running');
    const client = new MemoryServiceClient(svc.grpcAddress, grpc.credentials.createInsecure());
    const reg = await new Promise<number>((resolve, reject) =>
      client.getRegistry({ teamIds: [], statuses: [], pageSize: 1000, pageToken: '' }, (err, res) => (err ? reject(err) : resolve(res.agents.length))));
    client.close();
    assert.ok(reg >= 50, `registry answers (${reg} agents)`);
    const rss = rssMiB(svc);
    assert.ok(rss.peak < 600, `peak RSS ${rss.peak.toFixed(0)} MiB stays under 600 MiB`);
  });

  it('dead-letters list filters and prints JSON; replay republishes through normal ingest and marks replayed', async () => {
    const cliEnv = { DATABASE_URL: tdb.url, MEMORY_STORE: 'postgres', NATS_URL: SHARED_NATS_URL };
    const deepCount = await countOf(pool, `SELECT 1 FROM ingest_rejects WHERE reason = 'too_deep'`);
    const listed = await runCli(['dead-letters', 'list', '--reason', 'too_deep', '--json', '--limit', '100000'], cliEnv);
    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as { reason: string; subject: string; payloadBase64: string; headers: Record<string, string> });
    assert.equal(lines.length, deepCount);
    assert.ok(lines.every((l) => l.reason === 'too_deep' && l.subject.startsWith(`${P}.hostile.deep`)));
    const bySubject = await runCli(['dead-letters', 'list', '--subject', `${P}.hostile.empty`, '--limit', '100000'], cliEnv);
    assert.equal(bySubject.code, 0, bySubject.stderr);
    assert.equal(bySubject.stdout.trim().split('\n').length, 1 + 500, 'a header line and one line per empty payload');
    assert.match(bySubject.stderr, /^500 dead letters/m);

    // Replay a still-invalid subset: each one comes back through ingest as a new dead letter, same bytes and headers.
    const subject = `${P}.hostile.empty`;
    const replay = await runCli(['dead-letters', 'replay', '--subject', subject], cliEnv);
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stderr, /replayed 500 dead letters/);
    await waitFor('replayed messages dead-lettered again', async () => (await countOf(pool, `SELECT 1 FROM ingest_rejects WHERE subject = $1`, [subject])) === 1000, { timeoutMs: 60_000 });
    assert.equal(await countOf(pool, `SELECT 1 FROM ingest_rejects WHERE subject = $1 AND replayed_at IS NOT NULL`, [subject]), 500);
    assert.equal(await countOf(pool, `SELECT headers->>'Fault-N', payload FROM ingest_rejects WHERE subject = $1 GROUP BY 1, 2 HAVING count(*) = 2`, [subject]), 500);

    // A dead letter that is valid now (e.g. rejected under an older, smaller MAX_EVENT_BYTES) is stored on replay, once.
    const payload = envelope('replay-me', 'replayed-agent', 'hello again');
    const ins = await pool.query<{ id: string }>(
      `INSERT INTO ingest_rejects (received_at, subject, headers, payload, reason, detail) VALUES (now(), $1, '{}', $2, 'too_large', 'old limit') RETURNING id::text`,
      [`${P}.agent.replayed-agent.output`, Buffer.from(payload)]);
    const id = ins.rows[0]!.id;
    const one = await runCli(['dead-letters', 'replay', '--id', id], cliEnv);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stderr, /replayed 1 dead letter /);
    await waitFor('replayed row stored', async () => (await countOf(pool, `SELECT 1 FROM log_entries WHERE source = 'replayed-agent'`)) === 1);
    const again = await runCli(['dead-letters', 'replay', '--id', id], cliEnv);
    assert.match(again.stderr, /replayed 0 dead letters/, 'already replayed: skipped without --again');
    const forced = await runCli(['dead-letters', 'replay', '--id', id, '--again'], cliEnv);
    assert.match(forced.stderr, /replayed 1 dead letter /);
    const marker = envelope('after-replay', 'replayed-agent', 'marker');
    nc.publish(`${P}.agent.replayed-agent.output`, marker);
    await waitFor('marker stored', async () => (await countOf(pool, `SELECT 1 FROM log_entries WHERE source = 'replayed-agent'`)) === 2);
    assert.equal(await countOf(pool, `SELECT 1 FROM log_entries WHERE source = 'replayed-agent' AND message = 'hello again'`), 1, 'a second replay is deduplicated');
    const listedJson = await runCli(['dead-letters', 'list', '--id', id, '--replayed', '--json'], cliEnv);
    assert.equal(JSON.parse(listedJson.stdout) .payloadBase64, Buffer.from(payload).toString('base64'));

    // Exit codes (EXIT table): usage 64, cannot connect 3, invalid configuration 2.
    assert.equal((await runCli(['dead-letters', 'frobnicate'], cliEnv)).code, 64);
    assert.equal((await runCli(['dead-letters', 'list', '--reason', 'nope'], cliEnv)).code, 64);
    assert.equal((await runCli(['dead-letters', 'list', '--json', '--dry-run'], cliEnv)).code, 64);
    assert.equal((await runCli(['dead-letters', 'list'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x', MEMORY_STORE: 'postgres' })).code, 3);
    assert.equal((await runCli(['dead-letters', 'list'], { DATABASE_URL: 'mysql://x', MEMORY_STORE: 'postgres' })).code, 2);
  });
});
