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
  return (subject) => {
    if (exact.has(subject)) return true;
    const tokens = subject.split('.');
    for (const pattern of wild) if (matchTokens(pattern, tokens)) return true;
    return false;
  };
}

function matchTokens(pattern: readonly string[], tokens: readonly string[]): boolean {
  const n = pattern.length;
  for (let i = 0; i < n; i++) {
    const p = pattern[i];
    if (p === '>') return i === n - 1 && tokens.length > i;
    const t = tokens[i];
    if (t === undefined || t === '') return false;
    if (p !== '*' && p !== t) return false;
  }
  return tokens.length === n;
}
