/**
 * The agent side against a store write that fails cleanly: what the agent's capacity, the agent's
 * chats and the queue look like afterwards. An in-process chat node (buildChatNode) over a real SQLite store
 * wrapped by a fault-injecting proxy, on a manual clock, no background ticking.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { ParleyError } from '../src/errors.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import { buildChatNode, type ChatNode } from '../src/chat-server/node.ts';
import type { Store } from '../src/store/port.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { BASE_INI, SERVICE } from './helpers.ts';
import { faulty, type Faults } from './support/faulty-store.ts';

let dir: string;
let store: Store;
let faults: Faults;
let node: ChatNode | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'parley-review-agent-store-'));
  store = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
  faults = { failCleanly: 0, failAfterCommit: 0 };
  node = undefined;
});

afterEach(async () => {
  await node?.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startNode(): Promise<ChatNode> {
  const config = parseConfig(BASE_INI, 'test.ini', { PARLEY_STORE_PATH: join(dir, 'unused.db') });
  node = await buildChatNode(config, { store: faulty(store, faults), clock: new ManualClock(), ids: createRandomIds(), log: silentLogger, autoRun: false }, { loadScope: 'all' });
  return node;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof ParleyError ? e.code : `non-parley: ${String(e)}`;
  }
}

describe('a failed store write on a chat', () => {
  // Regression test (this was a bug, now fixed). Was: a failed write evicts the session from memory (src/chat-server/live-sessions.ts:279, commit ->
  // evict), and the agent's capacity and chat list are computed from memory only
  // (src/chat-server/agent-ops.ts:80-84 activeChatCount, 72-74 overview). After one failed send on a chat
  // the agent is in, that chat no longer counts against max-chats and vanishes from `mine` until something
  // reloads it (with a quiet push customer: up to flex-push-timeout), so an agent at max-chats 1 can accept a
  // second chat. Capacity must count the chats the agent really holds (reload the evicted session, or keep
  // the agent's chats out of the eviction), and `mine` must keep listing the chat.
  it('does not let the agent exceed max-chats nor lose the chat from its list', async () => {
    const n = await startNode();
    const bob = n.agents.account('bob'); // max-chats 1
    const x = await n.client.requestChat(SERVICE, { nickname: 'Ann' });
    await n.agentOps.accept(bob, x.session.chatId);
    faults.failCleanly = 1;
    expect(await codeOf(n.agentOps.send(bob, x.session.chatId, 'one moment'))).toBe('UNAVAILABLE');
    const y = await n.client.requestChat(SERVICE, { nickname: 'Ben' });
    expect(await codeOf(n.agentOps.accept(bob, y.session.chatId))).toBe('AGENT_CAPACITY');
    expect((await n.agentOps.overview(bob)).mine.map((s) => s.chatId)).toEqual([x.session.chatId]);
  });

  // Regression test (this was a bug, now fixed). Was: same root cause (live-sessions.ts:279 evicts, agent-ops.ts:72-74 lists the queue from memory): a
  // failed customer write on a waiting chat (a typing notice, a read receipt) takes the chat out of every
  // agent's queue until the customer's next request reloads it (a push-subscribed async customer who waits
  // quietly: not before the flex-push-timeout timer), and the reload announces nothing to the desks. A waiting
  // chat must stay in the queue whatever a failed write did.
  it('keeps a waiting chat in the queue after a failed customer write', async () => {
    const n = await startNode();
    const alice = n.agents.account('alice');
    const x = await n.client.requestChat(SERVICE, { nickname: 'Ann' });
    const id = { secureKey: x.session.secureKey, userId: x.session.userId };
    expect((await n.agentOps.overview(alice)).waiting.map((s) => s.chatId)).toEqual([x.session.chatId]);
    faults.failCleanly = 1;
    expect(await codeOf(n.client.perform(x.session.chatId, SERVICE, id, { op: 'startTyping', message: 'I' }, 'none'))).toBe('UNAVAILABLE');
    expect((await n.agentOps.overview(alice)).waiting.map((s) => s.chatId)).toEqual([x.session.chatId]);
  });

  it('a failed accept changes nothing: the chat stays offered and the agent can take it', async () => {
    const n = await startNode();
    const bob = n.agents.account('bob');
    const x = await n.client.requestChat(SERVICE, { nickname: 'Ann' });
    faults.failCleanly = 1;
    expect(await codeOf(n.agentOps.accept(bob, x.session.chatId))).toBe('UNAVAILABLE');
    expect(n.agentOps.activeChatCount('bob')).toBe(0);
    expect(await codeOf(n.agentOps.accept(bob, x.session.chatId))).toBe('ok');
    expect(n.agentOps.activeChatCount('bob')).toBe(1);
  });
});
