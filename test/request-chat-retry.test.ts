/**
 * A Request Chat that a gateway sends again. The gateway gets no answer in time (the node is slow, or died
 * after its commit) and tries again, maybe on another node. The customer must get one chat, not two:
 * every attempt carries the same retry key (the chat id the gateway chose and an idempotency key), and a
 * node that gets the call again answers the chat the first attempt opened.
 *
 * Real chat node (buildChatNode over a real SQLite file) behind its real internal API on HTTP, reached by
 * the gateway's RemoteNodeLink through two front addresses registered as two nodes; the first call that
 * reaches either is applied by the node, but its answer is held past the gateway's timeout.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildChatNode, type ChatNode } from '../src/chat-server/node.ts';
import { createNodeRpc, NODE_RPC_PATH, NODE_TOKEN_HEADER } from '../src/chat-server/node-rpc.ts';
import { ManualClock } from '../src/clock.ts';
import { NodeDirectory } from '../src/cluster/node-directory.ts';
import { parseConfig } from '../src/config/load.ts';
import { ParleyError } from '../src/errors.ts';
import { RemoteNodeLink } from '../src/gateway/remote-node-link.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import type { Store } from '../src/store/port.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { BASE_INI, SERVICE } from './helpers.ts';

const TOKEN = 'node-token-for-tests';
const HOLD_MS = 2_500; // well past the timeout: undici checks its timeouts on a coarse (about 0.5-1 s) tick
const GATEWAY_TIMEOUT_MS = 250;

let dir: string;
let store: Store;
let registry: Store;
let node: ChatNode;
const servers: Server[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-retry-'));
  store = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
  registry = openSqliteStore({ path: join(dir, 'registry.db'), synchronous: 'normal' });
  const config = parseConfig(BASE_INI, 'test.ini', { PARLEY_STORE_PATH: join(dir, 'unused.db') });
  node = await buildChatNode(config, { store, clock: new ManualClock(), ids: createRandomIds(), log: silentLogger, autoRun: false }, { loadScope: 'all' });
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  await node.close();
  await store.close();
  await registry.close();
  rmSync(dir, { recursive: true, force: true });
});

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The node's internal API, and two front addresses to it; the first call through either is answered late. */
async function startFronts(): Promise<{ fronts: string[]; calls: () => number; heldDone: () => Promise<void> }> {
  const rpc = createNodeRpc({ client: node.client, token: TOKEN, maxBodySize: 1 << 20, accepting: () => true });
  const nodeUrl = await listen((req, res) => void rpc(req, res));
  let calls = 0;
  let held: Promise<void> = Promise.resolve();
  const front = (req: IncomingMessage, res: ServerResponse) => {
    const first = calls++ === 0;
    const up = httpRequest(`${nodeUrl}${req.url ?? '/'}`, { method: req.method, headers: req.headers }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const send = () => {
          if (res.destroyed) return;
          res.writeHead(answer.statusCode ?? 502, { 'content-type': 'application/json' });
          res.end(Buffer.concat(chunks));
        };
        if (first) held = new Promise((r) => setTimeout(() => r(send()), HOLD_MS));
        else send();
      });
    });
    req.pipe(up);
  };
  const fronts = [await listen(front), await listen(front)];
  return { fronts, calls: () => calls, heldDone: () => held };
}

async function directoryOf(urls: readonly string[]): Promise<NodeDirectory> {
  const now = Date.now();
  for (const [i, url] of urls.entries()) {
    await registry.registerNode({ appDbid: String(201 + i), pid: 1000 + i, url, startedAt: now, heartbeatAt: now });
  }
  const d = new NodeDirectory(registry, new ManualClock(), { deadAfterMs: 60_000, pollMs: 60_000 }, silentLogger);
  await d.refresh();
  return d;
}

describe('a Request Chat sent again by the gateway after a timeout', () => {
  it('opens one chat: the second attempt is answered with the chat the first one opened', async () => {
    const { fronts, calls, heldDone } = await startFronts();
    const link = new RemoteNodeLink(await directoryOf(fronts), { token: TOKEN, timeoutMs: GATEWAY_TIMEOUT_MS });
    try {
      const r = await link.requestChat(SERVICE, { nickname: 'Ann', subject: 'one chat please' });
      await heldDone();
      expect(calls()).toBe(2);
      const open = await store.listOpenSessions();
      expect(open.map((s) => s.chatId)).toEqual([r.session.chatId]);
      const stored = await store.loadSession(r.session.chatId);
      expect(stored?.secureKey).toBe(r.session.secureKey);
      expect(stored?.userId).toBe(r.session.userId);
      const joins = (await store.loadEvents(r.session.chatId, 1)).filter((e) => e.type === 'ParticipantJoined');
      expect(joins).toHaveLength(1);
    } finally {
      await link.close();
    }
  });

  it('each Request Chat of the gateway is its own chat (the key is per call)', async () => {
    const { fronts } = await startFronts();
    const link = new RemoteNodeLink(await directoryOf(fronts), { token: TOKEN, timeoutMs: 5_000 });
    try {
      const a = await link.requestChat(SERVICE, { nickname: 'Ann' });
      const b = await link.requestChat(SERVICE, { nickname: 'Ann' });
      expect(a.session.chatId).not.toBe(b.session.chatId);
      expect((await store.listOpenSessions()).length).toBe(2);
    } finally {
      await link.close();
    }
  });
});

describe('the retry key at the node', () => {
  it('the same key twice: the same chat, tokens and transcript, stored once', async () => {
    const key = { chatId: 'RetryChat0000001', requestId: 'req-1' };
    const first = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    const again = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    expect(first.session.chatId).toBe(key.chatId);
    expect(again.session).toEqual(first.session);
    expect(again.messages).toEqual(first.messages);
    expect((await store.listOpenSessions()).length).toBe(1);
  });

  it('a chat id taken by another call is refused, and that chat is left as it was', async () => {
    const taken = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, { chatId: 'RetryChat0000002', requestId: 'req-a' });
    const err = await node.client.requestChat(SERVICE, { nickname: 'Eve' }, { chatId: 'RetryChat0000002', requestId: 'req-b' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParleyError);
    expect((err as ParleyError).code).toBe('INVALID_PARAMETER');
    expect(await store.loadSession('RetryChat0000002')).toEqual(taken.session);
    expect((await store.listOpenSessions()).length).toBe(1);
  });

  it('a malformed retry key on the internal API gets 400 INVALID_PARAMETER and opens nothing', async () => {
    const rpc = createNodeRpc({ client: node.client, token: TOKEN, maxBodySize: 1 << 20, accepting: () => true });
    const url = await listen((req, res) => void rpc(req, res));
    const bad: unknown[] = [
      { chatId: '../x', requestId: 'r' },
      { chatId: 'a'.repeat(65), requestId: 'r' },
      { chatId: 'ok', requestId: '' },
      { chatId: 5, requestId: 'r' },
      'RetryChat0000003',
    ];
    for (const retryKey of bad) {
      const res = await fetch(`${url}${NODE_RPC_PATH}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [NODE_TOKEN_HEADER]: TOKEN },
        body: JSON.stringify({ call: 'requestChat', serviceName: SERVICE, input: { nickname: 'Ann' }, retryKey }),
      });
      expect(res.status, JSON.stringify(retryKey)).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INVALID_PARAMETER');
    }
    expect(await store.listOpenSessions()).toEqual([]);
  });
});
