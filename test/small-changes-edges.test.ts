/**
 * Edges of four small changes: the owner probe's kept dead answer (e27bb7d), [receiver] ended-retention
 * (28b873d), chat series off on gateway/receiver /metrics (309768b), and the stores' check of every event
 * index of a change (2c9d641).
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSession, say } from '../src/chat/session.ts';
import type { NodeDirectory } from '../src/cluster/node-directory.ts';
import { probingIsAlive } from '../src/cluster/owner-probe.ts';
import { silentLogger } from '../src/log.ts';
import { createMetrics } from '../src/metrics.ts';
import type { GatewayClient } from '../src/receiver/gateway-client.ts';
import { Receiver } from '../src/receiver/receiver.ts';
import { TokenCache, type CachedSession } from '../src/receiver/token-cache.ts';
import type { NodeRecord, Store } from '../src/store/port.ts';
import { openPostgresStore } from '../src/store/postgres.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { usePostgresServer } from './support/postgres-server.ts';

// ---------------------------------------------------------------------------------------------------------
// 1. Owner probe
// ---------------------------------------------------------------------------------------------------------

const httpServers: Server[] = [];
const netServers: NetServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of httpServers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const s of netServers.splice(0)) await new Promise((r) => s.close(r));
});

async function health(appDbid: string, port = 0): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const s = createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ app_dbid: appDbid, accepting: true }));
  });
  httpServers.push(s);
  await new Promise<void>((r) => s.listen(port, '127.0.0.1', r));
  return { port: (s.address() as AddressInfo).port, hits: () => hits };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A port that accepts connections and never answers (a hung node). */
async function silentPort(): Promise<number> {
  const s = createNetServer((sock) => void sockets.push(sock));
  netServers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

function directoryWith(record: NodeRecord, heartbeatAlive: () => boolean): NodeDirectory & { suspected: string[] } {
  const suspected: string[] = [];
  return {
    suspected,
    get: (id: string) => (id === record.appDbid ? record : undefined),
    refresh: async () => undefined,
    isAlive: () => heartbeatAlive(),
    suspect: (id: string) => void suspected.push(id),
  } as unknown as NodeDirectory & { suspected: string[] };
}

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

// ---------------------------------------------------------------------------------------------------------
// 2. [receiver] ended-retention
// ---------------------------------------------------------------------------------------------------------

const DAY = 86_400_000;

function cached(token: string, ended: boolean): CachedSession {
  return {
    browserToken: token,
    deviceId: `dev-${token}`,
    serviceName: 'svc',
    chatId: `chat-${token}`,
    userId: 'u',
    secureKey: 'k',
    alias: '117',
    nickname: 'Ann',
    createdAt: 0,
    nextPosition: 2,
    ended,
    nextPingAt: 10 * DAY,
  };
}

describe('[receiver] ended-retention', () => {
  let dir: string;
  let now = 0;
  const caches: TokenCache[] = [];
  const open = () => {
    const c = new TokenCache(join(dir, 'tokens.db'), () => now);
    caches.push(c);
    return c;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'parley-review-tokens-'));
    now = 1_000;
  });
  afterEach(() => {
    for (const c of caches.splice(0)) c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a chat that ended, ran again and ended again counts from its last end', () => {
    const cache = open();
    cache.put(cached('a', true));
    now = 2 * DAY;
    cache.put(cached('a', false));
    now = 3 * DAY;
    cache.put(cached('a', true));
    expect(cache.purgeEnded(2 * DAY + 1)).toBe(0);
    expect(cache.purgeEnded(3 * DAY + 1)).toBe(1);
  });

  it('the upgrade of an older cache happens once: a restart does not move the end time of its ended chats', () => {
    const path = join(dir, 'tokens.db');
    const db = new Database(path);
    db.exec(`CREATE TABLE receiver_sessions (browser_token TEXT PRIMARY KEY, device_id TEXT NOT NULL UNIQUE, chat_id TEXT NOT NULL,
      alias TEXT NOT NULL, ended INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;`);
    db.prepare('INSERT INTO receiver_sessions VALUES (?, ?, ?, ?, 1, ?)').run('legacy', 'dev-legacy', 'chat-legacy', '117', JSON.stringify(cached('legacy', true)));
    db.close();
    now = 5 * DAY;
    open().close();
    caches.splice(0);
    now = 9 * DAY;
    const cache = open();
    expect(cache.purgeEnded(5 * DAY)).toBe(0);
    expect(cache.purgeEnded(5 * DAY + 1)).toBe(1);
  });

  it('a browser coming back within the retention gets its ended chat; after the purge the token is unknown', async () => {
    const cache = open();
    cache.put(cached('gone', true));
    const receiver = new Receiver(
      cache,
      { service: 'svc' } as unknown as GatewayClient,
      { now: () => now },
      { nodeGroup: 'g', pingIntervalMs: 1_800_000, endedRetentionMs: DAY, restoreConcurrency: 1, random: () => 0.5, newToken: () => 't', newDeviceId: () => 'd' },
      silentLogger,
    );
    now = DAY;
    await receiver.tick();
    expect(receiver.session('gone').ended).toBe(true);
    now = DAY + 3_600_000;
    await receiver.tick();
    expect(() => receiver.session('gone')).toThrow(expect.objectContaining({ code: 'ACCESS_DENIED' }));
  });
});

// ---------------------------------------------------------------------------------------------------------
// 3. /metrics of gateway and receiver processes
// ---------------------------------------------------------------------------------------------------------

describe('chat series off for a gateway or receiver process', () => {
  it('the series are still usable by code that takes them, but not served; the default serves them', async () => {
    const off = createMetrics({ defaultMetrics: false, chatSeries: false });
    off.chatMessages.inc({ from: 'Client' });
    off.pushNotifications.inc({ event: 'created' });
    expect(await off.registry.metrics()).not.toContain('parley_chat_messages_total');
    const on = createMetrics({ defaultMetrics: false });
    expect(await on.registry.metrics()).toContain('parley_chat_messages_total');
    expect(await on.registry.metrics()).toContain('parley_push_outbox_depth');
  });
});

// ---------------------------------------------------------------------------------------------------------
// 4. Every event index of a change is checked (SQLite and PostgreSQL)
// ---------------------------------------------------------------------------------------------------------

const pgServer = usePostgresServer();
const pgAdmin: { pool?: pg.Pool } = {};
afterAll(async () => {
  await pgAdmin.pool?.end();
});

let seq = 0;
function chat() {
  seq++;
  return openSession({ chatId: `rv${seq}`, serviceName: 'svc', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Ann', text: 'hello' }, 1000);
}

for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`event indexes of a change (${kind})`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      if (kind === 'sqlite') {
        const d = mkdtempSync(join(tmpdir(), 'parley-review-store-'));
        store = await openSqliteStore({ path: join(d, 's.db'), synchronous: 'normal' });
        cleanup = async () => rmSync(d, { recursive: true, force: true });
      } else {
        const schema = randomUUID();
        store = await openPostgresStore({ url: pgServer.url, poolSize: 2, schema });
        pgAdmin.pool ??= new pg.Pool({ connectionString: pgServer.url, max: 1 });
        cleanup = async () => void (await pgAdmin.pool?.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`));
      }
    });
    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    it('takes three events in a row and a change with no events; refuses them swapped, with the stores’ same message', async () => {
      const c = chat();
      await store.createSession(c);
      const one = say(c.session, 1, 'Message', { text: 'one' }, 2000);
      const two = say(one.session, 1, 'Message', { text: 'two' }, 2001);
      const three = say(two.session, 1, 'Message', { text: 'three' }, 2002);
      const [a, b, d] = [one.events[0], two.events[0], three.events[0]];
      if (a === undefined || b === undefined || d === undefined) throw new Error('no events');
      const fence = { owner: '117', epoch: 1 };
      await expect(store.recordChange({ session: three.session, events: [a, d, b], fence })).rejects.toMatchObject({
        code: 'INTERNAL',
        message: `event index ${d.index} does not follow ${a.index} in ${c.session.chatId}`,
      });
      await store.recordChange({ session: three.session, events: [a, b, d], fence });
      await store.recordChange({ session: { ...three.session, updatedAt: 3000 }, events: [], fence });
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.text ?? e.type)).toEqual(['ParticipantJoined', 'hello', 'one', 'two', 'three']);
      expect((await store.loadSession(c.session.chatId))?.updatedAt).toBe(3000);
    });
  });
}
