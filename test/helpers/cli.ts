// Runs the CLI as an operator would: a child process of `tsx src/cli.ts`, with a controlled
// environment (no inherited DATABASE_URL/NATS_URL/... unless given).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const KEEP = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'NODE_OPTIONS'];

export function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { LOG_LEVEL: 'warn' };
  for (const k of KEEP) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return { ...env, ...extra };
}

/**
 * The CLI's entry: src/cli.ts through tsx, or the built dist/src/cli.js (what the package installs as
 * `mycelis-memory`) when scripts/test.sh has just built it (MYCELIS_TEST_BUILT=1): the same code
 * without tsx's start-up in each of the suite's many CLI processes.
 */
const ENTRY = process.env['MYCELIS_TEST_BUILT'] === '1' ? ['dist/src/cli.js'] : ['--import', 'tsx', 'src/cli.ts'];

export function runCli(args: string[], extraEnv: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...ENTRY, ...args],
      { cwd: ROOT, env: cliEnv(extraEnv), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof (err as { code?: unknown }).code !== 'number' && !(err as { signal?: unknown }).signal) {
          reject(err);
          return;
        }
        const e = err as (Error & { code?: number; signal?: NodeJS.Signals }) | null;
        resolve({ code: e ? (e.code ?? null) : 0, signal: e?.signal ?? null, stdout, stderr });
      },
    );
  });
}
