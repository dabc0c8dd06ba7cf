// One NATS connection for the process, built from config.nats. It reconnects forever (DESIGN 4: "NATS
// down: reconnect forever with backoff"): the API keeps serving history meanwhile, and the JetStream
// consumer resumes where its acks left off once the server is back.
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, DebugEvents, Events, type ConnectionOptions, type NatsConnection } from 'nats';
import type { Config, NatsConfig } from '../config/config.js';
import type { Logger } from '../logger.js';
import { UnavailableError } from '../errors.js';
import { counter, gauge } from '../metrics.js';

const connectedGauge = gauge('mycelis_memory_nats_connected', '1 while the NATS connection is up, else 0');
const reconnectsTotal = counter('mycelis_memory_nats_reconnects_total', 'NATS reconnections after a disconnect');

/** Builds nats.js options from the config (exported for tests; holds secrets, never log it). */
export function natsOptions(cfg: NatsConfig, name = 'mycelis-memory'): ConnectionOptions {
  const opts: ConnectionOptions = {
    servers: [...cfg.servers],
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    reconnectJitter: 500,
    reconnectJitterTLS: 1000,
    waitOnFirstConnect: true,
    pingInterval: 20_000,
  };
  if (cfg.token !== undefined) opts.token = cfg.token;
  if (cfg.user !== undefined) opts.user = cfg.user;
  if (cfg.password !== undefined) opts.pass = cfg.password;
  if (cfg.credsFile !== undefined) {
    opts.authenticator = credsAuthenticator(new Uint8Array(readFileSync(cfg.credsFile)));
  }
  if (cfg.tlsCaFile !== undefined || cfg.tlsCertFile !== undefined || cfg.tlsKeyFile !== undefined) {
    opts.tls = {};
    if (cfg.tlsCaFile !== undefined) opts.tls.caFile = cfg.tlsCaFile;
    if (cfg.tlsCertFile !== undefined) opts.tls.certFile = cfg.tlsCertFile;
    if (cfg.tlsKeyFile !== undefined) opts.tls.keyFile = cfg.tlsKeyFile;
  }
  return opts;
}

/**
 * Connects (waiting for the first connection as long as it takes, like every later reconnect) and
 * logs connection events for the life of the connection. Throws UnavailableError only for errors
 * retrying cannot fix (bad credentials file, bad TLS files).
 */
export async function connectNats(config: Config, logger: Logger): Promise<NatsConnection> {
  const log = logger.child({ component: 'nats' });
  let nc: NatsConnection;
  try {
    nc = await connect(natsOptions(config.nats));
  } catch (err) {
    throw new UnavailableError(`cannot connect to NATS at ${config.nats.servers.join(',')}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  connectedGauge.set(1);
  log.info({ server: nc.getServer() }, 'connected to NATS');
  void watchStatus(nc, log);
  return nc;
}

async function watchStatus(nc: NatsConnection, log: Logger): Promise<void> {
  // Reconnect attempts happen every ~1 s while the server is down: log the first, then every 30 s.
  let lastReconnectingLog = 0;
  let attempts = 0;
  try {
    for await (const s of nc.status()) {
      switch (s.type) {
        case Events.Disconnect:
          connectedGauge.set(0);
          log.warn({ server: s.data }, 'disconnected from NATS; reconnecting');
          break;
        case Events.Reconnect:
          connectedGauge.set(1);
          reconnectsTotal.inc();
          log.info({ server: s.data, attempts }, 'reconnected to NATS');
          attempts = 0;
          break;
        case DebugEvents.Reconnecting: {
          attempts++;
          const now = Date.now();
          if (now - lastReconnectingLog > 30_000) {
            lastReconnectingLog = now;
            log.warn({ attempts }, 'still reconnecting to NATS');
          }
          break;
        }
        case Events.LDM:
          log.warn({ server: s.data }, 'NATS server entering lame duck mode');
          break;
        case Events.Error:
          log.error({ err: s.data }, 'NATS async error');
          break;
        default:
          break;
      }
    }
  } catch (err) {
    log.error({ err }, 'NATS status watcher failed');
  }
  connectedGauge.set(0);
  const err = await nc.closed();
  if (err) log.error({ err }, 'NATS connection closed with an error');
  else log.info('NATS connection closed');
}
