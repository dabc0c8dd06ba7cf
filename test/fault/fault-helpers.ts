// Shared by the fault suite (not a test file): the service's environment for one isolated run, exact
// counts in PostgreSQL, a child's peak RSS, and publishing generated traffic from the test process.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { connect, headers as natsHeaders, type MsgHdrs, type NatsConnection } from 'nats';
import { generateTraffic, type TrafficOptions } from '../../src/cli/traffic.js';
import type { ServiceProcess } from '../helpers/service.js';

export { serviceEnv } from '../helpers/service.js';

export async function countOf(pool: pg.Pool | pg.Client, text: string, params: unknown[] = []): Promise<number> {
  const r = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM (${text}) q`, params);
  return Number(r.rows[0]!.n);
}

/** Peak and current resident set of a live child process, in MiB (Linux /proc). */
export function rssMiB(svc: ServiceProcess): { peak: number; now: number } {
  const status = readFileSync(`/proc/${svc.child.pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { peak: kb('VmHWM') / 1024, now: kb('VmRSS') / 1024 };
}

/** Publishes generated traffic (core publishes, flushed every 5,000) and returns how many were sent. */
export async function publishTraffic(nc: NatsConnection, opts: TrafficOptions): Promise<number> {
  const cache = new Map<string, MsgHdrs>();
  let n = 0;
  for (const m of generateTraffic(opts)) {
    let h: MsgHdrs | undefined;
    if (m.headers) {
      const key = JSON.stringify(m.headers);
      h = cache.get(key);
      if (!h) {
        h = natsHeaders();
        for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
        cache.set(key, h);
      }
    }
    nc.publish(m.subject, m.data, h ? { headers: h } : undefined);
    if (++n % 5000 === 0) await nc.flush();
  }
  await nc.flush();
  return n;
}

export async function withNats<T>(url: string, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: url });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

/** The consumer has nothing pending and nothing awaiting an ack. */
export async function consumerDrained(url: string, stream: string, consumer: string): Promise<boolean> {
  return withNats(url, async (nc) => {
    const info = await (await nc.jetstreamManager()).consumers.info(stream, consumer);
    return info.num_pending === 0 && info.num_ack_pending === 0;
  });
}

/** A small pool for assertions; an idle client dropped by the server (other tests terminate backends) is not a failure. */
export function assertionPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  return pool;
}

/** Sum of a metric's samples on the service's /metrics, over the samples whose labels include `labels`. */
export async function scrapeMetric(httpBase: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${httpBase}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([^ ]+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const l = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}
