// Issue 17: the bare pipeline's own CPU profile, to set beside the service's (`--profile`): run as
//   node --cpu-prof --cpu-prof-dir=<dir> --import tsx bench/bare-profile.ts [events] [ts-proto|protobufjs]
// It prefills a private stream (bench/lib.ts's traffic), migrates a fresh database and drains it with
// runBarePipeline; summarize the profile with `tsx bench/profile.ts <file> <events>` (the prefill is in
// the profile too, under the bench's own files and the publishing client).
import pg from 'pg';
import { connect } from 'nats';
import { createLogger } from '../src/logger.js';
import { migrate } from '../src/store/migrate.js';
import { startPrivateNats } from '../test/helpers/nats.js';
import { createTestDatabase } from '../test/helpers/pg.js';
import { runBarePipeline, type BareDecoder } from './baselines.js';
import { buildMessages, createStream, publishAll, until } from './lib.js';

const N = Number(process.argv[2] ?? 100_000);
const decoder = (process.argv[3] ?? 'ts-proto') as BareDecoder;
const nats = await startPrivateNats();
const nc = await connect({ servers: nats.url });
const db = await createTestDatabase('bare_profile');
try {
  const pool = new pg.Pool({ connectionString: db.url, max: 1 });
  await migrate(pool, createLogger('error'));
  await pool.end();
  await createStream(nc, 'BARE_PROFILE');
  await publishAll(nc, buildMessages(N, { agents: 1000, teams: 40, seed: 42 }));
  const jsm = await nc.jetstreamManager();
  await until(async () => (await jsm.streams.info('BARE_PROFILE')).state.messages >= N, 120_000, 100, 'the prefill');
  const t0 = process.hrtime.bigint() / 1000n;
  const r = await runBarePipeline(nc, 'BARE_PROFILE', db.url, N, decoder);
  const t1 = process.hrtime.bigint() / 1000n;
  // The drain's window on the profile's clock (µs, monotonic): the prefill before it is not the pipeline's.
  process.stdout.write(`bare ${decoder}: ${Math.round(r.eventsPerSec)} events/s, gc ${r.gcUsPerEvent} µs/event; window ${t0} ${t1}\n`);
} finally {
  await nc.jetstreamManager().then((j) => j.streams.delete('BARE_PROFILE')).catch(() => undefined);
  await nc.close();
  await nats.destroy();
  await db.drop();
}
