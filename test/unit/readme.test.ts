// README.md is a user's document: at most 400 lines; its configuration table names exactly the
// variables the config module reads (found by handing loadConfig an environment that records every
// read); the metrics it names exist in src/; the proto-loader client it shows is
// examples/proto-loader-client.mjs verbatim (the e2e test runs that file); the documents it links to exist.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { loadConfig } from '../../src/config/config.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const MAX_LINES = 400;

/** Every environment variable loadConfig reads, over the branches that read different ones. */
function variablesRead(): Set<string> {
  const read = new Set<string>();
  const recording = (base: Record<string, string>): Record<string, string | undefined> =>
    new Proxy(base, {
      get(target, key) {
        if (typeof key === 'string') read.add(key);
        return target[key as string];
      },
      has(target, key) {
        if (typeof key === 'string') read.add(key);
        return key in target;
      },
    });
  loadConfig(recording({})); // embedded
  loadConfig(recording({ DB_HOST: 'db.example' })); // DB_* parts
  loadConfig(recording({ DATABASE_URL: 'postgres://u@db.example/db' }));
  loadConfig(recording({ MEMORY_STORE: 'postgres', DB_HOST: 'db.example', API_TOKENS: 't', TLS_CERT_FILE: 'c', TLS_KEY_FILE: 'k' }));
  return read;
}

/** Variables named in the first column of the table under "## Configure". */
function documentedVariables(): Set<string> {
  const section = README.split(/^## /m).find((s) => s.startsWith('Configure'));
  assert.ok(section, 'README has a "## Configure" section');
  const names = new Set<string>();
  for (const line of section.split('\n')) {
    const first = /^\| ([^|]+) \|/.exec(line)?.[1];
    if (!first) continue;
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.add(m[1]!);
  }
  return names;
}

describe('README.md', () => {
  it(`has at most ${MAX_LINES} lines`, () => {
    const lines = README.split('\n').length - (README.endsWith('\n') ? 1 : 0);
    assert.ok(lines <= MAX_LINES, `README.md has ${lines} lines; move detail to docs/ or bench/README.md`);
  });

  it('starts with the two commands: run the service, run the tests', () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(README)?.[1] ?? '';
    assert.match(firstBlock, /^npm ci && npm start\b/m);
    assert.match(firstBlock, /^npm test\b/m);
  });

  it('documents exactly the environment variables the config module reads', () => {
    const read = variablesRead();
    const documented = documentedVariables();
    const undocumented = [...read].filter((v) => !documented.has(v)).sort();
    const unknown = [...documented].filter((v) => !read.has(v)).sort();
    assert.deepEqual(undocumented, [], `read by src/config but missing from the README's table: ${undocumented.join(', ')}`);
    assert.deepEqual(unknown, [], `in the README's table but never read by src/config: ${unknown.join(', ')}`);
  });

  it('shows examples/ files verbatim where it says so', () => {
    const marked = [...README.matchAll(/<!-- example:(\S+) -->\n```\w*\n([\s\S]*?)```/g)];
    assert.ok(marked.length >= 1, 'README includes the proto-loader client');
    for (const [, file, body] of marked) {
      const source = readFileSync(join(ROOT, file!), 'utf8');
      assert.equal(body, source, `README's copy of ${file} differs from the file: paste the file into the block`);
    }
  });

  it('names only metrics the service declares', () => {
    const source = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.startsWith('gen'))
      .map((f) => readFileSync(join(ROOT, 'src', f), 'utf8'))
      .join('\n');
    const named = new Set([...README.matchAll(/\bmycelis_memory_[a-z_]+[a-z]/g)].map((m) => m[0]));
    assert.ok(named.size >= 5, 'the README names the metrics to watch');
    // A name may also be a prefix to grep for (mycelis_memory_ingest): some declared metric starts with it.
    for (const metric of named) assert.ok(source.includes(`'${metric}`), `README names ${metric}, which src/ does not declare`);
  });

  it('links only to files that exist', () => {
    for (const [, target] of README.matchAll(/\[[^\]\n]+\]\(([^)\s#]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      assert.ok(existsSync(join(ROOT, target!)), `README links to ${target}, which does not exist`);
    }
  });
});
