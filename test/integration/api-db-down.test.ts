// A database outage on a PRIVATE PostgreSQL (never the shared one): MemoryService calls answer
// UNAVAILABLE, readiness goes NOT_SERVING, liveness stays SERVING; after the restart, calls work again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { loadConfig } from '../../src/config/config.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';
import { MemoryCore } from '../../src/api/core.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/api/grpc-server.js';
import { ApiHealth } from '../../src/api/health.js';
import { MemoryServiceClient } from '../../src/gen/mycelis/memory/v1/memory.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-pg.js';
import { waitFor } from '../helpers/wait.js';
import { logger, unary } from './api-harness.js';

describe('api: database outage', { timeout: 180_000 }, () => {
  let pgp: PrivatePostgres;
  let db: Database;
  let notifier: CommitNotifier;
  let server: RunningGrpcServer;
  let client: MemoryServiceClient;
  let health: ApiHealth;

  before(async () => {
    pgp = await startPrivatePostgres();
    db = await openDatabase({ kind: 'postgres', url: pgp.url, redactedUrl: pgp.url, sslMode: undefined, poolMax: 4, embeddedDataDir: '' }, logger);
    await migrate(db.pool, logger);
    notifier = new CommitNotifier(db, new BatchWriter(db, logger), logger);
    await notifier.start();
    const config = loadConfig({ DATABASE_URL: pgp.url, MEMORY_STORE: 'postgres', HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0' });
    const core = new MemoryCore({ db, notifier, config, logger });
    health = new ApiHealth({ probe: (s) => core.logReader.probeReady(s), intervalMs: 200, timeoutMs: 1000 }, logger);
    await health.start();
    server = await startGrpcServer({ config, core, logger, health });
    client = new MemoryServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await server?.shutdown(3000);
    health?.stop();
    await notifier?.stop();
    await db?.close();
    await pgp?.destroy();
  });

  it('UNAVAILABLE and NOT_SERVING while down; liveness SERVING throughout; recovers', async () => {
    const Health = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');
    const h = new Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      check(req: { service: string }, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
    };
    const check = (service: string): Promise<string> =>
      new Promise((res, rej) => h.check({ service }, (e, v) => (e ? rej(e) : res(v.status))));
    const registry = (): Promise<unknown> =>
      unary(client.getRegistry.bind(client) as never, { teamIds: [], statuses: [], pageSize: 0, pageToken: '' });

    assert.equal(await check('mycelis.memory.v1.MemoryService'), 'SERVING');
    await registry();
    await pgp.stop();
    try {
      await waitFor('UNAVAILABLE', async () => {
        try {
          await registry();
          return false;
        } catch (e) {
          return (e as grpc.ServiceError).code === grpc.status.UNAVAILABLE;
        }
      });
      await waitFor('not ready', async () => (await check('mycelis.memory.v1.MemoryService')) === 'NOT_SERVING');
      assert.equal(await check(''), 'NOT_SERVING');
      assert.equal(await check('liveness'), 'SERVING');
    } finally {
      await pgp.start();
    }
    await waitFor('ready again', async () => (await check('mycelis.memory.v1.MemoryService')) === 'SERVING');
    await waitFor('answers again', async () => {
      await registry();
      return true;
    });
    h.close();
  });
});
