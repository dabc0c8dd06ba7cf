// gRPC server reflection, v1 and v1alpha (identical messages), served from the `buf build`
// FileDescriptorSet (src/gen/descriptors.binpb), which holds memory.proto, swarm.proto, the
// google/protobuf files they import, and gRPC's own health and reflection protos (vendored verbatim in
// proto/grpc). @grpc/reflection's implementation is not used: it drops imports (grpc/grpc-node#3034),
// which breaks `buf curl`/grpcurl.
//
// Invariant: reflection lists exactly the services the server serves, and describes every one of
// them, method by method: addReflection refuses to start when a served method has no descriptor.
//
// The reflection messages are small and hand-encoded with @bufbuild/protobuf's wire codec. File
// descriptors are returned as the exact bytes of the set, the requested file first, then its
// transitive dependencies (as grpc's reference implementations do).
import { readFileSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { FileDescriptorProtoSchema, type DescriptorProto, type EnumDescriptorProto } from '@bufbuild/protobuf/wkt';
import type { Logger } from '../logger.js';

const DEFAULT_DESCRIPTORS = new URL('../gen/descriptors.binpb', import.meta.url);

interface FileEntry {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly dependencies: readonly string[];
}

/** The index reflection answers from. */
export class DescriptorIndex {
  readonly files = new Map<string, FileEntry>();
  readonly symbols = new Map<string, string>();
  readonly services: string[] = [];

  constructor(setBytes: Uint8Array) {
    // FileDescriptorSet { repeated FileDescriptorProto file = 1; } — keep each file's raw bytes.
    const r = new BinaryReader(setBytes);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no === 1 && wt === WireType.LengthDelimited) this.addFile(r.bytes());
      else r.skip(wt, no);
    }
  }

  private addFile(bytes: Uint8Array): void {
    const fd = fromBinary(FileDescriptorProtoSchema, bytes);
    this.files.set(fd.name, { name: fd.name, bytes, dependencies: fd.dependency });
    const pkg = fd.package ? `${fd.package}.` : '';
    const addEnum = (prefix: string, e: EnumDescriptorProto): void => {
      this.symbols.set(`${prefix}${e.name}`, fd.name);
    };
    const addMessage = (prefix: string, m: DescriptorProto): void => {
      const full = `${prefix}${m.name}`;
      this.symbols.set(full, fd.name);
      for (const f of m.field) this.symbols.set(`${full}.${f.name}`, fd.name);
      for (const n of m.nestedType) addMessage(`${full}.`, n);
      for (const e of m.enumType) addEnum(`${full}.`, e);
    };
    for (const m of fd.messageType) addMessage(pkg, m);
    for (const e of fd.enumType) addEnum(pkg, e);
    for (const s of fd.service) {
      const full = `${pkg}${s.name}`;
      this.services.push(full);
      this.symbols.set(full, fd.name);
      for (const m of s.method) this.symbols.set(`${full}.${m.name}`, fd.name);
    }
  }

  /** Whether the set describes `/pkg.Service/Method` (a grpc-js method path). */
  describesMethod(path: string): boolean {
    const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
    return m !== null && this.services.includes(m[1]!) && this.symbols.has(`${m[1]}.${m[2]}`);
  }

  /** The file and its transitive dependencies, the file first; undefined when unknown. */
  withDependencies(name: string): Uint8Array[] | undefined {
    if (!this.files.has(name)) return undefined;
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (n: string): void => {
      if (seen.has(n)) return;
      seen.add(n);
      const f = this.files.get(n);
      if (!f) return;
      out.push(f.bytes);
      for (const d of f.dependencies) visit(d);
    };
    visit(name);
    return out;
  }
}

export function loadDescriptorIndex(path: URL | string = DEFAULT_DESCRIPTORS): DescriptorIndex {
  return new DescriptorIndex(readFileSync(path));
}

interface ReflectionRequest {
  raw: Uint8Array;
  host: string;
  kind: 'file_by_filename' | 'file_containing_symbol' | 'file_containing_extension' | 'all_extension_numbers_of_type' | 'list_services' | 'none';
  value: string;
}

function decodeRequest(raw: Uint8Array): ReflectionRequest {
  const r = new BinaryReader(raw);
  const req: ReflectionRequest = { raw, host: '', kind: 'none', value: '' };
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    switch (no) {
      case 1:
        req.host = r.string();
        break;
      case 3:
        req.kind = 'file_by_filename';
        req.value = r.string();
        break;
      case 4:
        req.kind = 'file_containing_symbol';
        req.value = r.string();
        break;
      case 5: {
        // ExtensionRequest { string containing_type = 1; int32 extension_number = 2; }
        req.kind = 'file_containing_extension';
        const sub = new BinaryReader(r.bytes());
        while (sub.pos < sub.len) {
          const [sno, swt] = sub.tag();
          if (sno === 1) req.value = sub.string();
          else sub.skip(swt, sno);
        }
        break;
      }
      case 6:
        req.kind = 'all_extension_numbers_of_type';
        req.value = r.string();
        break;
      case 7:
        req.kind = 'list_services';
        req.value = r.string();
        break;
      default:
        r.skip(wt, no);
    }
  }
  return req;
}

const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

function answer(index: DescriptorIndex, services: readonly string[], req: ReflectionRequest): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).string(req.host);
  w.tag(2, WireType.LengthDelimited).bytes(req.raw);
  const error = (code: number, message: string): void => {
    w.tag(7, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int32(code).tag(2, WireType.LengthDelimited).string(message).join();
  };
  const files = (list: Uint8Array[]): void => {
    w.tag(4, WireType.LengthDelimited).fork();
    for (const f of list) w.tag(1, WireType.LengthDelimited).bytes(f);
    w.join();
  };
  switch (req.kind) {
    case 'list_services': {
      w.tag(6, WireType.LengthDelimited).fork();
      for (const s of services) w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(s).join();
      w.join();
      break;
    }
    case 'file_by_filename': {
      const list = index.withDependencies(req.value);
      if (list) files(list);
      else error(NOT_FOUND, `file not found: ${req.value}`);
      break;
    }
    case 'file_containing_symbol': {
      const file = index.symbols.get(req.value.replace(/^\./, ''));
      const list = file === undefined ? undefined : index.withDependencies(file);
      if (list) files(list);
      else error(NOT_FOUND, `symbol not found: ${req.value}`);
      break;
    }
    case 'file_containing_extension':
      // Our protos declare no extensions.
      error(NOT_FOUND, `no extensions of ${req.value}`);
      break;
    case 'all_extension_numbers_of_type':
      if (index.symbols.has(req.value)) {
        w.tag(5, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(req.value).join();
      } else {
        error(NOT_FOUND, `type not found: ${req.value}`);
      }
      break;
    default:
      error(INVALID_ARGUMENT, 'empty or unsupported reflection request');
  }
  return w.finish();
}

const identity = (b: Buffer | Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

function definition(pkg: 'grpc.reflection.v1' | 'grpc.reflection.v1alpha'): grpc.ServiceDefinition {
  return {
    ServerReflectionInfo: {
      path: `/${pkg}.ServerReflection/ServerReflectionInfo`,
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: identity,
      responseDeserialize: (b: Buffer) => b,
      originalName: 'serverReflectionInfo',
    },
  };
}

/** The service name of a definition (`/pkg.Service/Method` paths), and its method paths. */
function describeDefinition(def: grpc.ServiceDefinition): { service: string; paths: string[] } {
  const paths = Object.values(def).map((m) => m.path);
  const services = new Set(paths.map((p) => p.split('/')[1] ?? ''));
  if (services.size !== 1) throw new Error(`a service definition spans ${[...services].join(', ')}`);
  return { service: [...services][0]!, paths };
}

/** Thrown at start when the descriptor set does not describe a service the server serves. */
export class ReflectionSchemaError extends Error {
  override readonly name = 'ReflectionSchemaError';
}

/**
 * Adds grpc.reflection.v1 and v1alpha ServerReflection to `server`, listing `served` (every other
 * service added to the server) and itself. Open to everyone (no auth). Throws ReflectionSchemaError
 * when the descriptor set lacks one of their methods (a vendored proto out of date, or
 * `npm run generate` not run).
 */
export function addReflection(server: grpc.Server, index: DescriptorIndex, logger: Logger, served: readonly grpc.ServiceDefinition[]): void {
  const log = logger.child({ component: 'reflection' });
  const reflectionDefs = [definition('grpc.reflection.v1'), definition('grpc.reflection.v1alpha')];
  const services: string[] = [];
  for (const def of [...served, ...reflectionDefs]) {
    const { service, paths } = describeDefinition(def);
    const missing = paths.filter((p) => !index.describesMethod(p));
    if (missing.length > 0) {
      throw new ReflectionSchemaError(
        `server reflection cannot describe ${missing.join(', ')}: the descriptor set (src/gen/descriptors.binpb) lacks them; add the .proto under proto/ and run npm run generate`,
      );
    }
    services.push(service);
  }
  services.sort();
  const handler = (call: grpc.ServerDuplexStream<Buffer, Buffer>): void => {
    call.on('data', (raw: Buffer) => {
      try {
        call.write(Buffer.from(answer(index, services, decodeRequest(raw))));
      } catch (err) {
        log.debug({ err }, 'bad reflection request');
        const w = new BinaryWriter();
        w.tag(7, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int32(INVALID_ARGUMENT).tag(2, WireType.LengthDelimited).string('malformed reflection request').join();
        call.write(Buffer.from(w.finish()));
      }
    });
    call.on('end', () => call.end());
    call.on('error', (err) => log.debug({ err }, 'reflection stream error'));
  };
  for (const def of reflectionDefs) server.addService(def, { ServerReflectionInfo: handler });
}
