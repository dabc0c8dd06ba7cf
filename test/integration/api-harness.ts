// Shared setup for the API integration tests: a fresh database (migrated), the real BatchWriter and
// CommitNotifier, a MemoryCore and the grpc-js server on port 0, and a generic grpc-js client.
import * as grpc from '@grpc/grpc-js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createLogger } from '../../src/logger.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';
import { MemoryCore } from '../../src/api/core.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/api/grpc-server.js';
import { MemoryServiceClient, type StreamLogsRequest, type StreamLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import { metricsRegistry } from '../../src/metrics.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';

export const logger = createLogger((process.env['TEST_LOG_LEVEL'] as 'silent' | undefined) ?? 'silent');

export interface Env {
  tdb: TestDatabase;
  db: Database;
  writer: BatchWriter;
  notifier: CommitNotifier;
  close(): Promise<void>;
}

export async function openEnv(label: string): Promise<Env> {
  const tdb = await createTestDatabase(label);
  const db = await openDatabase(
    { kind: 'postgres', url: tdb.url, redactedUrl: tdb.url, sslMode: undefined, poolMax: 12, embeddedDataDir: '' },
    logger,
  );
  await migrate(db.pool, logger);
  const writer = new BatchWriter(db, logger);
  const notifier = new CommitNotifier(db, writer, logger);
  await notifier.start();
  return {
    tdb,
    db,
    writer,
    notifier,
    async close() {
      await notifier.stop();
      await db.close();
      await tdb.drop();
    },
  };
}

export interface Api {
  config: Config;
  core: MemoryCore;
  server: RunningGrpcServer;
  client: MemoryServiceClient;
  address: string;
  close(): Promise<void>;
}

export async function startApi(env: Env, vars: Record<string, string> = {}): Promise<Api> {
  const config = loadConfig({ ...env.tdb.env, HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', INGEST_MODE: 'off', ...vars });
  const core = new MemoryCore({ db: env.db, notifier: env.notifier, config, logger });
  const server = await startGrpcServer({ config, core, logger });
  const address = `127.0.0.1:${server.port}`;
  const client = new MemoryServiceClient(address, grpc.credentials.createInsecure());
  return {
    config,
    core,
    server,
    client,
    address,
    async close() {
      client.close();
      await server.shutdown(4000);
    },
  };
}

export function unary<Req, Res>(
  fn: (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown,
  req: Req,
  md = new grpc.Metadata(),
  opts: Partial<grpc.CallOptions> = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, md, opts, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** A stream reader that collects records and lets the test wait for conditions on them. */
export class StreamCollector {
  readonly records: { id: string; seq: number; cursor: string }[] = [];
  readonly responses: StreamLogsResponse[] = [];
  error: grpc.ServiceError | null = null;
  ended = false;
  readonly call: grpc.ClientReadableStream<StreamLogsResponse>;

  constructor(client: MemoryServiceClient, req: Partial<StreamLogsRequest>, md = new grpc.Metadata()) {
    this.call = client.streamLogs({ afterCursor: '', tail: 0, ...req }, md);
    this.call.on('data', (r: StreamLogsResponse) => {
      this.responses.push(r);
      for (const rec of r.records) this.records.push({ id: rec.id, seq: Number(rec.seq), cursor: rec.cursor });
    });
    this.call.on('error', (e: grpc.ServiceError) => {
      this.error = e;
    });
    this.call.on('end', () => {
      this.ended = true;
    });
  }

  get lastSeq(): number {
    return this.records[this.records.length - 1]?.seq ?? -1;
  }

  cancel(): void {
    this.call.cancel();
  }
}

/** A metric of this process: the sum over its series, or over those with every label in `labels`. */
export async function metricValue(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = metricsRegistry.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  const want = Object.entries(labels);
  return data.values.filter((v) => want.every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((s, v) => s + v.value, 0);
}
