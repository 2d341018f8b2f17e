/**
 * The answer to a push POST as src/push/http-delivery.ts takes it (src/push/origin-pool.ts and
 * answer-parser.ts): redirects, repeated headers, long and trickled bodies, close() with POSTs in flight,
 * refused headers.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpDelivery } from '../src/push/http-delivery.ts';
import { parseAllowList } from '../src/push/ssrf.ts';

const servers: Server[] = [];
const deliveries: HttpDelivery[] = [];
afterEach(async () => {
  await Promise.all(deliveries.splice(0).map((d) => d.close()));
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; hits: () => number; server: Server }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    handler(req, res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits, server };
}

function delivery(timeoutMs: number): HttpDelivery {
  const d = new HttpDelivery({ timeoutMs, connectionsPerOrigin: 2, allow: parseAllowList(['loopback']) });
  deliveries.push(d);
  return d;
}

describe('the answer to a push POST', () => {
  it('a 3xx is an answer of its own: not followed, its status and Location given', async () => {
    const target = await listen((req, res) => {
      req.resume();
      res.end('ok');
    });
    const { url } = await listen((req, res) => {
      req.resume();
      res.writeHead(307, { location: `${target.url}/elsewhere` });
      res.end();
    });
    const r = await delivery(2000).post(`${url}/push`, '{}', { 'content-type': 'application/json' });
    expect(r).toMatchObject({ status: 307, headers: { location: `${target.url}/elsewhere` } });
    expect(target.hits()).toBe(0);
  });

  it('a header sent twice comes as an array, a single one as a string', async () => {
    const { url } = await listen((req, res) => {
      req.resume();
      res.setHeader('retry-after', '5');
      res.setHeader('x-many', ['a', 'b']);
      res.writeHead(503);
      res.end();
    });
    const r = await delivery(2000).post(`${url}/push`, '{}', {});
    expect(r).toMatchObject({ status: 503, headers: { 'retry-after': '5', 'x-many': ['a', 'b'] } });
  });

  it('a body over 64 KiB on a Connection: close answer, arriving with the end of the message, still gives the status; the next POST goes through', async () => {
    const body = 'y'.repeat(70 * 1024);
    const { url, hits } = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { connection: 'close', 'content-length': String(body.length) });
      res.end(body);
    });
    const d = delivery(2000);
    for (let i = 0; i < 5; i++) expect(await d.post(`${url}/push`, '{}', {})).toMatchObject({ status: 200 });
    expect(hits()).toBe(5);
  });

  it('a trickled body is cut at the request timeout with the status it had, and the slot is free again', async () => {
    const { url } = await listen((req, res) => {
      req.resume();
      if (req.url === '/slow') {
        res.writeHead(202, { 'content-type': 'text/plain' });
        const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write('x')), 50);
        return;
      }
      res.end('fast');
    });
    const d = delivery(400);
    const slow = await Promise.all([d.post(`${url}/slow`, '{}', {}), d.post(`${url}/slow`, '{}', {})]);
    expect(slow).toEqual([expect.objectContaining({ status: 202 }), expect.objectContaining({ status: 202 })]);
    expect(await d.post(`${url}/fast`, '{}', {})).toMatchObject({ status: 200 });
  });

  it('POSTs in flight when the delivery closes end with an error instead of hanging', async () => {
    const { url } = await listen(() => undefined);
    const d = new HttpDelivery({ timeoutMs: 60_000, connectionsPerOrigin: 1, allow: parseAllowList(['loopback']) });
    const pending = [d.post(`${url}/push`, '{}', {}), d.post(`${url}/push`, '{}', {})];
    await new Promise((r) => setTimeout(r, 50));
    await d.close();
    const results = await Promise.race([Promise.all(pending), new Promise((r) => setTimeout(() => r('hung'), 5000))]);
    expect(results).toEqual([{ error: expect.any(String) }, { error: expect.any(String) }]);
  });

  it('a request header that cannot be sent (CR LF in its value) is an error result, not a thrown or hanging POST', async () => {
    const { url, hits } = await listen((req, res) => {
      req.resume();
      res.end();
    });
    const r = await Promise.race([
      delivery(2000).post(`${url}/push`, '{}', { 'x-bad': 'a\r\nb' }),
      new Promise((res) => setTimeout(() => res('hung'), 3000)),
    ]);
    expect(r).toEqual({ error: expect.any(String) });
    expect(hits()).toBe(0);
  });
});
