/**
 * The Request Chat retry key (a gateway sending the same Request Chat again) on ONE chat server node: replays, concurrent
 * attempts, admission limits, hooks (timers, metrics), KPI counts, hostile keys on the internal API, and
 * the in-process path. Real node (buildChatNode) over a real SQLite file, real HTTP on 127.0.0.1.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildChatNode, type ChatNode } from '../src/chat-server/node.ts';
import { createNodeRpc, NODE_RPC_PATH, NODE_TOKEN_HEADER } from '../src/chat-server/node-rpc.ts';
import type { ClientReply } from '../src/chat-server/client-ops.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { ParleyError } from '../src/errors.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import type { Store } from '../src/store/port.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { BASE_INI, postForm, SERVICE, startTestServer, type TestServer } from './helpers.ts';

const TOKEN = 'review-node-token';

let dir: string | undefined;
const stores: Store[] = [];
const nodes: ChatNode[] = [];
const servers: Server[] = [];
const testServers: TestServer[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) s.closeAllConnections();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  for (const n of nodes.splice(0)) await n.close();
  for (const s of stores.splice(0)) await s.close();
  for (const t of testServers.splice(0)) await t.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

interface Built {
  node: ChatNode;
  store: Store;
  clock: ManualClock;
}

/** A real node over a real SQLite file; `wrap` may put a fault in front of the store. */
async function makeNode(extraIni = '', wrap: (s: Store) => Store = (s) => s): Promise<Built> {
  dir ??= mkdtempSync(join(tmpdir(), 'parley-review-retry-'));
  const raw = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
  stores.push(raw);
  const store = wrap(raw);
  const clock = new ManualClock();
  const config = parseConfig(BASE_INI + extraIni, 'test.ini', { PARLEY_STORE_PATH: join(dir, 'unused.db') });
  const node = await buildChatNode(config, { store, clock, ids: createRandomIds(), log: silentLogger, autoRun: false }, { loadScope: 'all' });
  nodes.push(node);
  return { node, store: raw, clock };
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function serveRpc(node: ChatNode): Promise<string> {
  const rpc = createNodeRpc({ client: node.client, token: TOKEN, maxBodySize: 1 << 20, accepting: () => true });
  return `${await listen((req, res) => void rpc(req, res))}${NODE_RPC_PATH}`;
}

async function rpcCall(url: string, body: string): Promise<{ status: number; json: { ok?: ClientReply; error?: { code: string } } }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', [NODE_TOKEN_HEADER]: TOKEN }, body });
  return { status: res.status, json: (await res.json()) as { ok?: ClientReply; error?: { code: string } } };
}

const requestChatBody = (retryKey: unknown, input: Record<string, unknown> = { nickname: 'Ann' }) =>
  JSON.stringify({ call: 'requestChat', serviceName: SERVICE, input, retryKey });

async function created(node: ChatNode): Promise<number> {
  return (await node.metrics.chatSessionsCreated.get()).values.reduce((a, v) => a + v.value, 0);
}

describe('replays on one node', () => {
  it('a replay is answered with the same chat and counted once (metric, open count, timers)', async () => {
    const { node, store } = await makeNode();
    const key = { chatId: 'ReviewChat000001', requestId: 'req-once' };
    const first = await node.client.requestChat(SERVICE, { nickname: 'Ann', subject: 's' }, key);
    const timersAfterFirst = node.timers.pending;
    const again = await node.client.requestChat(SERVICE, { nickname: 'Ann', subject: 's' }, key);
    expect(again.session.chatId).toBe(key.chatId);
    expect(again.session.secureKey).toBe(first.session.secureKey);
    expect(again.session.userId).toBe(first.session.userId);
    expect(again.messages).toEqual(first.messages);
    expect(await created(node)).toBe(1);
    expect(node.sessions.counts().open).toBe(1);
    expect(node.timers.pending).toBe(timersAfterFirst);
    expect((await store.listOpenSessions()).map((s) => s.chatId)).toEqual([key.chatId]);
  });

  it('concurrent attempts of the same call on one node: one chat, every answer the same chat, counted once', async () => {
    const { node, store } = await makeNode();
    const key = { chatId: 'ReviewChat000002', requestId: 'req-concurrent' };
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => node.client.requestChat(SERVICE, { nickname: 'Ann' }, key)));
    const ok = results.filter((r): r is PromiseFulfilledResult<ClientReply> => r.status === 'fulfilled').map((r) => r.value);
    expect(ok).toHaveLength(6);
    expect(new Set(ok.map((r) => `${r.session.chatId}/${r.session.secureKey}/${r.session.userId}`)).size).toBe(1);
    expect((await store.listOpenSessions()).map((s) => s.chatId)).toEqual([key.chatId]);
    expect(node.sessions.counts().open).toBe(1);
    expect(node.sessions.size).toBe(1);
    expect(await created(node)).toBe(1);
    const joins = (await store.loadEvents(key.chatId, 1)).filter((e) => e.type === 'ParticipantJoined');
    expect(joins).toHaveLength(1);
  });

  it('concurrent attempts through the internal API over HTTP: all 200 with the same chat, no 5xx', async () => {
    const { node, store } = await makeNode();
    const url = await serveRpc(node);
    const body = requestChatBody({ chatId: 'ReviewChat000003', requestId: 'req-http' });
    const answers = await Promise.all(Array.from({ length: 5 }, () => rpcCall(url, body)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(answers.map((a) => a.json.ok?.session.secureKey)).size).toBe(1);
    expect((await store.listOpenSessions()).length).toBe(1);
    expect(node.sessions.counts().open).toBe(1);
  });

  it('a replay at limit-for-sessions is answered (not refused), and is not counted as a new session', async () => {
    const { node } = await makeNode('[settings]\nlimit-for-sessions = 1\n');
    const key = { chatId: 'ReviewChat000004', requestId: 'req-limit' };
    const first = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    expect(node.admission.state().sessionsFull).toBe(true);
    const again = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    expect(again.session.secureKey).toBe(first.session.secureKey);
    expect(node.sessions.counts().open).toBe(1);
    // A new call is still refused, retryably.
    const other = await node.client.requestChat(SERVICE, { nickname: 'Bob' }, { chatId: 'ReviewChat000005', requestId: 'req-other' }).catch((e: unknown) => e);
    expect((other as ParleyError).code).toBe('UNAVAILABLE');
  });

  it('a replay after the chat ended answers the ended chat (chatEnded), opens nothing new', async () => {
    const { node, store } = await makeNode();
    const key = { chatId: 'ReviewChat000006', requestId: 'req-ended' };
    const first = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    await node.client.perform(key.chatId, SERVICE, { secureKey: first.session.secureKey }, { op: 'disconnect' }, 'none');
    const again = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    expect(again.session.chatId).toBe(key.chatId);
    expect(again.session.state).toBe('ended');
    expect(await store.listOpenSessions()).toEqual([]);
    expect(node.sessions.counts().open).toBe(0);
    expect(await created(node)).toBe(1);
  });

  it('a replay of a chat that went dormant (parked out of memory) answers it; open/dormant counts unchanged', async () => {
    const { node, store } = await makeNode();
    const key = { chatId: 'ReviewChat000010', requestId: 'req-dormant' };
    const first = await node.client.requestChat(SERVICE, { nickname: 'Ann', userData: { GCTI_Chat_AsyncMode: 'true' } }, key);
    const alice = node.agents.account('alice');
    await node.agentOps.accept(alice, key.chatId);
    await node.agentOps.hold(alice, key.chatId);
    expect(node.sessions.counts()).toMatchObject({ open: 1, dormant: 1 });
    expect(node.sessions.size).toBe(0);
    const again = await node.client.requestChat(SERVICE, { nickname: 'Ann', userData: { GCTI_Chat_AsyncMode: 'true' } }, key);
    expect(again.session.secureKey).toBe(first.session.secureKey);
    expect(again.session.state).toBe('dormant');
    expect(node.sessions.counts()).toMatchObject({ open: 1, dormant: 1 });
    expect((await store.listOpenSessions()).length).toBe(1);
    expect(await created(node)).toBe(1);
  });

  it('documented: after 32 later keyed changes the key is forgotten; the replay is refused and the chat left alone', async () => {
    const { node, store } = await makeNode();
    const key = { chatId: 'ReviewChat000007', requestId: 'req-evicted' };
    const first = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    for (let i = 0; i < 32; i++) {
      await node.client.perform(key.chatId, SERVICE, { secureKey: first.session.secureKey, requestId: `send-${i}` }, { op: 'send', message: `m${i}` }, 'none');
    }
    const err = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key).catch((e: unknown) => e);
    expect((err as ParleyError).code).toBe('INVALID_PARAMETER');
    expect((await store.listOpenSessions()).length).toBe(1);
    expect((await store.loadSession(key.chatId))?.secureKey).toBe(first.session.secureKey);
  });

  // Regression test (this was a bug, now fixed). Was: when the store reports the create as failed although it committed (PostgreSQL: the connection is
  // lost while COMMIT is in flight, the case LiveSessions.commit already allows for), requestChat's catch
  // block (src/chat-server/client-ops.ts:126-130) answers the chat through openedBy (which loads it from the
  // store, src/chat-server/client-ops.ts:143 -> live-sessions.ts load) and returns at line 129 without ever
  // calling hooks.created (line 132). The chat this node just opened gets no session timers (no
  // flex-disconnect timeout: a customer who stops polling is never disconnected, the chat sits in the agent
  // queue for good), and parley_chat_sessions_created_total misses it. The same happens when the gateway's
  // next attempt finds it through openedBy at line 104. Right: a chat opened by this node, answered as
  // Request Chat for the first time, gets hooks.created exactly once (timers, metric) like any other.
  it('a create that committed but was reported failed: the chat is answered AND gets its timers and metric', async () => {
    let failNext = true;
    const { node, clock } = await makeNode('', (s) =>
      new Proxy(s, {
        get(target, p) {
          if (p === 'createSession') {
            return async (c: Parameters<Store['createSession']>[0]) => {
              await target.createSession(c);
              if (failNext) {
                failNext = false;
                throw new Error('Connection terminated unexpectedly');
              }
            };
          }
          const v = Reflect.get(target, p) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }),
    );
    const key = { chatId: 'ReviewChat000008', requestId: 'req-unknown-outcome' };
    const r = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    expect(r.session.chatId).toBe(key.chatId);
    // A normal chat next to it, for comparison.
    const normal = await node.client.requestChat(SERVICE, { nickname: 'Bob' }, { chatId: 'ReviewChat000009', requestId: 'req-normal' });
    // Neither customer sends anything for longer than flex-disconnect-timeout (45 s).
    clock.advance(46_000);
    await node.timers.tick();
    expect((await node.sessions.get(normal.session.chatId)).session.state).toBe('ended');
    expect((await node.sessions.get(key.chatId)).session.state).toBe('ended');
    expect(await created(node)).toBe(2);
  });
});

describe('retry keys on the internal API', () => {
  it('hostile or malformed keys get 400 INVALID_PARAMETER and open nothing', async () => {
    const { node, store } = await makeNode();
    const url = await serveRpc(node);
    const bad: unknown[] = [
      { chatId: 'Ｒeview', requestId: 'r' }, // full-width letter
      { chatId: 'café', requestId: 'r' },
      { chatId: '١٢٣', requestId: 'r' }, // Arabic-Indic digits
      { chatId: 'ok', requestId: 'r\n' },
      { chatId: 'ok\n', requestId: 'r' },
      { chatId: 'ok', requestId: 'a'.repeat(65) },
      { chatId: ' ok', requestId: 'r' },
      { chatId: 'a_b', requestId: 'r' },
      { chatId: ['ok'], requestId: 'r' },
      { chatId: { toString: 'x' }, requestId: 'r' },
      { requestId: 'r' },
      { chatId: 'ok' },
      [],
      ['ok', 'r'],
      true,
      0,
      '',
    ];
    for (const retryKey of bad) {
      const a = await rpcCall(url, requestChatBody(retryKey));
      expect(a.status, JSON.stringify(retryKey)).toBe(400);
      expect(a.json.error?.code).toBe('INVALID_PARAMETER');
    }
    // __proto__ in the JSON is an own key after JSON.parse, never the prototype of the key object.
    const proto = await rpcCall(url, `{"call":"requestChat","serviceName":"${SERVICE}","input":{"nickname":"A"},"retryKey":{"__proto__":{"chatId":"Proto1","requestId":"r"}}}`);
    expect(proto.status).toBe(400);
    expect(await store.listOpenSessions()).toEqual([]);
    expect(node.sessions.counts().open).toBe(0);
  });

  it('a 64-character key and keys named like Object.prototype members work as plain ids', async () => {
    const { node, store } = await makeNode();
    const url = await serveRpc(node);
    const ids = ['a'.repeat(64), 'constructor', 'hasOwnProperty', 'toString', '-'];
    for (const chatId of ids) {
      const a = await rpcCall(url, requestChatBody({ chatId, requestId: `req-${chatId.length}-${chatId.slice(0, 8)}` }));
      expect(a.status, chatId).toBe(200);
      expect(a.json.ok?.session.chatId).toBe(chatId);
      const b = await rpcCall(url, requestChatBody({ chatId, requestId: `req-${chatId.length}-${chatId.slice(0, 8)}` }));
      expect(b.json.ok?.session.secureKey).toBe(a.json.ok?.session.secureKey);
      const sent = await node.client.perform(chatId, SERVICE, { secureKey: a.json.ok?.session.secureKey }, { op: 'send', message: 'hi' }, 'none');
      expect(sent.session.chatId).toBe(chatId);
    }
    expect((await store.listOpenSessions()).length).toBe(ids.length);
    expect(node.sessions.counts().open).toBe(ids.length);
  });

  it("another customer's chat id with a key that is not its own: refused, tokens not disclosed, chat unchanged", async () => {
    const { node, store } = await makeNode();
    const url = await serveRpc(node);
    const victim = await node.client.requestChat(SERVICE, { nickname: 'Ann' }, { chatId: 'VictimChat000001', requestId: 'victim-req' });
    await node.client.perform(victim.session.chatId, SERVICE, { secureKey: victim.session.secureKey, requestId: 'victim-send' }, { op: 'send', message: 'private' }, 'none');
    const before = await store.loadSession(victim.session.chatId);
    const a = await rpcCall(url, requestChatBody({ chatId: 'VictimChat000001', requestId: 'attacker-req' }, { nickname: 'Eve' }));
    expect(a.status).toBe(400);
    expect(JSON.stringify(a.json)).not.toContain(victim.session.secureKey);
    expect(await store.loadSession(victim.session.chatId)).toEqual(before);
    // A chat opened without a retry key (no request keys at all) is not taken over either.
    const plain = await node.client.requestChat(SERVICE, { nickname: 'Cid' });
    const b = await rpcCall(url, requestChatBody({ chatId: plain.session.chatId, requestId: 'x' }, { nickname: 'Eve' }));
    expect(b.status).toBe(400);
    expect(JSON.stringify(b.json)).not.toContain(plain.session.secureKey);
  });
});

describe('the in-process path (startAll, the node client as the link)', () => {
  it('Request Chat through the public Chat API v2 cannot pass a retry key; chat ids stay random and no request keys are stored', async () => {
    const t = await startTestServer();
    testServers.push(t);
    const api = `${t.url}/genesys/2/chat/${SERVICE}`;
    const fields = {
      nickname: 'Ann',
      chatId: 'ChosenByClient01',
      retryKey: 'ChosenByClient01',
      'retryKey[chatId]': 'ChosenByClient01',
      'retryKey[requestId]': 'r',
      requestId: 'r',
      'userData[retryKey]': 'ChosenByClient01',
    };
    const a = (await postForm(api, fields)).body as { statusCode: number; chatId: string; secureKey: string };
    const b = (await postForm(api, fields)).body as { statusCode: number; chatId: string; secureKey: string };
    expect(a.statusCode).toBe(0);
    expect(b.statusCode).toBe(0);
    expect(a.chatId).not.toBe('ChosenByClient01');
    expect(a.chatId).toMatch(/^[0-9A-Za-z]{16}$/);
    expect(b.chatId).not.toBe(a.chatId);
    const stored = t.running.app.sessions.all();
    for (const e of stored) expect(e.session.recentRequests).toBeUndefined();
  });
});
