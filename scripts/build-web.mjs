// Bundles the live page (web/src) with esbuild into web/dist: index.html plus content-hashed
// assets under assets/ (so the server can cache them forever and index.html never). Type-checking
// the page is `tsc -p web` (npm run typecheck / lint); esbuild only strips types.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

const out = 'web/dist';
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/assets`, { recursive: true });

const result = await build({
  entryPoints: ['web/src/main.ts'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
  outdir: `${out}/assets`,
  entryNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs);
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (!js || !css) throw new Error(`esbuild produced no js/css: ${outputs.join(', ')}`);
const html = readFileSync('web/src/index.html', 'utf8')
  .replace('%APP_JS%', `/assets/${basename(js)}`)
  .replace('%APP_CSS%', `/assets/${basename(css)}`);
if (html.includes('%APP_')) throw new Error('web/src/index.html has an unknown placeholder');
writeFileSync(`${out}/index.html`, html);
const sizes = outputs.map((f) => `${basename(f)} ${(result.metafile.outputs[f].bytes / 1024).toFixed(1)} KiB`);
process.stdout.write(`web: ${sizes.join(', ')}\n`);
