// A node:test reporter that writes how long each test file took (its process, start to exit) to its
// destination, slowest first, under a header naming the Node.js version: the suite's time budget
// (.ci/run runs it once per Node line, under 15 minutes in all) is spent file by file.
//   node --test --test-reporter=spec --test-reporter-destination=stdout \
//     --test-reporter=./scripts/test-durations.mjs --test-reporter-destination=test-artifacts/durations.txt …
import { relative } from 'node:path';

export default async function* durations(source) {
  const files = new Map();
  const started = Date.now();
  for await (const event of source) {
    // Each file's own process reports one nesting-0 test:complete named after the file, with its wall time.
    if (event.type !== 'test:complete' || event.data.nesting !== 0 || !event.data.file) continue;
    const file = relative(process.cwd(), event.data.file);
    if (event.data.name !== file && !event.data.name.endsWith(file)) continue;
    files.set(file, { ms: event.data.details.duration_ms, failed: !event.data.details.passed });
  }
  const wall = (Date.now() - started) / 1000;
  const rows = [...files].sort((a, b) => b[1].ms - a[1].ms);
  const sum = rows.reduce((s, [, r]) => s + r.ms, 0) / 1000;
  yield `# test files by duration, node ${process.version} (${process.execArgv.filter((a) => a.startsWith('--test-concurrency')).join(' ') || 'default concurrency'}): ${rows.length} files, ${sum.toFixed(1)} s summed, ${wall.toFixed(1)} s wall\n`;
  for (const [file, r] of rows) yield `${(r.ms / 1000).toFixed(1).padStart(7)} s  ${file}${r.failed ? '  (failed)' : ''}\n`;
}
