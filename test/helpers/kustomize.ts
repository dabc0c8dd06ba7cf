// A small kustomize renderer for the tests of k8s/: the subset the manifests use (resources, which may
// be files or other kustomization directories, and images). Any other kustomization field throws, so a
// manifest change that needs more of kustomize fails the tests instead of being rendered wrongly.
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

export type Manifest = Record<string, any> & { apiVersion: string; kind: string; metadata: { name: string } & Record<string, any> };

interface ImageRule {
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'images']);

/** Every YAML document of one file, parsed strictly (duplicate keys, syntax errors throw). */
export function readYamlDocuments(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { uniqueKeys: true, prettyErrors: true });
  const out: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as unknown;
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

function kustomizationFile(dir: string): string {
  for (const name of ['kustomization.yaml', 'kustomization.yml', 'Kustomization']) {
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // try the next name
    }
  }
  throw new Error(`${dir}: no kustomization.yaml`);
}

/** Splits `registry:5000/name:tag@sha256:…` into the name kustomize matches on, tag and digest. */
export function splitImage(image: string): { name: string; tag: string | undefined; digest: string | undefined } {
  let rest = image;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { name: rest, tag, digest };
}

function applyImages(resources: Manifest[], rules: ImageRule[]): void {
  for (const r of resources) {
    for (const c of podContainers(r)) {
      if (typeof c['image'] !== 'string') continue;
      const { name, tag, digest } = splitImage(c['image']);
      const rule = rules.find((x) => x.name === name);
      if (!rule) continue;
      let image = rule.newName ?? name;
      if (rule.digest) image += `@${rule.digest}`;
      else if (rule.newTag) image += `:${rule.newTag}`;
      else if (digest) image += `@${digest}`;
      else if (tag) image += `:${tag}`;
      c['image'] = image;
    }
  }
}

/** The pod template spec of a workload (or the spec of a Pod), else undefined. */
export function podSpec(r: Manifest): Record<string, any> | undefined {
  if (r.kind === 'Pod') return r['spec'];
  if (r.kind === 'CronJob') return r['spec']?.jobTemplate?.spec?.template?.spec;
  if (['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'].includes(r.kind)) return r['spec']?.template?.spec;
  return undefined;
}

export function podContainers(r: Manifest): Record<string, any>[] {
  const spec = podSpec(r);
  if (!spec) return [];
  return [...(spec['initContainers'] ?? []), ...(spec['containers'] ?? [])];
}

/** Renders the kustomization in `dir` (what `kubectl kustomize dir` would print, for this subset). */
export function renderKustomization(dir: string): Manifest[] {
  const file = kustomizationFile(dir);
  const docs = readYamlDocuments(file);
  if (docs.length !== 1) throw new Error(`${file}: expected one document`);
  const k = docs[0] as Record<string, unknown>;
  for (const key of Object.keys(k)) {
    if (!SUPPORTED.has(key)) throw new Error(`${file}: field ${key} is not supported by the test renderer`);
  }
  if (k['kind'] !== 'Kustomization') throw new Error(`${file}: kind is ${String(k['kind'])}`);
  const out: Manifest[] = [];
  for (const entry of (k['resources'] as string[] | undefined) ?? []) {
    const p = resolve(dir, entry);
    if (statSync(p).isDirectory()) {
      out.push(...renderKustomization(p));
    } else {
      // kustomize's default load restrictor: files must lie inside the kustomization root.
      if (!p.startsWith(resolve(dir) + '/')) throw new Error(`${file}: ${entry} is outside ${dir}`);
      for (const d of readYamlDocuments(p)) out.push(d as Manifest);
    }
  }
  const seen = new Set<string>();
  for (const r of out) {
    const id = `${r.apiVersion}/${r.kind}/${r.metadata?.namespace ?? ''}/${r.metadata?.name}`;
    if (seen.has(id)) throw new Error(`${file}: duplicate resource ${id}`);
    seen.add(id);
  }
  applyImages(out, (k['images'] as ImageRule[] | undefined) ?? []);
  return out;
}

