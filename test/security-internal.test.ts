/**
 * Security of the internal API and notification sockets (docs/security.md: "a node of a cluster
 * impersonated: the internal API and notification sockets require `[node] internal-token`"): real
 * `parley start` on 127.0.0.1 port 0, real SQLite in a temp dir.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ManualClock } from '../src/clock.ts';
import { NODE_RPC_PATH, NODE_TOKEN_HEADER } from '../src/chat-server/node-rpc.ts';
import { GATEWAY_SOCKET_PATH } from '../src/chat-server/gateway-socket.ts';
import { AgentClient, postForm, SERVICE, startTestServer, type TestServer } from './helpers.ts';
import { pushEngine } from './receiver-helpers.ts';
import { pushIni, pushUserData, startFakeReceiver, type FakeReceiver } from './receiver-fixture.ts';

let srv: TestServer | undefined;
let fake: FakeReceiver | undefined;
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  await srv?.close();
  srv = undefined;
  await fake?.close();
  fake = undefined;
});

function rpc(base: string, call: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${NODE_RPC_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(call) });
}

/** Opens a WebSocket; resolves with it, or with the error when the server refuses the upgrade. */
function openSocket(url: string, headers: Record<string, string> = {}): Promise<WebSocket | Error> {
  const ws = new WebSocket(url, { headers });
  sockets.push(ws);
  return new Promise((resolve) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', (e) => resolve(e));
  });
}

describe('with [node] internal-token set', () => {
  it('the internal API refuses a missing or wrong token and takes the right one', async () => {
    srv = await startTestServer('', { PARLEY_NODE_INTERNAL_TOKEN: 'node-token-0123456789' });
    const call = { call: 'requestChat', serviceName: SERVICE, input: { nickname: 'Ann' } };
    expect((await rpc(srv.url, call)).status).toBe(401);
    expect((await rpc(srv.url, call, { [NODE_TOKEN_HEADER]: 'node-token-012345678X' })).status).toBe(401);
    expect((await rpc(srv.url, call, { [NODE_TOKEN_HEADER]: 'node-token-0123456789' })).status).toBe(200);
  });

  it('the notification socket refuses a peer without the token', async () => {
    srv = await startTestServer('', { PARLEY_NODE_INTERNAL_TOKEN: 'node-token-0123456789' });
    const url = `${srv.url.replace(/^http/, 'ws')}${GATEWAY_SOCKET_PATH}?nodeId=evil&group=gms-cluster`;
    expect(await openSocket(url)).toBeInstanceOf(Error);
    expect(await openSocket(url, { [NODE_TOKEN_HEADER]: 'wrong' })).toBeInstanceOf(Error);
  });
});

describe('with the default (empty) [node] internal-token', () => {
  // Regression test (this was a gap, now closed). Was: with the default empty `[node] internal-token` the notification socket takes anyone: the check is
  // skipped when the token is '' (src/chat-server/gateway-socket.ts:71), and in `parley start` the socket is
  // served on the public Chat API listener (src/app.ts:153). A client that connects as the in-process
  // gateway's node id (`gms-<app-dbid>`) replaces it in the registry (src/push/gateway-registry.ts:22) and is
  // sent every notification, with the secureKey when flex-push-content has secure-key (as config/parley.ini
  // does) — a full takeover of other customers' chats. Contradicts docs/security.md:39 ("the internal API
  // and notification sockets require `[node] internal-token`"). Right behaviour: refuse the socket without a
  // configured token (or do not serve /internal/* in `parley start`, whose gateway is in process; or refuse
  // to start with an empty token).
  it('an anonymous client cannot join the node group and read other customers\u2019 secureKeys', async () => {
    const clock = new ManualClock(Date.now());
    fake = await startFakeReceiver();
    srv = await startTestServer(pushIni(fake.url), {}, { clock, autoPush: false });
    const url = `${srv.url.replace(/^http/, 'ws')}${GATEWAY_SOCKET_PATH}?nodeId=gms-117&group=gms-cluster`;
    const ws = await openSocket(url);
    const captured: Array<{ chatId?: string; tokens?: { secureKey?: string } }> = [];
    if (ws instanceof WebSocket) {
      ws.on('message', (d) => {
        const f = JSON.parse(d.toString()) as { t: string; id: number; n: { chatId?: string; tokens?: { secureKey?: string } } };
        if (f.t !== 'n') return;
        captured.push(f.n);
        ws.send(JSON.stringify({ t: 'r', id: f.id, outcome: { kind: 'delivered' } }));
      });
    }
    // Another customer starts a push-subscribed chat; an agent joins it (flex-push-on-join notifies).
    const victim = await postForm(`${srv.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Victim', ...pushUserData('victim-device') });
    expect(victim.body.statusCode).toBe(0);
    const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
    await alice.login();
    await alice.accept(victim.body.chatId);
    await pushEngine(srv.running.app).tick();
    for (let i = 0; i < 50 && captured.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const stolen = captured.find((n) => n.chatId === victim.body.chatId)?.tokens?.secureKey;
    let stolenKeyWorks = false;
    if (stolen !== undefined) {
      const r = await postForm(`${srv.url}/genesys/2/chat/${SERVICE}/${victim.body.chatId}/refresh`, { secureKey: stolen });
      stolenKeyWorks = r.status === 200;
    }
    expect(stolenKeyWorks).toBe(false);
  });

  // Regression test (this was a gap, now closed). Was: with the default empty `[node] internal-token`, POST /internal/chat needs no credential at all
  // (src/chat-server/node-rpc.ts:44 skips the check for ''), and in `parley start` it is on the public Chat
  // API listener (src/app.ts:130): any Chat API caller reaches the node directly, past the `[http] api-key`
  // and the per-client token bucket the Chat API applies (src/gateway/chat-api.ts:92-95). Contradicts
  // docs/security.md:39 ("the internal API ... require `[node] internal-token`") and :28 (floods: token
  // buckets per client address). Right behaviour: refused without a configured token.
  it('POST /internal/chat cannot be used without a token to bypass the api-key and the per-client limit', async () => {
    const clock = new ManualClock(Date.now());
    srv = await startTestServer('', { PARLEY_HTTP_API_KEY: 'customer-api-key', PARLEY_HTTP_RATE_LIMIT_PER_CLIENT: '1' }, { clock, autoPush: false });
    // The Chat API itself wants the key.
    expect((await postForm(`${srv.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Ann' })).status).toBe(401);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await rpc(srv.url, { call: 'requestChat', serviceName: SERVICE, input: { nickname: `Ann ${i}` } })).status);
    // Every role in one process has no use for the internal API: without a token it is off (404).
    expect(statuses).toEqual([404, 404, 404, 404, 404]);
  });
});
