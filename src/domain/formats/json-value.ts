// JSON payloads as ingest reads them: strict UTF-8, parsed, sanitized (NUL and lone surrogates stripped
// and counted, DESIGN 3.1), nesting bounded before any recursive code sees the value; and the short
// one-line rendering a row's message uses for JSON it has no better text for (DESIGN 3.1.1).

import type { JsonValue } from '@bufbuild/protobuf';

import { MAX_STRUCT_DEPTH, TooDeepError } from './proto-json.js';
import { clean } from '../sanitize.js';
import type { StripCounter } from '../sanitize.js';

export type { JsonValue };
export type JsonObject = { [k: string]: JsonValue };

// proto3 strings must be valid UTF-8, and so must JSON: decode strictly (the default decoder would
// substitute U+FFFD), which also turns most random bytes into an error instead of plausible text.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The bytes as a string, or null when they are not valid UTF-8. */
export function utf8OrNull(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

export const decodeUtf8Strict = (bytes: Uint8Array): string => strictUtf8.decode(bytes);

/**
 * A proto3 JSON MsgEnvelope nests envelope -> payload -> data -> 64 Struct levels; the JSON documents
 * of DESIGN 3.1.1 may nest 64 levels. Anything deeper than this is too_deep whatever it turns out to be,
 * and the recursion below stops here.
 */
export const JSON_MAX_NESTING = MAX_STRUCT_DEPTH + 8;

export interface ParsedJson {
  /** Sanitized copy of the parsed value. */
  readonly value: JsonValue;
  /** Nesting depth: a scalar is 0, `{}` or `[]` is 1, `{"a":{}}` is 2. */
  readonly depth: number;
  /** The payload text, when nothing was stripped (then it is exactly what `value` was parsed from). */
  readonly text: string | null;
}

export type JsonParse = { ok: true; json: ParsedJson } | { ok: false; reason: 'invalid_json' | 'too_deep'; detail: string };

/** Strict UTF-8, JSON.parse, then a sanitized copy with its depth (too_deep past JSON_MAX_NESTING). */
export function parseJsonPayload(data: Uint8Array, counter: StripCounter): JsonParse {
  const text = utf8OrNull(data);
  if (text === null) return { ok: false, reason: 'invalid_json', detail: 'not JSON: not valid UTF-8' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: 'invalid_json', detail: `not JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  // JSON is the one form that can carry lone surrogates (\ud800 escapes; UTF-8 bytes cannot): strip
  // them (and NULs) here, counted, so such a message is stored sanitized rather than dead-lettered.
  const before = counter.stripped;
  const walk = { depth: 0 };
  try {
    const cleaned = cleanJson(value as JsonValue, 1, counter, walk);
    return { ok: true, json: { value: cleaned, depth: walk.depth, text: counter.stripped === before ? text : null } };
  } catch (err) {
    if (err instanceof TooDeepError) return { ok: false, reason: 'too_deep', detail: `JSON nested deeper than ${JSON_MAX_NESTING} levels` };
    throw err;
  }
}

/** Sanitized copy of parsed JSON; nesting is bounded here, before any recursive decoder sees it. */
function cleanJson(v: JsonValue, depth: number, counter: StripCounter, walk: { depth: number }): JsonValue {
  if (typeof v === 'string') return clean(v, counter);
  if (v === null || typeof v !== 'object') return v;
  if (depth > JSON_MAX_NESTING) throw new TooDeepError('JSON');
  if (depth > walk.depth) walk.depth = depth;
  if (Array.isArray(v)) return v.map((x) => cleanJson(x, depth + 1, counter, walk));
  const out: JsonObject = {};
  for (const key of Object.keys(v)) {
    const k = clean(key, counter);
    const value = cleanJson(v[key] as JsonValue, depth + 1, counter, walk);
    // JSON.parse makes "__proto__" an own key; a plain assignment would set the prototype instead.
    if (k === '__proto__') Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
    else out[k] = value;
  }
  return out;
}

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON text of a (sanitized) parsed value: the original text when nothing was stripped, else re-serialized. */
export function jsonText(json: ParsedJson): string {
  return json.text ?? JSON.stringify(json.value);
}

/** Longest message rendered from JSON (the row keeps the whole value in its context). */
export const SHORT_RENDERING_CHARS = 240;

/**
 * Compact JSON of `v`, cut after about `max` characters with "…" — without rendering the rest of a
 * large value first.
 */
export function shortRendering(v: JsonValue, max = SHORT_RENDERING_CHARS): string {
  const out = { s: '', full: false };
  render(v, out, max);
  if (!out.full) return out.s;
  // Cut on a code point boundary.
  let end = max;
  const c = out.s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return out.s.slice(0, end) + '…';
}

function render(v: JsonValue, out: { s: string; full: boolean }, max: number): void {
  if (out.full) return;
  if (v === null || typeof v !== 'object') {
    // A long string: only the part that can still show.
    const text = typeof v === 'string' && v.length > max ? JSON.stringify(v.slice(0, max)) : JSON.stringify(v);
    out.s += text;
  } else if (Array.isArray(v)) {
    out.s += '[';
    for (let i = 0; i < v.length && !out.full; i++) {
      if (i > 0) out.s += ',';
      render(v[i]!, out, max);
    }
    out.s += ']';
  } else {
    out.s += '{';
    let first = true;
    for (const key of Object.keys(v)) {
      if (out.full) break;
      out.s += (first ? '' : ',') + JSON.stringify(key.length > max ? key.slice(0, max) : key) + ':';
      first = false;
      render(v[key]!, out, max);
    }
    out.s += '}';
  }
  if (out.s.length > max) out.full = true;
}
