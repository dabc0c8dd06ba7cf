// gRPC's own protos in proto/grpc are byte-for-byte the npm packages' copies (grpc-health-check, whose
// implementation we serve; @grpc/reflection), and the committed descriptor set describes every method
// the gRPC port serves, so reflection never lists a service it cannot describe. addReflection refuses
// to start when a served method has no descriptor.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { protoPath as healthProtoPath, service as healthService } from 'grpc-health-check';

import { MemoryServiceService } from '../../src/gen/mycelis/memory/v1/memory.js';
import { addReflection, loadDescriptorIndex, ReflectionSchemaError } from '../../src/api/reflection.js';
import { createLogger } from '../../src/logger.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const reflectionPackage = dirname(require.resolve('@grpc/reflection/package.json'));

const VENDORED: [string, string][] = [
  ['proto/grpc/health/v1/health.proto', healthProtoPath],
  ['proto/grpc/reflection/v1/reflection.proto', join(reflectionPackage, 'build/proto/grpc/reflection/v1/reflection.proto')],
  ['proto/grpc/reflection/v1alpha/reflection.proto', join(reflectionPackage, 'build/proto/grpc/reflection/v1alpha/reflection.proto')],
];

const silent = createLogger('silent');

describe('vendored gRPC protos', () => {
  for (const [vendored, upstream] of VENDORED) {
    it(`${vendored} is the package's file, unchanged`, () => {
      assert.equal(
        readFileSync(join(ROOT, vendored), 'utf8'),
        readFileSync(upstream, 'utf8'),
        `${vendored} differs from ${upstream}: copy it again (proto/grpc/README.md), then npm run generate`,
      );
    });
  }

  it('the descriptor set describes every method the gRPC port serves', () => {
    const index = loadDescriptorIndex();
    const server = new grpc.Server();
    assert.doesNotThrow(() => addReflection(server, index, silent, [MemoryServiceService, healthService]));
    for (const def of [MemoryServiceService, healthService] as grpc.ServiceDefinition[]) {
      for (const m of Object.values(def)) assert.ok(index.describesMethod(m.path), m.path);
    }
  });

  it('addReflection refuses a served method the descriptor set lacks, naming it', () => {
    const index = loadDescriptorIndex();
    const unknown: grpc.ServiceDefinition = {
      Ping: { ...healthService['Check']!, path: '/grpc.health.v1.Health/Ping' },
    };
    assert.throws(
      () => addReflection(new grpc.Server(), index, silent, [unknown]),
      (err: unknown) => err instanceof ReflectionSchemaError && /\/grpc\.health\.v1\.Health\/Ping/.test(err.message) && /npm run generate/.test(err.message),
    );
  });
});
