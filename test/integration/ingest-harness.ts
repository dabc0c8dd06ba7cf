// Shared set-up for the ingest integration tests (not a test file itself): a real database (migrated),
// the real BatchWriter, a NATS connection, and startIngest() with a test config.
import pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../src/config/config.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { startIngest, type RunningIngest } from '../../src/ingest/ingest.js';
import { MessageType, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';
import { ingestMetrics } from '../../src/ingest/pipeline.js';
import type { Counter } from 'prom-client';

export const silentLogger = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });

export interface Harness {
  readonly config: Config;
  readonly db: Database;
  readonly writer: BatchWriter;
  readonly nc: NatsConnection;
  readonly ingest: RunningIngest;
  readonly sql: pg.Client;
  close(): Promise<void>;
}

export async function startHarness(env: Record<string, string>, natsUrl: string): Promise<Harness> {
  const config = loadConfig({ LOG_LEVEL: 'silent', NATS_URL: natsUrl, INGEST_BATCH_WAIT: '20ms', ACK_WAIT: '3s', ...env });
  const db = await openDatabase(config.database, silentLogger);
  await migrate(db.pool, silentLogger);
  const writer = new BatchWriter(db, silentLogger);
  const nc = await connect({ servers: natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  const sql = new pg.Client({ connectionString: config.database.url });
  sql.on('error', () => {}); // tests that stop PostgreSQL open a fresh client afterwards
  await sql.connect();
  let ingest: RunningIngest;
  try {
    ingest = await startIngest({ config, nc, writer, logger: silentLogger });
  } catch (err) {
    await sql.end();
    await nc.close();
    await db.close();
    throw err;
  }
  return {
    config,
    db,
    writer,
    nc,
    ingest,
    sql,
    async close() {
      await ingest.stop();
      await nc.close();
      await sql.end();
      await db.close();
    },
  };
}

export async function count(sql: pg.Client, text: string, params: unknown[] = []): Promise<number> {
  const r = await sql.query<{ n: string }>(`SELECT count(*)::text AS n FROM (${text}) q`, params);
  return Number(r.rows[0]!.n);
}

export async function metricValue(c: Counter<string>, labels: Record<string, string> = {}): Promise<number> {
  const m = await c.get();
  return m.values
    .filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))
    .reduce((s, v) => s + v.value, 0);
}

export { ingestMetrics };

/** A valid TEXT envelope with its own id and timestamp (µs precision). */
export function textEnvelope(id: string, agent: string, content: string, timeMs = Date.now()): Uint8Array {
  return MsgEnvelope.encode({
    id,
    timestamp: { seconds: String(Math.floor(timeMs / 1000)), nanos: (timeMs % 1000) * 1_000_000 },
    sourceAgentId: agent,
    type: MessageType.MESSAGE_TYPE_TEXT,
    payload: { $case: 'text', value: { content, recipientId: '', intent: 'inform', contextId: '' } },
    traceId: '',
    spanId: '',
    teamId: '',
  }).finish();
}

export { prng } from '../helpers/prng.js';
