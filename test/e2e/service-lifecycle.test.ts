// The built service as a process: configuration failures and the embedded default (crash safety:
// test/fault/crash-registry.test.ts).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, ROOT, startService, type ServiceProcess } from '../helpers/service.js';
import { startPrivateNats, type PrivateNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { spawnWatched } from '../helpers/child.js';
import { consumerDrained } from '../fault/fault-helpers.js';
import * as grpc from '@grpc/grpc-js';
import { MemoryServiceClient, type GetRegistryResponse } from '../../src/gen/mycelis/memory/v1/memory.js';

function registryOf(address: string): Promise<GetRegistryResponse> {
  const client = new MemoryServiceClient(address, grpc.credentials.createInsecure());
  return new Promise<GetRegistryResponse>((resolve, reject) => {
    client.getRegistry({ teamIds: [], statuses: [], pageSize: 1000, pageToken: '' }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    });
  });
}

function run(args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const { child, exited } = spawnWatched(process.execPath, [CLI, ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env },
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} timed out; stderr: ${stderr}`));
    }, timeoutMs);
    void exited.then(({ code, error }) => {
      clearTimeout(t);
      if (error) reject(error);
      else resolve({ code, stdout, stderr });
    });
  });
}

describe('configuration errors', () => {
  it('MEMORY_STORE=postgres without a database variable exits 2 with one line naming MEMORY_STORE', async () => {
    const r = await run(['serve'], { MEMORY_STORE: 'postgres' });
    assert.equal(r.code, 2);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /MEMORY_STORE/);
    assert.match(lines[0]!, /DATABASE_URL/);
  });

  it('an invalid duration names the variable and the accepted form', async () => {
    const r = await run(['serve'], { AGENT_OFFLINE_AFTER: 'soon' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /AGENT_OFFLINE_AFTER/);
    assert.match(r.stderr, /90s/);
  });
});

describe('embedded default', () => {
  let nats: PrivateNats;
  let dir: string;
  before(async () => {
    nats = await startPrivateNats();
    dir = mkdtempSync(join(tmpdir(), 'mm-embedded-'));
  });
  after(async () => {
    await nats?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('with no database configured it comes up on PGlite, says so first, ingests and restarts with its data', async () => {
    // Only NATS_URL and the data directory: every other setting is the embedded default.
    const env = { NATS_URL: nats.url, EMBEDDED_DATA_DIR: dir };
    let svc: ServiceProcess = await startService({ env, timeoutMs: 90_000 });
    try {
      const first = svc.logs().find((l) => typeof l['msg'] === 'string' && /embedded/i.test(l['msg']));
      assert.ok(first, 'a log line announces the embedded store');
      assert.equal(first['level'], 40, 'announced at warn level');
      // A second process on the same directory must fail fast instead of sharing it.
      const second = await run(['serve'], { ...env, GRPC_PORT: '0', HTTP_PORT: '0' }, 60_000);
      assert.notEqual(second.code, 0);
      assert.match(second.stdout + second.stderr, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      const pub = await run(['publish', '--count', '50', '--server', nats.url], {});
      assert.equal(pub.code, 0, pub.stderr);
      // The default traffic has 10 agents plus the directive's finance-bot. Every message committed
      // (all acked on the default stream and consumer) before the registry is read: 11 agents can show
      // while later events of theirs are still on their way (seen on a busy host).
      await waitFor('the registry to fill', async () => (await registryOf(svc.grpcAddress)).agents.length === 11);
      await waitFor('every published message committed', () => consumerDrained(nats.url, 'SWARM', 'mycelis-memory'));
      const before = await registryOf(svc.grpcAddress);
      assert.equal(await svc.stop(), 0, 'SIGTERM exits cleanly');
      // Restart on the same directory: the data is still there (persisted).
      svc = await startService({ env, timeoutMs: 90_000 });
      const afterRestart = await registryOf(svc.grpcAddress);
      assert.deepEqual(
        afterRestart.agents.map((a) => [a.agentId, a.reportedStatus, a.lastSeen]),
        before.agents.map((a) => [a.agentId, a.reportedStatus, a.lastSeen]),
      );
    } finally {
      await svc.stop();
    }
  });
});

// SIGKILL during ingest (exactly the published rows, none twice) is proved by
// test/fault/crash-registry.test.ts: the same 50,000 events and three kills, and there also the rows'
// content and the registry compared with a clean run. (This file ran the same scenario a second time.)
