/**
 * The push client's connections to one origin, against raw TCP and TLS receivers that misbehave on cue:
 * reuse, the bound, the keep-alive race, bytes on an idle connection, the receiver's Keep-Alive hint, https.
 */
import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { OriginPool } from './origin-pool.ts';
import type { AttemptResult } from './retry-policy.ts';
import { guardedLookup, parseAllowList } from './ssrf.ts';

const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nsuccess';

const servers: Array<{ server: Server; sockets: Set<Socket> }> = [];
const pools: OriginPool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) p.close();
  for (const { sockets } of servers) for (const s of sockets) s.destroy();
  await Promise.all(servers.splice(0).map(({ server }) => new Promise<void>((r) => server.close(() => r()))));
});

/** A receiver that hands every request (one per data event is enough here) to `onRequest`. */
async function receiver(
  onRequest: (socket: Socket, n: number) => void,
  tls = false,
): Promise<{ port: number; connections: () => number; open: () => number; peak: () => number }> {
  let connections = 0;
  let peak = 0;
  let requests = 0;
  const sockets = new Set<Socket>();
  const handle = (socket: Socket) => {
    connections++;
    sockets.add(socket);
    peak = Math.max(peak, sockets.size);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.on('data', () => onRequest(socket, ++requests));
  };
  const server: Server = tls
    ? createTlsServer({ key: readFileSync('test/fixtures/push-tls.key'), cert: readFileSync('test/fixtures/push-tls.crt') }, handle)
    : createNetServer(handle);
  servers.push({ server, sockets });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, connections: () => connections, open: () => sockets.size, peak: () => peak };
}

function pool(port: number, o: { max?: number; tls?: boolean; timeoutMs?: number } = {}): { post: () => Promise<AttemptResult>; pool: OriginPool } {
  const p = new OriginPool({
    protocol: o.tls === true ? 'https:' : 'http:',
    hostname: o.tls === true ? 'localhost' : '127.0.0.1',
    port,
    max: o.max ?? 4,
    lookup: guardedLookup(parseAllowList(['loopback'])),
    idleMs: 30_000,
    now: Date.now,
    ...(o.tls === true ? { ca: readFileSync('test/fixtures/push-tls.crt') } : {}),
  });
  pools.push(p);
  const timeoutMs = o.timeoutMs ?? 3000;
  const bytes = `POST /push HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-length: 2\r\n\r\n{}`;
  return { pool: p, post: () => new Promise((resolve) => p.post({ bytes, deadline: Date.now() + timeoutMs, resolve })) };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('OriginPool', () => {
  it('POSTs one after another share one connection', async () => {
    const r = await receiver((s) => s.write(OK));
    const { post } = pool(r.port);
    for (let i = 0; i < 5; i++) expect(await post()).toMatchObject({ status: 200 });
    expect(r.connections()).toBe(1);
  });

  it('never opens more than max connections; the POSTs beyond wait and all get their answer', async () => {
    const r = await receiver((s) => setTimeout(() => s.write(OK), 20));
    const { post } = pool(r.port, { max: 3 });
    const results = await Promise.all(Array.from({ length: 12 }, () => post()));
    expect(results.every((x) => 'status' in x && x.status === 200)).toBe(true);
    expect(r.connections()).toBe(3);
    expect(r.peak()).toBe(3);
  });

  it('a reused connection the receiver closed instead of answering: the POST goes once more on a new one', async () => {
    const r = await receiver((s, n) => (n === 2 ? s.destroy() : s.write(OK)));
    const { post } = pool(r.port);
    expect(await post()).toMatchObject({ status: 200 });
    expect(await post()).toMatchObject({ status: 200 });
    expect(r.connections()).toBe(2);
  });

  it('a new connection closed before any answer is an error, not tried again', async () => {
    const r = await receiver((s) => s.destroy());
    const { post } = pool(r.port);
    const res = await post();
    expect(res).toEqual({ error: expect.any(String) });
    expect(r.connections()).toBe(1);
  });

  it('a reused connection closed twice in a row: one retry only, then the error', async () => {
    const r = await receiver((s, n) => (n === 1 ? s.write(OK) : s.destroy()));
    const { post } = pool(r.port);
    expect(await post()).toMatchObject({ status: 200 });
    expect(await post()).toEqual({ error: expect.any(String) });
    expect(r.connections()).toBe(2);
  });

  it('bytes arriving on an idle connection close it: they are never the answer to the next POST', async () => {
    const r = await receiver((s, n) => {
      if (n === 1) {
        s.write(OK);
        setTimeout(() => s.write('HTTP/1.1 500 Stale\r\ncontent-length: 0\r\n\r\n'), 10);
      } else s.write(OK);
    });
    const { post } = pool(r.port);
    expect(await post()).toMatchObject({ status: 200 });
    await pause(60);
    expect(r.open()).toBe(0);
    expect(await post()).toMatchObject({ status: 200 });
    expect(r.connections()).toBe(2);
  });

  it('an answer followed by more bytes in the same read: the answer counts, the connection is not reused', async () => {
    const r = await receiver((s) => s.write(`${OK}HTTP/1.1 500 Extra\r\ncontent-length: 0\r\n\r\n`));
    const { post } = pool(r.port);
    expect(await post()).toMatchObject({ status: 200 });
    expect(await post()).toMatchObject({ status: 200 });
    expect(r.connections()).toBe(2);
  });

  it('Connection: close and the Keep-Alive timeout hint of the receiver are honoured', async () => {
    const r = await receiver((s, n) =>
      s.write(n === 1 ? 'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n' : 'HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 0\r\n\r\n'),
    );
    const { post, pool: p } = pool(r.port);
    expect(await post()).toMatchObject({ status: 200 });
    expect(await post()).toMatchObject({ status: 200 });
    expect(r.connections()).toBe(2);
    // timeout=1: kept for at most 1 s less, so the next sweep closes it.
    p.sweep();
    await pause(30);
    expect(r.open()).toBe(0);
    expect(p.empty).toBe(true);
  });

  it('a connection whose Keep-Alive timeout ran out is not reused, even before the sweep closes it', async () => {
    const r = await receiver((s) => s.write('HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 0\r\n\r\n'));
    const { post } = pool(r.port);
    expect(await post()).toMatchObject({ status: 200 });
    expect(await post()).toMatchObject({ status: 200 });
    expect(r.connections()).toBe(2);
  });

  it('a POST past its deadline ends as a timeout, and one waiting for a connection too', async () => {
    const r = await receiver(() => undefined);
    const { post, pool: p } = pool(r.port, { max: 1, timeoutMs: 50 });
    const both = Promise.all([post(), post()]);
    await pause(80);
    p.sweep();
    expect(await both).toEqual([{ error: 'timeout' }, { error: 'timeout' }]);
  });

  it('close() ends every POST, on a connection or waiting', async () => {
    const r = await receiver(() => undefined);
    const { post, pool: p } = pool(r.port, { max: 1 });
    const both = Promise.all([post(), post()]);
    await pause(30);
    p.close();
    expect(await both).toEqual([{ error: 'closed' }, { error: 'closed' }]);
    expect(await post()).toEqual({ error: 'closed' });
  });

  it('https: the receiver certificate is checked against the host name, and the connection is reused', async () => {
    const r = await receiver((s) => s.write(OK), true);
    const { post } = pool(r.port, { tls: true });
    for (let i = 0; i < 3; i++) expect(await post()).toMatchObject({ status: 200 });
    expect(r.connections()).toBe(1);
  });

  it('https: a certificate that is not trusted is an error, and nothing is sent', async () => {
    let got = 0;
    const r = await receiver(() => got++, true);
    const p = new OriginPool({
      protocol: 'https:',
      hostname: 'localhost',
      port: r.port,
      max: 1,
      lookup: guardedLookup(parseAllowList(['loopback'])),
      idleMs: 30_000,
      now: Date.now,
    });
    pools.push(p);
    const res = await new Promise<AttemptResult>((resolve) =>
      p.post({ bytes: 'POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n', deadline: Date.now() + 3000, resolve }),
    );
    expect(res).toEqual({ error: expect.stringMatching(/CERT|SELF_SIGNED|UNABLE/) });
    expect(got).toBe(0);
  });
});
