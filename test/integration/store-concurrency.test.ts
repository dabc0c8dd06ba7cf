// Two writer PROCESSES into one database while a reader polls `seq > last`: seq strictly increases in
// commit order, the reader misses nothing, no row is lost or duplicated (DESIGN 3.2, 7).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createLogger } from '../../src/logger.js';
import { migrate } from '../../src/store/migrate.js';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js';

const logger = createLogger('silent');
const CHILD = fileURLToPath(new URL('./store-writer-child.ts', import.meta.url));
const BATCHES = 40;
const SIZE = 150;

interface Commit {
  firstSeq: number;
  lastSeq: number;
  inserted: number;
  ids: string[];
}

function runWriter(url: string, name: string): Promise<Commit[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, url, name, String(BATCHES), String(SIZE)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`writer ${name} exited ${code}: ${err}`);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Commit | 'done');
    assert.equal(lines.at(-1), 'done');
    return lines.slice(0, -1) as Commit[];
  });
}

describe('store: two writer processes, one reader', () => {
  let tdb: TestDatabase;
  let pool: pg.Pool;
  before(async () => {
    tdb = await createTestDatabase('store_concurrency');
    pool = new pg.Pool({ connectionString: tdb.url, max: 2 });
    // An idle client terminated while the database is dropped must not become an uncaught error.
    pool.on('error', () => undefined);
    await migrate(pool, logger);
  });
  after(async () => {
    await pool?.end();
    await tdb?.drop();
  });

  it('commit order = seq order; a reader polling seq > last misses nothing', async () => {
    const seen: { seq: number; id: string }[] = [];
    let last = 0;
    let writing = true;
    const reader = (async () => {
      // Poll until the writers are done and one more poll finds nothing new.
      for (;;) {
        const stillWriting = writing;
        const res = await pool.query<{ seq: string; id: string }>(
          'SELECT log_entries.seq::text AS seq, id::text AS id FROM log_entries WHERE log_entries.seq > $1 ORDER BY log_entries.seq LIMIT 2000',
          [last],
        );
        for (const r of res.rows) {
          const seq = Number(r.seq);
          assert.ok(seq > last, `seq went backwards: ${seq} after ${last}`);
          last = seq;
          seen.push({ seq, id: r.id });
        }
        if (!stillWriting && res.rows.length === 0) return;
        if (res.rows.length === 0) await new Promise((r) => setImmediate(r));
      }
    })();
    let a: Commit[];
    let b: Commit[];
    try {
      [a, b] = await Promise.all([runWriter(tdb.url, 'writer-a'), runWriter(tdb.url, 'writer-b')]);
    } finally {
      writing = false;
    }
    await reader;

    const total = 2 * BATCHES * SIZE;
    const commits = [...a, ...b];
    assert.equal(commits.length, 2 * BATCHES);
    assert.ok(commits.every((c) => c.inserted === SIZE && c.lastSeq - c.firstSeq + 1 === SIZE));
    // Ranges of the two processes never overlap: each commit owns a contiguous block.
    const sorted = [...commits].sort((x, y) => x.firstSeq - y.firstSeq);
    for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i]!.firstSeq > sorted[i - 1]!.lastSeq, 'overlapping seq ranges');
    // Each process saw its own commits in increasing seq order.
    for (const list of [a, b]) for (let i = 1; i < list.length; i++) assert.ok(list[i]!.firstSeq > list[i - 1]!.lastSeq);

    // No loss, no duplicates: the reader saw exactly the ids written, each once.
    const written = new Set(commits.flatMap((c) => c.ids));
    assert.equal(written.size, total);
    assert.equal(seen.length, total);
    assert.equal(new Set(seen.map((s) => s.id)).size, total);
    for (const s of seen) assert.ok(written.has(s.id));
    const count = await pool.query('SELECT count(*)::int AS n, count(DISTINCT log_entries.seq)::int AS s FROM log_entries');
    assert.deepEqual(count.rows[0], { n: total, s: total });
    // Each row carries the seq its commit reported.
    const bySeq = new Map(seen.map((s) => [s.seq, s.id]));
    for (const c of commits) c.ids.forEach((id, i) => assert.equal(bySeq.get(c.firstSeq + i), id));
  });
});
