// SearchLogs over the read phase's database (1,000,000 rows: the ingested traffic and copies of it
// shifted back in time), through the running service's gRPC port, one request at a time.
//
// The words come from the data: a 2 % sample's ts_stat, split by how many rows hold them (common: in
// more than 5 % of rows; mid: 0.1-1 %; rare: the fewest), phrases are two adjacent words of sampled
// messages. One round asks, newest first with the default page (100): a rare word, a mid word, a
// common word, common AND mid, a phrase, common -mid, rare or mid, common within one team, mid at
// level ERROR, the second page of the common word, and a word that matches nothing. By relevance: the
// selective ones (rare, mid, phrase, rare or mid). Then migration 006's lock time on this database:
// its column is dropped (catalog only) and the file is run again, timed (the rewrite of every
// partition and the GIN build, as an upgrade from 005 would do).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { MemoryServiceClient } from '../src/gen/mycelis/memory/v1/memory.js';
import { migrationsDir } from '../src/store/migrate.js';
import { emptyFilter, searchLogs } from './clients.js';
import { nowMs, summarize, type Summary } from './lib.js';

export interface SearchResult {
  readonly newestMs: Summary;
  readonly relevanceMs: Summary;
  /** p99 per query kind (newest first). */
  readonly byKindP99Ms: Record<string, number>;
  /** p99 per query kind, by relevance. */
  readonly relevanceByKindP99Ms: Record<string, number>;
  /** Hits of the first page per kind, mean (how much each kind matched). */
  readonly hitsMean: Record<string, number>;
  readonly words: { common: string[]; mid: string[]; rare: string[]; phrases: string[] };
  readonly rows: number;
  /** null: not timed (timeMigration false). */
  readonly migration006Ms: number | null;
}

export interface SearchOptions {
  readonly rounds: number;
  readonly teams: readonly string[];
  readonly log: (msg: string) => void;
  /** Time migration 006 again at the end (false: the database is left as it is, for another run). */
  readonly timeMigration?: boolean;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export interface SearchWords {
  readonly common: string[];
  readonly mid: string[];
  readonly rare: string[];
  readonly phrases: string[];
}

/** The bench's words, from the data (see the header): also bench/search-explain.ts's. */
export async function pickWords(c: pg.Client): Promise<{ rows: number; words: SearchWords }> {
  const rows = Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM log_entries')).rows[0]!.n);
  const sampled = Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM log_entries TABLESAMPLE SYSTEM (2) REPEATABLE (7)')).rows[0]!.n);
  const stat = (
    await c.query<{ word: string; ndoc: number }>(
      `SELECT word, ndoc FROM ts_stat('SELECT search FROM log_entries TABLESAMPLE SYSTEM (2) REPEATABLE (7)')
        WHERE word ~ '^[a-z][a-z_]{3,}$' ORDER BY ndoc DESC, word`,
    )
  ).rows;
  const frac = (w: { ndoc: number }): number => w.ndoc / Math.max(1, sampled);
  const common = stat.filter((w) => frac(w) > 0.05).slice(0, 6).map((w) => w.word);
  const mid = stat.filter((w) => frac(w) >= 0.001 && frac(w) <= 0.01).slice(0, 12).map((w) => w.word);
  const rare = stat.filter((w) => w.ndoc === 1).slice(-12).map((w) => w.word);
  const phrases = (
    await c.query<{ p: string }>(
      `SELECT DISTINCT substring(message FROM '^([a-z]{3,} [a-z]{3,})') AS p FROM log_entries TABLESAMPLE SYSTEM (1) REPEATABLE (3)
        WHERE message ~ '^[a-z]{3,} [a-z]{3,}' ORDER BY 1 LIMIT 12`,
    )
  ).rows.map((r) => r.p);
  return { rows, words: { common, mid, rare, phrases } };
}

export type SearchRequest = Parameters<typeof searchLogs>[1];

/** One request of the mix: `id` names a first page whose token a later item (`pageOf`) follows. */
export interface MixItem {
  readonly kind: string;
  readonly relevance: boolean;
  readonly req: SearchRequest;
  readonly id?: string;
  readonly pageOf?: string;
}

/** The bench's SearchLogs requests, round by round (see the header); also bench/search-split.ts's. */
export function searchMix(words: SearchWords, teams: readonly string[], rounds: number): MixItem[] {
  const at = <T>(xs: readonly T[], i: number): T => xs[i % xs.length]!;
  const out: MixItem[] = [];
  for (let i = 0; i < rounds; i++) {
    const c = at(words.common, i);
    const m = at(words.mid, i);
    const r = at(words.rare, i);
    const p = at(words.phrases, i);
    const n = (kind: string, req: SearchRequest, more: Partial<MixItem> = {}): void => void out.push({ kind, relevance: false, req, ...more });
    const rel = (kind: string, query: string): void => void out.push({ kind, relevance: true, req: { query, order: 2 } });
    n('rare', { query: r });
    n('mid', { query: m });
    n('common', { query: c }, { id: `common ${i}` });
    n('common AND mid', { query: `${c} ${m}` });
    n('phrase', { query: `"${p}"` });
    n('common -mid', { query: `${c} -${m}` });
    n('rare or mid', { query: `${r} or ${m}` });
    n('common, one team', { query: c, filter: { ...emptyFilter(), teamIds: [at(teams, i)] } });
    n('mid, ERROR', { query: m, filter: { ...emptyFilter(), levels: ['ERROR'] } });
    n('common, page 2', { query: c }, { pageOf: `common ${i}` });
    n('no match', { query: `zq${i}xv` });
    rel('rare', r);
    rel('mid', m);
    rel('phrase', `"${p}"`);
    rel('rare or mid', `${r} or ${m}`);
  }
  return out;
}

export async function searchPhase(client: MemoryServiceClient, dbUrl: string, o: SearchOptions): Promise<SearchResult> {
  const { rows, words } = await withClient(dbUrl, pickWords);
  const { common, mid, rare, phrases } = words;
  if (common.length === 0 || mid.length === 0 || rare.length === 0 || phrases.length === 0) {
    throw new Error(`search bench: not enough words in the data: ${JSON.stringify(words)}`);
  }
  o.log(`search: ${rows} rows; common ${common.join(',')}; mid ${mid.slice(0, 4).join(',')}…; rare ${rare.slice(0, 4).join(',')}…; phrases ${phrases.slice(0, 3).join(' | ')}…`);

  const newest: number[] = [];
  const relevance: number[] = [];
  const byKind = new Map<string, number[]>();
  const hits = new Map<string, number[]>();
  const byKindRelevance = new Map<string, number[]>();
  const tokens = new Map<string, string>();
  const time = async (kind: string, into: number[], req: SearchRequest): Promise<string> => {
    const t = nowMs();
    const res = await searchLogs(client, req);
    const ms = nowMs() - t;
    into.push(ms);
    const kinds = into === newest ? byKind : byKindRelevance;
    if (!kinds.has(kind)) kinds.set(kind, []);
    kinds.get(kind)!.push(ms);
    if (into === newest) {
      if (!hits.has(kind)) hits.set(kind, []);
      hits.get(kind)!.push(res.hits.length);
    }
    return res.nextPageToken;
  };
  for (const q of searchMix(words, o.teams, o.rounds)) {
    const pageToken = q.pageOf === undefined ? undefined : tokens.get(q.pageOf);
    if (q.pageOf !== undefined && !pageToken) continue;
    const token = await time(q.kind, q.relevance ? relevance : newest, pageToken === undefined ? q.req : { ...q.req, pageToken });
    if (q.id !== undefined) tokens.set(q.id, token);
  }
  const byKindP99Ms: Record<string, number> = {};
  for (const [k, v] of byKind) byKindP99Ms[k] = summarize(v).p99;
  const relevanceByKindP99Ms: Record<string, number> = {};
  for (const [k, v] of byKindRelevance) relevanceByKindP99Ms[k] = summarize(v).p99;
  const hitsMean: Record<string, number> = {};
  for (const [k, v] of hits) hitsMean[k] = v.reduce((s, x) => s + x, 0) / v.length;
  o.log(`search: newest p50 ${summarize(newest).p50.toFixed(1)} p99 ${summarize(newest).p99.toFixed(1)} ms; relevance p50 ${summarize(relevance).p50.toFixed(1)} p99 ${summarize(relevance).p99.toFixed(1)} ms; p99 by kind ${JSON.stringify(byKindP99Ms)}, relevance ${JSON.stringify(relevanceByKindP99Ms)}`);

  // Migration 006 again on these rows: drop its column (and index), time the file.
  if (o.timeMigration === false) return { newestMs: summarize(newest), relevanceMs: summarize(relevance), byKindP99Ms, relevanceByKindP99Ms, hitsMean, words, rows, migration006Ms: null };
  const migration006Ms = await withClient(dbUrl, async (c) => {
    await c.query('ALTER TABLE log_entries DROP COLUMN search');
    const sql = readFileSync(join(migrationsDir(), '006_log_search.sql'), 'utf8');
    const t = nowMs();
    await c.query('BEGIN');
    await c.query(sql);
    await c.query('COMMIT');
    return nowMs() - t;
  });
  o.log(`search: migration 006 over ${rows} rows held its lock ${(migration006Ms / 1000).toFixed(2)} s`);
  return { newestMs: summarize(newest), relevanceMs: summarize(relevance), byKindP99Ms, relevanceByKindP99Ms, hitsMean, words, rows, migration006Ms };
}
