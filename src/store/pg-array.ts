// PostgreSQL array literals for the per-batch array parameters of the hot statements (the registry's
// read and upsert: fifteen arrays of about a thousand agents per batch).
//
// node-postgres turns a JS array parameter into the same text itself (pg/lib/utils.js arrayString):
// every element through two global regex replaces and the whole literal grown one `+=` at a time. This
// writes the identical text (test/unit/store-pg-array.test.ts compares it with pg's own on generated
// strings) and escapes only the elements that hold a `"` or a `\`, which agent ids, teams, statuses,
// times and numbers never do (the meta JSON does).

const NEEDS_ESCAPE = /["\\]/;
const BACKSLASH = /\\/g;
const QUOTE = /"/g;

/** The text node-postgres would send for this array of strings (null and undefined: NULL). */
export function pgTextArray(values: readonly (string | null | undefined)[]): string {
  // Grown with += as pg does (V8 joins the pieces once, when the text is written): measured twice as
  // fast as pg's on the registry's arrays, where collecting the elements and join(',') was slower.
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const v = values[i];
    out += v == null ? 'NULL' : NEEDS_ESCAPE.test(v) ? '"' + v.replace(BACKSLASH, '\\\\').replace(QUOTE, '\\"') + '"' : '"' + v + '"';
  }
  return out + '}';
}
