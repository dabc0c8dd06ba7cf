// The embedded store: PGlite opens, migrates, writes (unnest path, dead letters, registry), persists
// across a reopen, and a second open of the same directory fails clearly; a stale lock is taken over.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { CommitNotifier } from '../../src/store/commit-notifier.js';
import { openDatabase } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';
import { makeEvent, makeReject, makeRows } from './store-rows.js';

const logger = createLogger('silent');
const dir = mkdtempSync(join(tmpdir(), 'mm-embedded-'));
const cfg = { kind: 'embedded' as const, url: '', redactedUrl: '', sslMode: undefined, poolMax: 1, embeddedDataDir: dir };
after(() => rmSync(dir, { recursive: true, force: true }));

describe('store: embedded PGlite', () => {
  it('opens, migrates, writes, reopens with the data, and refuses a second open', async () => {
    const db = await openDatabase(cfg, logger);
    let ids: string[];
    let lastSeq: number;
    try {
      assert.equal(db.kind, 'embedded');
      const migrated = await migrate(db.pool, logger);
      assert.deepEqual(migrated.applied, ['001_init_memory', '002_service_columns', '003_registry_field_order', '004_partition_log_entries', '005_registry_revision', '006_log_search', '007_registry_meta_times', '008_dead_letter_identity', '009_log_seq_ranges', '010_log_time_ranges']);
      // PGlite (PostgreSQL 18 in WASM) partitions the log as PostgreSQL 15 does: daily partitions ahead.
      assert.ok(migrated.partitionsCreated.length >= 10, `partitions: ${migrated.partitionsCreated.join(', ')}`);
      const kind = await db.pool.query("SELECT relkind::text AS k FROM pg_class WHERE oid = 'log_entries'::regclass");
      assert.equal(kind.rows[0].k, 'p');
      const writer = new BatchWriter(db, logger);
      const notifier = new CommitNotifier(db, writer, logger);
      const heard: number[] = [];
      notifier.onCommit((c) => heard.push(c.lastSeq));
      await notifier.start();
      const rows = makeRows(200);
      ids = rows.map((r) => r.id);
      const r = await writer.write({ rows, rejects: [makeReject()], registry: [makeEvent({ agentId: 'emb-agent' })] });
      assert.equal(r.rowsPath, 'insert'); // never COPY through the socket
      // 006 on PGlite: the generated search vector and its GIN index work there too.
      const hits = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM log_entries WHERE search @@ websearch_to_tsquery('simple', '"with quotes" -absent')`);
      assert.equal(hits.rows[0]!.n, 200);
      assert.equal(r.inserted, 200);
      assert.equal(r.rejected, 1);
      assert.equal(r.agentsUpdated, 1);
      lastSeq = r.lastSeq;
      assert.deepEqual(heard, [r.lastSeq]);
      const dup = await writer.write({ rows: rows.slice(0, 10), rejects: [], registry: [] });
      assert.equal(dup.duplicates, 10);
      assert.equal(await notifier.head(), r.lastSeq);
      await notifier.stop();

      // A second process on the same directory fails fast, naming the directory and our pid.
      const second = spawnSync(
        process.execPath,
        [
          '--import',
          'tsx',
          '--input-type=module',
          '-e',
          `import { openDatabase } from ${JSON.stringify(new URL('../../src/store/database.ts', import.meta.url).href)};
           import { createLogger } from ${JSON.stringify(new URL('../../src/logger.ts', import.meta.url).href)};
           try { await openDatabase(${JSON.stringify(cfg)}, createLogger('silent')); process.stdout.write('opened'); process.exit(0); }
           catch (e) { process.stdout.write(String(e.message)); process.exit(3); }`,
        ],
        { encoding: 'utf8', timeout: 60_000 },
      );
      assert.equal(second.status, 3, second.stdout + second.stderr);
      assert.match(second.stdout, new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*in use by process ${process.pid}`));
      // And a second open in this process too.
      await assert.rejects(openDatabase(cfg, logger), /in use by process/);
    } finally {
      await db.close();
    }

    // A lock left by a dead process is taken over.
    writeFileSync(join(dir, 'memory.lock'), '999999999');
    const again = await openDatabase(cfg, logger);
    try {
      assert.deepEqual((await migrate(again.pool, logger)).applied, []);
      const res = await again.pool.query('SELECT count(*)::int AS n, max(log_entries.seq)::int AS m FROM log_entries WHERE id = ANY($1::uuid[])', [ids]);
      assert.deepEqual(res.rows[0], { n: 200, m: lastSeq });
      const reg = await again.pool.query("SELECT status FROM agent_registry WHERE agent_id = 'emb-agent'");
      assert.equal(reg.rows[0].status, 'BUSY');
      const next = await new BatchWriter(again, logger).write({ rows: makeRows(3), rejects: [], registry: [] });
      assert.ok(next.firstSeq > lastSeq, `seq continues after reopen: ${next.firstSeq} > ${lastSeq}`);
    } finally {
      await again.close();
    }
  });
});
