/**
 * Agent presence (docs/agent-api.md): desk socket counting over real WebSockets, and which error a
 * transfer to an agent who is not online gets when something else is also wrong.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AgentClient, ChatClient, openAgentSocket, startTestServer, type TestServer } from './helpers.ts';

let srv: TestServer | undefined;
const sockets: WebSocket[] = [];

afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await srv?.close();
  srv = undefined;
});

async function start(env: Record<string, string> = {}): Promise<TestServer> {
  srv = await startTestServer(`[agent.carol]\nname = Carol\npassword = carol-secret\nmax-chats = 2\n`, env);
  return srv;
}

async function agent(id: string, password: string): Promise<AgentClient> {
  const a = new AgentClient(srv!.url, id, password);
  await a.login();
  return a;
}

/** A desk socket that never answers the server's pings (a laptop gone to sleep). */
async function silentDesk(token: string) {
  {
    const ws = new WebSocket(`${srv!.url.replace('http', 'ws')}/agent/api/ws`, { autoPong: false });
    sockets.push(ws);
    const frames: Array<Record<string, unknown>> = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'auth', token }));
    await until(() => frames.some((f) => f['type'] === 'ready'), true, 'ready');
    return { ws, frames };
  }
}

async function desk(token: string) {
  const d = await openAgentSocket(srv!.url, token);
  sockets.push(d.ws);
  await d.next('ready');
  return d;
}

async function onlineOf(viewer: AgentClient, id: string): Promise<boolean> {
  const r = await viewer.call('GET', 'agents');
  return (r.body.agents as Array<{ agentId: string; online: boolean }>).find((a) => a.agentId === id)!.online;
}

/** Polls until `get()` gives `want` (the server sees a close a moment after the client). */
async function until<T>(get: () => T | Promise<T>, want: T, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if ((await get()) === want) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} to be ${String(want)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function closed(ws: WebSocket): Promise<number> {
  return new Promise((r) => (ws.readyState === ws.CLOSED ? r(-1) : ws.once('close', (code) => r(code))));
}

describe('presence counting over real desk sockets', () => {
  it('a second auth with the same token on one socket counts once: closing that socket makes the agent offline', async () => {
    await start();
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    const d = await desk(bob.token);
    d.ws.send(JSON.stringify({ type: 'auth', token: bob.token }));
    await d.next('ready');
    expect(await onlineOf(alice, 'bob')).toBe(true);
    d.ws.close();
    await closed(d.ws);
    await until(() => onlineOf(alice, 'bob'), false, 'bob offline');
  });

  it('a second auth with another token moves the desk: the first token is offline, the second online until the close', async () => {
    await start();
    const alice = await agent('alice', 'alice-secret');
    const bob1 = await agent('bob', 'bob-secret-1');
    const d = await desk(bob1.token);
    const carol = await agent('carol', 'carol-secret');
    // Carol's token is used for a desk of another socket first (so its API presence does not count).
    const c0 = await desk(carol.token);
    c0.ws.close();
    await closed(c0.ws);
    await until(() => onlineOf(alice, 'carol'), false, 'carol offline');
    // The bob desk socket authenticates again, as carol.
    d.ws.send(JSON.stringify({ type: 'auth', token: carol.token }));
    await d.next('ready');
    expect(await onlineOf(alice, 'carol')).toBe(true);
    expect(await onlineOf(alice, 'bob')).toBe(false);
    d.ws.close();
    await closed(d.ws);
    await until(() => onlineOf(alice, 'carol'), false, 'carol offline after close');
  });

  it('an auth frame with a bad token after a good one closes the socket and takes the agent offline', async () => {
    await start();
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    const d = await desk(bob.token);
    const code = closed(d.ws);
    d.ws.send(JSON.stringify({ type: 'auth', token: 'nope' }));
    expect(await code).toBe(4401);
    await until(() => onlineOf(alice, 'bob'), false, 'bob offline');
  });

  it('two desks of one token: one closing leaves the agent online; sign-out while a desk is open makes it offline at once', async () => {
    await start();
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    const d1 = await desk(bob.token);
    const d2 = await desk(bob.token);
    d1.ws.close();
    await closed(d1.ws);
    await new Promise((r) => setTimeout(r, 100));
    expect(await onlineOf(alice, 'bob')).toBe(true);
    expect((await bob.call('POST', 'logout', {})).status).toBe(200);
    expect(await onlineOf(alice, 'bob')).toBe(false);
    d2.ws.close();
    await closed(d2.ws);
    // A new sign-in and desk: online again, and the old socket's close did not take anything from it.
    const bob2 = await agent('bob', 'bob-secret-1');
    await desk(bob2.token);
    expect(await onlineOf(alice, 'bob')).toBe(true);
  });

  it('a desk that stops answering pings is dropped by the liveness check and goes offline', async () => {
    await start({ PARLEY_HTTP_WS_PING_INTERVAL: '1' });
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    const d = await silentDesk(bob.token);
    expect(await onlineOf(alice, 'bob')).toBe(true);
    await closed(d.ws);
    await until(() => onlineOf(alice, 'bob'), false, 'bob offline after the liveness drop', 5000);
  }, 10_000);
});

describe('transfer to an agent who is not online: which error wins', () => {
  it('AGENT_UNAVAILABLE is a 409 in the agent API error format, and the chat stays with the agent', async () => {
    await start();
    const c = new ChatClient(srv!.url);
    await c.start({ nickname: 'Sam', subject: 'S' });
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    await bob.call('POST', 'logout', {});
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const t = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' });
    expect(t.status).toBe(409);
    expect(Object.keys(t.body)).toEqual(['error']);
    expect(t.body.error.code).toBe('AGENT_UNAVAILABLE');
    expect(typeof t.body.error.message).toBe('string');
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/agent-ops.ts:151-153 checks the target's presence before act() checks that the
  // caller is in the chat. docs/agent-api.md: "Acting on a chat the agent is not in is 403 AGENT_NOT_IN_CHAT".
  // An agent not in the chat transferring it to an offline agent gets 409 AGENT_UNAVAILABLE (statusCode 1:
  // "retry once the agent is at a desk"), and learns nothing of its real mistake; once bob is online the same
  // call gives 403. Fixed: check the chat and the caller first (inside act), then the target's presence.
  it('a transfer by an agent not in the chat to an offline agent is 403 AGENT_NOT_IN_CHAT, not 409 AGENT_UNAVAILABLE', async () => {
    await start();
    const c = new ChatClient(srv!.url);
    await c.start({ nickname: 'Sam', subject: 'S' });
    const alice = await agent('alice', 'alice-secret');
    const carol = await agent('carol', 'carol-secret');
    const bob = await agent('bob', 'bob-secret-1');
    await bob.call('POST', 'logout', {});
    expect((await alice.accept(c.chatId)).status).toBe(200);
    // Carol is not in alice's chat.
    const t = await carol.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' });
    expect({ status: t.status, code: t.body.error?.code }).toEqual({ status: 403, code: 'AGENT_NOT_IN_CHAT' });
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/agent-ops.ts:151-153, as above: the presence check runs before the chat is looked
  // up, so an unknown chatId answers 409 AGENT_UNAVAILABLE instead of 404 UNKNOWN_CHAT (docs/errors.md).
  it('a transfer of an unknown chat to an offline agent is 404 UNKNOWN_CHAT, not 409 AGENT_UNAVAILABLE', async () => {
    await start();
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    await bob.call('POST', 'logout', {});
    const t = await alice.call('POST', 'chats/no-such-chat/transfer', { toAgentId: 'bob' });
    expect({ status: t.status, code: t.body.error?.code }).toEqual({ status: 404, code: 'UNKNOWN_CHAT' });
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/agent-ops.ts:151-153, as above. The customer ended the chat while the agent had the
  // Transfer dialog open; choosing an offline agent answers 409 AGENT_UNAVAILABLE ("retry once the agent is at
  // a desk") for a chat that has ended, instead of 400 CHAT_ENDED. The desk (web/desk/app.ts:871) refreshes
  // its lists on CHAT_ENDED, not on AGENT_UNAVAILABLE, so it keeps showing the ended chat as transferable.
  it('a transfer of a chat the customer ended, to an offline agent, is CHAT_ENDED, not AGENT_UNAVAILABLE', async () => {
    await start();
    const c = new ChatClient(srv!.url);
    await c.start({ nickname: 'Sam', subject: 'S' });
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    await bob.call('POST', 'logout', {});
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expect((await c.op('disconnect')).body.statusCode).toBe(0);
    // To an online agent (carol, signed in just now) the same call says CHAT_ENDED.
    await agent('carol', 'carol-secret');
    const toCarol = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'carol' });
    expect(toCarol.body.error.code).toBe('CHAT_ENDED');
    const t = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' });
    expect({ status: t.status, code: t.body.error?.code }).toEqual({ status: 400, code: 'CHAT_ENDED' });
  });
});

describe('a woken chat and its last agent', () => {
  async function heldBy(alice: AgentClient): Promise<ChatClient> {
    const c = new ChatClient(srv!.url);
    await c.start({ nickname: 'Sam', subject: 'S', 'userData[GCTI_Chat_AsyncMode]': 'true' });
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expect((await alice.call('POST', `chats/${c.chatId}/hold`, {})).status).toBe(200);
    return c;
  }

  it('goes to its last agent first while that agent is at a desk', async () => {
    await start();
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    await desk(alice.token);
    const c = await heldBy(alice);
    expect((await c.op('send', { message: 'back again' })).body.statusCode).toBe(0);
    const waiting = (await bob.overview()).body.waiting as Array<{ chatId: string; routedTo?: string }>;
    expect(waiting.find((w) => w.chatId === c.chatId)).toBeUndefined();
    expect((await bob.accept(c.chatId)).status).toBe(409);
    expect((await alice.overview()).body.waiting.map((w: { chatId: string; routedTo?: string }) => [w.chatId, w.routedTo])).toEqual([[c.chatId, 'alice']]);
  });

  it('goes to anyone at once when its last agent is not online (the desk closed), instead of waiting last-agent-timeout for nobody', async () => {
    await start();
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    const d = await desk(alice.token);
    const c = await heldBy(alice);
    d.ws.close();
    await until(() => onlineOf(bob, 'alice'), false, 'alice offline');
    expect((await c.op('send', { message: 'back again' })).body.statusCode).toBe(0);
    const waiting = (await bob.overview()).body.waiting as Array<{ chatId: string; routedTo?: string }>;
    expect(waiting.find((w) => w.chatId === c.chatId)).toEqual(expect.not.objectContaining({ routedTo: expect.anything() }));
    expect((await bob.accept(c.chatId)).status).toBe(200);
  });

  it('offered to anyone as soon as its last agent goes offline after the wake-up (the last desk closes), not after last-agent-timeout', async () => {
    await start();
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    const d1 = await desk(alice.token);
    const d2 = await desk(alice.token);
    const c = await heldBy(alice);
    expect((await c.op('send', { message: 'back again' })).body.statusCode).toBe(0);
    expect((await bob.accept(c.chatId)).status).toBe(409);
    // One of two desks closing leaves alice online: still hers.
    d1.ws.close();
    await closed(d1.ws);
    await new Promise((r) => setTimeout(r, 100));
    expect((await bob.accept(c.chatId)).status).toBe(409);
    d2.ws.close();
    const waiting = async () => ((await bob.overview()).body.waiting as Array<{ chatId: string }>).some((w) => w.chatId === c.chatId);
    await until(waiting, true, 'the chat offered to bob');
    expect((await bob.accept(c.chatId)).status).toBe(200);
  });
});
