// PostgreSQL text and jsonb cannot hold U+0000 or lone UTF-16 surrogates (DESIGN 3.1): every string,
// JSON key and value is passed through clean() before it is written, and what was removed is counted.

/** Accumulates the number of UTF-16 code units stripped while normalizing one message. */
export interface StripCounter {
  stripped: number;
}

// Matches NUL or any surrogate: strings without one (nearly all) take the fast path untouched.
const SUSPECT = /[\u0000\ud800-\udfff]/;

/** Removes NUL and lone surrogates (well-formed surrogate pairs are kept); adds the removed count. */
export function clean(s: string, counter: StripCounter): string {
  if (!SUSPECT.test(s)) return s;
  let out = '';
  let from = 0;
  let removed = 0;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a well-formed pair
        continue;
      }
    } else if (c !== 0 && (c < 0xdc00 || c > 0xdfff)) {
      continue;
    }
    // NUL, a lone high surrogate, or a lone low surrogate: drop it.
    out += s.slice(from, i);
    from = i + 1;
    removed++;
  }
  if (removed === 0) return s;
  counter.stripped += removed;
  return out + s.slice(from);
}

/** A counter for callers that must clean a string again without counting it twice. */
export function uncounted(): StripCounter {
  return { stripped: 0 };
}
