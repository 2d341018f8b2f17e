/**
 * Edges of the push HTTP client (origin-pool.ts, answer-parser.ts, http-delivery.ts) against docs/push.md
 * "The HTTP client" and RFC 9112, with raw receivers on 127.0.0.1.
 */
import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { AnswerParser } from './answer-parser.ts';
import { HttpDelivery } from './http-delivery.ts';
import { OriginPool } from './origin-pool.ts';
import type { AttemptResult } from './retry-policy.ts';
import { guardedLookup, parseAllowList } from './ssrf.ts';

const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nsuccess';

const servers: Array<{ server: Server; sockets: Set<Socket> }> = [];
const pools: OriginPool[] = [];
const deliveries: HttpDelivery[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) p.close();
  await Promise.all(deliveries.splice(0).map((d) => d.close()));
  for (const { sockets } of servers) for (const s of sockets) s.destroy();
  await Promise.all(servers.splice(0).map(({ server }) => new Promise<void>((r) => server.close(() => r()))));
});

/** A raw receiver: `onRequest(socket, n, k)` per data event, n = requests overall, k = requests on this socket. */
async function receiver(
  onRequest: (socket: Socket, n: number, k: number, data: string) => void,
  o: { tls?: boolean; host?: string } = {},
): Promise<{ port: number; connections: () => number; open: () => number; peak: () => number; requests: string[] }> {
  let connections = 0;
  let peak = 0;
  let n = 0;
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const handle = (socket: Socket) => {
    connections++;
    let k = 0;
    sockets.add(socket);
    peak = Math.max(peak, sockets.size);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      requests.push(d.toString('latin1'));
      onRequest(socket, ++n, ++k, d.toString('latin1'));
    });
  };
  const server: Server =
    o.tls === true
      ? createTlsServer({ key: readFileSync('test/fixtures/push-tls.key'), cert: readFileSync('test/fixtures/push-tls.crt') }, handle)
      : createNetServer(handle);
  servers.push({ server, sockets });
  await new Promise<void>((r) => server.listen(0, o.host ?? '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, connections: () => connections, open: () => sockets.size, peak: () => peak, requests };
}

function pool(port: number, o: { max?: number; timeoutMs?: number } = {}): { post: () => Promise<AttemptResult>; pool: OriginPool } {
  const p = new OriginPool({
    protocol: 'http:',
    hostname: '127.0.0.1',
    port,
    max: o.max ?? 4,
    lookup: guardedLookup(parseAllowList(['loopback'])),
    idleMs: 30_000,
    now: Date.now,
  });
  pools.push(p);
  const timeoutMs = o.timeoutMs ?? 3000;
  const bytes = `POST /push HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-length: 2\r\n\r\n{}`;
  return { pool: p, post: () => new Promise((resolve) => p.post({ bytes, deadline: Date.now() + timeoutMs, resolve })) };
}

function delivery(timeoutMs: number, max = 2): HttpDelivery {
  const d = new HttpDelivery({ timeoutMs, connectionsPerOrigin: max, allow: parseAllowList(['loopback']) });
  deliveries.push(d);
  return d;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hung = (ms: number) => new Promise((r) => setTimeout(() => r('hung'), ms));

describe('OriginPool', () => {
  // Regression test (this was a bug, now fixed). Was: src/push/origin-pool.ts:118 (gone -> dispatch(lost) -> line 72 idle.pop()): the POST lost on a reused
  // connection is retried on another *idle, reused* connection when there is one, not "on a new connection" as the
  // file's header comment and docs/push.md ("goes once more on a new connection") say. When the receiver's
  // keep-alive timeout closed all idle connections at once, the single retry is spent on a second stale connection
  // and the POST fails although the receiver is up. Right: the retry opens a new connection (or at least never uses
  // a connection that already carried an answer).
  it('a POST lost on a stale reused connection is retried on a new connection, even when another idle (equally stale) connection exists', async () => {
    // Each connection answers its first request and is closed by the receiver at its second (keep-alive timeout race).
    const r = await receiver((s, _n, k) => (k === 1 ? setTimeout(() => s.write(OK), 20) : s.destroy()));
    const { post } = pool(r.port, { max: 2 });
    expect(await Promise.all([post(), post()])).toEqual([expect.objectContaining({ status: 200 }), expect.objectContaining({ status: 200 })]);
    expect(r.connections()).toBe(2);
    // Observed: { error: 'closed before an answer' } and still 2 connections: the retry went to the other idle one.
    expect(await post()).toMatchObject({ status: 200 });
    expect(r.connections()).toBe(3);
  });

  // Regression test (this was a bug, now fixed). Was: src/push/origin-pool.ts:104-105 (released) starts the next queued POST without looking at its deadline, and
  // dispatch (line 72) does the same for a retried one: a POST whose request timeout ran out while it waited for a
  // connection is still written to the receiver; the next sweep then reports { error: 'timeout' }, so the caller
  // resends a notification the receiver got. docs/push.md: "[push] request-timeout bounds the whole POST: waiting
  // for a connection, ...". Right: a job past its deadline is settled as 'timeout' when taken from the queue,
  // never written. (With HttpDelivery's 100 ms sweeper the window is up to 100 ms per POST.)
  it('a queued POST whose deadline passed while it waited is not written to the receiver', async () => {
    const r = await receiver((s, n) => setTimeout(() => (s.destroyed ? undefined : s.write(OK)), n === 1 ? 150 : 100));
    const { post: slow, pool: p } = pool(r.port, { max: 1 });
    const bytes = `POST /push HTTP/1.1\r\nhost: 127.0.0.1:${r.port}\r\ncontent-length: 2\r\n\r\n{}`;
    const a = slow();
    const b = new Promise<AttemptResult>((resolve) => p.post({ bytes, deadline: Date.now() + 50, resolve }));
    expect(await a).toMatchObject({ status: 200 });
    await pause(30);
    p.sweep();
    expect(await b).toEqual({ error: 'timeout' });
    await pause(30);
    // Observed: 2 — B was written ~100 ms after its deadline, then reported as a timeout.
    expect(r.requests.length).toBe(1);
  });

  it('the max-connections bound and the open count survive a mix of answers, resets and timeouts', async () => {
    const r = await receiver((s, n) => (n % 3 === 0 ? s.destroy() : n % 3 === 1 ? undefined : s.write(OK)));
    const { post, pool: p } = pool(r.port, { max: 2, timeoutMs: 100 });
    const all = Promise.all(Array.from({ length: 12 }, () => post()));
    for (let i = 0; i < 20; i++) {
      await pause(25);
      p.sweep();
    }
    expect(await Promise.race([all, hung(3000)])).not.toBe('hung');
    expect(r.peak()).toBeLessThanOrEqual(2);
    await pause(50);
    expect(p.empty).toBe(true);
  });
});

describe('AnswerParser', () => {
  // Regression test (this was a bug, now fixed). Was: src/push/answer-parser.ts:134 and 153: headers is a plain {} and `prev = headers[key]` sees inherited
  // members, so a header named constructor / toString / hasOwnProperty ... sent once comes out as
  // [Function, value], and `__proto__: x` replaces the object's prototype instead of being a header. Contradicts the
  // file's own AnswerHeaders comment ("a header sent twice comes as an array"). Right: Object.create(null) (or
  // Object.hasOwn before reading prev).
  it('a header named like an Object.prototype member comes as its value', () => {
    const p = new AnswerParser();
    const r = p.feed(Buffer.from('HTTP/1.1 200 OK\r\nconstructor: a\r\ntostring: b\r\n__proto__: c\r\ncontent-length: 0\r\n\r\n'));
    expect(r).toEqual({ kind: 'done', rest: 0 });
    // Observed: [ [Function Object], 'a' ].
    expect(p.headers['constructor']).toBe('a');
    expect(p.headers['tostring']).toBe('b');
    expect(Object.hasOwn(p.headers, '__proto__')).toBe(true);
    expect(Array.isArray(Object.getPrototypeOf(p.headers))).toBe(false);
  });

  // Regression test (this was a bug, now fixed). Was: src/push/answer-parser.ts:165 and 174-181: an HTTP/1.0 answer with Transfer-Encoding keeps keepAlive = true
  // (when it says Connection: keep-alive). RFC 9112 section 6.1: "A server or client that receives an HTTP/1.0
  // message containing a Transfer-Encoding header field MUST treat the message as if the framing is faulty, even if
  // a Content-Length is present, and close the connection after processing the message." Right: keepAlive = false.
  it('an HTTP/1.0 answer with Transfer-Encoding never leaves the connection reusable (RFC 9112 6.1)', () => {
    const p = new AnswerParser();
    const r = p.feed(Buffer.from('HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'));
    expect(r).toEqual({ kind: 'done', rest: 0 });
    expect(p.keepAlive).toBe(false);
  });
});

describe('HttpDelivery', () => {
  // Regression test (this was a bug, now fixed). Was: src/push/answer-parser.ts:222-223 (trailers state): trailer lines are taken without any bound (each line
  // <= 1 KiB, but any number of them), while the head is capped at 16 KiB and the body at 64 KiB
  // (MAX_ANSWER_HEAD_BYTES, MAX_ANSWER_BYTES, docs/push.md "at most 64 KiB ... cut and the connection closed").
  // A receiver that streams trailers holds the POST and the connection for the whole request timeout and makes
  // Parley read unbounded bytes (undici/llhttp count trailers against maxHeaderSize, 16 KiB by default, and fail).
  // Right: count trailer bytes against the head limit and fail past it (the POST then ends at once with its status).
  it('an endless trailer section is cut like an endless head or body: the status comes without waiting for the timeout', async () => {
    const r = await receiver((s) => {
      s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n');
      const t = setInterval(() => (s.destroyed ? clearInterval(t) : s.write(`x-fill: ${'a'.repeat(1000)}\r\n`.repeat(10))), 1);
    });
    const d = delivery(1500);
    const t0 = Date.now();
    expect(await Promise.race([d.post(`http://127.0.0.1:${r.port}/p`, '{}', {}), hung(4000)])).toMatchObject({ status: 200 });
    // Observed: ~1500 ms (the request timeout), after hundreds of KiB of trailers.
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('an IPv6 literal target: [::1] in the Host header, ::1 connected to', async () => {
    let r;
    try {
      r = await receiver((s) => s.write(OK), { host: '::1' });
    } catch {
      return; // no IPv6 loopback here
    }
    const d = delivery(2000);
    expect(await d.post(`http://[::1]:${r.port}/p`, '{}', {})).toMatchObject({ status: 200 });
    expect(r.requests[0]).toContain(`host: [::1]:${r.port}\r\n`);
  });

  it('https: the SSRF lookup applies (a name outside the allowed networks is never connected to)', async () => {
    const r = await receiver((s) => s.write(OK), { tls: true });
    const d = new HttpDelivery({ timeoutMs: 2000, connectionsPerOrigin: 2, allow: parseAllowList(['public']) });
    deliveries.push(d);
    expect(await d.post(`https://localhost:${r.port}/p`, '{}', {})).toEqual({ error: 'EPUSHFORBIDDEN' });
    expect(r.connections()).toBe(0);
  });

  it('https to a receiver that never does its TLS handshake ends as a timeout', async () => {
    const r = await receiver(() => undefined);
    const d = delivery(300);
    const t0 = Date.now();
    expect(await Promise.race([d.post(`https://127.0.0.1:${r.port}/p`, '{}', {}), hung(2000)])).toEqual({ error: 'timeout' });
    expect(Date.now() - t0).toBeLessThan(700);
  });

  it('the sweeper restarts after every pool was dropped: the next POST still times out', async () => {
    const r = await receiver((s, n) => (n === 1 ? s.end('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n') : undefined));
    const d = delivery(300);
    expect(await d.post(`http://127.0.0.1:${r.port}/p`, '{}', {})).toMatchObject({ status: 200 });
    await pause(300);
    const t0 = Date.now();
    expect(await Promise.race([d.post(`http://127.0.0.1:${r.port}/p`, '{}', {}), hung(2000)])).toEqual({ error: 'timeout' });
    expect(Date.now() - t0).toBeLessThan(800);
  });

  it('endless interim 1xx answers end as a timeout', async () => {
    const r = await receiver((s) => {
      const t = setInterval(() => (s.destroyed ? clearInterval(t) : s.write('HTTP/1.1 100 Continue\r\n\r\n'.repeat(100))), 1);
    });
    const d = delivery(500);
    expect(await Promise.race([d.post(`http://127.0.0.1:${r.port}/p`, '{}', {}), hung(3000)])).toEqual({ error: 'timeout' });
  });
});
