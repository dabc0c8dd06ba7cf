// node:util parseArgs, strict, with its errors turned into UsageError (exit 64) and small helpers
// for numeric flags. No positional arguments unless a command asks for them.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { type Command, UsageError } from './command.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseFlags<O extends Options>(
  command: Command,
  args: string[],
  options: O,
  { positionals = false }: { positionals?: boolean } = {},
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: positionals });
    return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals };
  } catch (err) {
    // ERR_PARSE_ARGS_UNKNOWN_OPTION, ERR_PARSE_ARGS_INVALID_OPTION_VALUE, ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL
    throw new UsageError((err as Error).message, command, { cause: err });
  }
}

/** An integer flag within [min, max], or the default when absent. */
export function intFlag(command: Command, values: Record<string, unknown>, name: string, dflt: number, min: number, max: number): number {
  const raw = values[name];
  if (raw === undefined) return dflt;
  const text = String(raw).trim();
  const n = Number(text);
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`, command);
  }
  return n;
}

/** A non-negative number flag (decimals allowed), or the default when absent. */
export function numberFlag(command: Command, values: Record<string, unknown>, name: string, dflt: number, max: number): number {
  const raw = values[name];
  if (raw === undefined) return dflt;
  const text = String(raw).trim();
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(n) || n > max) {
    throw new UsageError(`--${name} must be a number from 0 to ${max}, got ${JSON.stringify(raw)}`, command);
  }
  return n;
}

export function stringFlag(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}
