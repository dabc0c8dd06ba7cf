// Small helpers shared by the benchmark phases: a µs clock, percentiles, RSS sampling of a child
// process, polling, and JetStream prefill/pacing over CORE publishes (the service's streams are
// no_ack, so a JetStream publish would never get its PubAck).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { RetentionPolicy, StorageType, type NatsConnection } from 'nats';
import { generateTraffic, type TrafficMessage } from '../src/cli/traffic.js';

/** Wall clock in fractional milliseconds since the epoch, sub-millisecond resolution. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(values: ArrayLike<number>): Summary {
  const n = values.length;
  if (n === 0) return { n: 0, p50: NaN, p95: NaN, p99: NaN, max: NaN, mean: NaN };
  const a = Float64Array.from(values).sort();
  const q = (p: number): number => a[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[i]!;
  return { n, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: a[n - 1]!, mean: sum / n };
}

/** Growable Float64 sample buffer (millions of latencies without boxing). */
export class Samples {
  private buf = new Float64Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  view(): Float64Array {
    return this.buf.subarray(0, this.length);
  }
}

/** Waits for cond() to be true, polling; throws after timeoutMs. */
export async function until(cond: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function statusKb(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Peak RSS of a process per phase: VmHWM (the kernel's high-water mark, reset at each phase start via
 * /proc/<pid>/clear_refs "5") and the max of VmRSS sampled every 100 ms, whichever is higher.
 */
export class RssMonitor {
  private timer: NodeJS.Timeout;
  private sampledMaxKb = 0;
  constructor(private readonly pid: number) {
    this.timer = setInterval(() => {
      this.sampledMaxKb = Math.max(this.sampledMaxKb, statusKb(this.pid, 'VmRSS'));
    }, 100);
    this.timer.unref();
  }
  /** Starts a new phase: resets the high-water marks. */
  reset(): void {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
    } catch {
      // not permitted: VmHWM stays the lifetime peak; the sampled max is still per phase
    }
    this.sampledMaxKb = statusKb(this.pid, 'VmRSS');
  }
  /** Peak RSS in MB since the last reset. */
  peakMb(): number {
    const kb = Math.max(this.sampledMaxKb, statusKb(this.pid, 'VmHWM'), statusKb(this.pid, 'VmRSS'));
    return Math.round((kb / 1024) * 10) / 10;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

export interface DataOptions {
  agents: number;
  teams: number;
  seed: number;
}

/** Pre-generates n messages (all payload kinds, 1,000 agents, 40 teams by default). */
export function buildMessages(n: number, d: DataOptions, clock: () => number = Date.now): TrafficMessage[] {
  const out: TrafficMessage[] = new Array<TrafficMessage>(n);
  let i = 0;
  for (const m of generateTraffic({ count: n, agents: d.agents, teams: d.teams, seed: d.seed, clock, subjectPrefix: 'swarm' })) out[i++] = m;
  return out;
}

/** Publishes every message as fast as the server takes them (flush every 2,000). */
export async function publishAll(nc: NatsConnection, msgs: readonly TrafficMessage[]): Promise<void> {
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i]!;
    nc.publish(m.subject, m.data);
    if (i % 2000 === 1999) await nc.flush();
  }
  await nc.flush();
}

/**
 * Publishes generated traffic at `rate` messages/s for `durationS` seconds. Each message is generated
 * just before it is sent, and its event timestamp is the publish time (µs): the receiver's latency is
 * receive time minus the record's timestamp. Returns the number published.
 */
export async function publishPaced(
  nc: NatsConnection,
  rate: number,
  durationS: number,
  d: DataOptions,
  onPublished?: (count: number) => void,
): Promise<number> {
  const total = Math.round(rate * durationS);
  const gen = generateTraffic({ count: total, agents: d.agents, teams: d.teams, seed: d.seed, clock: nowMs, subjectPrefix: 'swarm' });
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    while (sent < due) {
      const next = gen.next();
      if (next.done) break;
      nc.publish(next.value.subject, next.value.data);
      sent++;
    }
    onPublished?.(sent);
    // Small ticks keep the publish time close to the event timestamp (timers here fire every ~1-4 ms).
    await sleep(2);
  }
  await nc.flush();
  return sent;
}

export function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return '-';
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(digits);
}

const CLK_TCK = 100;

function procCpuSeconds(pid: string): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 (1-based) of the whole line, 12 and 13 after "(comm) ".
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/**
 * CPU seconds used during a phase by groups of processes, found by command line (e.g. the PostgreSQL
 * backends of one database, a private nats-server, the service). Polls /proc every 200 ms so that
 * processes that exit before the end are still counted up to their last sample.
 */
export class CpuTracker {
  private readonly first = new Map<string, number>();
  private readonly last = new Map<string, { group: string; cpu: number }>();
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly groups: Record<string, (cmd: string, pid: string) => boolean>) {
    this.poll(true);
    this.timer = setInterval(() => this.poll(false), 200);
    this.timer.unref();
  }
  private poll(initial: boolean): void {
    let pids: string[];
    try {
      pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
    } catch {
      return;
    }
    for (const pid of pids) {
      let group = this.last.get(pid)?.group;
      if (group === undefined && !this.first.has(pid)) {
        const cmd = cmdline(pid);
        group = Object.keys(this.groups).find((g) => this.groups[g]!(cmd, pid));
        if (group === undefined) continue;
      }
      if (group === undefined) continue;
      const cpu = procCpuSeconds(pid);
      if (cpu === null) continue;
      if (!this.first.has(pid)) this.first.set(pid, initial ? cpu : 0);
      this.last.set(pid, { group, cpu });
    }
  }
  /** CPU seconds per group since construction. */
  stop(): Record<string, number> {
    this.poll(false);
    clearInterval(this.timer);
    const out: Record<string, number> = {};
    for (const g of Object.keys(this.groups)) out[g] = 0;
    for (const [pid, { group, cpu }] of this.last) out[group] = (out[group] ?? 0) + cpu - (this.first.get(pid) ?? 0);
    for (const g of Object.keys(out)) out[g] = Math.round(out[g]! * 100) / 100;
    return out;
  }
}

/**
 * CPU of one phase: the Node process doing the work, the PostgreSQL backends of its database, the
 * private nats-server (by its store directory), and any further processes by pid.
 */
export function serviceCpuTracker(nodePid: number, dbName: string, natsStoreDir: string, more: Record<string, number> = {}): CpuTracker {
  const groups: Record<string, (cmd: string, pid: string) => boolean> = {
    node: (_cmd, pid) => pid === String(nodePid),
    postgres: (cmd) => cmd.startsWith('postgres: ') && cmd.includes(` ${dbName} `),
    nats: (cmd) => cmd.includes('nats-server') && cmd.includes(natsStoreDir),
  };
  for (const [name, p] of Object.entries(more)) groups[name] = (_cmd, pid) => pid === String(p);
  return new CpuTracker(groups);
}

/** The stream the service itself would create (DESIGN 4: no_ack, file storage, limits, 7 days), on `swarm.>`. */
export async function createStream(nc: NatsConnection, name: string): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name, subjects: ['swarm.>'], no_ack: true, storage: StorageType.File, retention: RetentionPolicy.Limits, max_age: 7 * 86_400 * 1e9 });
}
