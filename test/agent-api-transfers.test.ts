/**
 * The agent API without a browser: the agents list, transfers to agents who cannot take the chat, sync edges.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentClient, ChatClient, startTestServer, type TestServer } from './helpers.ts';

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

  // KNOWN, not fixed yet (found by a review on 2026-11-23; see the issue-8 note): src/chat-server/agent-ops.ts:144-146 (transfer checks only that toAgentId exists) with
  // src/chat/routing.ts:57: a chat transferred to an agent who is signed out (listed "offline" by
  // GET /agent/api/agents) is offered to nobody else for [routing] last-agent-timeout (600 s by default):
  // the customer waits ten minutes for an agent who cannot answer while other agents are free. A contact
  // centre expects a transfer to an unavailable agent to be refused (or to go to the queue at once).
  // Right: the transfer is refused with a 4xx, or the chat is offered to the other signed-in agents at once.
  it.fails('does not strand a chat on an agent who is signed out', async () => {
    const c = new ChatClient(srv.url);
    await c.start({ nickname: 'Sam', subject: 'Stranded' });
    const alice = await agent('alice', 'alice-secret');
    const carol = await agent('carol', 'carol-secret');
    const bob = await agent('bob', 'bob-secret-1');
    await bob.call('POST', 'logout', {});
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const t = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' });
    if (t.status === 200) {
      const waiting = (await carol.overview()).body.waiting as Array<{ chatId: string }>;
      expect(waiting.map((w) => w.chatId)).toContain(c.chatId);
    } else {
      expect(t.status).toBeGreaterThanOrEqual(400);
      expect(t.status).toBeLessThan(500);
      // Refused: alice still has the chat.
      expect(((await alice.overview()).body.mine as Array<{ chatId: string }>).map((m) => m.chatId)).toContain(c.chatId);
    }
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
