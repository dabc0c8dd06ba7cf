// Entry point of the ingest side: picks JetStream or core mode from config.ingest.mode and exposes
// stop() (stop fetching, flush, commit, ack) and status() for health and the CLI.
import { Events, type NatsConnection } from 'nats';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { compileSubjectMatcher } from '../domain/subjects.js';
import { CoreIngest } from './core-ingest.js';
import { JetStreamIngest } from './jetstream-ingest.js';
import type { IngestWriter } from './pipeline.js';

export interface IngestStatus {
  readonly mode: 'jetstream' | 'core';
  readonly connected: boolean;
  /** Consumer lag (num_pending), null when unknown or in core mode. */
  readonly lag: number | null;
  readonly lastCommitAt: Date | null;
}

export interface RunningIngest {
  /** Stops fetching, commits and acks what was delivered. Idempotent. */
  stop(): Promise<void>;
  status(): IngestStatus;
}

export interface IngestDeps {
  readonly config: Config;
  readonly nc: NatsConnection;
  readonly writer: IngestWriter;
  readonly logger: Logger;
}

export async function startIngest(deps: IngestDeps): Promise<RunningIngest> {
  const { config, nc, writer, logger } = deps;
  const cfg = config.ingest;
  if (cfg.mode === 'off') throw new Error('startIngest called with INGEST_MODE=off');
  const mode = cfg.mode;
  const pipelineOpts = {
    writer,
    logger,
    isExcluded: compileSubjectMatcher(cfg.excludeSubjects),
    isLogEntrySubject: compileSubjectMatcher(cfg.logEntrySubjects),
    maxEventBytes: cfg.maxEventBytes,
  };

  let connected = !nc.isClosed();
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) connected = false;
      else if (s.type === Events.Reconnect) connected = true;
    }
    connected = false;
  })().catch(() => {
    connected = false;
  });

  // Leave part of the shutdown budget for draining NATS and closing the pool after us.
  const abortAfterMs = Math.max(1000, Math.floor(config.shutdownTimeoutMs * 0.6));
  let stopping: Promise<void> | undefined;

  if (mode === 'jetstream') {
    const js = new JetStreamIngest(nc, cfg, { heldBytes: config.memory.ingestBytes, batchBytes: config.memory.batchBytes }, pipelineOpts, logger);
    await js.start();
    return {
      stop: () => (stopping ??= js.stop(abortAfterMs)),
      status: () => ({ mode, connected: connected && !nc.isClosed(), lag: js.lag, lastCommitAt: js.lastCommitAt }),
    };
  }
  const core = new CoreIngest(nc, cfg, { heldBytes: config.memory.ingestBytes, batchBytes: config.memory.batchBytes }, pipelineOpts, logger);
  core.start();
  return {
    stop: () => (stopping ??= core.stop(abortAfterMs)),
    status: () => ({ mode, connected: connected && !nc.isClosed(), lag: null, lastCommitAt: core.lastCommitAt }),
  };
}
