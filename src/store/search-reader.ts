// Reads for SearchLogs: full text over log_entries.search (migration 006: a generated tsvector of the
// message, 'simple' configuration, GIN index idx_logs_search).
//
// The query text is handed to websearch_to_tsquery('simple', $n) inline in every statement: the
// function is immutable, so node-postgres' unnamed statements (planned with their values) fold it to
// a constant and the planner estimates the match from the column's statistics. With few matches it
// reads the GIN index and sorts them; with many it walks the (timestamp, seq) index newest first and
// stops after one page. The page is chosen first (inner query), and only its rows are ranked and get
// a snippet (ts_headline parses the text again: it is the expensive part, and a page is small).
//
// A phrase, and a filter on a column of few values, are where the planner goes wrong (walkFirst): such a
// NEWEST page walks the newest rows itself first, in bounded steps (SEARCH_WALK_SQL, nextWalk), and
// leaves the rest to the planner only when the matches it saw are too sparse for walking to pay. With a
// level or intent filter and a word of few matches (the planner's estimate, matchesFirst), the page
// reads the word's matches through GIN alone and tests the level on each instead (SEARCH_MATCHES_SQL).
// The page is the same either way.
//
// Keysets: NEWEST pages are QueryLogs' (timestamp, seq) descending, with the same partition pruning by
// `timestamp <= after`. RELEVANCE pages go by (rank, timestamp, seq) descending; the rank is a real
// computed the same way on every page, carried in the token as PostgreSQL prints it (exact).
import type pg from 'pg';
import { InvalidArgumentError } from '../errors.js';
import { usToIso } from '../domain/time.js';
import { cancellableQuery, filterParams, NO_FILTER, toRow, type LogRowFilter, type PoolHolder, type RawRow, type StoredLogRow } from './log-reader.js';
import { sqlstateOf } from './errors.js';

export type SearchOrder = 'newest' | 'relevance';

export interface SearchPageOptions {
  readonly query: string;
  readonly order: SearchOrder;
  readonly sinceUs: number | null;
  readonly untilUs: number | null;
  readonly after: { readonly timestampUs: number; readonly seq: number } | null;
  /** RELEVANCE: the rank of the row `after` names, as text. */
  readonly afterRank: string | null;
  /** RELEVANCE pages after the first: the oldest match the first page ranked (its page token carries it). */
  readonly rankFrom?: { readonly timestampUs: number; readonly seq: number } | null;
  /** RELEVANCE pages after the first: the first page's window, matches with seq >= this (null: the whole log). */
  readonly rankWindow?: number | null;
  /** The tsquery as PostgreSQL prints it (SearchReader.parseQuery); NEWEST walks first for a phrase (walkFirst). */
  readonly parsed?: string;
  readonly limit: number;
}

export interface SearchPage {
  readonly rows: SearchRow[];
  /** RELEVANCE's first page: the oldest match it ranked (null: no match, or not a first page). */
  readonly rankFrom: { readonly timestampUs: number; readonly seq: number } | null;
  /** RELEVANCE's first page: the window it ranked in, matches with seq >= this (null: the whole log, or not a first page). */
  readonly rankWindow: number | null;
}

export interface SearchRow {
  readonly row: StoredLogRow;
  /** ts_rank as PostgreSQL prints the real (exact; page tokens carry it). */
  readonly rankText: string;
  readonly snippet: string;
}

/** Characters of a snippet, at most (ts_headline's words can be long: a URL, a base64 blob). */
export const MAX_SNIPPET_CHARS = 300;
/** Characters of the text ts_headline reads (it parses all of it, for every hit of a page). */
const HEADLINE_INPUT_CHARS = 65_536;

export const HIGHLIGHT_START = '\u00ab';
export const HIGHLIGHT_STOP = '\u00bb';

const TSQ = `websearch_to_tsquery('simple'::regconfig, $6::text)`;
// Normalization 1: the rank divided by 1 + log(document length), so a long message does not win by size.
const RANK = (col: string): string => `ts_rank(${col}, ${TSQ}, 1)`;

// $1..$5 the filter (log-reader's FILTER_SQL, on alias l), $6 the query, $7 since, $8 until, $9 after
// timestamp, $10 after seq, $11 limit, $12 after rank. `levelIndexable` false: the level and intent are
// written as expressions no index matches (`level || ''`), so they filter the rows the word's matches
// give and never choose them (SEARCH_MATCHES_SQL, matchesFirst).
const filterL = (levelIndexable: boolean): string => {
  const col = (c: string): string => (levelIndexable ? `l.${c}` : `(l.${c} || '')`);
  return `($1::text[] IS NULL OR l.source = ANY($1::text[]))
  AND ($2::text[] IS NULL OR l.team_id = ANY($2::text[]))
  AND ($3::text[] IS NULL OR ${col('level')} = ANY($3::text[]))
  AND ($4::text[] IS NULL OR ${col('intent')} = ANY($4::text[]))
  AND ($5::text IS NULL OR l.trace_id = $5::text)
  AND l.search @@ ${TSQ}
  AND ($7::timestamptz IS NULL OR l."timestamp" >= $7::timestamptz)
  AND ($8::timestamptz IS NULL OR l."timestamp" < $8::timestamptz)`;
};
const FILTER_L = filterL(true);

const INNER_COLUMNS = 'l.id, l.seq, l.trace_id, l."timestamp", l.level, l.source, l.intent, l.message, l.context, l.team_id, l.subject, l.received_at, l.search';

const HEADLINE_OPTIONS = `'MaxWords=18, MinWords=6, ShortWord=1, MaxFragments=2, FragmentDelimiter=" … ", StartSel=${HIGHLIGHT_START}, StopSel=${HIGHLIGHT_STOP}'`;

// The snippet: ts_headline over the message (what the vector indexes), its first 64 Ki characters.
const OUTER = `SELECT x.id::text AS id, x.seq::text AS seq_text, x.trace_id,
    (extract(epoch FROM x."timestamp") * 1000000)::bigint::text AS ts_us, x.level, x.source, x.intent,
    coalesce(x.message, '') AS message, x.context::text AS context, x.team_id, x.subject,
    (extract(epoch FROM x.received_at) * 1000000)::bigint::text AS received_us,
    x.rank::text AS rank_text,
    ts_headline('simple'::regconfig, left(coalesce(x.message, ''), ${HEADLINE_INPUT_CHARS}), ${TSQ}, ${HEADLINE_OPTIONS}) AS snippet`;

const newestSql = (filter: string): string => `${OUTER}
  FROM (
    SELECT ${INNER_COLUMNS}, ${RANK('l.search')} AS rank
      FROM (
        SELECT ${INNER_COLUMNS} FROM log_entries l
         WHERE ${filter}
           AND ($9::timestamptz IS NULL OR (l."timestamp" <= $9::timestamptz AND (l."timestamp", l.seq) < ($9::timestamptz, $10::bigint)))
         ORDER BY l."timestamp" DESC, l.seq DESC LIMIT $11
      ) l
  ) x
  ORDER BY x."timestamp" DESC, x.seq DESC`;

export const SEARCH_NEWEST_SQL = newestSql(FILTER_L);

/**
 * NEWEST with a level or intent filter and a query of few matches (matchesFirst): the same page, the
 * level and intent tested on the word's matches instead of ANDed with their indexes' bitmaps. $12, when
 * not NULL, bounds the rows to those with an event time at or after that of the first row from seq $12
 * on (the newest rows, by way of migration 010's BRIN index): the page found there is the page of the
 * whole log when it is full, as every row left out is older than every row in it.
 */
export const SEARCH_MATCHES_SQL = newestSql(`${filterL(false)}
  AND ($12::bigint IS NULL OR l."timestamp" >= (SELECT w."timestamp" FROM log_entries w WHERE w.seq >= $12::bigint ORDER BY w.seq LIMIT 1))`);

/** The planner's estimate of the query's matches in the whole log ($1 the query text). */
export const SEARCH_ESTIMATE_SQL = `EXPLAIN (FORMAT JSON) SELECT 1 FROM log_entries l WHERE l.search @@ websearch_to_tsquery('simple'::regconfig, $1::text)`;

// NEWEST, first: a walk of the (timestamp, seq) index newest first over at most $12 rows of the range
// after the keyset position, the filters and the words tested on each row (not used to choose the
// rows). Rows stored in time order share heap pages, so a walk reads a heap page per ~10 rows, where
// the GIN index reads one per match. The statement returns the first $11 matches (hit true), then,
// when the range holds $12 rows or more, the $12-th (hit false, n = $12): where a next walk or the
// index continues from. (The walk streams: materializing it to find that row took 3 times as long.)
const WALK_RANGE = `($7::timestamptz IS NULL OR l."timestamp" >= $7::timestamptz)
           AND ($8::timestamptz IS NULL OR l."timestamp" < $8::timestamptz)
           AND ($9::timestamptz IS NULL OR (l."timestamp" <= $9::timestamptz AND (l."timestamp", l.seq) < ($9::timestamptz, $10::bigint)))`;
export const SEARCH_WALK_SQL = `SELECT * FROM (
    ${OUTER}, true AS hit, 0 AS n
      FROM (
        SELECT ${INNER_COLUMNS}, ${RANK('l.search')} AS rank
          FROM (
            SELECT l.* FROM log_entries l
             WHERE ${WALK_RANGE}
             ORDER BY l."timestamp" DESC, l.seq DESC LIMIT $12
          ) l
         WHERE ${FILTER_L}
         ORDER BY l."timestamp" DESC, l.seq DESC LIMIT $11
      ) x
     ORDER BY x."timestamp" DESC, x.seq DESC
  ) h
  UNION ALL
  SELECT NULL, e.seq::text, NULL, (extract(epoch FROM e."timestamp") * 1000000)::bigint::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         false, $12::int
    FROM (
      SELECT l."timestamp", l.seq FROM log_entries l
       WHERE ${WALK_RANGE}
       ORDER BY l."timestamp" DESC, l.seq DESC OFFSET $12::int - 1 LIMIT 1
    ) e`;

// RELEVANCE ranks the newest matches, not every match (a word in a third of 1,000,000 rows took 1.8 s
// to rank): the newest RANK_MATCHES at most, and for a phrase those in a window of the newest rows by
// commit order (seq >= $16, through the BRIN index of migration 009) that holds at least
// RANK_MIN_MATCHES of them. Ranking reads each match's row (its tsvector), and a phrase's matches can
// only be told from the heap: without the window the planner read every match of the log (a phrase of
// 15,249 matches: 14,133 heap pages, 100-700 ms cold) to keep the newest. SearchReader.relevance sizes
// and widens the window ($16 NULL: the whole log). The first page takes the matches (m: newest first,
// at most $15), ranks them and returns its page, then one row (hit false) with the oldest match ranked
// and how many were (n). The page token carries that row ($13, $14) and the window ($16), and later
// pages rank every match of the window from it on (no count: matches committed since, newer, join the
// ranking as before, and none of the first page's set leaves it). Ranked rows are narrow (id, time,
// seq, rank); only the page's rows are read whole.
export const SEARCH_RELEVANCE_SQL = `WITH m AS MATERIALIZED (
    SELECT l.id, l."timestamp", l.seq, ${RANK('l.search')} AS rank
      FROM log_entries l
     WHERE ${FILTER_L}
       AND ($16::bigint IS NULL OR l.seq >= $16::bigint)
       AND ($13::timestamptz IS NULL OR (l."timestamp" >= $13::timestamptz AND (l."timestamp", l.seq) >= ($13::timestamptz, $14::bigint)))
     ORDER BY l."timestamp" DESC, l.seq DESC
     LIMIT CASE WHEN $13::timestamptz IS NULL THEN $15::bigint END
  )
  SELECT * FROM (
    ${OUTER}, true AS hit, 0 AS n
      FROM (
        SELECT ${INNER_COLUMNS}, p.rank
          FROM (
            SELECT m.id, m."timestamp", m.seq, m.rank FROM m
             WHERE ($9::timestamptz IS NULL OR (m.rank, m."timestamp", m.seq) < ($12::real, $9::timestamptz, $10::bigint))
             ORDER BY m.rank DESC, m."timestamp" DESC, m.seq DESC LIMIT $11
          ) p
          JOIN log_entries l ON l.id = p.id AND l."timestamp" = p."timestamp"
      ) x
     ORDER BY x.rank DESC, x."timestamp" DESC, x.seq DESC
  ) h
  UNION ALL
  SELECT NULL, e.seq::text, NULL, (extract(epoch FROM e."timestamp") * 1000000)::bigint::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         false, (SELECT count(*) FROM m)::int
    FROM (SELECT m."timestamp", m.seq FROM m ORDER BY m."timestamp", m.seq LIMIT 1) e
   WHERE $13::timestamptz IS NULL`;

/** The planner's estimate of the rows of the log. */
export const SEARCH_ROWS_ESTIMATE_SQL = `EXPLAIN (FORMAT JSON) SELECT 1 FROM log_entries`;

/** The newest seq in the log (NULL: the log is empty); one index probe a partition. */
export const SEARCH_HEAD_SQL = `SELECT max(seq)::text AS head FROM log_entries`;

/** The smallest first window, in rows of the log (firstWindowRows: RELEVANCE of a phrase, NEWEST through a word's matches). */
export const RANK_WINDOW_ROWS = 16_384;
/** RELEVANCE: a window holding fewer matches than this is widened (unless it is the whole log). */
export const RANK_MIN_MATCHES = 1_000;

/** RELEVANCE: the newest matches one ranking orders (the first page's; later pages keep its set). */
export const RANK_MATCHES = 10_000;

export function searchParams(filter: LogRowFilter, o: SearchPageOptions, rankMatches = RANK_MATCHES): unknown[] {
  const ts = (us: number | null | undefined): string | null => (us === null || us === undefined ? null : usToIso(us));
  return [
    ...filterParams(filter), o.query, ts(o.sinceUs), ts(o.untilUs), ts(o.after?.timestampUs), o.after?.seq ?? null, o.limit, o.afterRank,
    ts(o.rankFrom?.timestampUs), o.rankFrom?.seq ?? null, rankMatches, o.rankWindow ?? null,
  ];
}

type SearchRaw = RawRow & { rank_text: string; snippet: string | null };

const toSearchRow = (r: SearchRaw): SearchRow => ({ row: toRow(r), rankText: r.rank_text, snippet: tidySnippet(r.snippet ?? '') });

/** NEWEST: rows the first walk examines. */
export const WALK_FIRST_ROWS = 1024;
/** NEWEST: rows the walks of one page examine at most, together. */
export const WALK_MAX_ROWS = 32_768;

/**
 * Whether a NEWEST page walks first: for a phrase, or with a filter on the level or the intent. The
 * planner estimates one word well (the column's most common elements) but takes what it combines as
 * independent. The words of a phrase, adjacent by definition, never are: "context window" was estimated
 * at 529 rows and matched 12,969, so the planner read every match through the GIN index (a heap page
 * each, and the positions checked) and sorted them, where the newest 101 were within 8,000 rows of the
 * time index. A level or an intent has a few values, each on a large share of the rows, and a word's
 * matches mostly share one ("denied" is an ERROR): the planner ANDed the word's bitmap with the level
 * index's (84,000 entries for ERROR) to save heap reads that the correlation made illusory (a word of
 * few matches reads them instead: matchesFirst, asked before the walk). A team, an agent or a trace id
 * narrow far more, and their indexes are the better way in: left to the planner, as are words ANDed
 * (walking them measured no better). bench/README.md, issue 15 follow-up and read latency.
 */
export function walkFirst(parsed: string | undefined, filter: LogRowFilter = NO_FILTER): boolean {
  if (filter.traceId !== '') return false;
  if (filter.levels.length > 0 || filter.intents.length > 0) return true;
  return isPhrase(parsed);
}

const isPhrase = (parsed: string | undefined): boolean => parsed !== undefined && /<(->|\d+>)/.test(parsed);

/** NEWEST with a level or intent filter: at most this many estimated matches read through GIN alone. */
export const MATCHES_FIRST_MAX = 10_000;

/**
 * Whether a NEWEST page with a level or intent filter asks for the planner's estimate of the query's
 * matches first, to read them through the GIN index alone (SEARCH_MATCHES_SQL) when there are at most
 * MATCHES_FIRST_MAX. An error word's matches are its level's ("denied", "timeout": 4,600-4,900 rows of
 * 1,000,000 in the bench, every one ERROR): the walk (walkFirst) saw about 5 matches in 1,000 rows,
 * walked 25,000 more, and gave up to the planner, which ANDed them with the level index's 84,000 ERROR
 * entries (28-132 ms); reading the word's 4,900 matches and testing the level on each is 8-35 ms. A word
 * in many rows keeps the walk and the level index (FATAL with a common word: the index is the way in).
 * Words only (a phrase's estimate is far too low: walkFirst), and not for one trace (its own index).
 */
export function matchesFirst(parsed: string | undefined, filter: LogRowFilter): boolean {
  return filter.traceId === '' && (filter.levels.length > 0 || filter.intents.length > 0) && !isPhrase(parsed);
}

/**
 * The next walk's budget, or null to leave the rest to the index: the rows still needed at the
 * density of matches seen so far (hits / walked), with a quarter more, when that fits in what is left
 * of WALK_MAX_ROWS (no match seen: null).
 */
export function nextWalk(walked: number, hits: number, limit: number): number | null {
  if (hits === 0) return null;
  const need = Math.ceil(((limit - hits) * walked * 1.25) / hits);
  const left = WALK_MAX_ROWS - walked;
  return need <= left ? Math.max(need, Math.min(WALK_FIRST_ROWS, left)) : null;
}

/**
 * The lexemes a tsquery as PostgreSQL prints it asks for ('a' <-> 'b' & !'c': a, b; not the excluded c),
 * each once. The words of an excluded group (!( 'x' <-> 'y' )) are kept: RELEVANCE takes the smallest
 * estimate of them, so an extra word can only make its first window larger, never miss matches.
 */
export function lexemesOf(parsed: string): string[] {
  const out = new Set<string>();
  for (const m of parsed.matchAll(/(!\s*)?'((?:[^']|'')*)'/g)) if (m[1] === undefined) out.add(m[2]!.replace(/''/g, "'"));
  return [...out];
}

/**
 * A first window of the newest rows (RELEVANCE of a phrase; NEWEST through a word's matches), in rows of
 * the log (null: the whole log): for `matches` estimated among `rows`, the rows that hold `min` of them
 * with a quarter more, at least `least`. A query estimated at twice `min` or fewer asks in the whole log
 * (one ask reads its matches either way).
 */
export function firstWindowRows(matches: number, rows: number, min: number, least: number): number | null {
  if (!(matches > 2 * min) || !(rows > 0)) return null;
  return Math.max(least, Math.ceil((rows * min * 1.25) / matches));
}

/** The next window after one of `span` rows held `matches` (fewer than `min`): at their density, a quarter more, at least twice the rows; 16 times when it held none. */
export function widenWindowRows(span: number, matches: number, min: number): number {
  return matches === 0 ? span * 16 : Math.max(span * 2, Math.ceil((min * span * 1.25) / matches));
}

/** Whitespace folded, at most MAX_SNIPPET_CHARS characters (cut at a code point, marked with …). */
export function tidySnippet(s: string): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  if (flat.length <= MAX_SNIPPET_CHARS) return flat;
  // Characters are code points: a cut never splits a surrogate pair.
  const chars = Array.from(flat.slice(0, 2 * MAX_SNIPPET_CHARS));
  if (chars.length <= MAX_SNIPPET_CHARS && flat.length <= 2 * MAX_SNIPPET_CHARS) return flat;
  let cut = chars.slice(0, MAX_SNIPPET_CHARS).join('');
  // A highlight opened and not closed in the cut part is closed, so a client's markup stays balanced.
  if (cut.lastIndexOf(HIGHLIGHT_START) > cut.lastIndexOf(HIGHLIGHT_STOP)) cut += HIGHLIGHT_STOP;
  return `${cut}…`;
}

// SQLSTATEs that only the query text can cause here (the filter is validated before): a query
// PostgreSQL cannot use is the client's mistake, never INTERNAL.
const QUERY_SQLSTATE = /^(22|54|42601)/;

export class SearchReader {
  private rowsEstimate: { rows: number; at: number } | null = null;

  /**
   * The statements the last page took: NEWEST 'walk <rows>', 'index', 'matches from <seq>' for each
   * window asked, 'matches' (the whole log); RELEVANCE 'rank from <seq>' for each window asked, 'rank all'
   * (the whole log). For tests and EXPLAIN work.
   */
  lastPlan: string[] = [];

  /**
   * `rankMatches`: RANK_MATCHES, `matchesFirstMax`: MATCHES_FIRST_MAX, `rankWindowRows`: RANK_WINDOW_ROWS,
   * `rankMinMatches`: RANK_MIN_MATCHES (tests take smaller ones).
   */
  constructor(
    private readonly db: PoolHolder,
    private readonly rankMatches = RANK_MATCHES,
    private readonly matchesFirstMax = MATCHES_FIRST_MAX,
    private readonly rankWindowRows = RANK_WINDOW_ROWS,
    private readonly rankMinMatches = RANK_MIN_MATCHES,
  ) {}

  /**
   * The parsed query: `terms` is its number of nodes (0: no word PostgreSQL can search for), `text`
   * the tsquery as PostgreSQL prints it ('a' & 'b', 'a' <-> 'b', 'a' | 'b', !'a').
   */
  async parseQuery(query: string, signal?: AbortSignal): Promise<{ terms: number; text: string }> {
    const rows = await this.run<{ n: number; t: string }>(
      `SELECT numnode(q)::int AS n, q::text AS t FROM websearch_to_tsquery('simple'::regconfig, $1::text) q`,
      [query],
      signal,
      'search query check',
    );
    return { terms: rows[0]?.n ?? 0, text: rows[0]?.t ?? '' };
  }

  async page(filter: LogRowFilter, o: SearchPageOptions, signal?: AbortSignal): Promise<SearchPage> {
    if (o.order === 'relevance') return this.relevance(filter, o, signal);
    return { rows: await this.newest(filter, o, signal), rankFrom: null, rankWindow: null };
  }

  /**
   * RELEVANCE (SEARCH_RELEVANCE_SQL). A later page ranks in its first page's window. A first page of
   * words ranks in the whole log (the planner bounds it: few matches are read exactly through GIN, many
   * by a walk of the time index that stops at the newest RANK_MATCHES). A first page of a phrase, whose
   * matches the planner can only find by reading every candidate row and estimates far too low, asks in
   * a window of the newest rows sized from the estimate of its rarest word (firstWindowRows; a phrase of
   * few matches is ranked in the whole log at once), and while the window holds fewer than
   * `rankMinMatches` matches and is not the whole log, asks again in one large enough at the density of
   * matches seen (widenWindowRows). Each ask reads only its window's candidates.
   */
  private async relevance(filter: LogRowFilter, o: SearchPageOptions, signal?: AbortSignal): Promise<SearchPage> {
    const plan: string[] = (this.lastPlan = []);
    const ask = async (window: number | null): Promise<SearchPage & { matches: number }> => {
      plan.push(window === null ? 'rank all' : `rank from ${window}`);
      const raw = await this.run<SearchRaw & { hit: boolean; n: number }>(SEARCH_RELEVANCE_SQL, searchParams(filter, { ...o, rankWindow: window }, this.rankMatches), signal, 'log search');
      const rows: SearchRow[] = [];
      let rankFrom: SearchPage['rankFrom'] = null;
      let matches = 0;
      for (const r of raw) {
        if (r.hit) rows.push(toSearchRow(r));
        else {
          rankFrom = { timestampUs: Number(r.ts_us), seq: Number(r.seq_text) };
          matches = r.n;
        }
      }
      return { rows, rankFrom, rankWindow: window, matches };
    };
    if (o.rankFrom) {
      const { rows } = await ask(o.rankWindow ?? null);
      return { rows, rankFrom: null, rankWindow: null };
    }
    // Words: the planner reads a word's matches exactly through GIN when they are few and walks the time
    // index for the newest when they are many; a window would only add lossy pages to recheck.
    if (!isPhrase(o.parsed)) {
      const got = await ask(null);
      return { rows: got.rows, rankFrom: got.rankFrom, rankWindow: null };
    }
    let matches = Number.POSITIVE_INFINITY;
    for (const w of lexemesOf(o.parsed!).slice(0, 4)) matches = Math.min(matches, await this.estimate(w, signal));
    const span = firstWindowRows(matches, await this.estimatedRows(signal), this.rankMinMatches, this.rankWindowRows);
    const got = await this.inWindows(span, this.rankMinMatches, ask, (g) => g.matches, signal);
    return { rows: got.rows, rankFrom: got.rankFrom, rankWindow: got.rankWindow };
  }

  /**
   * NEWEST through the word's matches (SEARCH_MATCHES_SQL). A first page (no keyset position, no `until`)
   * asks in the newest rows first: a window of them that holds the page at the word's estimated density
   * with a quarter more (firstWindowRows), widened at the density seen while it comes back short
   * (widenWindowRows), up to the whole log. A full page from a window is the page; so is the whole log's.
   */
  private async matchesNewest(filter: LogRowFilter, o: SearchPageOptions, estimate: number, signal: AbortSignal | undefined): Promise<SearchRow[]> {
    const plan = this.lastPlan;
    const ask = async (from: number | null): Promise<SearchRow[]> => {
      plan.push(from === null ? 'matches' : `matches from ${from}`);
      return (await this.run<SearchRaw>(SEARCH_MATCHES_SQL, [...searchParams(filter, o).slice(0, 11), from], signal, 'log search')).map(toSearchRow);
    };
    const span = o.after === null && o.untilUs === null ? firstWindowRows(estimate, await this.estimatedRows(signal), o.limit, this.rankWindowRows) : null;
    return this.inWindows(span, o.limit, ask, (rows) => rows.length, signal);
  }

  /**
   * Asks in a window of the newest `span` rows of the log (from seq head - span + 1; null, or a window
   * reaching seq 1: the whole log), widened (widenWindowRows) while what it finds holds fewer than `min`,
   * until it does or the window is the whole log. Returns the last answer.
   */
  private async inWindows<T>(span: number | null, min: number, ask: (from: number | null) => Promise<T>, found: (got: T) => number, signal: AbortSignal | undefined): Promise<T> {
    const head = span === null ? 0 : Number((await this.run<{ head: string | null }>(SEARCH_HEAD_SQL, [], signal, 'search head'))[0]?.head ?? 0);
    for (;;) {
      const from = span !== null && head - span + 1 > 1 ? head - span + 1 : null;
      const got = await ask(from);
      const n = found(got);
      if (from === null || n >= min) return got;
      span = widenWindowRows(span!, n, min);
    }
  }

  /** The planner's estimate of log_entries' rows, kept for a minute (the window's size is a fraction of it). */
  private async estimatedRows(signal: AbortSignal | undefined): Promise<number> {
    const now = Date.now();
    if (this.rowsEstimate === null || now - this.rowsEstimate.at > 60_000) {
      const rows = await this.run<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(SEARCH_ROWS_ESTIMATE_SQL, [], signal, 'search estimate');
      this.rowsEstimate = { rows: rows[0]?.['QUERY PLAN'][0].Plan['Plan Rows'] ?? 0, at: now };
    }
    return this.rowsEstimate.rows;
  }

  private async newest(filter: LogRowFilter, o: SearchPageOptions, signal?: AbortSignal): Promise<SearchRow[]> {
    const hits: SearchRow[] = [];
    let after = o.after;
    let walked = 0;
    let budget: number | null = walkFirst(o.parsed, filter) ? WALK_FIRST_ROWS : null;
    const plan: string[] = (this.lastPlan = []);
    if (matchesFirst(o.parsed, filter)) {
      const estimate = await this.estimate(o.query, signal);
      if (estimate <= this.matchesFirstMax) return this.matchesNewest(filter, o, estimate, signal);
    }
    while (budget !== null) {
      plan.push(`walk ${budget}`);
      const params = searchParams(filter, { ...o, after, limit: o.limit - hits.length }).slice(0, 11);
      const raw = await this.run<SearchRaw & { hit: boolean; n: number }>(SEARCH_WALK_SQL, [...params, budget], signal, 'log search');
      let edge: (typeof raw)[number] | undefined;
      for (const r of raw) {
        if (r.hit) hits.push(toSearchRow(r));
        else edge = r;
      }
      // A full page, or every row of the range walked (fewer rows than the budget).
      if (hits.length >= o.limit || edge === undefined || edge.n < budget) return hits;
      after = { timestampUs: Number(edge.ts_us), seq: Number(edge.seq_text) };
      walked += budget;
      budget = nextWalk(walked, hits.length, o.limit);
    }
    // Not a phrase, or too few matches among the rows walked to go on: the rest as the planner chooses
    // (NEWEST's statement, after the last row walked).
    plan.push('index');
    const params = searchParams(filter, { ...o, after, limit: o.limit - hits.length }).slice(0, 11);
    const raw = await this.run<SearchRaw>(SEARCH_NEWEST_SQL, params, signal, 'log search');
    for (const r of raw) hits.push(toSearchRow(r));
    return hits;
  }

  /** The planner's estimate of the query's matches (SEARCH_ESTIMATE_SQL): good for words, not phrases. */
  private async estimate(query: string, signal: AbortSignal | undefined): Promise<number> {
    const rows = await this.run<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(SEARCH_ESTIMATE_SQL, [query], signal, 'search estimate');
    return rows[0]?.['QUERY PLAN'][0].Plan['Plan Rows'] ?? Number.POSITIVE_INFINITY;
  }

  private async run<R extends pg.QueryResultRow>(text: string, values: unknown[], signal: AbortSignal | undefined, what: string): Promise<R[]> {
    try {
      return await cancellableQuery<R>(this.db, text, values, signal, what);
    } catch (err) {
      const state = sqlstateOf(err);
      if (state !== undefined && QUERY_SQLSTATE.test(state)) {
        throw new InvalidArgumentError('query', `PostgreSQL cannot search for this query (${(err as Error).message})`, { cause: err });
      }
      throw err;
    }
  }
}
