// The latency phase's StreamLogs client, in its own process: a tail that shares an event loop with
// the bench (publisher, 1,000-row data sets, earlier phases' garbage) times its receives late whenever
// the bench collects garbage, and that would be measured as service latency. Like a real tail, this
// process does nothing but receive.
//
// Protocol (lines): prints "ready" once the stream is attached; reads "expect N" on stdin; when N
// records have arrived prints one JSON line {received, latenciesMs: summary} and exits.
import { createInterface } from 'node:readline';
import { emptyFilter, makeClients, openTail } from './clients.js';
import { Samples, summarize } from './lib.js';

const address = process.argv[2];
if (!address) {
  process.stderr.write('usage: latency-tail.ts <host:port>\n');
  process.exit(2);
}
const [client] = makeClients(address, 1);
const samples = new Samples();
const tail = openTail(client!, emptyFilter(), samples, () => true);
let expect = Number.POSITIVE_INFINITY;

function finish(): void {
  process.stdout.write(JSON.stringify({ received: tail.received, error: tail.error?.message ?? null, ms: summarize(samples.view()) }) + '\n');
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
  const m = /^expect (\d+)$/.exec(line.trim());
  if (m) expect = Number(m[1]);
  if (line.trim() === 'stop' || tail.received >= expect) finish();
});
tail.call.on('data', () => {
  if (tail.received >= expect) finish();
});
