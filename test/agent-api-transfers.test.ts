/**
 * The agent API without a browser: the agents list, transfers to agents who cannot take the chat, sync edges.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentClient, ChatClient, openAgentSocket, startTestServer, type TestServer } from './helpers.ts';

let srv: TestServer;

beforeEach(async () => {
  srv = await startTestServer(`[agent.carol]\nname = Carol\npassword = carol-secret\nmax-chats = 2\n`);
});

afterEach(async () => {
  await srv.close();
});

async function agent(id: string, password: string): Promise<AgentClient> {
  const a = new AgentClient(srv.url, id, password);
  await a.login();
  return a;
}

describe('agent API: agents and transfers', () => {
  it('lists an agent who signed out as offline', async () => {
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    expect((await alice.call('GET', 'agents')).body.agents.find((a: { agentId: string }) => a.agentId === 'bob').online).toBe(true);
    await bob.call('POST', 'logout', {});
    expect((await alice.call('GET', 'agents')).body.agents.find((a: { agentId: string }) => a.agentId === 'bob').online).toBe(false);
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/agent-ops.ts:144-146 checked only that
  // toAgentId exists, so a chat transferred to an agent who is signed out (listed "offline" by
  // GET /agent/api/agents) was offered to nobody else for [routing] last-agent-timeout (600 s by default).
  // Now the transfer is refused with 409 AGENT_UNAVAILABLE and the chat stays with the agent.
  it('does not strand a chat on an agent who is signed out', async () => {
    const c = new ChatClient(srv.url);
    await c.start({ nickname: 'Sam', subject: 'Stranded' });
    const alice = await agent('alice', 'alice-secret');
    const carol = await agent('carol', 'carol-secret');
    const bob = await agent('bob', 'bob-secret-1');
    await bob.call('POST', 'logout', {});
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const t = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' });
    expect(t.status).toBe(409);
    expect(t.body.error.code).toBe('AGENT_UNAVAILABLE');
    // Refused: alice still has the chat, and nothing was offered to anyone.
    expect(((await alice.overview()).body.mine as Array<{ chatId: string }>).map((m) => m.chatId)).toContain(c.chatId);
    expect(((await carol.overview()).body.waiting as Array<{ chatId: string }>).map((w) => w.chatId)).not.toContain(c.chatId);
    // An agent who is online (signed in through the API just now) can be given the chat.
    expect((await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'carol' })).status).toBe(200);
    expect(((await carol.overview()).body.waiting as Array<{ chatId: string }>).map((w) => w.chatId)).toContain(c.chatId);
  });

  it('lists an agent online while a desk socket of theirs is open, offline once it closed without a sign-out', async () => {
    const alice = await agent('alice', 'alice-secret');
    const bob = await agent('bob', 'bob-secret-1');
    const online = async () => (await alice.call('GET', 'agents')).body.agents.find((a: { agentId: string }) => a.agentId === 'bob').online as boolean;
    const desk = await openAgentSocket(srv.url, bob.token);
    await desk.next('ready');
    expect(await online()).toBe(true);
    const closed = new Promise((r) => desk.ws.once('close', r));
    desk.ws.close();
    await closed;
    // The server sees the close a moment after the client does.
    let now = true;
    for (let i = 0; i < 50 && now; i++) {
      now = await online();
      if (now) await new Promise((r) => setTimeout(r, 20));
    }
    expect(now).toBe(false);
    // The token still works: bob is signed in, just not at a desk; a transfer to him is refused.
    expect((await bob.call('GET', 'me')).status).toBe(200);
    const c = new ChatClient(srv.url);
    await c.start({ nickname: 'Pat', subject: 'Desk closed' });
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expect((await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' })).body.error.code).toBe('AGENT_UNAVAILABLE');
    // A desk connecting again makes him online again.
    const again = await openAgentSocket(srv.url, bob.token);
    await again.next('ready');
    expect(await online()).toBe(true);
    expect((await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' })).status).toBe(200);
    again.ws.close();
  });

  it('catches a desk up with sync from 0 and from past the end without an error', async () => {
    const c = new ChatClient(srv.url);
    await c.start({ nickname: 'Syd', subject: 'Sync' });
    const alice = await agent('alice', 'alice-secret');
    await alice.accept(c.chatId);
    await c.op('send', { message: 'hello' });
    const all = await alice.call('GET', `chats/${c.chatId}?from=0`);
    expect(all.status).toBe(200);
    const n = all.body.events.length as number;
    expect(all.body.events.map((e: { index: number }) => e.index)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const past = await alice.call('GET', `chats/${c.chatId}?from=${n + 5}`);
    expect(past.status).toBe(200);
    expect(past.body.events).toEqual([]);
  });
});
