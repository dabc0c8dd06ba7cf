// Terminal presentation shared by tail and registry: colour only on a TTY and never with NO_COLOR
// (https://no-color.org), ages such as "12s ago", truncation to a column width.
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';

export type Paint = (style: keyof typeof STYLES, text: string) => string;

const STYLES = {
  dim: '2',
  grey: '90',
  green: '32',
  cyan: '36',
  yellow: '33',
  red: '31',
  boldRed: '1;31',
  magenta: '35',
  bold: '1',
} as const;

export function useColour(stream: NodeJS.WritableStream, env: Readonly<Record<string, string | undefined>>): boolean {
  if (env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '') return false;
  return (stream as { isTTY?: boolean }).isTTY === true;
}

export function painter(enabled: boolean): Paint {
  if (!enabled) return (_style, text) => text;
  return (style, text) => `\x1b[${STYLES[style]}m${text}\x1b[0m`;
}

export const LEVEL_STYLE: Readonly<Record<string, keyof typeof STYLES>> = {
  DEBUG: 'grey',
  INFO: 'green',
  WARN: 'yellow',
  ERROR: 'red',
  FATAL: 'boldRed',
};

export const STATUS_STYLE: Readonly<Record<string, keyof typeof STYLES>> = {
  IDLE: 'green',
  BUSY: 'cyan',
  OFFLINE: 'grey',
  ERROR: 'red',
};

/** "now", "12s ago", "4m ago", "3h ago", "2d ago"; a time ahead of `nowMs` reads "now". */
export function ago(thenMs: number, nowMs: number): string {
  const s = Math.floor((nowMs - thenMs) / 1000);
  if (s < 1) return 'now';
  if (s < 120) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.floor(h / 24)}d ago`;
}

export function tsMs(t: Timestamp | undefined): number | undefined {
  return t ? timestampMs(t) : undefined;
}

/** ISO-8601 with milliseconds, or "-" when unset. */
export function isoTime(t: Timestamp | undefined): string {
  const ms = tsMs(t);
  return ms === undefined ? '-' : new Date(ms).toISOString();
}

/** One line: newlines and tabs become spaces, control characters are dropped (no terminal escapes from data). */
export function oneLine(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\r\n\t]+/g, ' ').replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
}

export function truncate(s: string, width: number): string {
  if (width <= 0) return '';
  const chars = [...s];
  return chars.length <= width ? s : chars.slice(0, Math.max(0, width - 1)).join('') + '…';
}

export function padEndVisible(s: string, width: number): string {
  const n = [...s].length;
  return n >= width ? s : s + ' '.repeat(width - n);
}
