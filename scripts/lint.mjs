// Project rules tsc cannot check: the import direction of STYLE.md, no console.* in the service,
// process.env read only by src/config.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const problems = [];
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) check(p);
  }
}
// layer -> layers it must not import
const forbidden = {
  config: ['domain', 'store', 'ingest', 'api'],
  domain: ['store', 'ingest', 'api'],
  store: ['ingest', 'api'],
  ingest: ['api'],
  api: ['ingest'],
};
function check(file) {
  const rel = relative('src', file).replaceAll('\\', '/');
  const layer = rel.split('/')[0];
  if (layer === 'gen') return;
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const at = `${file}:${i + 1}`;
    const m = /from\s+['"](\.[^'"]+)['"]/.exec(line);
    if (m && forbidden[layer]) {
      const target = relative('src', join(file, '..', m[1])).replaceAll('\\', '/').split('/')[0];
      if (forbidden[layer].includes(target)) problems.push(`${at}: src/${layer} must not import src/${target}`);
    }
    if (/\bfrom\s+['"]pg(-copy-streams)?['"]/.test(line) && layer !== 'store') {
      problems.push(`${at}: only src/store imports pg`);
    }
    if (/\bconsole\.(log|info|warn|error|debug)\(/.test(line) && !rel.startsWith('cli')) {
      problems.push(`${at}: use the pino logger, not console`);
    }
    if (/process\.env\b/.test(line) && layer !== 'config' && !rel.startsWith('cli')) {
      problems.push(`${at}: only src/config reads process.env`);
    }
  });
}
walk('src');
if (problems.length) {
  for (const p of problems) process.stderr.write(p + '\n');
  process.exit(1);
}
