/**
 * The gateway side of the notification link (src/gateway/notification-link.ts) facing frames of another
 * shape from a chat server node (a node of another version, a bug): it must ignore or answer them, and
 * never end the gateway process (an unhandled rejection ends a Node 20 process).
 *
 * A fake node: a real WebSocket server on 127.0.0.1 registered in a real SQLite node registry; the
 * gateway's real customhttp provider behind the link.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { ManualClock } from '../src/clock.ts';
import { NodeDirectory } from '../src/cluster/node-directory.ts';
import { parseConfig } from '../src/config/load.ts';
import { createCustomHttpNode } from '../src/gateway/customhttp.ts';
import { NotificationLinks } from '../src/gateway/notification-link.ts';
import { silentLogger } from '../src/log.ts';
import { HttpDelivery } from '../src/push/http-delivery.ts';
import { parseAllowList } from '../src/push/ssrf.ts';
import type { Store } from '../src/store/port.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { BASE_INI } from './helpers.ts';
import { UncaughtTrap } from './support/arbitraries.ts';

let dir: string;
let registry: Store;
let wss: WebSocketServer;
let links: NotificationLinks | undefined;
let delivery: HttpDelivery;
const trap = new UncaughtTrap();

beforeEach(async () => {
  trap.install();
  dir = mkdtempSync(join(tmpdir(), 'parley-link-frames-'));
  registry = openSqliteStore({ path: join(dir, 'registry.db'), synchronous: 'normal' });
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  delivery = new HttpDelivery({ timeoutMs: 1000, connectionsPerOrigin: 2, allow: parseAllowList(['loopback']) });
});

afterEach(async () => {
  links?.stop();
  await new Promise((r) => wss.close(r));
  await delivery.close();
  await registry.close();
  rmSync(dir, { recursive: true, force: true });
  trap.uninstall();
});

async function linkedSocket(): Promise<WebSocket> {
  const now = Date.now();
  await registry.registerNode({ appDbid: '201', pid: 1, url: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`, startedAt: now, heartbeatAt: now });
  const directory = new NodeDirectory(registry, new ManualClock(), { deadAfterMs: 60_000, pollMs: 60_000 }, silentLogger);
  await directory.refresh();
  const config = parseConfig(`${BASE_INI}\n[push]\npushEnabled = customhttp\ncustomhttp.url = http://127.0.0.1:9/push\n`, 'test.ini', {});
  const provider = createCustomHttpNode({ nodeId: 'gms-test', config, delivery, clock: new ManualClock(), log: silentLogger });
  const connected = new Promise<WebSocket>((r) => wss.once('connection', (ws) => r(ws)));
  links = new NotificationLinks(directory, provider, { token: '', nodeId: 'gms-test' }, silentLogger);
  links.sync();
  return connected;
}

describe('frames of another shape from a chat server node', () => {
  it('are ignored or answered with a retry; the gateway keeps its link and nothing is thrown uncaught', async () => {
    const ws = await linkedSocket();
    const answers: unknown[] = [];
    ws.on('message', (d) => answers.push(JSON.parse(d.toString())));
    for (const frame of ['null', '[]', '42', '"n"', 'not json', '{"t":"n"}', '{"t":"n","id":"1","n":{}}', '{"t":"n","id":1,"n":null}']) ws.send(frame);
    // A notification without the fields a notification has: answered, as a failed POST to retry.
    ws.send(JSON.stringify({ t: 'n', id: 2, n: {} }));
    ws.send(JSON.stringify({ t: 'n', id: 3, n: { subscription: null } }));
    await new Promise((r) => setTimeout(r, 300));
    await trap.expectNone('the malformed frames');
    expect(answers).toEqual([
      { t: 'r', id: 2, outcome: expect.objectContaining({ kind: 'retry' }) },
      { t: 'r', id: 3, outcome: expect.objectContaining({ kind: 'retry' }) },
    ]);
    expect(links?.connected).toBe(1);
  });
});
