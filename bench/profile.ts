// Summarizes a V8 .cpuprofile (node --cpu-prof): self time per function and per area, and CPU µs
// per event for the drain. Also runnable: `tsx bench/profile.ts <file.cpuprofile> [events]`.
import { readFileSync } from 'node:fs';

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: CpuNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  wallSeconds: number;
  busySeconds: number;
  busyUsPerEvent: number | null;
  byArea: { area: string; ms: number; pct: number }[];
  topFunctions: { fn: string; ms: number; pct: number }[];
}

function area(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(idle)' || fn === '(program)') return fn;
  if (url.includes('/src/gen/')) return 'protobuf decode (ts-proto)';
  if (url.includes('/src/domain/')) return `domain: ${url.replace(/.*\/src\/domain\//, '')}`;
  if (url.includes('/src/ingest/')) return `ingest: ${url.replace(/.*\/src\/ingest\//, '')}`;
  if (url.includes('/src/store/')) return `store: ${url.replace(/.*\/src\/store\//, '')}`;
  if (url.includes('/src/api/')) return 'api';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return `lib: ${m[1]}`;
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  if (url === '') return `native/builtin`;
  return url;
}

export function summarizeProfile(file: string, events?: number): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, CpuNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
  }
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    const a = area(url, functionName);
    if (a === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    areas.set(a, (areas.get(a) ?? 0) + us);
    const key = `${functionName || '(anonymous)'} ${url.replace(/.*\/(node_modules|src)\//, '$1/')}:${lineNumber + 1}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const pct = (us: number): number => Math.round((us / total) * 1000) / 10;
  return {
    file,
    wallSeconds: (p.endTime - p.startTime) / 1e6,
    busySeconds: total / 1e6,
    busyUsPerEvent: events ? Math.round((total / events) * 10) / 10 : null,
    byArea: [...areas.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([area, us]) => ({ area, ms: Math.round(us / 1000), pct: pct(us) })),
    topFunctions: [...fns.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30).map(([fn, us]) => ({ fn, ms: Math.round(us / 1000), pct: pct(us) })),
  };
}

if (process.argv[1]?.endsWith('profile.ts') && process.argv[2]) {
  const s = summarizeProfile(process.argv[2], process.argv[3] ? Number(process.argv[3]) : undefined);
  process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
}
