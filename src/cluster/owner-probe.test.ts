import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeRecord } from '../store/port.ts';
import type { NodeDirectory } from './node-directory.ts';
import { probingIsAlive } from './owner-probe.ts';
import { freePort } from '../../test/support/ports.ts';

const servers: Server[] = [];
const netServers: NetServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const s of netServers.splice(0)) await new Promise((r) => s.close(r));
});

/** A health endpoint answering as app `appDbid`, counting its requests. */
async function health(appDbid: string, port = 0): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const s = createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ app_dbid: appDbid, accepting: true }));
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(port, '127.0.0.1', r));
  return { port: (s.address() as AddressInfo).port, hits: () => hits };
}

/** A port that accepts connections and never answers (a hung node). */
async function silentPort(): Promise<number> {
  const s = createNetServer((sock) => void sockets.push(sock));
  netServers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

function directoryWith(record: NodeRecord, heartbeatAlive: () => boolean = () => true): NodeDirectory & { suspected: string[] } {
  const suspected: string[] = [];
  return {
    suspected,
    get: (id: string) => (id === record.appDbid ? record : undefined),
    refresh: async () => undefined,
    isAlive: () => heartbeatAlive(),
    suspect: (id: string) => void suspected.push(id),
  } as unknown as NodeDirectory & { suspected: string[] };
}

describe('probingIsAlive', () => {
  it('a refused connection is dead, and that answer stands for a second: no connection per restored session', async () => {
    const port = await freePort();
    const dir = directoryWith({ appDbid: '201', pid: 1, url: `http://127.0.0.1:${port}`, startedAt: 1, heartbeatAt: 1 });
    let now = 1_000;
    const isAlive = probingIsAlive(dir, 500, () => now);
    expect(await isAlive('201')).toBe(false);
    expect(dir.suspected).toEqual(['201']);
    // The node answers again on its port: within the second the dead answer stands, without a connection.
    const h = await health('201', port);
    for (let i = 0; i < 50; i++) expect(await isAlive('201')).toBe(false);
    expect(h.hits()).toBe(0);
    now += 1_000;
    expect(await isAlive('201')).toBe(true);
    expect(h.hits()).toBe(1);
    for (let i = 0; i < 50; i++) expect(await isAlive('201')).toBe(true);
    expect(h.hits()).toBe(1);
  });

  it('a new registration of the owner (another pid) is probed at once, whatever was kept', async () => {
    const port = await freePort();
    const record = { appDbid: '201', pid: 1, url: `http://127.0.0.1:${port}`, startedAt: 1, heartbeatAt: 1 };
    const dir = directoryWith(record);
    const isAlive = probingIsAlive(dir, 500, () => 1_000);
    expect(await isAlive('201')).toBe(false);
    const h = await health('201', port);
    Object.assign(record, { pid: 2, startedAt: 2 });
    expect(await isAlive('201')).toBe(true);
    expect(h.hits()).toBe(1);
  });

  it('restores asking at the same time share one probe: one connection, not one each', async () => {
    let connections = 0;
    const s = createServer((_req, res) => {
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ app_dbid: '201', accepting: true })), 30);
    });
    s.on('connection', () => connections++);
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    const isAlive = probingIsAlive(directoryWith({ appDbid: '201', pid: 1, url: `http://127.0.0.1:${port}`, startedAt: 1, heartbeatAt: 1 }), 500, () => 1_000);
    expect(await Promise.all(Array.from({ length: 20 }, () => isAlive('201')))).toEqual(Array.from({ length: 20 }, () => true));
    expect(connections).toBe(1);
  });

  it('a probe that outlives a new registration of the owner leaves the new one alone', async () => {
    const port = await freePort();
    const record = { appDbid: '201', pid: 1, url: `http://127.0.0.1:${port}`, startedAt: 1, heartbeatAt: 1 };
    const dir = directoryWith(record);
    const isAlive = probingIsAlive(dir, 500, () => 1_000);
    const old = isAlive('201');
    // Re-registered (another pid) while the old registration's probe is under way.
    record.pid = 2;
    expect(await old).toBe(false);
    expect(dir.suspected).toEqual([]);
    const h = await health('201', port);
    expect(await isAlive('201')).toBe(true);
    expect(h.hits()).toBe(1);
  });

  it('another app answering at the owner address is dead; an unknown owner is dead', async () => {
    const other = await health('999');
    const dir = directoryWith({ appDbid: '201', pid: 1, url: `http://127.0.0.1:${other.port}`, startedAt: 1, heartbeatAt: 1 });
    const isAlive = probingIsAlive(dir, 500, () => 1_000);
    expect(await isAlive('201')).toBe(false);
    expect(await isAlive('nobody')).toBe(false);
  });
});

describe('the owner probe keeps a dead answer for the owner’s current registration', () => {
  it('a node that registers again at a new address (same pid and start) is probed there at once', async () => {
    const dead = await freePort();
    const record: { -readonly [K in keyof NodeRecord]: NodeRecord[K] } = { appDbid: '201', pid: 7, url: `http://127.0.0.1:${dead}`, startedAt: 1, heartbeatAt: 1 };
    const isAlive = probingIsAlive(directoryWith(record, () => true), 500, () => 1_000);
    expect(await isAlive('201')).toBe(false);
    const h = await health('201');
    record.url = `http://127.0.0.1:${h.port}`;
    expect(await isAlive('201')).toBe(true);
    expect(h.hits()).toBe(1);
  });

  it('a timed-out probe defers to the heartbeat (alive), and that answer stands for a second', async () => {
    const port = await silentPort();
    let heartbeat = true;
    let now = 1_000;
    const dir = directoryWith({ appDbid: '201', pid: 7, url: `http://127.0.0.1:${port}`, startedAt: 1, heartbeatAt: 1 }, () => heartbeat);
    const isAlive = probingIsAlive(dir, 100, () => now);
    expect(await isAlive('201')).toBe(true);
    heartbeat = false;
    expect(await isAlive('201')).toBe(true);
    now += 1_000;
    expect(await isAlive('201')).toBe(false);
    expect(dir.suspected).toEqual(['201']);
  });
});
