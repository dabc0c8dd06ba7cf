#!/usr/bin/env node
// The operator CLI (package.json `bin`): `mycelis-memory serve | migrate | publish | help`.
// The dispatcher lives in src/cli/run.ts; this file only binds it to the process.
import { runCli } from './cli/run.js';

// A reader that goes away (`… | head`) is not an error of the command: stop writing, keep the exit code.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
if (code !== undefined) {
  // Writes to a pipe are synchronous on Linux only while the pipe has room: once a reader falls
  // behind (more than ~64 KiB of output, e.g. `dead-letters list --json | …`), libuv queues the
  // rest, and process.exit() would drop it. Wait until everything written has been handed to the OS.
  // Exiting explicitly means a forgotten handle can never leave a finished command hanging.
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}

function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || !stream.writable) return resolve();
    stream.once('error', () => resolve());
    // A write's callback runs after every earlier write on the stream has been flushed.
    stream.write('', () => resolve());
  });
}
