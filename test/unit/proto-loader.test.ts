// @grpc/proto-loader is a supported way in (README "From Node"): proto/ loads with every import
// resolved (mycelis/swarm/v1 from includeDirs, google/protobuf from proto-loader's own copies), in the
// README's form and in the form the design names, into a MemoryService grpc-js can serve and call; and
// the package ships proto/ (package.json "files"). test/e2e/proto-loader-client.test.ts runs the client.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const run = promisify(execFile);

type MethodDef = protoLoader.MethodDefinition<object, object>;

function memoryService(file: string): Record<string, MethodDef> {
  const def = protoLoader.loadSync(file, { includeDirs: [join(ROOT, 'proto')], keepCase: true, longs: String, enums: String, defaults: true });
  const svc = def['mycelis.memory.v1.MemoryService'] as unknown as Record<string, MethodDef> | undefined;
  assert.ok(svc, `${file}: mycelis.memory.v1.MemoryService loaded`);
  for (const type of ['mycelis.swarm.v1.LogEntry', 'google.protobuf.Struct', 'google.protobuf.Timestamp', 'google.protobuf.Any']) {
    assert.ok(def[type], `${file}: imported type ${type} resolved`);
  }
  return svc;
}

describe('@grpc/proto-loader', () => {
  it('loads memory.proto with its imports, relative to includeDirs (the README) and as proto/… from the project root', () => {
    for (const file of ['mycelis/memory/v1/memory.proto', join(ROOT, 'proto/mycelis/memory/v1/memory.proto')]) {
      const svc = memoryService(file);
      assert.deepEqual(Object.keys(svc).sort(), ['GetRegistry', 'GetTrace', 'QueryLogs', 'SearchLogs', 'StreamLogs', 'WatchRegistry']);
      assert.equal(svc['WatchRegistry']!.responseStream, true);
      assert.equal(svc['StreamLogs']!.responseStream, true);
      assert.equal(svc['StreamLogs']!.path, '/mycelis.memory.v1.MemoryService/StreamLogs');
      assert.equal(svc['GetRegistry']!.responseStream, false);
    }
  });

  it('gives grpc.loadPackageDefinition a client constructor, and messages round-trip with proto field names', () => {
    const def = protoLoader.loadSync('mycelis/memory/v1/memory.proto', { includeDirs: [join(ROOT, 'proto')], keepCase: true, longs: String, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { mycelis: { memory: { v1: { MemoryService: grpc.ServiceClientConstructor } } } };
    assert.equal(typeof pkg.mycelis.memory.v1.MemoryService, 'function');
    const method = (def['mycelis.memory.v1.MemoryService'] as unknown as Record<string, MethodDef>)['StreamLogs']!;
    const bytes = method.requestSerialize({ after_cursor: 'abc', filter: { levels: ['ERROR'] } });
    assert.deepEqual(method.requestDeserialize(bytes), { after_cursor: 'abc', tail: 0, filter: { agent_ids: [], team_ids: [], levels: ['ERROR'], intents: [], trace_id: '' } });
  });

  it('ships proto/ in the npm package', { timeout: 60_000 }, async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, timeout: 50_000 });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const f of ['proto/mycelis/memory/v1/memory.proto', 'proto/mycelis/swarm/v1/swarm.proto', 'proto/grpc/health/v1/health.proto', 'examples/proto-loader-client.mjs', 'migrations/001_init_memory.sql']) {
      assert.ok(files.includes(f), `npm pack includes ${f}`);
    }
  });
});
