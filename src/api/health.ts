// grpc.health.v1 with three service names:
// - "" and "mycelis.memory.v1.MemoryService": ready = the database answers and the migrations the API
//   needs are applied (a cheap periodic probe); NATS does not matter (history still serves).
// - "liveness": the process is responsive; never touched by the probe, so a database outage never
//   restarts a pod.
import { HealthImplementation, service as healthService, type ServingStatus } from 'grpc-health-check';
import type { Logger } from '../logger.js';

/** grpc.health.v1.Health as grpc-health-check serves it (Check, Watch, List), for reflection. */
export const healthServiceDefinition = healthService;

export const MEMORY_SERVICE_NAME = 'mycelis.memory.v1.MemoryService';
export const LIVENESS_SERVICE_NAME = 'liveness';

export interface ApiHealthOptions {
  /** Resolves true when ready; false or a rejection means not ready. */
  readonly probe: (signal: AbortSignal) => Promise<boolean>;
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
}

export class ApiHealth {
  readonly implementation = new HealthImplementation({
    '': 'NOT_SERVING',
    [MEMORY_SERVICE_NAME]: 'NOT_SERVING',
    [LIVENESS_SERVICE_NAME]: 'SERVING',
  });
  private timer: NodeJS.Timeout | null = null;
  private ready = false;
  private shuttingDown = false;
  private running: Promise<void> | null = null;
  private readonly log: Logger;

  constructor(
    private readonly opts: ApiHealthOptions,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'health' });
  }

  get isReady(): boolean {
    return this.ready && !this.shuttingDown;
  }

  /** Probes once now, then every intervalMs. */
  start(): Promise<void> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.check(), this.opts.intervalMs ?? 5000);
      this.timer.unref();
    }
    return this.check();
  }

  check(): Promise<void> {
    this.running ??= (async () => {
      let ok = false;
      try {
        ok = await this.opts.probe(AbortSignal.timeout(this.opts.timeoutMs ?? 2000));
      } catch (err) {
        if (this.ready) this.log.warn({ err }, 'readiness probe failed');
      }
      if (ok !== this.ready) this.log.info({ ready: ok }, ok ? 'ready' : 'not ready');
      this.ready = ok;
      this.publish();
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private publish(): void {
    const s: ServingStatus = this.ready && !this.shuttingDown ? 'SERVING' : 'NOT_SERVING';
    this.implementation.setStatus('', s);
    this.implementation.setStatus(MEMORY_SERVICE_NAME, s);
  }

  /** Shutdown: readiness goes NOT_SERVING for good; liveness stays SERVING until the process exits. */
  setShuttingDown(): void {
    this.shuttingDown = true;
    this.publish();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
