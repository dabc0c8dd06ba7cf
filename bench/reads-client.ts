// The reads phase's client, in a process of its own (bench/run.ts starts it), like bench/latency-tail.ts
// for the live phase: the bench process has held the phases before it (data sets of 250,000 messages,
// tails, samples), and its collections - scavenges of 7-12 ms every 30 GetTrace calls, a 15 ms
// mark-compact, measured in one run - were timed as the service's latency: the slowest GetTrace of that
// run was the call during the bench's own mark-compact. This process does nothing but call.
//
// argv: <host:port> <database url> <JSON options: ReadsClientOptions>. Prints "phase <name>" as each
// measured part starts (the parent takes the service's peak RSS per part), "log <text>" for the bench's
// log, and last "result <JSON: ReadsClientResult>".
import { emptyFilter, getRegistry, getTrace, makeClients, queryLogs, registryMixCall, wholeRegistry } from './clients.js';
import { nowMs, summarize, type Summary } from './lib.js';
import { searchPhase, type SearchResult } from './search.js';
import { getTraceBySize, type SizedTraceResult } from './traces.js';

export interface ReadsClientOptions {
  readonly quick: boolean;
  /** 'all': GetRegistry, QueryLogs, GetTrace, SearchLogs; 'trace-search': the last two (the reads A/B). */
  readonly parts: 'all' | 'trace-search';
  readonly registryAgents: number;
  /** Time migration 006 again after the search phase (bench/search.ts). */
  readonly timeMigration: boolean;
}

export interface ReadsClientResult {
  readonly getRegistryMs?: Summary;
  readonly getRegistryAllPagesMs?: Summary;
  readonly queryLogsPageMs?: Summary;
  readonly queryLogsPagesFollowed?: number;
  readonly getTraceMs: Summary;
  readonly traceRecordsMean: number;
  readonly getTraceBySize: Record<string, SizedTraceResult>;
  readonly search: SearchResult;
}

const [address, dbUrl, optsJson] = process.argv.slice(2);
if (!address || !dbUrl || !optsJson) {
  process.stderr.write('usage: reads-client.ts <host:port> <database url> <options JSON>\n');
  process.exit(2);
}
const opts = JSON.parse(optsJson) as ReadsClientOptions;
const say = (line: string): void => void process.stdout.write(`${line.replace(/\n/g, ' ')}\n`);
const [client] = makeClients(address, 1);
const c = client!;

const teams = await getRegistry(c, { pageSize: 1000 }).then((r) => [...new Set(r.agents.map((a) => a.teamId))]);
let out: Partial<ReadsClientResult> = {};

if (opts.parts === 'all') {
  const agentIds = await getRegistry(c, { pageSize: 200 }).then((r) => r.agents.map((a) => a.agentId));
  say('phase getRegistry');
  const reg: number[] = [];
  const regFull: number[] = [];
  for (let i = 0; i < (opts.quick ? 100 : 400); i++) {
    const t = nowMs();
    await registryMixCall(c, i % 4, teams[i % teams.length]!);
    reg.push(nowMs() - t);
  }
  // The whole registry: every agent, 1,000 per page.
  for (let i = 0; i < (opts.quick ? 3 : 10); i++) {
    const t = nowMs();
    const n = await wholeRegistry(c, 1000);
    regFull.push(nowMs() - t);
    if (n < opts.registryAgents) throw new Error(`registry listed ${n} agents, expected ${opts.registryAgents}`);
  }

  say('phase queryLogs');
  const q: number[] = [];
  let pagesFollowed = 0;
  for (let i = 0; i < (opts.quick ? 100 : 500); i++) {
    const variant = i % 5;
    const f = emptyFilter();
    if (variant === 1) f.teamIds = [teams[i % teams.length]!];
    if (variant === 2) f.agentIds = [agentIds[i % agentIds.length]!];
    if (variant === 3) f.levels = ['ERROR'];
    if (variant === 4) f.intents = ['tool_call'];
    let t = nowMs();
    let r = await queryLogs(c, { filter: f, pageSize: 100 });
    q.push(nowMs() - t);
    // Deeper pages through the keyset token.
    for (let p = 0; p < 2 && r.nextPageToken; p++) {
      t = nowMs();
      r = await queryLogs(c, { filter: f, pageSize: 100, pageToken: r.nextPageToken });
      q.push(nowMs() - t);
      pagesFollowed++;
    }
  }
  out = { getRegistryMs: summarize(reg), getRegistryAllPagesMs: summarize(regFull), queryLogsPageMs: summarize(q), queryLogsPagesFollowed: pagesFollowed };
}

// GetTrace on workflows of the ingested traffic (a team's run of messages; copies of them shifted back
// in time share the trace id, so a trace here holds about 4 times its run).
say('phase getTrace');
const { default: pg } = await import('pg');
const pc = new pg.Client({ connectionString: dbUrl });
await pc.connect();
const traceIds = (
  await pc.query<{ trace_id: string }>(`SELECT trace_id FROM (SELECT DISTINCT trace_id FROM log_entries WHERE trace_id <> '' AND trace_id NOT LIKE 'bench-%') t ORDER BY md5(trace_id) LIMIT $1`, [opts.quick ? 100 : 400])
).rows.map((r) => r.trace_id);
await pc.end();
const tr: number[] = [];
let traceRecords = 0;
for (const traceId of traceIds) {
  const t = nowMs();
  const res = await getTrace(c, traceId);
  tr.push(nowMs() - t);
  traceRecords += res.records.length;
}
// Traces of stated sizes (bench/traces.ts): 170, 1,000 and 12,000 records (truncated by the caps).
const bySize = await getTraceBySize(c, dbUrl, opts.quick ? 3 : 10);

// SearchLogs over the same 1,000,000 rows (bench/search.ts), then migration 006's lock time there.
say('phase search');
const search = await searchPhase(c, dbUrl, { rounds: opts.quick ? 3 : 20, teams, log: (m) => say(`log ${m}`), timeMigration: opts.timeMigration });
c.close();
const result: ReadsClientResult = { ...out, getTraceMs: summarize(tr), traceRecordsMean: traceIds.length > 0 ? traceRecords / traceIds.length : 0, getTraceBySize: bySize, search };
say(`result ${JSON.stringify(result)}`);
process.exit(0);
