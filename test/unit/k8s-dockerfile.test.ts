// Dockerfile and .dockerignore: multi-stage, `npm ci` from the lockfile, only production dependencies
// and built output in the final stage, non-root, SIGTERM, no secrets; and consistent with the k8s
// Deployment (user, ports, entrypoint). test/e2e/image.test.ts runs what the final stage holds.
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseDockerfile, type Instruction } from '../helpers/dockerfile.js';
import { podSpec, renderKustomization } from '../helpers/kustomize.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dockerfile = parseDockerfile(join(ROOT, 'Dockerfile'));
const final = dockerfile.stages[dockerfile.stages.length - 1]!;
const build = dockerfile.stages[0]!;
const deployment = renderKustomization(join(ROOT, 'k8s', 'base')).find((r) => r.kind === 'Deployment' && r.metadata.name === 'mycelis-memory')!;
const container = podSpec(deployment)!['containers'][0] as Record<string, any>;

const all = (keyword: string, stage = final): Instruction[] => stage.instructions.filter((i) => i.keyword === keyword);
const last = (keyword: string): Instruction | undefined => all(keyword).at(-1);

function resolveArgs(image: string): string {
  return image.replace(/\$\{?(\w+)\}?/g, (_, name: string) => {
    const arg = dockerfile.globalArgs.find((a) => a.words[0]?.startsWith(`${name}=`));
    assert.ok(arg, `ARG ${name} has a default`);
    return arg.words[0]!.slice(name.length + 1);
  });
}

describe('Dockerfile', () => {
  it('is multi-stage on a pinned Node image', () => {
    assert.ok(dockerfile.stages.length >= 2);
    for (const s of dockerfile.stages) {
      const image = resolveArgs(s.from);
      assert.match(image, /^node:\d+\.\d+\.\d+-[\w-]+$/, `${s.name}: ${image} is pinned to an exact version`);
    }
    assert.equal(final.name, 'runtime');
  });

  it('installs from the lockfile with npm ci: all dependencies to build, production ones in the final stage', () => {
    const idx = (stage: typeof build, pred: (i: Instruction) => boolean) => stage.instructions.findIndex(pred);
    for (const stage of [build, final]) {
      const lock = idx(stage, (i) => i.keyword === 'COPY' && i.words.includes('package-lock.json'));
      const ci = idx(stage, (i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
      assert.ok(lock >= 0 && ci > lock, `${stage.name}: copies package-lock.json, then runs npm ci`);
      assert.ok(!stage.instructions.some((i) => i.keyword === 'RUN' && /\bnpm (install|i)\b/.test(i.args)), 'never npm install');
    }
    assert.ok(all('RUN', build).some((i) => /\bnpm run build\b/.test(i.args)), 'the build stage builds');
    const runs = all('RUN');
    assert.ok(runs.some((i) => /\bnpm ci\b.*--omit=dev/.test(i.args)), 'the final stage omits dev dependencies');
    assert.ok(!runs.some((i) => /npm run build|tsc/.test(i.args)), 'no compiling in the final stage');
  });

  it('the final stage holds only the manifest, the lockfile, the npm config, built output and migrations', () => {
    const copied: string[] = [];
    for (const c of all('COPY').concat(all('ADD'))) {
      assert.equal(c.keyword, 'COPY', 'COPY, not ADD');
      const sources = c.words.slice(0, -1);
      if (c.flags['from'] !== undefined) {
        assert.equal(c.flags['from'], build.name);
        assert.deepEqual(sources, ['/app/dist'], 'only the built output comes from the build stage');
      }
      copied.push(...sources);
    }
    // .npmrc: engine-strict, so a base image on a Node line package.json does not admit fails the build.
    assert.deepEqual(copied.sort(), ['.npmrc', '/app/dist', 'migrations', 'package-lock.json', 'package.json']);
    for (const p of copied.filter((s) => !s.startsWith('/'))) assert.ok(existsSync(join(ROOT, p)), `${p} exists`);
  });

  it('runs as the non-root user the Deployment expects, stops on SIGTERM and carries no secrets', () => {
    const user = last('USER');
    assert.ok(user, 'USER is set');
    const [uid, gid] = user.words[0]!.split(':').map(Number);
    assert.ok(uid !== undefined && uid > 0 && Number.isInteger(uid), 'numeric non-root uid (runAsNonRoot can verify it)');
    assert.equal(uid, podSpec(deployment)!['securityContext'].runAsUser);
    assert.equal(gid, podSpec(deployment)!['securityContext'].runAsGroup);
    assert.equal(last('STOPSIGNAL')?.words[0], 'SIGTERM');
    for (const stage of dockerfile.stages) {
      for (const i of stage.instructions.filter((x) => x.keyword === 'ENV' || x.keyword === 'ARG')) {
        assert.doesNotMatch(i.args, /PASSWORD|TOKEN|SECRET|DATABASE_URL|_KEY\b/i, `${stage.name}: ${i.keyword} ${i.args}`);
      }
      for (const i of stage.instructions.filter((x) => x.keyword === 'COPY')) {
        assert.ok(!i.words.some((w) => /(^|\/)\.env|\.pem$|\.key$/.test(w)), `${stage.name}: COPY ${i.args}`);
      }
    }
  });

  it('starts `node dist/src/cli.js serve` on the ports the Deployment declares', () => {
    const entrypoint = last('ENTRYPOINT')!.words;
    const cmd = last('CMD')!.words;
    assert.deepEqual([...entrypoint, ...cmd], ['node', 'dist/src/cli.js', 'serve']);
    assert.equal(container['command'], undefined, 'the Deployment keeps the image entrypoint');
    assert.deepEqual([...entrypoint, ...container['args']], ['node', 'dist/src/cli.js', 'serve']);
    assert.equal(all('WORKDIR').at(-1)?.words[0], '/app');
    const exposed = all('EXPOSE').flatMap((e) => e.words.map((w) => Number(w.split('/')[0])));
    const ports = (container['ports'] as { containerPort: number }[]).map((p) => p.containerPort);
    assert.deepEqual(exposed.sort(), ports.sort());
  });

  it('.dockerignore keeps dependencies, build output, git, local data and env files out of the context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const p of ['**/node_modules', 'dist', '.git', '.data', '.env', '.env.*']) assert.ok(ignored.includes(p), `ignores ${p}`);
    // Nothing the Dockerfile copies from the context is ignored.
    const fromContext = dockerfile.stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.keyword === 'COPY' && i.flags['from'] === undefined)
      .flatMap((i) => i.words.slice(0, -1));
    for (const p of fromContext) {
      assert.ok(!ignored.includes(p) && !ignored.includes(`${p}/`), `${p} is sent to the build`);
      assert.ok(existsSync(join(ROOT, p)), `${p} exists`);
    }
  });
});
