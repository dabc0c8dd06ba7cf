// Small, pure helpers for the page (no DOM).
import type { JsonObject, JsonValue } from '@bufbuild/protobuf';
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { AgentStatus } from '../gen/mycelis/memory/v1/memory_pb.js';

export const STATUS_NAME: Readonly<Record<number, string>> = {
  [AgentStatus.IDLE]: 'IDLE',
  [AgentStatus.BUSY]: 'BUSY',
  [AgentStatus.OFFLINE]: 'OFFLINE',
  [AgentStatus.ERROR]: 'ERROR',
  [AgentStatus.UNSPECIFIED]: 'UNKNOWN',
};

export function ms(t: Timestamp | undefined): number | undefined {
  return t ? timestampMs(t) : undefined;
}

export function ago(thenMs: number | undefined, nowMs: number): string {
  if (thenMs === undefined) return '-';
  const s = Math.floor((nowMs - thenMs) / 1000);
  if (s < 1) return 'now';
  if (s < 120) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m ago`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h ago` : `${Math.floor(h / 24)}d ago`;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** Local wall-clock time with milliseconds, e.g. 14:03:07.125. */
export function clock(t: Timestamp | undefined): string {
  const v = ms(t);
  if (v === undefined) return '-';
  const d = new Date(v);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function iso(t: Timestamp | undefined): string {
  const v = ms(t);
  return v === undefined ? '' : new Date(v).toISOString();
}

function scalar(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${v.length}]`;
  if (typeof v === 'object') return '{…}';
  return String(v);
}

export function metaSummary(meta: JsonObject | undefined): string {
  if (!meta) return '';
  return Object.entries(meta)
    .map(([k, v]) => `${k}=${scalar(v)}`)
    .join(' ');
}

/** "a, b" -> ["a", "b"]; empty -> []. */
export function splitList(s: string): string[] {
  return s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
}

/** "0ms", "850ms", "1.23s", "12.4s", "3m05s", "2h04m" (the CLI's trace uses the same). */
export function duration(msTotal: number): string {
  if (msTotal < 0) return `-${duration(-msTotal)}`;
  if (msTotal < 1000) return `${Math.round(msTotal)}ms`;
  if (msTotal < 60_000) return `${(msTotal / 1000).toFixed(msTotal < 10_000 ? 2 : 1)}s`;
  const s = Math.floor(msTotal / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}
