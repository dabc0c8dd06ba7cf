// NATS subject patterns (DESIGN 3.1 LOG_ENTRY_SUBJECTS, 4 NATS_EXCLUDE_SUBJECTS), matched per message.
// Semantics of NATS: tokens are separated by '.'; a token that is exactly '*' matches one token, a final
// token '>' matches one or more trailing tokens; anything else matches literally ('a*' is a literal).

export type SubjectMatcher = (subject: string) => boolean;

export function compileSubjectMatcher(patterns: readonly string[]): SubjectMatcher {
  const exact = new Set<string>();
  const wild: (readonly string[])[] = [];
  for (const raw of patterns) {
    const p = raw.trim();
    if (p === '') continue;
    const tokens = p.split('.');
    if (tokens.some((t) => t === '*' || t === '>')) wild.push(tokens);
    else exact.add(p);
  }
  if (wild.length === 0) {
    if (exact.size === 0) return () => false;
    return (subject) => exact.has(subject);
  }
  if (exact.size === 0) {
    // Only wildcards (both defaults): no hash of each subject for an empty set.
    return (subject) => {
      for (const pattern of wild) if (matchTokens(pattern, subject)) return true;
      return false;
    };
  }
  return (subject) => {
    if (exact.has(subject)) return true;
    for (const pattern of wild) if (matchTokens(pattern, subject)) return true;
    return false;
  };
}

/** Walks the subject's tokens in place (matched per message: no split, no substrings). */
function matchTokens(pattern: readonly string[], subject: string): boolean {
  const n = pattern.length;
  let start = 0; // start of the next token; past the end once the last token was taken
  for (let i = 0; i < n; i++) {
    if (start > subject.length) return false; // fewer tokens than the pattern
    const p = pattern[i]!;
    if (p === '>') return i === n - 1; // at least one token remains
    let end = subject.indexOf('.', start);
    if (end < 0) end = subject.length;
    if (end === start) return false; // an empty token never matches
    if (p !== '*' && (end - start !== p.length || !subject.startsWith(p, start))) return false;
    start = end + 1;
  }
  return start > subject.length; // no token left over
}
