// A MemoryService client with no generated code: @grpc/proto-loader reads the .proto files at run time.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const definition = protoLoader.loadSync('mycelis/memory/v1/memory.proto', {
  includeDirs: ['proto'], // or node_modules/mycelis-memory/proto
  keepCase: true, // field names as in the .proto: agent_id, after_cursor
  longs: String, // int64 seq as a string
  enums: String, // AGENT_STATUS_IDLE rather than 1
  defaults: true,
});
const { MemoryService } = grpc.loadPackageDefinition(definition).mycelis.memory.v1;
const client = new MemoryService(process.argv[2] ?? '127.0.0.1:50051', grpc.credentials.createInsecure());
const metadata = new grpc.Metadata(); // with API_TOKENS: metadata.set('authorization', `Bearer ${token}`)
const call = (method, request) =>
  new Promise((resolve, reject) => client[method](request, metadata, (err, res) => (err ? reject(err) : resolve(res))));
const time = (ts) => new Date(Number(ts.seconds) * 1000 + ts.nanos / 1e6).toISOString();
const show = (r) => `${r.seq} ${time(r.entry.timestamp)} ${r.entry.level} ${r.entry.source} ${r.entry.intent}: ${r.entry.message}`;

const { agents } = await call('GetRegistry', { page_size: 20 });
for (const a of agents) console.log(`agent ${a.agent_id} ${a.status} team=${a.team_id} ${a.last_error_summary}`);

const { records } = await call('QueryLogs', { page_size: 5, filter: { levels: ['ERROR'] } });
for (const r of records) console.log(`error ${show(r)}`);

// The last 5 records, then live. When the stream ends (restart, lost connection), resume after the
// last cursor: the service sends every record committed after it exactly once, on any replica.
let cursor = '';
function follow() {
  const stream = client.StreamLogs(cursor ? { after_cursor: cursor } : { tail: 5 }, metadata);
  stream.on('data', (res) => {
    for (const r of res.records) console.log(`live ${show(r)}`);
    if (res.cursor) cursor = res.cursor; // keepalives (no records) carry it too
  });
  stream.on('error', () => {}); // reported by 'status' below
  stream.on('status', (s) => {
    console.error(`stream ended (${grpc.status[s.code]}: ${s.details}); resuming after ${cursor} in 1 s`);
    setTimeout(follow, 1000);
  });
}
follow();
