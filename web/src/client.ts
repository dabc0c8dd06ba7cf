// The page's MemoryService client: Connect (binary) against the origin that served the page, with
// the bearer token from session storage when the service has API_TOKENS. The token lives only in
// this tab's sessionStorage (gone when the tab closes) and is sent only to this origin.
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { MemoryService } from '../gen/mycelis/memory/v1/memory_pb.js';

const TOKEN_KEY = 'mycelis-memory.token';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? memoryToken;
  } catch {
    return memoryToken;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts only as long as this page
    memoryToken = token;
  }
}

let memoryToken: string | null = null;

const auth: Interceptor = (next) => (req) => {
  const t = getToken();
  if (t) req.header.set('authorization', `Bearer ${t}`);
  return next(req);
};

export type MemoryClient = Client<typeof MemoryService>;

export function createMemoryClient(baseUrl: string = location.origin): MemoryClient {
  const transport = createConnectTransport({
    baseUrl,
    useBinaryFormat: true,
    // GetRegistry is NO_SIDE_EFFECTS: plain GETs are cheap and cacheable by proxies that honour no-store.
    useHttpGet: true,
    interceptors: [auth],
  });
  return createClient(MemoryService, transport);
}
