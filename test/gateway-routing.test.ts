/**
 * The gateway (GMS role) routing Chat API v2 calls to chat server nodes. Real `startChatServer` and
 * `startGateway` roles in this process, on ONE SQLite file (each role its own store instance), real HTTP
 * on port 0, with a fake push receiver. A "killed" node is closed (heartbeat stops, its port refuses
 * connections), as the gateways and peers would see a SIGKILL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/log.ts';
import { startChatServer, type RunningNode } from '../src/roles/chat-server.ts';
import { startGateway } from '../src/roles/gateway.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { AgentClient, BASE_INI, postForm, SERVICE, type ApiResponse } from './helpers.ts';
import { startFakeReceiver, type FakeReceiver } from './receiver-fixture.ts';

const TOKEN = 'routing-token';

let dir: string;
let receiver: FakeReceiver;
const nodes = new Map<string, RunningNode>();
const gateways: Array<Awaited<ReturnType<typeof startGateway>>> = [];

function ini(extra = '', token = TOKEN): string {
  return `${BASE_INI}
[node]
internal-token = ${token}
dead-after = 2
heartbeat-interval = 1
[settings]
flex-push-on-join = true
flex-push-content = session-id, user-id, secure-key, app-dbid
[chat]
enable_notification_mode = true
push_notification_include_payload = true
[push]
pushEnabled = customhttp
customhttp.url = ${receiver.url}/push
allowed-networks = loopback
${extra}`;
}

function config(appDbid: string, extra = '', token = TOKEN) {
  return parseConfig(ini(extra, token), 'routing.ini', { PARLEY_NODE_APP_DBID: appDbid, PARLEY_STORE_PATH: join(dir, 'parley.db') });
}

async function startNode(appDbid: string, extra = ''): Promise<RunningNode> {
  const n = await startChatServer(config(appDbid, extra), { log: silentLogger });
  nodes.set(appDbid, n);
  return n;
}

async function startGw(extra = '', token = TOKEN) {
  const g = await startGateway(config('1', extra, token), { log: silentLogger });
  gateways.push(g);
  return g;
}

async function waitUntil<T>(check: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function gatewaySees(url: string, dbids: string[], links = dbids.length): Promise<void> {
  const want = [...dbids].sort().join(',');
  await waitUntil(async () => {
    const h = (await (await fetch(`${url}/health`)).json()) as { nodes: Array<{ app_dbid: string }>; notification_links: number };
    return h.nodes.map((n) => n.app_dbid).sort().join(',') === want && h.notification_links >= links;
  }, `gateway to see [${want}]`);
}

const PUSH_FIELDS = {
  'userData[GCTI_Chat_PushSubscribe]': 'true',
  'userData[GCTI_GMS_NodeGroup]': 'gms-cluster',
  'userData[GCTI_GMS_PushDeviceType]': 'customhttp',
  'userData[GCTI_GMS_PushIncludePayload]': 'true',
};

interface Chat {
  chatId: string;
  secureKey: string;
  userId: string;
  alias: string;
}

async function requestChat(gw: string, fields: Record<string, string> = {}, service = SERVICE): Promise<{ r: ApiResponse; chat: Chat }> {
  const r = await postForm(`${gw}/genesys/2/chat/${service}`, { nickname: 'Ann', ...fields });
  const b = r.body as Chat;
  return { r, chat: { chatId: b.chatId, secureKey: b.secureKey, userId: b.userId, alias: b.alias } };
}

function op(gw: string, chat: Chat, name: string, fields: Record<string, string | number> = {}, service = SERVICE): Promise<ApiResponse> {
  return postForm(`${gw}/genesys/2/chat/${service}/${encodeURIComponent(chat.chatId)}/${name}`, {
    secureKey: chat.secureKey,
    userId: chat.userId,
    alias: chat.alias,
    ...fields,
  });
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-routing-'));
  receiver = await startFakeReceiver();
});

afterEach(async () => {
  for (const g of gateways.splice(0)) await g.close().catch(() => undefined);
  for (const n of nodes.values()) await n.close().catch(() => undefined);
  nodes.clear();
  await receiver.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('routing by alias over live nodes', { timeout: 30_000 }, () => {
  it('spreads new chats over the nodes, and later calls reach the owner whatever alias is sent', async () => {
    await startNode('201');
    await startNode('202');
    await startNode('203');
    const gw = await startGw();
    await gatewaySees(gw.url, ['201', '202', '203']);
    const chats: Chat[] = [];
    for (let i = 0; i < 12; i++) {
      const { r, chat } = await requestChat(gw.url, { nickname: `c${i}` });
      expect(r.body.statusCode, JSON.stringify(r.body)).toBe(0);
      chats.push(chat);
    }
    const per = new Map<string, number>();
    for (const c of chats) per.set(c.alias, (per.get(c.alias) ?? 0) + 1);
    expect([...per.keys()].sort()).toEqual(['201', '202', '203']);
    const store = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
    try {
      for (const c of chats) expect((await store.loadOwned(c.chatId))?.ownership.owner).toBe(c.alias);
    } finally {
      await store.close();
    }
    // Missing, wrong, unknown, odd and empty aliases: every call reaches the owner, answers its alias.
    const aliases: Array<string | undefined> = [undefined, '', '202', '203', '201', '999', 'abc', '-1', ' 201 ', '__proto__', 'x'.repeat(2000)];
    for (const [i, c] of chats.entries()) {
      const alias = aliases[i % aliases.length];
      const fields: Record<string, string> = { secureKey: c.secureKey, userId: c.userId, message: `hello ${i}` };
      if (alias !== undefined) fields['alias'] = alias;
      const r = await postForm(`${gw.url}/genesys/2/chat/${SERVICE}/${c.chatId}/send`, fields);
      expect(r.status, `${alias?.slice(0, 20)}: ${JSON.stringify(r.body)}`).toBe(200);
      expect(r.body.statusCode).toBe(0);
      expect(r.body.alias).toBe(c.alias);
    }
    // Nothing moved.
    const store2 = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
    try {
      for (const c of chats) {
        const owned = await store2.loadOwned(c.chatId);
        expect(owned?.ownership).toEqual({ owner: c.alias, epoch: 1 });
      }
    } finally {
      await store2.close();
    }
  });
});

describe('the notification links of a gateway', { timeout: 30_000 }, () => {
  // Regression test (this was a bug, now fixed). Was: src/gateway/notification-link.ts:33 opens a link to a node only when it has no socket under that app
  // dbid, whatever the registry says now (new url, pid, startedAt), and nothing ever checks the socket is alive
  // (no ping/pong, the gateway never writes on it). After a host crash or a partition (no FIN/RST reaches the
  // gateway) the half-open socket stays "open" forever, so the gateway never links to the node restarted under
  // that app dbid; that node has no gateway of the group and parks every push ("no gms node found").
  // docs/deployment.md: "every gateway keeps a WebSocket to every chat server node". Right: a link follows the
  // node's registration (reconnect when its url/pid/startedAt change) and dead sockets are found (ping).
  it('a node restarted under its app dbid at a new address gets a link although the old socket never closed (host crash, no FIN)', async () => {
    // The first process of node 201: its host will crash. Its notification socket stays half-open (no
    // FIN, no RST ever reaches the gateway), as after a power cut or a network partition.
    const { WebSocketServer } = await import('ws');
    const { createServer } = await import('node:http');
    const oldHost = createServer((_req, res) => res.end('{}'));
    const wss = new WebSocketServer({ noServer: true });
    let oldLinks = 0;
    oldHost.on('upgrade', (req, socket, head) => {
      oldLinks++;
      wss.handleUpgrade(req, socket, head, () => undefined); // accepted, then silence
    });
    await new Promise<void>((r) => oldHost.listen(0, '127.0.0.1', r));
    const oldUrl = `http://127.0.0.1:${(oldHost.address() as import('node:net').AddressInfo).port}`;
    const registry = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
    try {
      await registry.registerNode({ appDbid: '201', pid: 4242, url: oldUrl, startedAt: Date.now(), heartbeatAt: Date.now() });
      const beat = setInterval(() => void registry.heartbeat('201', Date.now()), 300);
      const gw = await startGw();
      await waitUntil(() => oldLinks > 0, 'the gateway to link to the first process of 201');
      // The host crashes: the heartbeat stops; the socket is never closed. The node comes back elsewhere.
      clearInterval(beat);
      const node = await startNode('201');
      await gatewaySees(gw.url, ['201'], 0);
      let linked = 0;
      try {
        linked = await waitUntil(async () => {
          const h = (await (await fetch(`${node.url}/health`)).json()) as { gateway_nodes: number };
          return h.gateway_nodes > 0 ? h.gateway_nodes : false;
        }, 'a notification link from the gateway to the restarted node 201', 8_000);
      } catch {
        linked = 0;
      }
      expect(linked).toBe(1);
      // And its pushes go out through that gateway.
      const { r, chat } = await requestChat(gw.url, { ...PUSH_FIELDS, 'userData[GCTI_GMS_PushDeviceId]': 'dev-restarted' });
      expect(r.body.statusCode).toBe(0);
      await agentSays('201', chat.chatId, 'pushed from the restarted node', true);
      await waitUntil(() => receiver.received.some((p) => JSON.stringify(p.body).includes('pushed from the restarted node')), 'a push of the new chat', 5_000);
    } finally {
      for (const c of wss.clients) c.terminate();
      wss.close();
      oldHost.closeAllConnections();
      await new Promise((r) => oldHost.close(r));
      await registry.close();
    }
  });
});

/** An agent on the node that owns the chat accepts it (if asked) and says `text`. */
async function agentSays(nodeAlias: string, chatId: string, text: string, accept: boolean): Promise<void> {
  const n = nodes.get(nodeAlias);
  if (n === undefined) throw new Error(`no node ${nodeAlias}`);
  const agent = new AgentClient(n.url, 'alice', 'alice-secret');
  await agent.login();
  if (accept) expect((await agent.accept(chatId)).status).toBe(200);
  const r = await agent.send(chatId, text);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
}

async function ownership(chatId: string) {
  const store = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
  try {
    return (await store.loadOwned(chatId))?.ownership;
  } finally {
    await store.close();
  }
}

describe('nodes that die, leave, or are not there', { timeout: 30_000 }, () => {
  it('a killed node: its chats continue on a live node whatever alias is sent, answers and pushes name the new owner', async () => {
    await startNode('201');
    await startNode('202');
    const gw = await startGw();
    await gatewaySees(gw.url, ['201', '202']);
    const chats: Chat[] = [];
    for (let i = 0; i < 4; i++) {
      const { r, chat } = await requestChat(gw.url, { ...PUSH_FIELDS, 'userData[GCTI_GMS_PushDeviceId]': `dev-${i}` });
      expect(r.body.statusCode).toBe(0);
      chats.push(chat);
    }
    const victim = chats[0]?.alias as string;
    const survivor = victim === '201' ? '202' : '201';
    await nodes.get(victim)?.close();
    const moved = chats.filter((c) => c.alias === victim);
    expect(moved.length).toBeGreaterThan(0);
    // Stale alias, no alias, and the survivor's alias: all reach the session, restored on the survivor.
    const variants: Array<string | undefined> = [victim, undefined, survivor];
    for (const [i, c] of moved.entries()) {
      const alias = variants[i % variants.length];
      const fields: Record<string, string | number> = { secureKey: c.secureKey, userId: c.userId, transcriptPosition: 1 };
      if (alias !== undefined) fields['alias'] = alias;
      const r = await postForm(`${gw.url}/genesys/2/chat/${SERVICE}/${c.chatId}/refresh`, fields);
      expect(r.body.statusCode, JSON.stringify(r.body)).toBe(0);
      expect(r.body.alias).toBe(survivor);
      expect(await ownership(c.chatId)).toEqual({ owner: survivor, epoch: 2 });
      c.alias = survivor;
    }
    // The old alias again, after the restoration: still served, answer names the current owner.
    const again = await op(gw.url, { ...(moved[0] as Chat), alias: victim }, 'send', { message: 'customer after restore' });
    expect(again.body.statusCode).toBe(0);
    expect(again.body.alias).toBe(survivor);
    await agentSays(survivor, moved[0]?.chatId as string, 'after restore', true);
    const pushed = await waitUntil(
      () => receiver.received.find((p) => JSON.stringify(p.body).includes('after restore')),
      'the push of the message sent after the restoration',
    );
    expect(pushed.body.data).toMatchObject({ chatId: moved[0]?.chatId, alias: survivor });
  });

  it('a node leaving the cluster (planned shutdown) gets no new chat', async () => {
    await startNode('201');
    await startNode('202');
    const gw = await startGw();
    await gatewaySees(gw.url, ['201', '202']);
    await nodes.get('202')?.shutdown();
    for (let i = 0; i < 6; i++) {
      const { r } = await requestChat(gw.url);
      expect(r.body.statusCode, JSON.stringify(r.body)).toBe(0);
      expect(r.body.alias).toBe('201');
    }
  });

  it('a gateway restart loses nothing: chats continue through the new gateway, pushes still reach the receiver', async () => {
    await startNode('201');
    await startNode('202');
    const gw1 = await startGw();
    await gatewaySees(gw1.url, ['201', '202']);
    const { chat } = await requestChat(gw1.url, { ...PUSH_FIELDS, 'userData[GCTI_GMS_PushDeviceId]': 'dev-gw' });
    expect((await op(gw1.url, chat, 'send', { message: 'before restart' })).body.statusCode).toBe(0);
    await gw1.close();
    gateways.splice(gateways.indexOf(gw1), 1);
    const gw2 = await startGw();
    await gatewaySees(gw2.url, ['201', '202']);
    const r = await op(gw2.url, chat, 'refresh', { transcriptPosition: 1 });
    expect(r.body.statusCode).toBe(0);
    expect((r.body.messages as Array<{ text?: string }>).some((m) => m.text === 'before restart')).toBe(true);
    await agentSays(chat.alias, chat.chatId, 'after gateway restart', true);
    await waitUntil(() => receiver.received.some((p) => JSON.stringify(p.body).includes('after gateway restart')), 'a push after the gateway restart');
  });

  it('no live node: Request Chat and operations answer 503 UNAVAILABLE, statusCode 1, code 124', async () => {
    await startNode('201');
    const gw = await startGw();
    await gatewaySees(gw.url, ['201']);
    const { chat } = await requestChat(gw.url);
    await nodes.get('201')?.close();
    const r1 = await requestChat(gw.url);
    const r2 = await op(gw.url, chat, 'refresh');
    for (const r of [r1.r, r2]) {
      expect(r.status, JSON.stringify(r.body)).toBe(503);
      expect(r.body).toMatchObject({ statusCode: 1, messages: [], chatEnded: false });
      expect(r.body.errors).toHaveLength(1);
      expect(r.body.errors[0].code).toBe(124);
      expect(typeof r.body.errors[0].advice).toBe('string');
    }
    expect(r2.body.chatId).toBe(chat.chatId);
    // Also once the gateway has taken the node for dead (dead-after = 2 s).
    await gatewaySees(gw.url, [], 0);
    const r3 = await op(gw.url, chat, 'send', { message: 'x' });
    expect(r3.status).toBe(503);
    expect(r3.body.statusCode).toBe(1);
    expect(r3.body.errors[0].code).toBe(124);
  });
});

describe('hostile routing input', { timeout: 30_000 }, () => {
  it('a chat addressed under another service, with its own alias: UNKNOWN_CHAT, nothing moves or changes', async () => {
    await startNode('201');
    await startNode('202');
    const gw = await startGw();
    await gatewaySees(gw.url, ['201', '202']);
    const { chat } = await requestChat(gw.url);
    const other = chat.alias === '201' ? '202' : '201';
    for (const alias of [chat.alias, other, '999']) {
      const r = await op(gw.url, { ...chat, alias }, 'send', { message: 'wrong service' }, 'other');
      expect(r.status).toBe(404);
      expect(r.body.statusCode).toBe(2);
      expect(r.body.errors[0].code).toBe(104);
      expect(r.body.secureKey).toBeUndefined();
    }
    expect(await ownership(chat.chatId)).toEqual({ owner: chat.alias, epoch: 1 });
    const r = await op(gw.url, chat, 'refresh', { transcriptPosition: 1 });
    expect((r.body.messages as Array<{ text?: string }>).some((m) => m.text === 'wrong service')).toBe(false);
  });

  it('odd aliases with a wrong key: ACCESS_DENIED (or MESSAGE_TOO_LONG for an oversized one), never a 5xx, nothing changes', async () => {
    await startNode('201');
    await startNode('202');
    const gw = await startGw();
    await gatewaySees(gw.url, ['201', '202']);
    const { chat } = await requestChat(gw.url);
    for (const alias of ['', '0', '-1', '1e309', 'NaN', 'constructor', '__proto__', '../../internal/chat', '%00', '\u0000', '\u{1F600}'.repeat(100), 'a'.repeat(3000)]) {
      const r = await op(gw.url, { ...chat, secureKey: 'wrong', alias }, 'send', { message: 'hostile' });
      expect(r.status, alias.slice(0, 20)).toBeLessThan(500);
      expect(r.body.statusCode).toBe(2);
    }
    const huge = await op(gw.url, { ...chat, alias: 'z'.repeat(200_000) }, 'send', { message: 'huge alias' });
    expect(huge.status).toBeLessThan(500);
    expect(await ownership(chat.chatId)).toEqual({ owner: chat.alias, epoch: 1 });
  });
});

describe('a gateway the nodes refuse', { timeout: 30_000 }, () => {
  // Regression test (this was a bug, now fixed). Was: src/gateway/remote-node-link.ts:128 passes a node's error code straight to the customer: a node
  // refusing the gateway's [node] internal-token answers API_KEY_REQUIRED "Bad node token.", and the customer
  // gets HTTP 401, errors[0].code 116, statusCode 2 ("retrying will not help") with an internal message, while
  // the gateway logs nothing (roles/gateway.ts logs only 5xx). docs/errors.md: API_KEY_REQUIRED is "[http]
  // api-key is set and the request has no matching apikey header" - not the case here (no api-key is set).
  // Right: a refusal between gateway and node is a server-side failure: 5xx (UNAVAILABLE, statusCode 1 or
  // INTERNAL), logged by the gateway.
  it('a gateway whose internal token the nodes refuse: the customer gets a server-side error (5xx, retryable), not 401 API_KEY_REQUIRED', async () => {
    await startNode('201');
    const gw = await startGw('', 'not-the-nodes-token');
    await gatewaySees(gw.url, ['201'], 0);
    const { r } = await requestChat(gw.url);
    expect(r.status, JSON.stringify(r.body)).toBeGreaterThanOrEqual(500);
    expect(r.body.statusCode).toBe(1);
    expect(r.body.errors[0].code).not.toBe(116);
  });
});

