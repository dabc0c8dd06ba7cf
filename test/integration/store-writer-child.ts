// A writer PROCESS for store-concurrency.test.ts: opens its own pool on DATABASE_URL (argv[2]) and
// writes argv[4] batches of argv[5] rows tagged with writer name argv[3]; prints one JSON line per
// commit ({firstSeq, lastSeq, inserted}) and "done" at the end.
import { createLogger } from '../../src/logger.js';
import { BatchWriter } from '../../src/store/batch-writer.js';
import { openDatabase } from '../../src/store/database.js';
import { makeRows } from './store-rows.js';

const [url, name, batchesRaw, sizeRaw] = process.argv.slice(2);
const logger = createLogger('warn', process.stderr as never);
const db = await openDatabase(
  { kind: 'postgres', url: url!, redactedUrl: '', sslMode: undefined, poolMax: 2, embeddedDataDir: '' },
  logger,
);
const writer = new BatchWriter(db, logger);
for (let b = 0; b < Number(batchesRaw); b++) {
  const rows = makeRows(Number(sizeRaw), { source: name!, intent: `batch-${b}` });
  const r = await writer.write({ rows, rejects: [], registry: [] });
  process.stdout.write(JSON.stringify({ firstSeq: r.firstSeq, lastSeq: r.lastSeq, inserted: r.inserted, ids: rows.map((x) => x.id) }) + '\n');
}
process.stdout.write('"done"\n');
await db.close();
