// The latency phase's StreamLogs client, in its own process: a tail that shares an event loop with
// the bench (publisher, 1,000-row data sets, earlier phases' garbage) times its receives late whenever
// the bench collects garbage, and that would be measured as service latency. Like a real tail, this
// process does nothing but receive.
//
// Protocol (lines): prints "ready" once the stream is attached; reads "from T" on stdin (only records
// with an event time >= T ms count from then on: the warm-up's records do not), then "expect N"; when N
// records that count have arrived prints one JSON line {received, latenciesMs: summary} and exits.
import { createInterface } from 'node:readline';
import { emptyFilter, makeClients, openTail } from './clients.js';
import { nowMs, Samples, summarize } from './lib.js';
import type { StreamLogsResponse } from '../src/gen/mycelis/memory/v1/memory.js';

const address = process.argv[2];
if (!address) {
  process.stderr.write('usage: latency-tail.ts <host:port>\n');
  process.exit(2);
}
const [client] = makeClients(address, 1);
const samples = new Samples();
// openTail's own samples are every record's; this process counts only those from `fromMs` on.
const tail = openTail(client!, emptyFilter(), new Samples(), () => false);
let fromMs = 0;
let received = 0;
let expect = Number.POSITIVE_INFINITY;

function finish(): void {
  process.stdout.write(JSON.stringify({ received, error: tail.error?.message ?? null, ms: summarize(samples.view()) }) + '\n');
  tail.cancel();
  client!.close();
  process.exit(0);
}

await tail.ready;
if (tail.error) {
  process.stdout.write(JSON.stringify({ received: 0, error: tail.error.message }) + '\n');
  process.exit(1);
}
process.stdout.write('ready\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  const from = /^from (\d+(?:\.\d+)?)$/.exec(line.trim());
  if (from) fromMs = Number(from[1]);
  const m = /^expect (\d+)$/.exec(line.trim());
  if (m) expect = Number(m[1]);
  if (line.trim() === 'stop' || received >= expect) finish();
});
tail.call.on('data', (res: StreamLogsResponse) => {
  const now = nowMs();
  for (const r of res.records) {
    const ts = r.entry?.timestamp;
    if (!ts) continue;
    const t = Number(ts.seconds) * 1000 + ts.nanos / 1e6;
    if (fromMs === 0 || t < fromMs) continue;
    received++;
    samples.push(now - t);
  }
  if (received >= expect) finish();
});
