/**
 * Hostile input on the HTTP front outside the Chat API and the agent API: odd request targets, the
 * receiver's file endpoints, and the static pages (/desk/, /chat/) with HEAD and conditional requests.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_INI, startTestServer, type TestServer } from './helpers.ts';
import { freePort, killChild, startChild } from './receiver-helpers.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

/** Sends a raw HTTP/1.1 request and answers the status line ('' when the server never answered). */
function rawRequest(base: string, text: string, timeoutMs = 1500): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(text));
    let out = '';
    const done = () => resolve(out.split('\r\n')[0] ?? '');
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, timeoutMs);
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('close', () => {
      clearTimeout(timer);
      done();
    });
    s.on('error', () => undefined);
  });
}

/** A request/response pair good enough for app.handle / app.upgrade, which only read url, method, headers. */
function fakeExchange(url: string): { req: IncomingMessage; res: ServerResponse; socket: Duplex; status: () => number | undefined } {
  let status: number | undefined;
  const req = { url, method: 'GET', headers: {}, resume() {}, on() {}, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
  const res = {
    headersSent: false,
    writeHead(s: number) {
      status = s;
      return res;
    },
    setHeader() {},
    end() {},
  } as unknown as ServerResponse;
  const socket = { destroy() {}, write() {}, end() {}, on() {}, once() {} } as unknown as Duplex;
  return { req, res, socket, status: () => status };
}

describe('request targets that new URL() cannot parse', () => {
  // Regression test (this was a bug, now fixed): src/app.ts:114 — handle() runs `new URL(req.url, 'http://localhost')` outside any try/catch. A request
  // target such as `//` (or `//a b/`, `//[`, `//%zz/`), which Node's HTTP parser accepts, makes it throw
  // "Invalid URL" synchronously inside the server's 'request' listener: an uncaught exception that kills the
  // process (no uncaughtException handler exists). One unauthenticated request takes the whole server down.
  // Required: answer 400/404 in the JSON error format. The same applies to app.ts:143 (upgrade),
  // receiver-http.ts:98, gateway-socket.ts:68 and roles/gateway.ts:54, roles/receiver-only.ts:23.
  it.each(['//', '//a b/', '//[', '//%zz/'])('app.handle does not throw on the request target %s', (target) => {
    const x = fakeExchange(target);
    expect(() => server.running.app.handle(x.req, x.res)).not.toThrow();
    expect(x.status()).toBeGreaterThanOrEqual(400);
    expect(x.status()).toBeLessThan(500);
  });

  // Regression test (this was a bug, now fixed): src/app.ts:143 — the same `new URL()` in upgrade(): `GET // HTTP/1.1` with `Upgrade: websocket`
  // throws inside the server's 'upgrade' listener (uncaught). Required: destroy the socket (or answer 400).
  it('app.upgrade does not throw on the request target //', () => {
    const x = fakeExchange('//');
    expect(() => server.running.app.upgrade(x.req, x.socket, Buffer.alloc(0))).not.toThrow();
  });

  // Regression test (this was a bug, now fixed): src/app.ts:114 — end to end: a real `parley start` process gets `GET // HTTP/1.1` and dies with
  // "TypeError: Invalid URL"; the next request cannot connect. Required: answer 4xx and keep serving.
  it(
    'a real parley process survives `GET // HTTP/1.1` and still answers /health',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'parley-hostile-'));
      const port = await freePort();
      const ini = join(dir, 'parley.ini');
      writeFileSync(
        ini,
        BASE_INI.replace('port = 0', `port = ${port}`) +
          `\n[store]\npath = ${join(dir, 'parley.db')}\n[receiver]\nstore-path = ${join(dir, 'receiver.db')}\n`,
      );
      const { proc, url } = await startChild(ini);
      try {
        const status = await rawRequest(url, 'GET // HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        // Whatever it answered, the process must still be alive and serving.
        await new Promise((r) => setTimeout(r, 200));
        expect(proc.exitCode).toBeNull();
        expect((await fetch(`${url}/health`)).status).toBe(200);
        expect(status).toMatch(/^HTTP\/1\.1 4\d\d/);
      } finally {
        await killChild(proc);
        rmSync(dir, { recursive: true, force: true });
      }
    },
    20_000,
  );

  it('answers other odd targets (absolute-form, ///x, dot segments) without 5xx and keeps serving', async () => {
    for (const target of ['///x', '/desk/../../etc/passwd', 'http://evil.example/agent/api/me', '/%00', '/desk/%2e%2e/package.json', '/desk//']) {
      const status = await rawRequest(server.url, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(status, target).toMatch(/^HTTP\/1\.1 [234]\d\d/);
    }
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });
});

describe('receiver HTTP endpoints', () => {
  // Regression test (this was a bug, now fixed): src/receiver/receiver-http.ts:87 — the download route calls decodeURIComponent(m[1]) unguarded; a
  // malformed escape (`%E0%A4%A`, `%`, `%zz`) throws URIError, which becomes INTERNAL: 500 and an error log
  // line, for a request that needs no session at all. Required: 404 NOT_FOUND (as the agent API's decodePart
  // does) or 400.
  it.each(['%E0%A4%A', '%', '%zz'])('answers GET /receiver/file/%s with a 4xx, not 500', async (id) => {
    const r = await fetch(`${server.url}/receiver/file/${id}?session=whatever`);
    const body = (await r.json()) as { error: { code: string } };
    expect(r.status).toBeLessThan(500);
    expect(body.error.code).not.toBe('INTERNAL');
  });

  it('refuses a download, limits query and upload without a valid session token (403 ACCESS_DENIED)', async () => {
    for (const r of [
      await fetch(`${server.url}/receiver/file/abc?session=nope`),
      await fetch(`${server.url}/receiver/file/abc`),
      await fetch(`${server.url}/receiver/file-limits?session=nope`),
      await fetch(`${server.url}/receiver/file`, { method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=xx' }, body: Buffer.alloc(2_000_000, 97) }),
    ]) {
      expect(r.status).toBe(403);
      expect(await r.json()).toMatchObject({ error: { code: 'ACCESS_DENIED' } });
    }
  });

  it('answers unknown receiver paths and wrong methods with 404 JSON, not 5xx', async () => {
    for (const [method, path] of [
      ['GET', 'push'],
      ['PUT', 'file'],
      ['DELETE', 'file/abc'],
      ['GET', 'file/a/b'],
      ['GET', 'ws'],
    ] as const) {
      const r = await fetch(`${server.url}/receiver/${path}`, { method });
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(await r.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    }
  });
});

describe('static pages', () => {
  it('answers HEAD with the headers of GET and no body', async () => {
    const get = await fetch(`${server.url}/desk/app.js`);
    const head = await fetch(`${server.url}/desk/app.js`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(get.headers.get('content-length'));
    expect(head.headers.get('etag')).toBe(get.headers.get('etag'));
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it('answers 304 for the exact etag, with the security headers', async () => {
    const etag = (await fetch(`${server.url}/chat/app.js`)).headers.get('etag') ?? '';
    const r = await fetch(`${server.url}/chat/app.js`, { headers: { 'if-none-match': etag } });
    expect(r.status).toBe(304);
    expect(r.headers.get('content-security-policy')).toContain("default-src 'self'");
  });

  // Regression test (this was a bug, now fixed): src/web/assets.ts:78 — If-None-Match is compared as one exact string. RFC 9110 §13.1.2 says it is a
  // list compared weakly, and `*` matches any current representation. A proxy that weakens ETags (nginx gzip
  // turns "x" into W/"x") or a client that sends a list never gets a 304 and downloads the page each time.
  // Required: 304 for W/"<etag>", for a list containing the etag, and for `*`.
  it.each([
    ['a weak copy of the etag', (e: string) => `W/${e}`],
    ['a list containing the etag', (e: string) => `"other", ${e}`],
    ['*', () => '*'],
  ])('answers 304 for If-None-Match with %s', async (_what, header) => {
    const etag = (await fetch(`${server.url}/chat/app.js`)).headers.get('etag') ?? '';
    const r = await fetch(`${server.url}/chat/app.js`, { headers: { 'if-none-match': header(etag) } });
    expect(r.status).toBe(304);
  });

  it('refuses POST, PUT and DELETE on page files and unknown files under /desk/ with 404 JSON', async () => {
    for (const [method, path] of [
      ['POST', '/desk/'],
      ['PUT', '/desk/app.js'],
      ['DELETE', '/chat/index.html'],
      ['GET', '/desk/app.ts'],
      ['GET', '/desk/index.html/'],
      ['GET', '/desk/..%2f..%2fpackage.json'],
    ] as const) {
      const r = await fetch(`${server.url}${path}`, { method });
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    }
  });
});

describe('slow clients', () => {
  it('gives a client 20 s to send its request headers (Node defaults to 60 s)', async () => {
    const { listen } = await import('../src/roles/listen.ts');
    const h = await listen({ host: '127.0.0.1', port: 0, maxConnections: 0 }, (_req, res) => res.end('ok'));
    try {
      expect(h.server.headersTimeout).toBe(20_000);
    } finally {
      await h.close();
    }
  });
});

describe('[http] max-connections', () => {
  it('closes a connection over the cap at once; the open ones go on being served, and a place frees up when one closes', async () => {
    const { listen } = await import('../src/roles/listen.ts');
    const { connect } = await import('node:net');
    const h = await listen({ host: '127.0.0.1', port: 0, maxConnections: 3 }, (_req, res) => res.end('ok'));
    const port = Number(new URL(h.url).port);
    const open = (): Promise<import('node:net').Socket> =>
      new Promise((resolve, reject) => {
        const s = connect(port, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
      });
    /** The answer to one GET on the socket, or 'closed' when the server closed it without one. */
    const ask = (s: import('node:net').Socket): Promise<string> =>
      new Promise((resolve) => {
        let got = '';
        s.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          if (got.includes('\r\n\r\nok')) resolve(got.split('\r\n')[0] ?? '');
        });
        s.once('close', () => resolve(got === '' ? 'closed' : got.split('\r\n')[0] ?? ''));
        s.once('error', () => undefined);
        s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
      });
    const sockets = [await open(), await open(), await open()];
    try {
      const extra = await open();
      expect(await ask(extra)).toBe('closed');
      for (const s of sockets) expect(await ask(s)).toBe('HTTP/1.1 200 OK');
      const first = sockets.shift();
      await new Promise<void>((r) => {
        first?.once('close', () => r());
        first?.destroy();
      });
      // The server notices the close in its next turn.
      await new Promise((r) => setTimeout(r, 50));
      const next = await open();
      sockets.push(next);
      expect(await ask(next)).toBe('HTTP/1.1 200 OK');
    } finally {
      for (const s of sockets) s.destroy();
      await h.close();
    }
  });

  it('is 10,000 by default and 0 turns the cap off', async () => {
    const { parseConfig } = await import('../src/config/load.ts');
    const { listen } = await import('../src/roles/listen.ts');
    const config = parseConfig('[chat.support]\n[agent.a]\npassword = 12345678\n', 'test.ini');
    expect(config.http.maxConnections).toBe(10_000);
    const off = await listen({ host: '127.0.0.1', port: 0, maxConnections: 0 }, (_req, res) => res.end('ok'));
    try {
      expect(Number.isFinite(off.server.maxConnections)).toBe(false);
    } finally {
      await off.close();
    }
  });
});
