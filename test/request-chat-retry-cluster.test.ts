/**
 * The Request Chat retry key (a gateway sending the same Request Chat again) in a cluster: two real chat server nodes
 * (buildChatNode, app dbids 201 and 202) on ONE SQLite file, each behind its real internal API on HTTP, and
 * the gateway's RemoteNodeLink over a NodeDirectory. Which nodes the chat nodes take for alive is set by
 * the test (`alive`), as the owner probe would find it.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClientReply } from '../src/chat-server/client-ops.ts';
import type { ChatNode } from '../src/chat-server/node.ts';
import { createNodeRpc } from '../src/chat-server/node-rpc.ts';
import { ManualClock } from '../src/clock.ts';
import { NodeDirectory } from '../src/cluster/node-directory.ts';
import { ParleyError } from '../src/errors.ts';
import { RemoteNodeLink } from '../src/gateway/remote-node-link.ts';
import { silentLogger } from '../src/log.ts';
import type { Store } from '../src/store/port.ts';
import { SERVICE } from './helpers.ts';
import { SharedFileNodes } from './support/shared-file-nodes.ts';

const TOKEN = 'review-node-token';
const HOLD_MS = 2_500; // past the gateway timeout (undici checks timeouts on a coarse tick)
const GATEWAY_TIMEOUT_MS = 250;
const PUSH_INI = '[settings]\nflex-push-on-join = true\n';
const PUSH_USER_DATA = {
  GCTI_Chat_PushSubscribe: 'true',
  GCTI_GMS_NodeGroup: 'group-1',
  GCTI_GMS_PushDeviceId: 'device-1',
  GCTI_GMS_PushDeviceType: 'customhttp',
};

let cluster: SharedFileNodes;
let clock: ManualClock;
let alive: Set<string>;

beforeEach(() => {
  cluster = new SharedFileNodes(['201', '202']);
  ({ clock, alive } = cluster);
});

afterEach(() => cluster.close());

const makeNode = (appDbid: string, extraIni = ''): Promise<ChatNode> => cluster.node(appDbid, { extraIni });
const openStore = (name?: string): Store => cluster.openStore(name);
const listen = (handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> => cluster.listen(handler);
const links = { push: (l: RemoteNodeLink) => cluster.onClose(() => l.close()) };

type Mode = 'pass' | 'hold' | 'drop';

/**
 * A node's internal API behind a front. The first call through any front made with the same `shared`
 * counter is applied by its node, then its answer is held past the gateway timeout ('hold') or the
 * connection is cut (the node died after its commit: 'drop'); later calls pass.
 */
async function front(node: ChatNode, first: Mode, shared: { calls: number; nodesCalled: string[] }): Promise<string> {
  const rpc = createNodeRpc({ client: node.client, token: TOKEN, maxBodySize: 1 << 20, accepting: () => true });
  const nodeUrl = await listen((req, res) => void rpc(req, res));
  return listen((req, res) => {
    const isFirst = shared.calls++ === 0;
    shared.nodesCalled.push(node.alias);
    const up = httpRequest(`${nodeUrl}${req.url ?? '/'}`, { method: req.method, headers: req.headers }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const send = () => {
          if (res.destroyed) return;
          res.writeHead(answer.statusCode ?? 502, { 'content-type': 'application/json' });
          res.end(Buffer.concat(chunks));
        };
        if (isFirst && first === 'drop') res.socket?.destroy();
        else if (isFirst && first === 'hold') setTimeout(send, HOLD_MS).unref();
        else send();
      });
    });
    req.pipe(up);
  });
}

async function gateway(urls: ReadonlyArray<readonly [string, string]>): Promise<RemoteNodeLink> {
  const registry = openStore('registry.db');
  const now = Date.now();
  for (const [i, [appDbid, url]] of urls.entries()) {
    await registry.registerNode({ appDbid, pid: 1000 + i, url, startedAt: now, heartbeatAt: now });
  }
  const d = new NodeDirectory(registry, new ManualClock(), { deadAfterMs: 60_000, pollMs: 60_000 }, silentLogger);
  await d.refresh();
  const link = new RemoteNodeLink(d, { token: TOKEN, timeoutMs: GATEWAY_TIMEOUT_MS });
  links.push(link);
  return link;
}

describe('two nodes on one store, called directly', () => {
  it('a replay on the other node, while the first owner lives, is answered NOT_OWNER naming the owner', async () => {
    const x = await makeNode('201');
    const y = await makeNode('202');
    const key = { chatId: 'ClusterChat00001', requestId: 'req-c1' };
    await x.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    const err = await y.client.requestChat(SERVICE, { nickname: 'Ann' }, key).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParleyError);
    expect((err as ParleyError).code).toBe('NOT_OWNER');
    expect((err as ParleyError).details?.['owner']).toBe('201');
    expect(y.sessions.counts().open).toBe(0);
    expect(y.sessions.size).toBe(0);
  });

  it('a replay after the first node died (committed, never answered): restored on the other node, same chat and tokens, timers tracked', async () => {
    const x = await makeNode('201');
    const y = await makeNode('202');
    const store = cluster.openStore();
    const key = { chatId: 'ClusterChat00002', requestId: 'req-c2' };
    const first = await x.client.requestChat(SERVICE, { nickname: 'Ann', subject: 'restore me' }, key);
    alive.delete('201');
    const again = await y.client.requestChat(SERVICE, { nickname: 'Ann', subject: 'restore me' }, key);
    expect(again.session.chatId).toBe(key.chatId);
    expect(again.session.secureKey).toBe(first.session.secureKey);
    expect(again.session.userId).toBe(first.session.userId);
    expect(again.session.alias).toBe('202');
    expect(again.messages).toEqual(first.messages);
    expect((await store.loadOwned(key.chatId))?.ownership.owner).toBe('202');
    expect((await store.listOpenSessions()).length).toBe(1);
    expect(y.sessions.counts().open).toBe(1);
    expect(y.timers.pending).toBeGreaterThan(0);
    // A second replay on the new owner: same answer, nothing more.
    const third = await y.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    expect(third.session.secureKey).toBe(first.session.secureKey);
    expect(y.sessions.counts().open).toBe(1);
  });

  // Regression test (this was a bug, now fixed). Was: with flex-push-on-join = true (the cluster config of docs/deployment.md) the first attempt opened
  // the chat with its push subscription acknowledged. When that node died after its commit and the gateway's
  // retried Request Chat restores the chat on another node, restore() (src/chat-server/node.ts:94) turns push
  // off "until the client's next request" - but the retried Request Chat IS the client's request, and
  // openedBy (src/chat-server/client-ops.ts:140-150) answers it without acknowledging push again (perform's
  // touch() does, lines 216-218). The customer's app got a Request Chat answer saying nothing of this; it waits
  // for pushes that are never created (notificationFor drops them while push is inactive), and the node
  // ends the chat after flex-disconnect-timeout (45 s) instead of flex-push-timeout (a day), because the
  // disconnect timer is set for a client without push. Right: the retried Request Chat leaves the session
  // as the first attempt did: push active, no disconnect after 45 s of silence.
  it('a push-subscribed chat restored by the retried Request Chat keeps push on and is not disconnected after 45 s', async () => {
    const x = await makeNode('201', PUSH_INI);
    const y = await makeNode('202', PUSH_INI);
    const key = { chatId: 'ClusterChat00003', requestId: 'req-c3' };
    const first = await x.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_USER_DATA }, key);
    expect(first.session.push?.active).toBe(true);
    alive.delete('201');
    const again = await y.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_USER_DATA }, key);
    expect(again.session.secureKey).toBe(first.session.secureKey);
    // The push client waits for pushes and sends nothing for 46 s.
    clock.advance(46_000);
    await y.timers.tick();
    expect((await y.sessions.get(key.chatId)).session.state).not.toBe('ended');
    expect((await y.sessions.get(key.chatId)).session.push?.active).toBe(true);
  });

  // Regression test (this was a bug, now fixed). Was: two attempts of one Request Chat running at once on two nodes of one store (the gateway's first
  // attempt is slow, its retry goes to another node): both find no chat, both create, the store refuses the
  // second insert. The loser's catch block (src/chat-server/client-ops.ts:128) calls openedBy, which gets
  // NOT_OWNER (the winner is alive) - and `.catch(() => undefined)` throws that away, so the loser answers
  // the store's raw constraint failure as UNAVAILABLE "The chat store is not available; retry." (guard in
  // live-sessions.ts). The gateway then cannot follow the chat to its owner (docs/deployment.md: "a node that
  // owns that chat elsewhere answers NOT_OWNER and the gateway follows it") and the customer is told to
  // retry, i.e. to open a second chat. Right: the loser answers NOT_OWNER with details.owner = the winner,
  // exactly as it does when the same retry arrives a moment later.
  it('two attempts at once on two nodes: one chat; the loser answers NOT_OWNER naming the winner', async () => {
    const x = await makeNode('201');
    const y = await makeNode('202');
    const store = cluster.openStore();
    const key = { chatId: 'ClusterChat00004', requestId: 'req-c4' };
    const [a, b] = await Promise.allSettled([
      x.client.requestChat(SERVICE, { nickname: 'Ann' }, key),
      y.client.requestChat(SERVICE, { nickname: 'Ann' }, key),
    ]);
    expect((await store.listOpenSessions()).map((s) => s.chatId)).toEqual([key.chatId]);
    const owner = (await store.loadOwned(key.chatId))?.ownership.owner;
    const results = [a, b];
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect((won[0] as PromiseFulfilledResult<ClientReply>).value.session.alias).toBe(owner);
    expect(lost).toHaveLength(1);
    const err = lost[0]?.reason as ParleyError;
    expect({ code: err.code, owner: err.details?.['owner'] }).toEqual({ code: 'NOT_OWNER', owner });
  });
});

describe('the gateway (RemoteNodeLink) over two nodes', () => {
  it('the first node dies after its commit (connection cut): the retry on the other node restores and answers that chat', async () => {
    const x = await makeNode('201');
    const y = await makeNode('202');
    const store = cluster.openStore();
    const shared = { calls: 0, nodesCalled: [] as string[] };
    const fx = await front(x, 'drop', shared);
    const fy = await front(y, 'drop', shared);
    // Whichever node gets the first attempt "dies" after its commit: the other one finds it dead.
    alive.clear();
    const link = await gateway([
      ['201', fx],
      ['202', fy],
    ]);
    const pending = link.requestChat(SERVICE, { nickname: 'Ann', subject: 'ha' });
    const r = await pending;
    expect(shared.calls).toBe(2);
    const open = await store.listOpenSessions();
    expect(open.map((s) => s.chatId)).toEqual([r.session.chatId]);
    const stored = await store.loadOwned(r.session.chatId);
    expect(stored?.session.secureKey).toBe(r.session.secureKey);
    expect(stored?.session.userId).toBe(r.session.userId);
    expect(stored?.ownership.owner).toBe(shared.nodesCalled[1]);
    expect(r.session.alias).toBe(shared.nodesCalled[1]);
    const joins = (await store.loadEvents(r.session.chatId, 1)).filter((e) => e.type === 'ParticipantJoined');
    expect(joins).toHaveLength(1);
  });

  it('a node over limit-for-sessions answers UNAVAILABLE: the same key goes to the next node, which opens the one chat', async () => {
    const x = await makeNode('201', '[settings]\nlimit-for-sessions = 1\n');
    const y = await makeNode('202', '[settings]\nlimit-for-sessions = 1\n');
    const store = cluster.openStore();
    await x.client.requestChat(SERVICE, { nickname: 'Filler' }, { chatId: 'FillerChat000001', requestId: 'filler' });
    expect(x.admission.state().sessionsFull).toBe(true);
    const shared = { calls: 0, nodesCalled: [] as string[] };
    // Both fronts pass every call (the first call is not held).
    shared.calls = 1;
    const link = await gateway([
      ['201', await front(x, 'pass', shared)],
      ['202', await front(y, 'pass', shared)],
    ]);
    const r = await link.requestChat(SERVICE, { nickname: 'Ann' });
    expect(r.session.alias).toBe('202');
    expect(shared.nodesCalled).toEqual(['201', '202']);
    expect((await store.listOpenSessions()).length).toBe(2);
    expect(x.sessions.counts().open).toBe(1);
    expect(y.sessions.counts().open).toBe(1);
  });

  // Regression test (this was a bug, now fixed). Was: the first attempt reached a live but slow node, which opened the chat; its answer came after the
  // gateway's timeout. The retry goes to the other node, which correctly answers NOT_OWNER {owner: first
  // node}. RemoteNodeLink.route (src/gateway/remote-node-link.ts:73) follows NOT_OWNER only to an owner not
  // yet `tried` and isAlive - but the owner is the node just tried, and call() suspected it on the timeout
  // (line 99) - so the gateway asks the other node again until ATTEMPTS run out and answers the customer
  // NOT_OWNER (statusCode 1, "retry"). The customer's retry is a new Request Chat: a second chat, while the
  // first waits in the agent queue with nobody behind it. Right: follow the NOT_OWNER answer back to the
  // owner (it is registered and alive; its answer to the same retry key is the chat it opened), so the
  // customer gets the one chat, as docs/deployment.md promises.
  it('the first node is only slow: the gateway follows NOT_OWNER back to it and answers the one chat', async () => {
    const x = await makeNode('201');
    const y = await makeNode('202');
    const store = cluster.openStore();
    const shared = { calls: 0, nodesCalled: [] as string[] };
    const link = await gateway([
      ['201', await front(x, 'hold', shared)],
      ['202', await front(y, 'hold', shared)],
    ]);
    const r = await link.requestChat(SERVICE, { nickname: 'Ann', subject: 'slow node' });
    const open = await store.listOpenSessions();
    expect(open.map((s) => s.chatId)).toEqual([r.session.chatId]);
    expect((await store.loadSession(r.session.chatId))?.secureKey).toBe(r.session.secureKey);
  });

  // Regression test (this was a bug, now fixed). Was: docs/deployment.md: a gateway that gets no answer "sends the call again, to the same node or
  // another". With one chat server node (or every other node down) it never does: call() suspects the node
  // that timed out (src/gateway/remote-node-link.ts:99) and route() never picks a `tried` node again
  // (line 62), so the customer gets UNAVAILABLE (statusCode 1, "retry") while the chat its call opened sits
  // in the agent queue; its retry opens a second chat. Right: send the call again (same retry key) to the
  // same node, which answers the chat it opened.
  it('one node, its answer later than the gateway timeout: the gateway asks it again and gets the chat', async () => {
    const x = await makeNode('201');
    const store = cluster.openStore();
    const shared = { calls: 0, nodesCalled: [] as string[] };
    const link = await gateway([['201', await front(x, 'hold', shared)]]);
    const r = await link.requestChat(SERVICE, { nickname: 'Ann', subject: 'one node' });
    expect((await store.listOpenSessions()).map((s) => s.chatId)).toEqual([r.session.chatId]);
  });
});
