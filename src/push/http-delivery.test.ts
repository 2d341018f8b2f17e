import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpDelivery } from './http-delivery.ts';
import { parseAllowList } from './ssrf.ts';

describe('HttpDelivery', () => {
  let server: Server;
  let base = '';
  const seen: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req.url ?? '');
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const delivery = () => new HttpDelivery({ timeoutMs: 2000, connectionsPerOrigin: 2, allow: parseAllowList(['loopback']) });

  it('posts to the path and query of the URL, every time (the checked URL is reused)', async () => {
    const d = delivery();
    try {
      seen.length = 0;
      for (let i = 0; i < 3; i++) expect(await d.post(`${base}/push/in?x=1`, '{}', { 'content-type': 'application/json' })).toMatchObject({ status: 204 });
      expect(seen).toEqual(['/push/in?x=1', '/push/in?x=1', '/push/in?x=1']);
    } finally {
      await d.close();
    }
  });

  it('refuses, every time, an IP outside the allowed networks, a non-http scheme and a malformed URL', async () => {
    const d = delivery();
    try {
      for (let i = 0; i < 2; i++) {
        expect(await d.post('http://10.1.2.3/push', '{}', {})).toEqual({ error: 'EPUSHFORBIDDEN' });
        expect(await d.post('http://[::ffff:10.1.2.3]/push', '{}', {})).toEqual({ error: 'EPUSHFORBIDDEN' });
        expect(await d.post('ftp://127.0.0.1/push', '{}', {})).toEqual({ error: 'EPUSHFORBIDDEN' });
        expect(await d.post('not a url', '{}', {})).toEqual({ error: 'EPUSHFORBIDDEN' });
      }
    } finally {
      await d.close();
    }
  });

  it('refuses header values with control characters or code points over U+00FF, sending nothing', async () => {
    const d = delivery();
    try {
      seen.length = 0;
      for (const bad of ['a\x01b', 'a\x7fb', 'caf\u20ac', 'a\rb']) expect(await d.post(`${base}/h`, '{}', { 'x-v': bad })).toEqual({ error: 'invalid request header' });
      expect(await d.post(`${base}/h`, '{}', { 'bad name': 'v' })).toEqual({ error: 'invalid request header' });
      expect(await d.post(`${base}/h`, '{}', { 'x-v': 'tab\tand caf\u00e9' })).toMatchObject({ status: 204 });
      expect(seen).toEqual(['/h']);
    } finally {
      await d.close();
    }
  });

  it('stays correct past the bound of checked URLs', async () => {
    const d = delivery();
    try {
      seen.length = 0;
      for (let i = 0; i < 1100; i++) expect(await d.post(`http://10.0.${i >> 8}.${i & 255}/p`, '', {})).toEqual({ error: 'EPUSHFORBIDDEN' });
      expect(await d.post(`${base}/after`, '', {})).toMatchObject({ status: 204 });
      expect(seen).toEqual(['/after']);
    } finally {
      await d.close();
    }
  });
});
