// Parses the Dockerfile into stages of instructions, for tests that check it and reproduce its final
// stage without a Docker engine. Handles line continuations, comments and the JSON (exec) form.
import { readFileSync } from 'node:fs';

export interface Instruction {
  readonly keyword: string; // upper case: FROM, COPY, RUN, …
  readonly args: string; // the rest of the line, continuations joined
  readonly flags: Readonly<Record<string, string>>; // --from=build, --chown=…
  readonly words: readonly string[]; // args without the flags, split (JSON form parsed)
}

export interface Stage {
  readonly name: string | undefined;
  readonly from: string;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  readonly globalArgs: readonly Instruction[];
  readonly stages: readonly Stage[];
}

function splitWords(text: string): string[] {
  const t = text.trim();
  if (t.startsWith('[')) {
    const parsed = JSON.parse(t) as unknown;
    if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) return parsed as string[];
  }
  return t.length === 0 ? [] : t.split(/\s+/);
}

function parseInstruction(line: string): Instruction {
  const m = /^(\w+)\s*(.*)$/s.exec(line.trim());
  if (!m) throw new Error(`cannot parse Dockerfile line: ${line}`);
  const keyword = m[1]!.toUpperCase();
  const args = m[2]!;
  const flags: Record<string, string> = {};
  let rest = args;
  if (keyword !== 'RUN' || /^--/.test(rest)) {
    for (;;) {
      const f = /^--([\w-]+)(?:=(\S*))?\s*/.exec(rest);
      if (!f) break;
      flags[f[1]!] = f[2] ?? '';
      rest = rest.slice(f[0].length);
    }
  }
  return { keyword, args, flags, words: splitWords(rest) };
}

export function parseDockerfile(path: string): Dockerfile {
  const lines = readFileSync(path, 'utf8').split('\n');
  const logical: string[] = [];
  let current = '';
  for (const raw of lines) {
    const trimmed = raw.trim();
    if (current === '' && (trimmed === '' || trimmed.startsWith('#'))) continue;
    if (current !== '' && trimmed.startsWith('#')) continue; // comments inside continuations
    if (trimmed.endsWith('\\')) {
      current += trimmed.slice(0, -1) + ' ';
      continue;
    }
    current += trimmed;
    logical.push(current);
    current = '';
  }
  if (current !== '') logical.push(current);

  const globalArgs: Instruction[] = [];
  const stages: { name: string | undefined; from: string; instructions: Instruction[] }[] = [];
  for (const line of logical) {
    const ins = parseInstruction(line);
    if (ins.keyword === 'FROM') {
      const [from, as, name] = ins.words;
      if (!from) throw new Error(`FROM without an image: ${line}`);
      stages.push({ name: as?.toUpperCase() === 'AS' ? name : undefined, from, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== 'ARG') throw new Error(`${ins.keyword} before the first FROM`);
      globalArgs.push(ins);
    } else {
      stages[stages.length - 1]!.instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}
