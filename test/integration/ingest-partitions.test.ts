// Exactly once through the whole ingest path on the partitioned log (DESIGN 3.2): the router's
// swarm.audit.trace copy of an envelope is another stream message with another server time. When the
// envelope's own timestamp is kept, original and copy share id, timestamp and partition; when normalize
// replaces it by server time (unset, before 2000, more than 5 minutes ahead), the
// two rows would differ in timestamp — and in partition, across midnight — yet must still be one row.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { MessageType, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { SHARED_NATS_URL, dropStreamAndClose, uniqueNatsNames } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { count, silentLogger, startHarness, type Harness } from './ingest-harness.js';

const names = uniqueNatsNames('ingest_partitions');

function envelope(id: string, agent: string, timeMs: number): Uint8Array {
  return MsgEnvelope.encode({
    id,
    timestamp: { seconds: String(Math.floor(timeMs / 1000)), nanos: (timeMs % 1000) * 1_000_000 },
    sourceAgentId: agent,
    type: MessageType.MESSAGE_TYPE_TEXT,
    payload: { $case: 'text', value: { content: `from ${id}`, recipientId: '', intent: 'inform', contextId: '' } },
    traceId: '',
    spanId: '',
    teamId: '',
  }).finish();
}

describe('ingest: copies collapse on the partitioned log', { timeout: 120_000 }, () => {
  let tdb: TestDatabase;
  let h: Harness;
  let nc: NatsConnection;

  before(async () => {
    tdb = await createTestDatabase('ingest_partitions');
    nc = await connect({ servers: SHARED_NATS_URL });
    h = await startHarness(
      {
        ...tdb.env,
        STREAM_NAME: names.stream,
        CONSUMER_NAME: names.consumer,
        NATS_SUBJECTS: `${names.prefix}.>`,
        LOG_ENTRY_SUBJECTS: `${names.prefix}.log.>`,
        NATS_EXCLUDE_SUBJECTS: `${names.prefix}.council.*.request`,
        INGEST_BATCH_SIZE: '50',
      },
      SHARED_NATS_URL,
    );
  });
  after(async () => {
    await h?.close();
    await dropStreamAndClose(nc, names.stream);
    await tdb?.drop();
    void silentLogger;
  });

  it('an envelope stamped 10 minutes ahead, its audit copy and a redelivery of both: one row at server time', async () => {
    const cases = [
      { id: 'skewed-ahead', at: Date.now() + 10 * 60_000 }, // replaced by server time
      { id: 'near-limit', at: Date.now() + 4.5 * 60_000 }, // kept or replaced depending on ms of routing
      { id: 'on-time', at: Date.now() - 1000 }, // kept
      { id: 'before-2000', at: Date.UTC(1999, 5, 1) }, // replaced
    ];
    for (const c of cases) {
      const bytes = envelope(c.id, 'agent-skew', c.at);
      nc.publish(`${names.prefix}.agent.agent-skew.output`, bytes);
      await nc.flush();
      await new Promise((r) => setTimeout(r, 20)); // another server time for the copy
      nc.publish(`${names.prefix}.audit.trace`, bytes);
      await nc.flush();
    }
    // And the same again later, in other batches (a replay of the stream, a producer's retry).
    await waitFor('first copies stored', async () => (await count(h.sql, `SELECT 1 FROM log_entries WHERE source = 'agent-skew'`)) >= cases.length);
    for (const c of cases) nc.publish(`${names.prefix}.audit.trace`, envelope(c.id, 'agent-skew', c.at));
    nc.publish(`${names.prefix}.agent.sentinel.output`, envelope('sentinel', 'sentinel', Date.now()));
    await nc.flush();
    await waitFor('sentinel', async () => (await count(h.sql, `SELECT 1 FROM log_entries WHERE source = 'sentinel'`)) === 1);

    const rows = await h.sql.query<{ id: string; n: number; ts: Date }>(
      `SELECT context->>'id' AS id, count(*)::int AS n, min(timestamp) AS ts FROM log_entries WHERE source = 'agent-skew' GROUP BY 1 ORDER BY 1`,
    );
    assert.deepEqual(rows.rows.map((r) => [r.id, r.n]), cases.map((c) => [c.id, 1]).sort(), 'one row per event');
    const byId = new Map(rows.rows.map((r) => [r.id, r.ts.getTime()]));
    assert.ok(Math.abs(byId.get('skewed-ahead')! - Date.now()) < 5 * 60_000, 'stored at server time, not 10 minutes ahead');
    assert.ok(byId.get('before-2000')! > Date.UTC(2020, 0, 1), 'stored at server time, not in 1999');
    assert.equal(byId.get('on-time'), cases[2]!.at, 'an on-time event keeps its own time');
  });
});
