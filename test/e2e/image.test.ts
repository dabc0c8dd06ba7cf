// The container image without a Docker engine: reproduce the Dockerfile's final stage in a temp
// directory (copy exactly what its COPY lines copy, run its `npm ci --omit=dev`), start its
// ENTRYPOINT/CMD with the Kubernetes ConfigMap's settings against a fresh database, as the image's
// non-root user when we can switch users, and check it serves: the gRPC health names the probes use,
// /readyz, /metrics, an authenticated MemoryService call, migrations applied from the image's copy.
import { strict as assert } from 'node:assert';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, posix } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import pg from 'pg';
import { MALLOC_ENV } from '../../src/config/memory-budget.js';
import { MemoryServiceClient, type GetRegistryResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import { spawnWatched } from '../helpers/child.js';
import { parseDockerfile, type Instruction } from '../helpers/dockerfile.js';
import { podSpec, renderKustomization } from '../helpers/kustomize.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';
import { freePort } from '../helpers/service.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dockerfile = parseDockerfile(join(ROOT, 'Dockerfile'));
const stages = dockerfile.stages;
const finalStage = stages[stages.length - 1]!;

const rendered = renderKustomization(join(ROOT, 'k8s', 'overlays', 'dev'));
const deployment = rendered.find((r) => r.kind === 'Deployment' && r.metadata.name === 'mycelis-memory')!;
const container = podSpec(deployment)!['containers'][0] as Record<string, any>;
const configMap = rendered.find((r) => r.kind === 'ConfigMap' && r.metadata.name === 'mycelis-memory-config')!;
const secret = rendered.find((r) => r.kind === 'Secret' && r.metadata.name === 'mycelis-memory-secrets')!;
const probeService = (probe: string): string => container[probe].grpc.service as string;

/** WORKDIR in effect at instruction index i of a stage (absolute, POSIX). */
function workdirAt(instructions: readonly Instruction[], i: number): string {
  let wd = '/';
  for (const ins of instructions.slice(0, i)) {
    if (ins.keyword === 'WORKDIR') wd = posix.resolve(wd, ins.words[0]!);
  }
  return wd;
}

/**
 * Where a path of a build stage comes from in this checkout: the build stage copies the working tree
 * into its WORKDIR and builds there (`npm run build` -> dist/), so /app/dist is ROOT/dist.
 */
function buildStagePath(stageName: string, absPath: string): string {
  const stage = stages.find((s) => s.name === stageName);
  assert.ok(stage, `stage ${stageName} exists`);
  const wd = workdirAt(stage.instructions, stage.instructions.length);
  assert.ok(absPath.startsWith(wd + '/'), `${absPath} lies in ${stageName}'s WORKDIR ${wd}`);
  return join(ROOT, posix.relative(wd, absPath));
}

/** Applies the final stage's COPY, RUN, ENV, USER, ENTRYPOINT and CMD inside `imageRoot`. */
function reproduceFinalStage(imageRoot: string): { env: Record<string, string>; argv: string[]; user: string | undefined } {
  const env: Record<string, string> = {};
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  let user: string | undefined;
  finalStage.instructions.forEach((ins, i) => {
    const wd = workdirAt(finalStage.instructions, i);
    const inImage = (p: string): string => join(imageRoot, posix.resolve(wd, p));
    switch (ins.keyword) {
      case 'WORKDIR':
      case 'EXPOSE':
      case 'STOPSIGNAL':
        break;
      case 'ENV':
        for (const w of ins.words) {
          const eq = w.indexOf('=');
          assert.ok(eq > 0, `ENV ${w} uses the key=value form`);
          env[w.slice(0, eq)] = w.slice(eq + 1);
        }
        break;
      case 'COPY': {
        const sources = ins.words.slice(0, -1);
        const dest = ins.words.at(-1)!;
        const intoDir = dest.endsWith('/') || sources.length > 1;
        for (const src of sources) {
          const from = ins.flags['from'] !== undefined ? buildStagePath(ins.flags['from'], src) : join(ROOT, src);
          assert.ok(existsSync(from), `COPY source ${src} exists at ${from}`);
          // Docker copies a directory's contents to dest; a file to dest (or into it when dest is a directory).
          const to = intoDir && !statSync(from).isDirectory() ? join(inImage(dest), basename(src)) : inImage(dest);
          cpSync(from, to, { recursive: true });
        }
        break;
      }
      case 'RUN':
        for (const command of ins.args.split('&&').map((c) => c.trim())) {
          if (/^npm cache clean\b/.test(command)) continue; // only shrinks the image; would wipe this machine's cache
          assert.match(command, /^npm ci\b/, `the reproduction knows how to run: ${command}`);
          // Offline from the local cache when it can (the lockfile pins the same tarballs either way).
          const args = command.split(/\s+/).slice(1).concat('--prefer-offline');
          const r = spawnSync('npm', args, { cwd: inImage('.'), encoding: 'utf8', env: { ...process.env, NODE_ENV: env['NODE_ENV'] ?? '' } });
          assert.equal(r.status, 0, `npm ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
        }
        break;
      case 'USER':
        user = ins.words[0];
        break;
      case 'ENTRYPOINT':
        entrypoint = [...ins.words];
        cmd = [];
        break;
      case 'CMD':
        cmd = [...ins.words];
        break;
      default:
        assert.fail(`the reproduction does not handle ${ins.keyword} in the final stage`);
    }
  });
  return { env, argv: [...entrypoint, ...(container['args'] ?? cmd)], user };
}

function healthCheck(address: string, service: string): Promise<string> {
  const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
  const client = new Client(address, grpc.credentials.createInsecure());
  return new Promise<string>((resolve, reject) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (x: { service: string }) => Buffer.from(healthService['Check']!.requestSerialize(x)),
      (b: Buffer) => healthService['Check']!.responseDeserialize(b) as { status: string },
      { service },
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err: grpc.ServiceError | null, res?: { status: string }) => {
        client.close();
        if (err) reject(err);
        else resolve(res!.status);
      },
    );
  });
}

function getRegistry(address: string, token: string | undefined): Promise<GetRegistryResponse> {
  const client = new MemoryServiceClient(address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    client.getRegistry({ teamIds: [], statuses: [], pageSize: 10, pageToken: '' }, md, { deadline: Date.now() + 10_000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res!);
    });
  });
}

describe('container image (Dockerfile final stage, reproduced)', () => {
  let imageRoot: string;
  let db: TestDatabase;
  let child: ChildProcess | undefined;
  const output: string[] = [];
  let grpcAddress = '';
  let httpBase = '';
  let exited: Promise<number | null>;
  let isDone = (): boolean => true;
  let entrypointNodeFlags: string[] = [];
  const apiToken = String(secret['stringData']['API_TOKENS']).split(',')[0]!.trim();

  before(async () => {
    assert.ok(existsSync(join(ROOT, 'dist', 'src', 'cli.js')), 'dist/ exists: npm test builds it (npm run build)');
    imageRoot = mkdtempSync(join(tmpdir(), 'mycelis-image-'));
    chmodSync(imageRoot, 0o755); // the image user must be able to read it, as in the image
    const image = reproduceFinalStage(imageRoot);
    db = await createTestDatabase('image');
    const [grpcPort, httpPort] = [await freePort(), await freePort()];
    grpcAddress = `127.0.0.1:${grpcPort}`;
    httpBase = `http://127.0.0.1:${httpPort}`;
    const dbUrl = new URL(db.url);
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '',
      HOME: imageRoot,
      ...image.env,
      // The ConfigMap and Secret as Kubernetes passes them, with the hosts of this machine.
      ...(configMap['data'] as Record<string, string>),
      ...(secret['stringData'] as Record<string, string>),
      DB_HOST: dbUrl.hostname,
      DB_PORT: dbUrl.port || '5432',
      DB_USER: decodeURIComponent(dbUrl.username),
      DB_NAME: db.name,
      NATS_URL: 'nats://127.0.0.1:4222',
      INGEST_MODE: 'off',
      HOST: '127.0.0.1',
      GRPC_PORT: String(grpcPort),
      HTTP_PORT: String(httpPort),
    };
    assert.equal(env['MEMORY_STORE'], 'postgres');
    const [exe, ...args] = image.argv;
    assert.equal(exe, 'node');
    entrypointNodeFlags = args.slice(0, args.findIndex((a) => !a.startsWith('-')));
    // Run as the image's USER when this test may switch users (root); files stay root-owned, so the
    // service also proves it needs no write access to its own directory.
    const ids = image.user?.split(':').map(Number);
    const asUser = process.getuid?.() === 0 && ids && ids[0]! > 0 ? { uid: ids[0]!, gid: ids[1] ?? ids[0]! } : {};
    // process.execPath as the image's user: it must be able to read the binary and every directory
    // above it (.ci/run keeps its Node binaries so). If it cannot, this fails here, at once, saying so.
    const watched = spawnWatched(process.execPath, args, { cwd: join(imageRoot, 'app'), env, stdio: ['ignore', 'pipe', 'pipe'], ...asUser });
    child = watched.child;
    for (const s of [child.stdout!, child.stderr!]) s.on('data', (b: Buffer) => output.push(...b.toString('utf8').split('\n').filter(Boolean)));
    exited = watched.exited.then(({ code }) => code);
    isDone = watched.done;
    await watched.started;
  });

  after(async () => {
    if (child && !isDone()) {
      child.kill('SIGKILL');
      await exited;
    }
    await db?.drop();
    if (imageRoot) rmSync(imageRoot, { recursive: true, force: true });
  });

  it('holds only production dependencies', () => {
    const app = join(imageRoot, 'app');
    assert.ok(existsSync(join(app, 'node_modules', 'pg')));
    assert.ok(existsSync(join(app, 'dist', 'src', 'cli.js')));
    for (const dev of ['typescript', 'tsx', '@bufbuild/buf', 'kubernetes-models', 'playwright-core']) {
      assert.equal(existsSync(join(app, 'node_modules', dev)), false, `${dev} is not in the image`);
    }
    assert.equal(existsSync(join(app, 'src')), false, 'no TypeScript sources');
  });

  it('serves gRPC: the probes’ health names and an authenticated call, on the migrated database', async () => {
    const failed = (): string => `service output:\n${output.slice(-30).join('\n')}`;
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const name = probeService(probe);
      await waitFor(`${probe} (${name}) SERVING`, async () => {
        if (child!.exitCode !== null) throw new Error(`service exited ${child!.exitCode}; ${failed()}`);
        return (await healthCheck(grpcAddress, name)) === 'SERVING';
      }, { timeoutMs: 60_000, intervalMs: 200 }).catch((err: unknown) => assert.fail(`${String(err)}\n${failed()}`));
    }
    // A name the service does not know is an error, so the probes above could have failed.
    await assert.rejects(healthCheck(grpcAddress, 'no.such.Service'), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);

    const res = await getRegistry(grpcAddress, apiToken);
    assert.deepEqual(res.agents, []);
    await assert.rejects(getRegistry(grpcAddress, undefined), (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED);

    // The image's migrations/ was found and applied.
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const { rows } = await c.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version');
      assert.ok(rows.length >= 2, `migrations applied: ${rows.map((r) => r.version).join(', ')}`);
      await c.query('SELECT agent_id, status FROM agent_registry LIMIT 1');
    } finally {
      await c.end();
    }
  });

  it('serves HTTP: /readyz and /metrics', { skip: httpTransportMissing() }, async () => {
    const ready = await fetch(`${httpBase}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    const metrics = await (await fetch(`${httpBase}/metrics`)).text();
    assert.match(metrics, /^mycelis_memory_/m);
    // The runtime is named, on /metrics and in the start line (with its V8 flags and heap limit).
    const [major, minor, patch] = process.versions.node.split('.');
    assert.match(metrics, new RegExp(`^nodejs_version_info\\{version="${process.version}",major="${major}",minor="${minor}",patch="${patch}"\\} 1$`, 'm'));
    const started = output.map((l) => (l.startsWith('{') ? (JSON.parse(l) as Record<string, any>) : {})).find((l) => l['msg'] === 'mycelis-memory started');
    assert.equal(started?.['runtime']?.['node'], process.version, `start line: ${JSON.stringify(started)}`);
    // Its flags: the ENTRYPOINT's, then the memory budget's V8 limits that serve adds at start.
    const budget = output.map((l) => (l.startsWith('{') ? (JSON.parse(l) as Record<string, any>) : {})).find((l) => String(l['msg']).startsWith('memory budget'));
    assert.deepEqual(started['runtime']['execArgv'], [...entrypointNodeFlags, ...(budget?.['v8']?.['flags'] ?? [])], `start line ${JSON.stringify(started['runtime'])}, budget ${JSON.stringify(budget?.['v8'])}`);
    assert.equal(started['runtime']['heapLimitMiB'], budget?.['v8']?.['heapLimitMiB']);
    // ... and glibc's malloc settings (MALLOC_ENV), in the environment the process runs with.
    assert.deepEqual(budget?.['v8']?.['malloc'], MALLOC_ENV, `budget ${JSON.stringify(budget?.['v8'])}`);
    const environ = readFileSync(`/proc/${child!.pid}/environ`, 'utf8').split('\0');
    for (const [k, v] of Object.entries(MALLOC_ENV)) assert.ok(environ.includes(`${k}=${v}`), `${k}=${v} in the service's environment`);
  });

  it('stops cleanly on the image’s STOPSIGNAL', async () => {
    const signal = finalStage.instructions.filter((i) => i.keyword === 'STOPSIGNAL').at(-1)?.words[0] as NodeJS.Signals;
    assert.equal(signal, 'SIGTERM');
    child!.kill(signal);
    const kill = setTimeout(() => child!.kill('SIGKILL'), 60_000);
    const code = await exited;
    clearTimeout(kill);
    assert.equal(code, 0, `exit code after ${signal}; ${output.slice(-10).join('\n')}`);
  });
});

/** The HTTP port (Connect, /readyz, /metrics) is served by @connectrpc/connect-node (DESIGN 6). */
function httpTransportMissing(): string | false {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    );
  const uses = walk(join(ROOT, 'src')).some((f) => readFileSync(f, 'utf8').includes("'@connectrpc/connect-node'"));
  return uses ? false : 'the HTTP transport (src/api, @connectrpc/connect-node) is not written yet';
}
