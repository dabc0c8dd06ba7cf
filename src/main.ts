// Composition root: builds every component from one Config, starts them in dependency order and
// stops them in reverse on SIGTERM/SIGINT (DESIGN 7): health NOT_SERVING -> stop fetching -> flush,
// commit, ack -> end streams with their cursor -> drain NATS -> close the pool; bounded by
// SHUTDOWN_TIMEOUT.
import { getHeapStatistics } from 'node:v8';
import type { Config } from './config/config.js';
import type { Logger } from './logger.js';
import type { V8Limits } from './cli/v8-limits.js';
import { collectProcessMetrics, exportMemoryBudget } from './metrics.js';
import { openDatabase } from './store/database.js';
import { migrate } from './store/migrate.js';
import { BatchWriter } from './store/batch-writer.js';
import { CommitNotifier } from './store/commit-notifier.js';
import { StoreMaintenance } from './store/maintenance.js';
import { partitionSpecFor } from './store/partitions.js';
import { connectNats } from './ingest/nats-connection.js';
import { startIngest } from './ingest/ingest.js';
import { MemoryCore } from './api/core.js';
import { startGrpcServer } from './api/grpc-server.js';
import { startHttpServer } from './api/http-server.js';

export interface RunningService {
  readonly grpcPort: number;
  stop(reason?: string): Promise<void>;
}

export async function runService(
  config: Config,
  logger: Logger,
  opts: { handleSignals?: boolean; v8Limits?: V8Limits } = {},
): Promise<RunningService> {
  const log = logger.child({ component: 'main' });
  collectProcessMetrics();
  logMemoryBudget(config, opts.v8Limits, log);
  const stack: { name: string; stop: () => Promise<void> }[] = [];
  const push = (name: string, stop: () => Promise<void>): void => {
    stack.push({ name, stop });
  };
  let stopping: Promise<void> | undefined;

  const stop = (reason = 'stop'): Promise<void> => {
    stopping ??= (async () => {
      log.info({ reason }, 'shutting down');
      const timer = setTimeout(() => {
        log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out; exiting');
        logger.flush();
        process.exit(1);
      }, config.shutdownTimeoutMs);
      timer.unref();
      for (const part of stack.reverse()) {
        try {
          await part.stop();
          log.debug({ part: part.name }, 'stopped');
        } catch (err) {
          log.error({ err, part: part.name }, 'error while stopping');
        }
      }
      clearTimeout(timer);
      log.info('stopped');
      logger.flush();
    })();
    return stopping;
  };

  try {
    const db = await openDatabase(config.database, logger);
    push('database', () => db.close());
    const partitions = partitionSpecFor(config.logPartitionIntervalMs, config.ingest.streamMaxAgeMs);
    // Also creates the log's partitions ahead, before ingest writes a row.
    await migrate(db.pool, logger, undefined, { partitions, retentionMs: config.logRetentionMs });

    const writer = new BatchWriter(db, logger);
    const notifier = new CommitNotifier(db, writer, logger);
    await notifier.start();
    push('commit-notifier', () => notifier.stop());

    const maintenance = new StoreMaintenance(
      db,
      { logRetentionMs: config.logRetentionMs, deadLetterRetentionMs: config.deadLetterRetentionMs, partitions },
      logger,
      { intervalMs: config.retentionIntervalMs },
    );
    maintenance.start();
    push('maintenance', () => maintenance.stop());

    const core = new MemoryCore({ db, notifier, config, logger });
    const grpc = await startGrpcServer({ config, core, logger });
    push('grpc', () => grpc.shutdown());
    // The HTTP port (Connect, gRPC-Web, the live page, /healthz /readyz /metrics) shares the core and
    // the readiness of the gRPC health service; /readyz reports NATS once ingest runs.
    let ingestStatus: (() => object | undefined) | undefined;
    const http = await startHttpServer({ config, core, health: grpc.health, ingestStatus: () => ingestStatus?.(), logger });
    push('http', () => http.shutdown());

    if (config.ingest.mode !== 'off') {
      const nc = await connectNats(config, logger);
      push('nats', () => nc.drain().catch(() => nc.close()));
      const ingest = await startIngest({ config, nc, writer, logger });
      ingestStatus = () => ingest.status();
      push('ingest', () => ingest.stop());
    }

    // Registered last so it runs first: load balancers and probes see NOT_SERVING before anything
    // else stops.
    push('health', async () => grpc.health.setShuttingDown());

    if (opts.handleSignals !== false) {
      const onSignal = (signal: NodeJS.Signals): void => {
        void stop(signal).then(() => process.exit(0));
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    }
    log.info({ grpcPort: grpc.port, httpPort: http.port, store: db.kind, ingest: config.ingest.mode, runtime: runtime() }, 'mycelis-memory started');
    return { grpcPort: grpc.port, stop };
  } catch (err) {
    await stop('startup failed');
    throw err;
  }
}

/**
 * The runtime as the start line reports it (the image pins one Node.js release; other lines behave
 * differently, e.g. in garbage collection): the Node and V8 versions, the flags node was started with
 * and the heap size limit V8 ended up with (which flags from NODE_OPTIONS also set).
 */
export function runtime(): { node: string; v8: string; execArgv: string[]; heapLimitMiB: number } {
  return {
    node: process.version,
    v8: process.versions.v8,
    execArgv: process.execArgv,
    heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
  };
}

/** One line at start with the budget every queue got, and the V8 limits in effect; the same on /metrics. */
function logMemoryBudget(config: Config, v8Limits: V8Limits | undefined, log: Logger): void {
  const heapSizeLimitBytes = v8Limits?.heapSizeLimitBytes ?? getHeapStatistics().heap_size_limit;
  exportMemoryBudget(config.memory, heapSizeLimitBytes);
  const mib = (n: number): number => Math.round((n / 1024 / 1024) * 10) / 10;
  const b = config.memory;
  const line = {
    limitMiB: mib(b.limitBytes),
    from: b.source,
    heapMiB: mib(b.heapBytes),
    semiSpaceMiB: mib(b.semiSpaceBytes),
    ingestMiB: mib(b.ingestBytes),
    batchMiB: mib(b.batchBytes),
    handoverMiB: mib(b.handoverBytes),
    streamsMiB: mib(b.streamBytes),
    watchMiB: mib(b.watchBytes),
    v8: v8Limits ? { source: v8Limits.source, flags: v8Limits.flags, heapLimitMiB: mib(heapSizeLimitBytes), malloc: v8Limits.malloc } : { source: 'in process', heapLimitMiB: mib(heapSizeLimitBytes) },
  };
  if (v8Limits?.source === 'not applied') log.warn({ ...line, reason: v8Limits.reason }, 'memory budget (V8 limits NOT applied: the heap may outgrow the limit)');
  else log.info(line, 'memory budget');
}
