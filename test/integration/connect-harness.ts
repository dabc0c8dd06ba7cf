// Shared setup for the Connect integration tests: the gRPC harness (fresh database, writer, notifier,
// MemoryCore, grpc-js server) plus the HTTP server on port 0, and Connect/gRPC-Web clients built from
// the same DescService the server uses.
import { createClient, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import type { DescService, Message } from '@bufbuild/protobuf';
import { ConnectError } from '@connectrpc/connect';
import { StreamLogsResponse } from '../../src/gen/mycelis/memory/v1/memory.js';
import { fromEs, loadMemoryServiceDesc } from '../../src/api/connect-service.js';
import { startHttpServer, type RunningHttpServer } from '../../src/api/http-server.js';
import { logger, startApi, type Api, type Env } from './api-harness.js';

export const service: DescService = loadMemoryServiceDesc();
const streamLogsOutput = service.methods.find((m) => m.name === 'StreamLogs')!.output;

export interface HttpApi extends Api {
  http: RunningHttpServer;
  baseUrl: string;
  closeAll(): Promise<void>;
}

export async function startHttpApi(env: Env, vars: Record<string, string> = {}, opts: { ingestStatus?: () => object } = {}): Promise<HttpApi> {
  const api = await startApi(env, vars);
  const http = await startHttpServer({ config: api.config, core: api.core, health: api.server.health, ingestStatus: opts.ingestStatus, logger });
  return {
    ...api,
    http,
    baseUrl: `http://127.0.0.1:${http.port}`,
    async closeAll() {
      await http.shutdown(4000);
      await api.close();
    },
  };
}

export type Kind = 'connect-json-h1' | 'connect-binary-h2c' | 'grpc-web-h1' | 'grpc-web-binary-h2c';

export function transport(baseUrl: string, kind: Kind): Transport {
  switch (kind) {
    case 'connect-json-h1':
      return createConnectTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: false, useHttpGet: true });
    case 'connect-binary-h2c':
      return createConnectTransport({ baseUrl, httpVersion: '2', useBinaryFormat: true });
    case 'grpc-web-h1':
      return createGrpcWebTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: false });
    case 'grpc-web-binary-h2c':
      return createGrpcWebTransport({ baseUrl, httpVersion: '2', useBinaryFormat: true });
  }
}

// The service descriptor is loaded at runtime, so the client's method shapes are generic.
export type MemoryClient = Record<string, (req: object, opts?: object) => unknown>;

export function client(baseUrl: string, kind: Kind): MemoryClient {
  return createClient(service, transport(baseUrl, kind)) as unknown as MemoryClient;
}

/** Reads a server stream in the background. */
export class ConnectStream {
  readonly records: { id: string; seq: number; cursor: string }[] = [];
  readonly responses: StreamLogsResponse[] = [];
  error: ConnectError | null = null;
  ended = false;
  private readonly abort = new AbortController();

  constructor(c: MemoryClient, req: object, headers: Record<string, string> = {}) {
    const it = c['streamLogs']!(req, { headers, signal: this.abort.signal }) as AsyncIterable<Message>;
    void (async () => {
      try {
        for await (const m of it) {
          const r = fromEs(streamLogsOutput, StreamLogsResponse, m);
          this.responses.push(r);
          for (const rec of r.records) this.records.push({ id: rec.id, seq: Number(rec.seq), cursor: rec.cursor });
        }
        this.ended = true;
      } catch (err) {
        this.error = ConnectError.from(err);
      }
    })();
  }

  cancel(): void {
    this.abort.abort();
  }
}

