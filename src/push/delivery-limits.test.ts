/**
 * The push delivery primitives: the request timeout, the SSRF allow-list (several DNS answers,
 * IPv6 forms), and the Standard Webhooks signature as the exported verifier checks it.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpDelivery } from './http-delivery.ts';
import { guardedLookup, parseAllowList } from './ssrf.ts';
import { signWebhook } from './signing.ts';
import { readVerifiedBody, isSignatureError } from './webhook-verifier.ts';

const servers: Server[] = [];
const deliveries: HttpDelivery[] = [];
afterEach(async () => {
  await Promise.all(deliveries.splice(0).map((d) => d.close()));
  for (const s of servers.splice(0)) s.closeAllConnections();
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

async function listen(handler: (req: IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    handler(req, res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits };
}

function delivery(timeoutMs: number, allowed: string[] = ['loopback']): HttpDelivery {
  const d = new HttpDelivery({ timeoutMs, connectionsPerOrigin: 4, allow: parseAllowList(allowed) });
  deliveries.push(d);
  return d;
}

describe('[push] request-timeout', () => {
  it('a receiver that never answers: the POST ends as a timeout after about the request timeout', async () => {
    const { url } = await listen(() => undefined);
    const t0 = Date.now();
    const r = await delivery(300).post(`${url}/push`, '{}', { 'content-type': 'application/json' });
    expect(r).toEqual({ error: 'timeout' });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  // Regression test (this was a bug, now fixed). Was: [push] request-timeout is "Timeout of one POST to the receiver" (src/config/catalogue.ts:274,
  // docs/push.md "timeout (`[push] request-timeout`, 10 s)"), but src/push/http-delivery.ts:41-42 only sets
  // undici's headersTimeout/bodyTimeout, and bodyTimeout is an *idle* timer re-armed by every body chunk;
  // then http-delivery.ts:44 awaits res.body.dump() (up to 64 KiB). A receiver that answers its headers and
  // then trickles the body a byte at a time keeps one POST (and an engine in-flight slot, of max-concurrency)
  // open far beyond the timeout: a slow receiver can hold every slot and starve the other sessions.
  // Right behaviour: the whole POST (connect, headers, body) is bounded by request-timeout (e.g. a total
  // deadline / AbortSignal), after which post() resolves.
  it('a receiver that trickles its answer body cannot keep one POST open past the request timeout', async () => {
    const { url } = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const t = setInterval(() => {
        if (res.destroyed || n++ >= 20) {
          clearInterval(t);
          if (!res.destroyed) res.end();
          return;
        }
        res.write('x');
      }, 150);
    });
    const t0 = Date.now();
    await delivery(500).post(`${url}/push`, '{}', { 'content-type': 'application/json' });
    // request-timeout is 500 ms; the receiver takes ~3 s to finish its body.
    expect(Date.now() - t0).toBeLessThan(1500);
  });
});

describe('the answer to a POST', () => {
  it('gives the status and the headers (a Retry-After of a 429)', async () => {
    const { url } = await listen((req, res) => {
      req.resume();
      res.writeHead(429, { 'retry-after': '7', 'content-type': 'text/plain' });
      res.end('slow down');
    });
    const r = await delivery(2000).post(`${url}/push`, '{}', { 'content-type': 'application/json' });
    expect(r).toMatchObject({ status: 429, headers: { 'retry-after': '7' } });
  });

  it('a body over 64 KiB is cut: the status counts, and the next POST still goes through', async () => {
    const { url, hits } = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(1024 * 1024));
    });
    const d = delivery(2000);
    expect(await d.post(`${url}/push`, '{}', {})).toMatchObject({ status: 200 });
    expect(await d.post(`${url}/push`, '{}', {})).toMatchObject({ status: 200 });
    expect(hits()).toBe(2);
  });

  it('a connection cut after the status still gives the status; cut before it, an error code', async () => {
    const after = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setTimeout(() => res.destroy(), 20);
    });
    expect(await delivery(2000).post(`${after.url}/push`, '{}', {})).toMatchObject({ status: 200 });
    const before = await listen((req) => req.socket.destroy());
    const r = await delivery(2000).post(`${before.url}/push`, '{}', {});
    expect(r).toEqual({ error: expect.any(String) });
    expect('error' in r && r.error).not.toBe('timeout');
  });

  it('nothing listening: the error code of the connection', async () => {
    const { url } = await listen(() => undefined);
    const s = servers.pop();
    await new Promise<void>((r) => s?.close(() => r()));
    expect(await delivery(2000).post(`${url}/push`, '{}', {})).toEqual({ error: 'ECONNREFUSED' });
  });
});

describe('SSRF guard', () => {
  it('an IP-literal target outside allowed-networks (IPv4, IPv6 loopback, IPv4-mapped IPv6) is never contacted', async () => {
    const rcv = await listen((_req, res) => res.end('ok'));
    const port = new URL(rcv.url).port;
    const d = delivery(1000, ['public']);
    for (const host of ['127.0.0.1', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '2130706433', '0x7f.1', '[64:ff9b::7f00:1]', '[2002:7f00:1::1]']) {
      expect(await d.post(`http://${host}:${port}/push`, '{}', {})).toEqual({ error: 'EPUSHFORBIDDEN' });
    }
    expect(rcv.hits()).toBe(0);
  });

  it('a name with several DNS answers: only the allowed addresses are handed to the connection', async () => {
    const allow = parseAllowList(['10.0.0.0/8']);
    const lookup = guardedLookup(allow, async () => [
      { address: '127.0.0.1', family: 4 },
      { address: '10.1.2.3', family: 4 },
      { address: '::1', family: 6 },
    ]);
    const all = await new Promise<unknown>((resolve, reject) =>
      lookup('multi.example', { all: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))),
    );
    expect(all).toEqual([{ address: '10.1.2.3', family: 4 }]);
    const one = await new Promise<unknown>((resolve, reject) =>
      lookup('multi.example', {}, (err, addr) => (err ? reject(err) : resolve(addr))),
    );
    expect(one).toBe('10.1.2.3');
    const none = guardedLookup(allow, async () => [{ address: '::ffff:127.0.0.1', family: 6 }]);
    const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => none('x.example', { all: true }, (e) => resolve(e)));
    expect(err?.code).toBe('EPUSHFORBIDDEN');
  });

  it('a 3xx answer is not followed to a forbidden Location', async () => {
    const inner = await listen((_req, res) => res.end('ok'));
    const outer = await listen((_req, res) => {
      res.writeHead(307, { location: `${inner.url}/push` });
      res.end();
    });
    // Only the outer receiver's exact address is allowed.
    const r = await delivery(1000, ['127.0.0.1']).post(`${outer.url}/push`, '{}', {});
    expect(r).toMatchObject({ status: 307 });
    expect(inner.hits()).toBe(0);
  });
});

describe('Standard Webhooks signature', () => {
  it('the signature is v1,base64(HMAC-SHA256(key, id.ts.body)) with the whsec_ key base64-decoded, and readVerifiedBody accepts it', async () => {
    const key = Buffer.from('0123456789abcdef0123456789abcdef');
    const secret = `whsec_${key.toString('base64')}`;
    const body = '{"deviceId":"d","message":"m"}';
    const h = signWebhook(secret, 'ntf_1', 1_700_000_000, body);
    const expected = createHmac('sha256', key).update(`ntf_1.1700000000.${body}`).digest('base64');
    expect(h['webhook-signature']).toBe(`v1,${expected}`);

    let seen: Buffer | undefined;
    let rejected: unknown;
    const rcv = await listen((req, res) => {
      readVerifiedBody(secret, req, { nowSec: 1_700_000_010 }).then(
        (b) => {
          seen = b;
          res.end('ok');
        },
        (e: unknown) => {
          rejected = e;
          res.statusCode = 401;
          res.end();
        },
      );
    });
    const ok = await delivery(1000).post(`${rcv.url}/push`, body, { 'content-type': 'application/json', ...h });
    expect(ok).toMatchObject({ status: 200 });
    expect(seen?.toString()).toBe(body);
    const bad = await delivery(1000).post(`${rcv.url}/push`, body.replace('"m"', '"x"'), { 'content-type': 'application/json', ...h });
    expect(bad).toMatchObject({ status: 401 });
    expect(isSignatureError(rejected)).toBe(true);
  });
});
