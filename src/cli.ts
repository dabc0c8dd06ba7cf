#!/usr/bin/env node
// The operator CLI (package.json `bin`): `mycelis-memory serve | migrate | publish | help`.
// The dispatcher lives in src/cli/run.ts; this file only binds it to the process.
import { runCli } from './cli/run.js';

const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
if (code !== undefined) {
  // stdout/stderr are synchronous for files and pipes on Linux, so nothing written is lost; exiting
  // explicitly means a forgotten handle can never leave a finished command hanging.
  process.exit(code);
}
