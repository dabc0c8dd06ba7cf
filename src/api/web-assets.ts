// The live page's static files on the HTTP port: GET/HEAD `/` (and /index.html) and /assets/<name>.
// Files are read once at start from the esbuild output (dist/web in a build, web/dist when run from
// source) into memory, with a gzip copy; only those files are ever served (no path is mapped onto
// the filesystem, so no traversal). Caching: asset names carry a content hash (scripts/build-web.mjs),
// so they are immutable for a year; index.html is revalidated every time (ETag) so a new build shows
// up on the next load. When no build is present the page is simply absent (404 with a hint).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import type { Logger } from '../logger.js';

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

// The page talks only to its own origin (Connect-Web) and loads only its own script and stylesheet.
const PAGE_HEADERS: OutgoingHttpHeaders = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

interface Asset {
  readonly body: Buffer;
  readonly gzip: Buffer | undefined;
  readonly type: string;
  readonly etag: string;
  readonly cacheControl: string;
}

export type AssetResponse = ServerResponse | Http2ServerResponse;

/** writeHead on either response type (@types/node >= 22 types the union's overloads as not callable). */
export function writeHead(res: AssetResponse, status: number, headers: OutgoingHttpHeaders): void {
  if (res instanceof Http2ServerResponse) res.writeHead(status, headers);
  else res.writeHead(status, headers);
}

function send(res: AssetResponse, status: number, headers: OutgoingHttpHeaders, body: Buffer | undefined): void {
  writeHead(res, status, headers);
  if (body) res.end(body);
  else res.end();
}

export interface WebAssets {
  /** Directory served from, or undefined when no build was found. */
  readonly dir: string | undefined;
  /**
   * Answers GET/HEAD for `/`, `/index.html` and `/assets/*`. Returns false (and writes nothing) for
   * any other path or method, so the caller's routing continues.
   */
  handle(method: string | undefined, path: string, headers: IncomingHttpHeaders, res: AssetResponse): boolean;
}

function defaultDirs(): string[] {
  const here = fileURLToPath(new URL('.', import.meta.url));
  // dist/src/api -> dist/web (npm run build copies web/dist there); src/api -> web/dist (tsx).
  return [join(here, '..', '..', 'web'), join(here, '..', '..', 'web', 'dist')];
}

function load(dir: string): Map<string, Asset> {
  const files = new Map<string, Asset>();
  const add = (urlPath: string, file: string, cacheControl: string): void => {
    const type = TYPES[extname(file)];
    if (!type) return;
    const body = readFileSync(file);
    const gz = body.length > 1024 && !type.startsWith('image/png') ? gzipSync(body, { level: 9 }) : undefined;
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    files.set(urlPath, { body, gzip: gz && gz.length < body.length ? gz : undefined, type, etag, cacheControl });
  };
  add('/', join(dir, 'index.html'), 'no-cache');
  files.set('/index.html', files.get('/')!);
  const assets = join(dir, 'assets');
  if (existsSync(assets)) {
    for (const name of readdirSync(assets)) add(`/assets/${name}`, join(assets, name), 'public, max-age=31536000, immutable');
  }
  return files;
}

export function loadWebAssets(logger: Logger, dirs: readonly string[] = defaultDirs()): WebAssets {
  const log = logger.child({ component: 'web-assets' });
  // A directory counts only when it holds a built page (index.html next to assets/): the source
  // tree's web/ has neither, so it is never served.
  const dir = dirs.find((d) => existsSync(join(d, 'index.html')) && existsSync(join(d, 'assets')));
  const files = dir ? load(dir) : new Map<string, Asset>();
  if (dir) log.debug({ dir, files: files.size }, 'serving the live page at /');
  else log.warn({ looked: dirs }, 'no built page found (run npm run build); / answers 404');

  return {
    dir,
    handle(method, path, headers, res) {
      if (path !== '/' && path !== '/index.html' && !path.startsWith('/assets/')) return false;
      if (method !== 'GET' && method !== 'HEAD') return false;
      const asset = files.get(path);
      if (!asset) {
        const body = Buffer.from(dir ? 'not found\n' : 'the live page is not built: run npm run build\n');
        const h = { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(body.length), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
        send(res, 404, h, method === 'HEAD' ? undefined : body);
        return true;
      }
      const common: OutgoingHttpHeaders = {
        'cache-control': asset.cacheControl,
        etag: asset.etag,
        vary: 'accept-encoding',
        ...(asset.type.startsWith('text/html') ? PAGE_HEADERS : { 'x-content-type-options': 'nosniff' }),
      };
      const inm = headers['if-none-match'];
      if (typeof inm === 'string' && inm.split(',').some((t) => t.trim() === asset.etag || t.trim() === `W/${asset.etag}`)) {
        send(res, 304, common, undefined);
        return true;
      }
      const ae = headers['accept-encoding'];
      const gzip = asset.gzip !== undefined && typeof ae === 'string' && /\bgzip\b/.test(ae);
      const body = gzip ? asset.gzip! : asset.body;
      const h = { ...common, 'content-type': asset.type, 'content-length': String(body.length), ...(gzip ? { 'content-encoding': 'gzip' } : {}) };
      send(res, 200, h, method === 'HEAD' ? undefined : body);
      return true;
    },
  };
}
