/**
 * The web pages Parley serves (agent desk, customer chat): built once at start-up with esbuild from
 * `web/<page>/` (index.html, app.ts bundled with its imports, app.css), held in memory, served with
 * strong caching headers and a strict Content Security Policy (no CDN, no inline script).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { build } from 'esbuild';

export interface Asset {
  readonly type: string;
  readonly body: Buffer;
  readonly etag: string;
}

export type Page = ReadonlyMap<string, Asset>;

/** Where the page sources live: `<project>/web`. */
export const WEB_ROOT = join(import.meta.dirname, '..', '..', 'web');

function asset(type: string, body: Buffer): Asset {
  return { type, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
}

const built = new Map<string, Promise<Page>>();

/**
 * Builds `web/<name>`: `index.html`, `app.js` (bundled from app.ts) and `app.css`. Once per process: the
 * sources do not change while it runs, and every app started in it (tests start hundreds) shares the build.
 */
export function buildPage(name: string, root = WEB_ROOT): Promise<Page> {
  const key = join(root, name);
  let page = built.get(key);
  if (page === undefined) {
    page = compilePage(name, root);
    built.set(key, page);
    page.catch(() => built.delete(key));
  }
  return page;
}

async function compilePage(name: string, root: string): Promise<Page> {
  const dir = join(root, name);
  const out = await build({
    entryPoints: [join(dir, 'app.ts')],
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
  });
  const js = out.outputFiles[0];
  if (js === undefined) throw new Error(`esbuild produced nothing for web/${name}`);
  const files = new Map<string, Asset>([
    ['index.html', asset('text/html; charset=utf-8', readFileSync(join(dir, 'index.html')))],
    ['app.js', asset('text/javascript; charset=utf-8', Buffer.from(js.contents))],
  ]);
  const css = join(dir, 'app.css');
  if (existsSync(css)) files.set('app.css', asset('text/css; charset=utf-8', readFileSync(css)));
  return files;
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/**
 * If-None-Match against our (strong) etag, with the weak comparison RFC 9110 asks for: `*`, a list, and
 * `W/"..."` (what a proxy makes of a strong etag) all match.
 */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

/** Serves `rel` ("" = index.html) of a page; returns false when the page has no such file. */
export function servePage(page: Page, rel: string, req: IncomingMessage, res: ServerResponse): boolean {
  const a = page.get(rel === '' ? 'index.html' : rel);
  if (a === undefined) return false;
  const headers = { ...SECURITY_HEADERS, 'content-type': a.type, etag: a.etag, 'cache-control': 'no-cache' };
  if (etagMatches(req.headers['if-none-match'], a.etag)) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  res.writeHead(200, { ...headers, 'content-length': a.body.length });
  res.end(req.method === 'HEAD' ? undefined : a.body);
  return true;
}
