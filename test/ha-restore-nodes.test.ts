/**
 * HA restoration between real chat server nodes (buildChatNode) in one process, on ONE SQLite file
 * (one store instance per node). Which nodes are alive is set by the test, as the owner probe would find it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentAccount } from '../src/chat-server/agent-directory.ts';
import type { ChatNode } from '../src/chat-server/node.ts';
import { ParleyError } from '../src/errors.ts';
import { SERVICE } from './helpers.ts';
import { SharedFileNodes } from './support/shared-file-nodes.ts';

const PUSH_INI = '[settings]\nflex-push-on-join = true\n';
const PUSH_USER_DATA = {
  GCTI_Chat_PushSubscribe: 'true',
  GCTI_GMS_NodeGroup: 'group-1',
  GCTI_GMS_PushDeviceId: 'device-1',
  GCTI_GMS_PushDeviceType: 'customhttp',
  GCTI_GMS_PushResend: 'true',
};
const ALICE: AgentAccount = { agentId: 'alice', name: 'Alice', password: 'alice-secret', maxChats: 2 };

let cluster: SharedFileNodes;
let alive: Set<string>;

beforeEach(() => {
  cluster = new SharedFileNodes(['201', '202', '203']);
  ({ alive } = cluster);
});

afterEach(() => cluster.close());

const makeNode = (appDbid: string, extraIni = ''): Promise<ChatNode> => cluster.node(appDbid, { extraIni });

const settle = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (reason: unknown) => ({ ok: false as const, reason }),
  );

const codeOf = (e: unknown): string | undefined => (e instanceof ParleyError ? e.code : undefined);

describe('HA restoration on one SQLite file', () => {
  it('two nodes restoring the same session at once: exactly one wins, the other answers NOT_OWNER; nothing is duplicated', async () => {
    const x = await makeNode('201');
    const y = await makeNode('202');
    const z = await makeNode('203');
    const store = cluster.openStore();
    const chatId = 'ReviewRace0001';
    await x.client.requestChat(SERVICE, { nickname: 'Ann' }, { chatId, requestId: 'r1' });
    await x.agentOps.accept(ALICE, chatId);
    await x.agentOps.send(ALICE, chatId, 'before the crash');
    const before = await store.loadEvents(chatId, 1);
    alive.delete('201');
    const [a, b] = await Promise.all([settle(y.sessions.get(chatId)), settle(z.sessions.get(chatId))]);
    const winners = [a, b].filter((r) => r.ok);
    expect(winners).toHaveLength(1);
    const loser = [a, b].find((r) => !r.ok);
    expect(loser !== undefined && !loser.ok && codeOf(loser.reason)).toBe('NOT_OWNER');
    const owned = await store.loadOwned(chatId);
    const winner = a.ok ? y : z;
    expect(owned?.ownership.owner).toBe(winner.alias);
    expect(owned?.ownership.epoch).toBe(2);
    expect(await store.loadEvents(chatId, 1)).toEqual(before);
    const held = winner.sessions.peek(chatId);
    expect(held?.alias).toBe(winner.alias);
    // The winner goes on from the stored transcript; the loser, asked again, names the winner.
    await winner.agentOps.send(ALICE, chatId, 'after the restore');
    const after = await store.loadEvents(chatId, 1);
    expect(after.map((e) => e.index)).toEqual(after.map((_, i) => i + 1));
    expect(after.length).toBe(before.length + 1);
    const other = a.ok ? z : y;
    const again = await settle(other.sessions.get(chatId));
    expect(!again.ok && codeOf(again.reason)).toBe('NOT_OWNER');
    expect(!again.ok && (again.reason as ParleyError).details?.['owner']).toBe(winner.alias);
  });

  it('the old owner coming back cannot write the claimed session (NOT_OWNER), forgets it, and the store keeps only the new owner\u2019s events', async () => {
    const x = await makeNode('201');
    const y = await makeNode('202');
    const store = cluster.openStore();
    const chatId = 'ReviewFence001';
    await x.client.requestChat(SERVICE, { nickname: 'Ann' }, { chatId, requestId: 'r2' });
    await x.agentOps.accept(ALICE, chatId);
    alive.delete('201');
    await y.agentOps.send(ALICE, chatId, 'from the new owner');
    alive.add('201'); // x was only stalled
    const late = await settle(x.agentOps.send(ALICE, chatId, 'from the old owner'));
    expect(!late.ok && codeOf(late.reason)).toBe('NOT_OWNER');
    expect(x.sessions.peek(chatId)).toBeUndefined();
    const texts = (await store.loadEvents(chatId, 1)).filter((e) => e.type === 'Message').map((e) => (e as { text?: string }).text);
    expect(texts).toContain('from the new owner');
    expect(texts).not.toContain('from the old owner');
    // Asked again, x now follows the store: the session lives on y.
    const again = await settle(x.sessions.get(chatId));
    expect(!again.ok && (again.reason as ParleyError).details?.['owner']).toBe('202');
  });

  it('a restore while the old owner is still committing: the write is either in the restored transcript or refused NOT_OWNER, never lost or reordered', async () => {
    for (let round = 0; round < 6; round++) {
      alive.clear();
      for (const a of ['201', '202']) alive.add(a);
      const x = await makeNode('201');
      const y = await makeNode('202');
      const store = cluster.openStore();
      const chatId = `ReviewInflight${round}`;
      await x.client.requestChat(SERVICE, { nickname: 'Ann' }, { chatId, requestId: `r3-${round}` });
      await x.agentOps.accept(ALICE, chatId);
      const sends = [settle(x.agentOps.send(ALICE, chatId, 'in flight 1')), settle(x.agentOps.send(ALICE, chatId, 'in flight 2'))];
      if (round % 2 === 1) await new Promise((r) => setImmediate(r));
      alive.delete('201');
      const restored = await y.sessions.get(chatId);
      const results = await Promise.all(sends);
      const stored = await store.loadEvents(chatId, 1);
      expect(stored.map((e) => e.index)).toEqual(stored.map((_, i) => i + 1));
      // What the new owner holds is exactly what is stored (nothing committed after the claim).
      expect(restored.session.lastIndex).toBe(stored.length);
      expect(await y.sessions.transcript(restored, 1)).toEqual(stored);
      const texts = stored.filter((e) => e.type === 'Message').map((e) => (e as { text?: string }).text);
      for (const [i, r] of results.entries()) {
        if (r.ok) expect(texts).toContain(`in flight ${i + 1}`);
        else {
          expect(codeOf(r.reason)).toBe('NOT_OWNER');
          expect(texts).not.toContain(`in flight ${i + 1}`);
        }
      }
      // Acknowledged sends keep their order.
      expect(texts.filter((t) => t?.startsWith('in flight'))).toEqual([...texts.filter((t) => t?.startsWith('in flight'))].sort());
      await cluster.stop(x);
      await cluster.stop(y);
    }
  });

  it('the restoring node takes over the outbox and the timers', async () => {
    const x = await makeNode('201', PUSH_INI);
    const y = await makeNode('202', PUSH_INI);
    const store = cluster.openStore();
    const chatId = 'ReviewOutbox01';
    await x.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_USER_DATA }, { chatId, requestId: 'r4' });
    await x.agentOps.accept(ALICE, chatId);
    const pending = await store.loadActiveNotificationsFor(chatId);
    expect(pending.length).toBeGreaterThan(0);
    alive.delete('201');
    await y.sessions.get(chatId);
    for (let i = 0; i < 20 && pending.some((n) => y.push.attemptsOf(n.id) === -1); i++) await new Promise((r) => setTimeout(r, 5));
    for (const n of pending) expect(y.push.attemptsOf(n.id)).toBe(0);
    expect(y.timers.pending).toBeGreaterThan(0);
  });

  // Regression test (this was a bug, now fixed). Was: the push outbox of a restored session is taken over by the new owner (PushEngine.loadFor from
  // onRestored, src/chat-server/node.ts:97-100) but never given up by the old one. When the old owner learns
  // that the session moved (its fenced write is refused NOT_OWNER), LiveSessions.commit only evicts the
  // session (src/chat-server/live-sessions.ts:322); nothing tells the push engine, which keeps the
  // notification active and will POST it (and keep saving its delivery state, unfenced:
  // Store.saveNotifications has no fence, src/store/sqlite.ts:235 / src/store/postgres.ts:403) alongside the
  // new owner: every pending push of the session is sent twice, and the old node's saves can overwrite
  // the new owner's (e.g. make an acknowledged notification active again). Right: the outbox moves exactly
  // once - a node that lost a session drops its notifications, and a node's notification writes are fenced.
  it('the old owner that lost the session (NOT_OWNER) stops pushing its notifications: the outbox moves exactly once', async () => {
    const x = await makeNode('201', PUSH_INI);
    const y = await makeNode('202', PUSH_INI);
    const store = cluster.openStore();
    const chatId = 'ReviewOutbox02';
    await x.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_USER_DATA }, { chatId, requestId: 'r5' });
    await x.agentOps.accept(ALICE, chatId);
    const pending = await store.loadActiveNotificationsFor(chatId);
    expect(pending.length).toBeGreaterThan(0);
    for (const n of pending) expect(x.push.attemptsOf(n.id)).toBe(0);
    alive.delete('201');
    await y.sessions.get(chatId);
    for (let i = 0; i < 20 && pending.some((n) => y.push.attemptsOf(n.id) === -1); i++) await new Promise((r) => setTimeout(r, 5));
    for (const n of pending) expect(y.push.attemptsOf(n.id)).toBe(0);
    alive.add('201');
    const late = await settle(x.agentOps.send(ALICE, chatId, 'late'));
    expect(!late.ok && codeOf(late.reason)).toBe('NOT_OWNER');
    // x knows the session is y's now, yet still holds its pending pushes to send them itself.
    for (const n of pending) expect(x.push.attemptsOf(n.id)).toBe(-1);
  });
});
