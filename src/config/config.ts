// The only module that reads process.env. Everything else receives a frozen Config.
// Each variable is parsed once; an invalid value throws a ConfigError naming the variable and the
// accepted form, which main.ts prints as one line before exiting non-zero.
import { totalmem } from 'node:os';
import { heapFlagsIn, memoryBudget, MemoryBudgetError, type MemoryBudget } from './memory-budget.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    readonly detail: string,
  ) {
    super(`${variable}: ${detail}`);
  }
}

export type StoreKind = 'postgres' | 'embedded';
export type IngestMode = 'jetstream' | 'core' | 'off';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/** auto: readable lines when stdout is a terminal, JSON otherwise; json; pretty (readable always). */
export type LogFormat = 'auto' | 'json' | 'pretty';
export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface DatabaseConfig {
  /** Which store backs the service: a PostgreSQL server, or the embedded PGlite fallback. */
  readonly kind: StoreKind;
  /** Connection string for `pg` (kind postgres). Contains the password: never log it. */
  readonly url: string;
  /** Same as url with the password replaced by `***`, for logs. */
  readonly redactedUrl: string;
  readonly sslMode: SslMode | undefined;
  readonly poolMax: number;
  /** Data directory of the embedded store (kind embedded). */
  readonly embeddedDataDir: string;
}

export interface NatsConfig {
  readonly servers: readonly string[];
  readonly token: string | undefined;
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly credsFile: string | undefined;
  readonly tlsCaFile: string | undefined;
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
}

export interface IngestConfig {
  readonly mode: IngestMode;
  readonly subjects: readonly string[];
  readonly excludeSubjects: readonly string[];
  readonly logEntrySubjects: readonly string[];
  readonly streamName: string;
  readonly consumerName: string;
  readonly streamMaxAgeMs: number;
  /** -1 = unlimited. */
  readonly streamMaxBytes: number;
  readonly batchSize: number;
  readonly batchWaitMs: number;
  readonly ackWaitMs: number;
  readonly maxEventBytes: number;
  readonly coreBufferSize: number;
}

export interface ApiConfig {
  readonly host: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  /** Empty = no authentication. Secret: never log. */
  readonly apiTokens: readonly string[];
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  /** Exact origins; ['*'] only when set explicitly. */
  readonly corsOrigins: readonly string[];
  readonly maxStreams: number;
  /** Records a stream may queue before it falls back to reading the database. */
  readonly streamBuffer: number;
  readonly keepaliveMs: number;
}

export interface Config {
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly database: DatabaseConfig;
  readonly nats: NatsConfig;
  readonly ingest: IngestConfig;
  readonly api: ApiConfig;
  readonly agentOfflineAfterMs: number;
  /** null = keep forever. */
  readonly logRetentionMs: number | null;
  readonly deadLetterRetentionMs: number | null;
  /** Length of one log_entries partition (event time): whole hours dividing a day, or whole days. */
  readonly logPartitionIntervalMs: number;
  /** Time between store maintenance passes (partitions ahead, retention). */
  readonly retentionIntervalMs: number;
  readonly shutdownTimeoutMs: number;
  /** Every byte bound of the process, from MEMORY_LIMIT / the container's limit (memory-budget.ts). */
  readonly memory: MemoryBudget;
  /** V8 heap-size flags the operator set in NODE_OPTIONS (they win over the budget's). */
  readonly nodeOptionsHeapFlags: readonly string[];
}

/** What the platform says about memory (injected by tests). */
export interface MemoryPlatform {
  /** process.constrainedMemory(): the container's limit; 0 or a huge number when there is none. */
  readonly constrainedMemory: number | undefined;
  readonly totalMemory: number;
}

export function currentMemoryPlatform(): MemoryPlatform {
  return { constrainedMemory: process.constrainedMemory?.(), totalMemory: totalmem() };
}

type Env = Readonly<Record<string, string | undefined>>;

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const DURATION_FORM = 'a duration such as 500ms, 90s, 15m, 12h, 7d (units ms, s, m, h, d, w)';

/** Parses `90s`, `1h30m`, `7d`, `250ms`. A bare integer is not accepted: units are required. */
export function parseDuration(variable: string, raw: string): number {
  const text = raw.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let consumed = 0;
  let match: RegExpExecArray | null;
  while ((match = re.exec(text)) !== null) {
    total += Number(match[1]) * (DURATION_UNITS[match[2]!] ?? 0);
    consumed = re.lastIndex;
  }
  if (text.length === 0 || consumed !== text.length || !Number.isFinite(total)) {
    throw new ConfigError(variable, `invalid value ${JSON.stringify(raw)}: expected ${DURATION_FORM}`);
  }
  return Math.round(total);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  // Kubernetes quantities, so a pod's limit can be copied as written (512Mi, 1Gi, 500M).
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  ki: 1024,
  mi: 1024 ** 2,
  gi: 1024 ** 3,
  ti: 1024 ** 4,
};
const SIZE_FORM =
  'a byte size such as 1048576, 512KiB, 1MiB, 10GB or 512Mi (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, and Kubernetes K, M, G, T, Ki, Mi, Gi, Ti)';

export function parseSize(variable: string, raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(raw);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new ConfigError(variable, `invalid value ${JSON.stringify(raw)}: expected ${SIZE_FORM}`);
  }
  const value = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(value)) {
    throw new ConfigError(variable, `invalid value ${JSON.stringify(raw)}: too large`);
  }
  return value;
}

export function parseInteger(variable: string, raw: string, min: number, max: number): number {
  const text = raw.trim();
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < min || Number(text) > max) {
    throw new ConfigError(variable, `invalid value ${JSON.stringify(raw)}: expected an integer from ${min} to ${max}`);
  }
  return Number(text);
}

function parsePort(variable: string, raw: string): number {
  return parseInteger(variable, raw, 0, 65535);
}

function parseEnum<T extends string>(variable: string, raw: string, allowed: readonly T[]): T {
  const value = raw.trim().toLowerCase() as T;
  if (!allowed.includes(value)) {
    throw new ConfigError(variable, `invalid value ${JSON.stringify(raw)}: expected one of ${allowed.join(', ')}`);
  }
  return value;
}

/** A NATS subject or wildcard pattern: tokens separated by dots, `*` a whole token, `>` only last. */
export function isValidSubjectPattern(subject: string): boolean {
  if (subject.length === 0 || /\s/.test(subject)) return false;
  const tokens = subject.split('.');
  return tokens.every((t, i) => {
    if (t.length === 0) return false;
    if (t === '>') return i === tokens.length - 1;
    return !t.includes('>') && (t === '*' || !t.includes('*'));
  });
}

function parseSubjects(variable: string, raw: string): string[] {
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const s of list) {
    if (!isValidSubjectPattern(s)) {
      throw new ConfigError(
        variable,
        `invalid subject ${JSON.stringify(s)}: expected comma-separated NATS subjects such as swarm.> or swarm.*.agent.*`,
      );
    }
  }
  return list;
}

function parseList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

const DB_VARIABLES = ['DATABASE_URL', 'DB_HOST', 'DB_PORT', 'DB_USER', 'DB_PASSWORD', 'DB_NAME'] as const;

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable DATABASE_URL>';
  }
}

function parseDatabase(env: Env): DatabaseConfig {
  const get = (k: string): string | undefined => {
    const v = env[k];
    return v === undefined || v === '' ? undefined : v;
  };
  const storeRaw = get('MEMORY_STORE');
  const store = storeRaw ? parseEnum('MEMORY_STORE', storeRaw, ['auto', 'postgres', 'embedded'] as const) : 'auto';
  const anyDbVar = DB_VARIABLES.some((k) => get(k) !== undefined);
  const sslRaw = get('PGSSLMODE');
  const sslMode = sslRaw
    ? parseEnum('PGSSLMODE', sslRaw, ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const)
    : undefined;
  const poolMaxRaw = get('DB_POOL_MAX');
  const poolMax = poolMaxRaw ? parseInteger('DB_POOL_MAX', poolMaxRaw, 2, 1000) : 10;
  const embeddedDataDir = get('EMBEDDED_DATA_DIR') ?? './.data';

  if (store === 'embedded' || (store === 'auto' && !anyDbVar)) {
    return { kind: 'embedded', url: '', redactedUrl: '', sslMode, poolMax: 1, embeddedDataDir };
  }
  if (!anyDbVar) {
    throw new ConfigError(
      'MEMORY_STORE',
      'is "postgres" but no database is configured: set DATABASE_URL or DB_HOST (with DB_PORT, DB_USER, DB_PASSWORD, DB_NAME)',
    );
  }
  let url: string;
  const databaseUrl = get('DATABASE_URL');
  if (databaseUrl) {
    let parsed: URL;
    try {
      parsed = new URL(databaseUrl);
    } catch {
      throw new ConfigError('DATABASE_URL', 'is not a URL: expected postgres://user:password@host:5432/dbname (percent-encode special characters in the password)');
    }
    if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
      throw new ConfigError('DATABASE_URL', `has scheme ${JSON.stringify(parsed.protocol)}: expected postgres:// or postgresql://`);
    }
    url = databaseUrl;
  } else {
    const host = get('DB_HOST') ?? '127.0.0.1';
    const port = parsePort('DB_PORT', get('DB_PORT') ?? '5432');
    const user = get('DB_USER') ?? 'postgres';
    const password = env['DB_PASSWORD'] ?? '';
    const name = get('DB_NAME') ?? 'postgres';
    if (/[\s/?#@]/.test(host)) {
      throw new ConfigError('DB_HOST', `invalid value ${JSON.stringify(host)}: expected a host name or IP address`);
    }
    // pg's URL parser decodes the database name with decodeURI, which leaves %2F, %3F and %23 encoded:
    // a name with / ? # cannot be expressed in a connection URL at all.
    if (/[/?#]/.test(name)) {
      throw new ConfigError('DB_NAME', `invalid value ${JSON.stringify(name)}: expected a database name without / ? or #`);
    }
    // Every component is percent-encoded, so passwords such as p@ss:w/rd?#% survive.
    const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    const auth = `${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ''}`;
    // The name is escaped so that decodeURI (what pg applies to it) restores it: the reserved
    // characters decodeURI would leave escaped stay literal, which a URL path allows.
    const dbPath = encodeURIComponent(name).replace(/%(3B|3A|40|26|3D|2B|24|2C)/gi, (e) => decodeURIComponent(e));
    url = `postgres://${auth}@${hostPart}:${port}/${dbPath}`;
  }
  if (sslMode) {
    const u = new URL(url);
    u.searchParams.set('sslmode', sslMode);
    url = u.toString();
  }
  return { kind: 'postgres', url, redactedUrl: redactUrl(url), sslMode, poolMax, embeddedDataDir };
}

function optionalFile(env: Env, k: string): string | undefined {
  const v = env[k];
  return v === undefined || v === '' ? undefined : v;
}

function parseNats(env: Env): NatsConfig {
  const natsUrl = optionalFile(env, 'NATS_URL') ?? 'nats://127.0.0.1:4222';
  const servers = parseList(natsUrl);
  for (const s of servers) {
    if (!/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(s) && !/^[\w.-]+:\d+$/.test(s)) {
      throw new ConfigError('NATS_URL', `invalid server ${JSON.stringify(s)}: expected nats://host:port (comma-separated for a cluster)`);
    }
  }
  return {
    servers,
    token: optionalFile(env, 'NATS_TOKEN'),
    user: optionalFile(env, 'NATS_USER'),
    password: optionalFile(env, 'NATS_PASSWORD'),
    credsFile: optionalFile(env, 'NATS_CREDS_FILE'),
    tlsCaFile: optionalFile(env, 'NATS_TLS_CA_FILE'),
    tlsCertFile: optionalFile(env, 'NATS_TLS_CERT_FILE'),
    tlsKeyFile: optionalFile(env, 'NATS_TLS_KEY_FILE'),
  };
}

/** Only the NATS part, for tools (the CLI's publish) that need no database or API settings. */
export function loadNatsConfig(env: Env = process.env): NatsConfig {
  return deepFreeze(parseNats(env));
}

export function loadConfig(env: Env = process.env, platform: MemoryPlatform = currentMemoryPlatform()): Config {
  const str = (k: string, dflt: string): string => {
    const v = env[k];
    return v === undefined || v === '' ? dflt : v;
  };
  const duration = (k: string, dflt: string): number => parseDuration(k, str(k, dflt));
  const optionalDuration = (k: string): number | null => {
    const v = str(k, 'forever').trim().toLowerCase();
    if (v === 'forever' || v === 'off' || v === '0') return null;
    return parseDuration(k, v);
  };

  const logLevel = parseEnum('LOG_LEVEL', str('LOG_LEVEL', 'info'), [
    'fatal',
    'error',
    'warn',
    'info',
    'debug',
    'trace',
    'silent',
  ] as const);

  const batchSize = parseInteger('INGEST_BATCH_SIZE', str('INGEST_BATCH_SIZE', '5000'), 1, 50_000);
  const memoryLimitRaw = str('MEMORY_LIMIT', 'auto').trim().toLowerCase();
  const batchBytesRaw = str('INGEST_BATCH_BYTES', 'auto').trim().toLowerCase();
  let memory: MemoryBudget;
  try {
    memory = memoryBudget({
      memoryLimit: memoryLimitRaw === 'auto' ? undefined : parseSize('MEMORY_LIMIT', memoryLimitRaw),
      batchBytes: batchBytesRaw === 'auto' ? undefined : parseSize('INGEST_BATCH_BYTES', batchBytesRaw),
      constrainedMemory: platform.constrainedMemory,
      totalMemory: platform.totalMemory,
    });
  } catch (err) {
    if (err instanceof MemoryBudgetError) throw new ConfigError(err.variable, err.message);
    throw err;
  }
  if (memory.batchBytes < 1) throw new ConfigError('INGEST_BATCH_BYTES', 'must be at least 1 byte');
  const maxStreamBytesRaw = str('STREAM_MAX_BYTES', 'unlimited').trim().toLowerCase();
  const streamMaxBytes = maxStreamBytesRaw === 'unlimited' || maxStreamBytesRaw === '-1' ? -1 : parseSize('STREAM_MAX_BYTES', maxStreamBytesRaw);

  const apiTokens = parseList(str('API_TOKENS', ''));
  const tlsCertFile = optionalFile(env, 'TLS_CERT_FILE');
  const tlsKeyFile = optionalFile(env, 'TLS_KEY_FILE');
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    throw new ConfigError(tlsCertFile ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE', 'must be set together with the other of TLS_CERT_FILE and TLS_KEY_FILE');
  }
  const grpcPort = parsePort('GRPC_PORT', str('GRPC_PORT', '50051'));
  const httpPort = parsePort('HTTP_PORT', str('HTTP_PORT', '8080'));
  if (grpcPort !== 0 && grpcPort === httpPort) {
    throw new ConfigError('HTTP_PORT', `must differ from GRPC_PORT (both are ${grpcPort})`);
  }
  const corsOrigins = parseList(str('CORS_ORIGINS', ''));
  for (const o of corsOrigins) {
    if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o)) {
      throw new ConfigError('CORS_ORIGINS', `invalid origin ${JSON.stringify(o)}: expected comma-separated origins such as https://ui.example.com, or *`);
    }
  }

  const config: Config = {
    logLevel,
    logFormat: parseEnum('LOG_FORMAT', str('LOG_FORMAT', 'auto'), ['auto', 'json', 'pretty'] as const),
    database: parseDatabase(env),
    nats: parseNats(env),
    ingest: {
      mode: parseEnum('INGEST_MODE', str('INGEST_MODE', 'jetstream'), ['jetstream', 'core', 'off'] as const),
      subjects: parseSubjects('NATS_SUBJECTS', str('NATS_SUBJECTS', 'swarm.>')),
      // DESIGN 3.1.1's default drops the council's request-reply lane; `none` keeps every lane (an empty
      // value means "the default", as for every variable here).
      excludeSubjects: (() => {
        const v = str('NATS_EXCLUDE_SUBJECTS', 'swarm.council.*.request');
        return v.trim().toLowerCase() === 'none' ? [] : parseSubjects('NATS_EXCLUDE_SUBJECTS', v);
      })(),
      logEntrySubjects: parseSubjects('LOG_ENTRY_SUBJECTS', str('LOG_ENTRY_SUBJECTS', 'swarm.log.>')),
      streamName: (() => {
        const v = str('STREAM_NAME', 'SWARM');
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(v)) {
          throw new ConfigError('STREAM_NAME', `invalid value ${JSON.stringify(v)}: expected 1-64 letters, digits, _ or -`);
        }
        return v;
      })(),
      consumerName: (() => {
        const v = str('CONSUMER_NAME', 'mycelis-memory');
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(v)) {
          throw new ConfigError('CONSUMER_NAME', `invalid value ${JSON.stringify(v)}: expected 1-64 letters, digits, _ or -`);
        }
        return v;
      })(),
      streamMaxAgeMs: duration('STREAM_MAX_AGE', '7d'),
      streamMaxBytes,
      batchSize,
      batchWaitMs: duration('INGEST_BATCH_WAIT', '50ms'),
      ackWaitMs: duration('ACK_WAIT', '10s'),
      maxEventBytes: parseSize('MAX_EVENT_BYTES', str('MAX_EVENT_BYTES', '1MiB')),
      coreBufferSize: parseInteger('CORE_BUFFER_SIZE', str('CORE_BUFFER_SIZE', '20000'), 1, 10_000_000),
    },
    api: {
      host: str('HOST', '0.0.0.0'),
      grpcPort,
      httpPort,
      apiTokens,
      tlsCertFile,
      tlsKeyFile,
      corsOrigins,
      maxStreams: parseInteger('MAX_STREAMS', str('MAX_STREAMS', '1000'), 1, 1_000_000),
      streamBuffer: parseInteger('STREAM_BUFFER', str('STREAM_BUFFER', '10000'), 10, 1_000_000),
      keepaliveMs: duration('KEEPALIVE_INTERVAL', '15s'),
    },
    agentOfflineAfterMs: duration('AGENT_OFFLINE_AFTER', '90s'),
    logRetentionMs: optionalDuration('LOG_RETENTION'),
    deadLetterRetentionMs: optionalDuration('DEAD_LETTER_RETENTION') ?? (env['DEAD_LETTER_RETENTION'] ? null : 7 * 86_400_000),
    logPartitionIntervalMs: (() => {
      const ms = duration('LOG_PARTITION_INTERVAL', '1d');
      const hour = 3_600_000;
      const day = 24 * hour;
      if (ms < hour || ms % hour !== 0 || (day % ms !== 0 && ms % day !== 0)) {
        throw new ConfigError('LOG_PARTITION_INTERVAL', `invalid value ${JSON.stringify(str('LOG_PARTITION_INTERVAL', '1d'))}: expected whole hours that divide a day (1h, 2h, 3h, 4h, 6h, 8h, 12h) or whole days (1d, 7d)`);
      }
      return ms;
    })(),
    retentionIntervalMs: (() => {
      const ms = duration('RETENTION_INTERVAL', '1m');
      if (ms < 1000) throw new ConfigError('RETENTION_INTERVAL', `invalid value ${JSON.stringify(str('RETENTION_INTERVAL', '1m'))}: expected at least 1s`);
      return ms;
    })(),
    shutdownTimeoutMs: duration('SHUTDOWN_TIMEOUT', '20s'),
    memory,
    nodeOptionsHeapFlags: heapFlagsIn(str('NODE_OPTIONS', '').split(/\s+/)),
  };
  if (config.ingest.ackWaitMs < 5000) {
    // Allowed for tests, but never below the batch wait.
    if (config.ingest.ackWaitMs <= config.ingest.batchWaitMs) {
      throw new ConfigError('ACK_WAIT', `must be longer than INGEST_BATCH_WAIT (${config.ingest.batchWaitMs}ms)`);
    }
  }
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
