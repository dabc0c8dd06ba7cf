// V8 represents a string built with `+` or a template literal as a tree of "cons" nodes, one per piece,
// until something needs its characters in one run. A rendered context (dozens of pieces) held as such a
// tree costs several kilobytes instead of its length, and ingest holds each row across a commit, so
// every young-generation GC copies those trees: measured, 3.1 KB retained per normalized message
// (test/unit/domain-retained.test.ts).
//
// Reading one character makes V8 flatten the string in place (the tree is replaced by one sequential
// string and its nodes become garbage while still young). The module-level sink keeps the read from
// being optimized away.

let sink = 0;

/** The same string, flattened in place, for strings built from many pieces that will be held for a while. */
export function flat(s: string): string {
  sink ^= s.charCodeAt(0) | 0;
  return s;
}
