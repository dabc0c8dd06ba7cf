// k8s/: every manifest validates against the Kubernetes API schemas (kubernetes-models), both
// kustomizations render, and the rendered objects keep the promises of issue 8 and DESIGN.md 7:
// probes on real ports and health service names, config and Secret keys the service actually reads,
// restricted security, PDB/NetworkPolicy/Service selectors that match the pods.
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { loadConfig, parseDuration } from '../../src/config/config.js';
import { LIVENESS_SERVICE_NAME, MEMORY_SERVICE_NAME } from '../../src/api/health.js';
import { MemoryServiceDefinition } from '../../src/gen/mycelis/memory/v1/memory.js';
import { podContainers, podSpec, readYamlDocuments, renderKustomization, splitImage, type Manifest } from '../helpers/kustomize.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const K8S = join(ROOT, 'k8s');
const BASE = join(K8S, 'base');
const DEV = join(K8S, 'overlays', 'dev');

const SERVICE = 'mycelis-memory';
const SECRET = 'mycelis-memory-secrets';
// The names the health implementation registers (src/api/health.ts); the readiness one is the API's
// full service name.
const READINESS_SERVICE = MEMORY_SERVICE_NAME;
const LIVENESS_SERVICE = LIVENESS_SERVICE_NAME;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

async function validateWithKubernetesModels(doc: Manifest): Promise<void> {
  // kubernetes-models is laid out by API group: `v1` for the core group, else `<group>/<version>`.
  const mod = (await import(`kubernetes-models/${doc.apiVersion}`)) as Record<string, unknown>;
  const Model = mod[doc.kind] as (new (data: unknown) => { validate(): void }) | undefined;
  assert.ok(Model, `kubernetes-models has no ${doc.apiVersion} ${doc.kind}`);
  new Model(doc).validate();
}

function find(rendered: Manifest[], kind: string, name: string): Manifest {
  const r = rendered.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(r, `${kind}/${name} is rendered`);
  return r;
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false; // an empty selector is never what we mean
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function containerPort(container: Record<string, any>, port: number | string): number | undefined {
  const ports = (container['ports'] ?? []) as { name?: string; containerPort: number }[];
  const hit = typeof port === 'number' ? ports.find((p) => p.containerPort === port) : ports.find((p) => p.name === port);
  return hit?.containerPort;
}

/** Names of env variables loadConfig reads for a given environment (recorded through a Proxy). */
function variablesRead(env: Record<string, string>): Set<string> {
  const read = new Set<string>();
  const proxy = new Proxy(env, {
    get(target, key) {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key) as unknown;
    },
  });
  try {
    loadConfig(proxy);
  } catch {
    // only the names matter here
  }
  return read;
}

const dev = renderKustomization(DEV);
const base = renderKustomization(BASE);
const deployment = find(dev, 'Deployment', SERVICE);
const memoryPod = podSpec(deployment)!;
const memoryContainer = memoryPod['containers'].find((c: { name: string }) => c.name === SERVICE) as Record<string, any>;
const configMap = find(dev, 'ConfigMap', 'mycelis-memory-config');
const secret = find(dev, 'Secret', SECRET);

/** The environment the container gets, resolved from the rendered ConfigMap and the example Secret. */
function containerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of memoryContainer['envFrom'] ?? []) {
    assert.ok(from.configMapRef, 'envFrom only from ConfigMaps');
    assert.equal(from.prefix, undefined);
    const cm = find(dev, 'ConfigMap', from.configMapRef.name);
    Object.assign(env, cm['data']);
  }
  for (const e of memoryContainer['env'] ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.secretKeyRef) {
      const s = find(dev, 'Secret', e.valueFrom.secretKeyRef.name);
      const v = s['stringData']?.[e.valueFrom.secretKeyRef.key] ?? s['data']?.[e.valueFrom.secretKeyRef.key];
      assert.equal(typeof v, 'string', `${e.name}: key ${e.valueFrom.secretKeyRef.key} exists in ${s.metadata.name}`);
      env[e.name] = s['stringData']?.[e.valueFrom.secretKeyRef.key] ?? Buffer.from(v, 'base64').toString('utf8');
    } else if (e.valueFrom?.configMapKeyRef) {
      const cm = find(dev, 'ConfigMap', e.valueFrom.configMapKeyRef.name);
      env[e.name] = cm['data'][e.valueFrom.configMapKeyRef.key];
    } else {
      assert.fail(`${e.name}: unsupported env source`);
    }
  }
  return env;
}

describe('k8s manifests', () => {
  it('every YAML document under k8s/ parses and validates against the Kubernetes API schema', async () => {
    const files = yamlFiles(K8S);
    assert.ok(files.length >= 10, `found ${files.length} YAML files`);
    let validated = 0;
    for (const file of files) {
      for (const doc of readYamlDocuments(file) as Manifest[]) {
        const where = `${relative(ROOT, file)} ${doc.kind}/${doc.metadata?.name}`;
        if (doc.kind === 'Kustomization') continue; // rendered below, not an API object
        assert.ok(doc.metadata?.name, `${where}: has a name`);
        await assert.doesNotReject(validateWithKubernetesModels(doc), where);
        validated++;
      }
    }
    assert.ok(validated >= 10);
  });

  it('the validator rejects a broken manifest (the check above can fail)', async () => {
    const broken = structuredClone(deployment);
    podSpec(broken)!['containers'][0].readinessProbe.grpc.port = 'grpc'; // grpc probes take a number
    await assert.rejects(validateWithKubernetesModels(broken), /port/);
  });

  it('no manifest has a field the API does not know (strict, like kubectl --validate=strict)', () => {
    // The schema validator above ignores unknown fields, so a typo such as `livenesProbe` would pass it
    // and be dropped by the API server. TypeScript's excess-property check against kubernetes-models'
    // interfaces catches it: every document becomes a typed object literal in one virtual file.
    const docs = yamlFiles(K8S).flatMap((file) =>
      (readYamlDocuments(file) as Manifest[]).filter((d) => d.kind !== 'Kustomization').map((doc) => ({ doc, where: `${relative(ROOT, file)} ${doc.kind}/${doc.metadata.name}` })),
    );
    const typo = structuredClone(deployment);
    const c0 = podSpec(typo)!['containers'][0];
    c0.livenesProbe = c0.livenessProbe;
    delete c0.livenessProbe;
    docs.push({ doc: typo, where: 'control' });
    const lines: string[] = [];
    docs.forEach(({ doc }, i) => {
      lines.push(`import type { I${doc.kind} as T${i} } from 'kubernetes-models/${doc.apiVersion}/${doc.kind}';`);
      lines.push(`export const d${i}: T${i} = ${JSON.stringify(doc)};`);
    });
    const file = join(ROOT, 'test', 'unit', '__k8s_strict_fields.ts');
    const text = lines.join('\n');
    const host = ts.createCompilerHost({});
    const getSourceFile = host.getSourceFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    host.getSourceFile = (f, lang, ...rest) => (f === file ? ts.createSourceFile(f, text, lang) : getSourceFile(f, lang, ...rest));
    host.fileExists = (f) => f === file || fileExists(f);
    const program = ts.createProgram(
      [file],
      { strict: true, noEmit: true, skipLibCheck: true, types: [], target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext },
      host,
    );
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
      const index = Math.floor(line / 2);
      return `${docs[index]?.where ?? '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
    });
    const control = problems.filter((p) => p.startsWith('control:'));
    assert.equal(control.length, 1, `the check catches a misspelled field: ${problems.join('\n')}`);
    assert.match(control[0]!, /livenesProbe/);
    assert.deepEqual(problems.filter((p) => !p.startsWith('control:')), []);
  });

  it('renders the base without a Secret and the dev overlay with the example Secret and its image tag', () => {
    assert.equal(base.filter((r) => r.kind === 'Secret').length, 0, 'no secret values in the base');
    assert.deepEqual(
      dev.filter((r) => r.kind !== 'Secret').map((r) => `${r.kind}/${r.metadata.name}`),
      base.map((r) => `${r.kind}/${r.metadata.name}`),
    );
    const kinds = new Set(dev.map((r) => r.kind));
    for (const k of ['Deployment', 'Service', 'ConfigMap', 'Secret', 'StatefulSet', 'PodDisruptionBudget', 'NetworkPolicy']) {
      assert.ok(kinds.has(k), `renders a ${k}`);
    }
    assert.equal(podContainers(find(base, 'Deployment', SERVICE))[0]!['image'], 'mycelis-memory:0.1.0');
    assert.equal(memoryContainer['image'], 'mycelis-memory:dev');
  });

  it('every image is pinned to a tag or digest, never latest', () => {
    for (const r of dev) {
      for (const c of podContainers(r)) {
        const { tag, digest } = splitImage(c['image']);
        assert.ok(digest || (tag && tag !== 'latest'), `${r.kind}/${r.metadata.name} ${c['name']}: ${c['image']} is pinned`);
      }
    }
  });

  it('the Deployment runs 2 replicas of `serve` with startup, readiness and liveness gRPC probes on the gRPC port', () => {
    assert.equal(deployment['spec'].replicas, 2);
    assert.deepEqual(memoryContainer['args'], ['serve']);
    const grpcPort = containerPort(memoryContainer, 'grpc');
    assert.equal(grpcPort, 50051);
    assert.equal(containerPort(memoryContainer, 'http'), 8080);
    const env = containerEnv();
    assert.equal(Number(env['GRPC_PORT'] ?? 50051), grpcPort, 'GRPC_PORT matches the container port');
    assert.equal(Number(env['HTTP_PORT'] ?? 8080), containerPort(memoryContainer, 'http'));
    const probes = {
      startupProbe: LIVENESS_SERVICE,
      readinessProbe: READINESS_SERVICE,
      livenessProbe: LIVENESS_SERVICE,
    } as const;
    for (const [probe, service] of Object.entries(probes)) {
      const p = memoryContainer[probe];
      assert.ok(p?.grpc, `${probe} is a native gRPC probe`);
      assert.equal(containerPort(memoryContainer, p.grpc.port), grpcPort, `${probe} targets the grpc container port`);
      assert.equal(p.grpc.service, service, `${probe} asks health service ${JSON.stringify(service)}`);
    }
  });

  it('the probes ask for the health names the service registers', () => {
    assert.equal(READINESS_SERVICE, MemoryServiceDefinition.fullName);
    assert.equal(READINESS_SERVICE, 'mycelis.memory.v1.MemoryService');
    assert.equal(LIVENESS_SERVICE, 'liveness');
    // test/e2e/image.test.ts asks the running service for each probe's name.
  });

  it('terminationGracePeriodSeconds exceeds the preStop pause plus SHUTDOWN_TIMEOUT', () => {
    const env = containerEnv();
    const shutdownMs = parseDuration('SHUTDOWN_TIMEOUT', env['SHUTDOWN_TIMEOUT'] ?? '20s');
    const preStop = memoryContainer['lifecycle']?.preStop;
    let preStopMs = 0;
    if (preStop?.sleep) preStopMs = preStop.sleep.seconds * 1000;
    else if (preStop?.exec) {
      const [cmd, secs, ...rest] = preStop.exec.command as string[];
      assert.equal(cmd, 'sleep');
      assert.deepEqual(rest, []);
      preStopMs = Number(secs) * 1000;
    }
    assert.ok(Number.isFinite(preStopMs));
    const grace = memoryPod['terminationGracePeriodSeconds'] as number;
    assert.ok(grace * 1000 > preStopMs + shutdownMs, `${grace}s > ${preStopMs}ms + ${shutdownMs}ms`);
  });

  it('every variable given to the container is one the config reads, and postgres mode is fully configured', () => {
    const env = containerEnv();
    const configSource = readFileSync(join(ROOT, 'src', 'config', 'config.ts'), 'utf8');
    const read = new Set([...variablesRead({}), ...variablesRead(env)]);
    for (const name of Object.keys(env)) {
      assert.ok(read.has(name), `${name} is read by loadConfig`);
      assert.ok(configSource.includes(`'${name}'`), `${name} appears in src/config/config.ts`);
    }
    assert.equal(env['MEMORY_STORE'], 'postgres');
    // Set explicitly, not left to defaults (which would point at localhost as user postgres).
    for (const name of ['DB_HOST', 'DB_PORT', 'DB_USER', 'DB_NAME', 'DB_PASSWORD', 'NATS_URL', 'API_TOKENS']) {
      assert.ok(env[name] && env[name]!.length > 0, `${name} is set`);
    }
    assert.equal(env['DATABASE_URL'], undefined, 'one way to configure the database');
    const config = loadConfig(env);
    assert.equal(config.database.kind, 'postgres');
    const url = new URL(config.database.url);
    assert.equal(url.hostname, 'mycelis-pg');
    assert.equal(decodeURIComponent(url.password), env['DB_PASSWORD']);
    assert.equal(config.ingest.mode, 'jetstream');
    assert.ok(config.api.apiTokens.length > 0);

    // The database and NATS hosts are Services of this deployment, on the ports the config uses.
    const pgService = find(dev, 'Service', url.hostname);
    assert.ok(pgService['spec'].ports.some((p: { port: number }) => p.port === Number(url.port || 5432)));
    for (const server of config.nats.servers) {
      const u = new URL(server);
      const svc = find(dev, 'Service', u.hostname);
      assert.ok(svc['spec'].ports.some((p: { port: number }) => p.port === Number(u.port || 4222)), `${server} has a Service port`);
    }

    // Removing a required variable makes the pod fail fast instead of falling back to embedded storage.
    const { DB_HOST: _h, DB_PORT: _p, DB_USER: _u, DB_NAME: _n, DB_PASSWORD: _w, ...noDb } = env;
    assert.throws(() => loadConfig(noDb), /MEMORY_STORE/);
  });

  it('the Secret holds exactly the keys the manifests reference, each a variable the config reads', () => {
    const keys = Object.keys({ ...(secret['stringData'] ?? {}), ...(secret['data'] ?? {}) }).sort();
    const refs = new Set<string>();
    for (const r of dev) {
      for (const c of podContainers(r)) {
        for (const e of c['env'] ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (!ref) continue;
          assert.equal(ref.name, SECRET, `${r.metadata.name}/${c['name']} ${e.name} reads ${SECRET}`);
          assert.notEqual(ref.optional, true, `${e.name}: the Secret key is required`);
          refs.add(ref.key);
        }
        for (const from of c['envFrom'] ?? []) assert.equal(from.secretRef, undefined, 'no envFrom of Secrets');
      }
    }
    assert.deepEqual(keys, [...refs].sort());
    assert.deepEqual(keys, ['API_TOKENS', 'DB_PASSWORD']);
    const read = variablesRead(containerEnv());
    for (const k of keys) assert.ok(read.has(k), `${k} is read by loadConfig`);
    // Placeholders are marked as such; no real-looking secret is committed.
    for (const v of Object.values(secret['stringData'] ?? {})) assert.match(String(v), /CHANGE-ME/);
    // Secret values never sit in the ConfigMap.
    for (const k of keys) assert.equal(configMap['data'][k], undefined);
  });

  it('every pod runs restricted: non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
    const workloads = dev.filter((r) => podSpec(r));
    assert.equal(workloads.length, 3);
    for (const w of workloads) {
      const spec = podSpec(w)!;
      const where = `${w.kind}/${w.metadata.name}`;
      const psc = spec['securityContext'] ?? {};
      assert.equal(psc.runAsNonRoot, true, `${where}: runAsNonRoot`);
      assert.ok(psc.runAsUser > 0, `${where}: numeric non-root uid`);
      assert.equal(psc.seccompProfile?.type, 'RuntimeDefault', `${where}: seccomp`);
      assert.equal(spec['hostNetwork'] ?? false, false);
      assert.equal(spec['hostPID'] ?? false, false);
      assert.equal(spec['automountServiceAccountToken'], false, `${where}: no API token mounted`);
      const volumes = new Map<string, Record<string, unknown>>((spec['volumes'] ?? []).map((v: { name: string }) => [v.name, v]));
      const claims = new Set((w['spec'].volumeClaimTemplates ?? []).map((v: { metadata: { name: string } }) => v.metadata.name));
      for (const c of podContainers(w)) {
        const sc = c['securityContext'] ?? {};
        const at = `${where} ${c['name']}`;
        assert.equal(sc.allowPrivilegeEscalation, false, `${at}: allowPrivilegeEscalation false`);
        assert.equal(sc.readOnlyRootFilesystem, true, `${at}: readOnlyRootFilesystem`);
        assert.equal(sc.privileged ?? false, false, `${at}: not privileged`);
        assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${at}: drops ALL capabilities`);
        assert.equal(sc.capabilities?.add, undefined, `${at}: adds none`);
        if (sc.runAsUser !== undefined) assert.ok(sc.runAsUser > 0);
        for (const k of ['cpu', 'memory']) {
          assert.ok(c['resources']?.requests?.[k], `${at}: requests ${k}`);
          assert.ok(c['resources']?.limits?.[k], `${at}: limits ${k}`);
        }
        for (const m of c['volumeMounts'] ?? []) {
          assert.ok(volumes.has(m.name) || claims.has(m.name), `${at}: volume ${m.name} exists`);
        }
      }
    }
    // The service's writable scratch space is an emptyDir at /tmp.
    const tmp = (memoryContainer['volumeMounts'] ?? []).find((m: { mountPath: string }) => m.mountPath === '/tmp');
    assert.ok(tmp, 'the service mounts /tmp');
    const vol = memoryPod['volumes'].find((v: { name: string }) => v.name === tmp.name);
    assert.ok(vol?.emptyDir, '/tmp is an emptyDir');
  });

  it('the Service exposes named ports grpc and http with appProtocol, targeting the pods', () => {
    const svc = find(dev, 'Service', SERVICE);
    assert.ok(matches(svc['spec'].selector, deployment['spec'].template.metadata.labels), 'selector matches the pods');
    const byName = new Map<string, Record<string, any>>(svc['spec'].ports.map((p: { name: string }) => [p.name, p]));
    assert.deepEqual([...byName.keys()].sort(), ['grpc', 'http']);
    assert.equal(byName.get('grpc')!['port'], 50051);
    assert.equal(byName.get('http')!['port'], 8080);
    for (const [name, p] of byName) {
      assert.ok(typeof p['appProtocol'] === 'string' && p['appProtocol'].length > 0, `${name} has appProtocol`);
      assert.ok(containerPort(memoryContainer, p['targetPort']), `${name} targets a container port`);
    }
    assert.equal(byName.get('grpc')!['appProtocol'], 'grpc');
    // The Deployment's own selector selects its template.
    assert.ok(matches(deployment['spec'].selector.matchLabels, deployment['spec'].template.metadata.labels));
  });

  it('the PodDisruptionBudget selects the service pods and leaves one running', () => {
    const pdbs = dev.filter((r) => r.kind === 'PodDisruptionBudget');
    const pdb = pdbs.find((p) => matches(p['spec'].selector.matchLabels, deployment['spec'].template.metadata.labels));
    assert.ok(pdb, 'a PDB selects the service pods');
    assert.ok(pdb['spec'].minAvailable >= 1 && pdb['spec'].minAvailable < deployment['spec'].replicas);
  });

  it('NetworkPolicies let only the service reach PostgreSQL and NATS’ client port', () => {
    const pg = find(dev, 'StatefulSet', 'mycelis-pg');
    const nats = find(dev, 'StatefulSet', 'mycelis-nats');
    const policies = dev.filter((r) => r.kind === 'NetworkPolicy');
    const memoryLabels = deployment['spec'].template.metadata.labels;
    for (const [target, portName] of [
      [pg, 'postgres'],
      [nats, 'client'],
    ] as const) {
      const labels = target['spec'].template.metadata.labels;
      const applying = policies.filter((p) => matches(p['spec'].podSelector.matchLabels, labels));
      assert.equal(applying.length, 1, `one policy isolates ${target.metadata.name}`);
      const policy = applying[0]!;
      assert.ok(policy['spec'].policyTypes.includes('Ingress'));
      const port = containerPort(podContainers(target)[0]!, portName);
      const rules = policy['spec'].ingress as { from?: { podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: unknown; ipBlock?: unknown }[]; ports?: { port: number | string }[] }[];
      assert.ok(rules.length > 0);
      for (const rule of rules) {
        assert.ok(rule.from && rule.from.length > 0, 'every rule names its peers (no allow-all)');
        for (const peer of rule.from) {
          assert.equal(peer.namespaceSelector, undefined, 'no other namespaces');
          assert.equal(peer.ipBlock, undefined, 'no IP ranges');
          assert.ok(peer.podSelector && Object.keys(peer.podSelector.matchLabels).length > 0);
        }
        assert.deepEqual(rule.ports?.map((p) => (typeof p.port === 'number' ? p.port : containerPort(podContainers(target)[0]!, p.port))), [port]);
      }
      const servicePeers = rules.flatMap((r) => r.from!).filter((peer) => matches(peer.podSelector!.matchLabels, memoryLabels));
      assert.ok(servicePeers.length > 0, `the service reaches ${target.metadata.name}:${port}`);
    }
    // PostgreSQL: the service only.
    const pgPolicy = policies.find((p) => matches(p['spec'].podSelector.matchLabels, pg['spec'].template.metadata.labels))!;
    for (const rule of pgPolicy['spec'].ingress) {
      for (const peer of rule.from) assert.ok(matches(peer.podSelector.matchLabels, memoryLabels), 'only service pods reach PostgreSQL');
    }
  });

  it('PostgreSQL is StatefulSet mycelis-pg with pgvector, a volume claim template and a headless Service', () => {
    const pg = find(dev, 'StatefulSet', 'mycelis-pg');
    assert.equal(pg['spec'].replicas, 1, 'pod mycelis-pg-0');
    const c = podContainers(pg)[0]!;
    assert.match(c['image'], /^pgvector\/pgvector:/);
    const data = pg['spec'].volumeClaimTemplates[0];
    assert.ok(data.spec.resources.requests.storage);
    const pgdata = c['env'].find((e: { name: string }) => e.name === 'PGDATA').value as string;
    const mount = c['volumeMounts'].find((m: { name: string }) => m.name === data.metadata.name);
    assert.ok(pgdata.startsWith(mount.mountPath + '/'), 'PGDATA lives on the claim');
    // Database credentials come from the same ConfigMap keys and Secret key the service reads.
    const source = (name: string) => c['env'].find((e: { name: string }) => e.name === name).valueFrom;
    assert.deepEqual(source('POSTGRES_USER').configMapKeyRef, { name: configMap.metadata.name, key: 'DB_USER' });
    assert.deepEqual(source('POSTGRES_DB').configMapKeyRef, { name: configMap.metadata.name, key: 'DB_NAME' });
    assert.deepEqual(source('POSTGRES_PASSWORD').secretKeyRef, { name: SECRET, key: 'DB_PASSWORD' });
    headlessGoverningService(pg);
  });

  it('NATS runs with JetStream on a persistent volume behind a headless Service', () => {
    const nats = find(dev, 'StatefulSet', 'mycelis-nats');
    const c = podContainers(nats)[0]!;
    assert.match(c['image'], /^nats:/);
    const args = [...(c['command'] ?? []), ...(c['args'] ?? [])] as string[];
    assert.ok(args.includes('--jetstream') || args.includes('-js'), 'JetStream enabled');
    const storeArg = args.find((a) => a.startsWith('--store_dir='));
    assert.ok(storeArg, 'store directory given');
    const claim = nats['spec'].volumeClaimTemplates[0];
    const mount = c['volumeMounts'].find((m: { name: string }) => m.name === claim.metadata.name);
    assert.equal(storeArg.slice('--store_dir='.length), mount.mountPath, 'JetStream stores on the claim');
    assert.ok(containerPort(c, 'client') === 4222);
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      assert.ok(containerPort(c, c[probe].httpGet.port), `${probe} targets a real port`);
    }
    headlessGoverningService(nats);
  });
});

function headlessGoverningService(sts: Manifest): void {
  const svc = find(dev, 'Service', sts['spec'].serviceName);
  assert.equal(svc['spec'].clusterIP, 'None', `${svc.metadata.name} is headless`);
  assert.ok(matches(svc['spec'].selector, sts['spec'].template.metadata.labels));
  assert.ok(matches(sts['spec'].selector.matchLabels, sts['spec'].template.metadata.labels));
  for (const p of svc['spec'].ports) {
    assert.ok(containerPort(podContainers(sts)[0]!, p.targetPort), `${svc.metadata.name}:${p.name} targets a container port`);
  }
}
