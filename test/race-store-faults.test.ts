/**
 * Races and faults around the store of a chat server node: a write failing cleanly, a write whose
 * outcome is unknown (committed, but the promise rejected: a PostgreSQL connection lost after COMMIT),
 * a slow ownership check racing an operation that parks a dormant chat.
 *
 * Everything runs on an in-process chat node (buildChatNode) over a real SQLite store wrapped by a
 * fault-injecting proxy, with a manual clock and no background ticking.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSession, say } from '../src/chat/session.ts';
import { hold, wake } from '../src/chat/routing.ts';
import * as core from '../src/chat/session.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { ParleyError } from '../src/errors.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import { buildChatNode, type ChatNode } from '../src/chat-server/node.ts';
import { LiveSessions } from '../src/chat-server/live-sessions.ts';
import type { Store } from '../src/store/port.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { BASE_INI, SERVICE } from './helpers.ts';
import { faulty, type Faults } from './support/faulty-store.ts';

let dir: string;
let store: Store;
let faults: Faults;
let clock: ManualClock;
let node: ChatNode | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'parley-race-store-'));
  store = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
  faults = { failCleanly: 0, failAfterCommit: 0 };
  clock = new ManualClock();
  node = undefined;
});

afterEach(async () => {
  await node?.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startNode(): Promise<ChatNode> {
  const config = parseConfig(BASE_INI, 'test.ini', { PARLEY_STORE_PATH: join(dir, 'unused.db') });
  node = await buildChatNode(config, { store: faulty(store, faults), clock, ids: createRandomIds(), log: silentLogger, autoRun: false }, { loadScope: 'all' });
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

describe('a store write that fails cleanly', () => {
  it('answers UNAVAILABLE, changes nothing in memory, and a retry of the same request applies it once', async () => {
    const n = await startNode();
    const r = await n.client.requestChat(SERVICE, { nickname: 'Ann' });
    const id = { secureKey: r.session.secureKey, userId: r.session.userId, requestId: 'req-1' };
    const before = r.session.lastIndex;

    faults.failCleanly = 1;
    expect(await codeOf(n.client.perform(r.session.chatId, SERVICE, id, { op: 'send', message: 'hello' }, 'none'))).toBe('UNAVAILABLE');
    expect((await n.sessions.get(r.session.chatId)).session.lastIndex).toBe(before);
    expect(await store.loadEvents(r.session.chatId, before + 1)).toEqual([]);

    const again = await n.client.perform(r.session.chatId, SERVICE, id, { op: 'send', message: 'hello' }, 'none');
    expect(again.session.lastIndex).toBe(before + 1);
    // A second retry of the same call (its answer lost too) is answered, not applied again.
    const third = await n.client.perform(r.session.chatId, SERVICE, id, { op: 'send', message: 'hello' }, 'none');
    expect(third.session.lastIndex).toBe(before + 1);
    const stored = await store.loadEvents(r.session.chatId, 1);
    expect(stored.filter((e) => e.type === 'Message' && e.text === 'hello')).toHaveLength(1);
  });

  it('a failed agent accept releases its capacity reservation (the agent can accept again)', async () => {
    const n = await startNode();
    const a = await n.client.requestChat(SERVICE, { nickname: 'Ann' });
    const bob = n.agents.account('bob');
    if (bob === undefined) throw new Error('no bob');
    faults.failCleanly = 1;
    expect(await codeOf(n.agentOps.accept(bob, a.session.chatId))).toBe('UNAVAILABLE');
    const v = await n.agentOps.accept(bob, a.session.chatId);
    expect(v.session.state).toBe('active');
  });
});

describe('a store write whose outcome is unknown (committed, then reported failed)', () => {
  // Regression test (this was a bug, now fixed): src/chat-server/live-sessions.ts:267-280 (commit) keeps the old session in memory when recordChange
  // rejects, although the write may have been committed (the Store promise rejects after COMMIT when the
  // connection drops; postgres.ts:619-623 assumes a lost connection always rolled back). Memory then lags the store for good: the retry of the same call (same requestId,
  // as remote-node-link.ts:50 sends it) is not recognised by core.alreadyApplied (client-ops.ts:124, which
  // reads memory), it builds an event with an index the store already has, the store refuses it
  // ("event index N does not follow N" in sqlite.ts:259) and every later change of the session fails with
  // UNAVAILABLE until the process restarts. The entry should be evicted (re-read from the store) after a
  // failed write, so the retry is answered from the stored state and the session keeps working.
  it('a retry with the same requestId is answered from the stored change and the chat keeps working', async () => {
    const n = await startNode();
    const r = await n.client.requestChat(SERVICE, { nickname: 'Ann' });
    const chatId = r.session.chatId;
    const id = { secureKey: r.session.secureKey, userId: r.session.userId, requestId: 'req-1' };

    faults.failAfterCommit = 1;
    expect(await codeOf(n.client.perform(chatId, SERVICE, id, { op: 'send', message: 'hello' }, 'none'))).toBe('UNAVAILABLE');
    // The message is in the store.
    expect((await store.loadEvents(chatId, 1)).filter((e) => e.text === 'hello')).toHaveLength(1);

    // The gateway retries the same call: it must be answered (statusCode 0), not refused and not applied twice.
    expect(await codeOf(n.client.perform(chatId, SERVICE, id, { op: 'send', message: 'hello' }, 'none'))).toBe('ok');
    // And the session keeps working for new calls.
    expect(await codeOf(n.client.perform(chatId, SERVICE, { ...id, requestId: 'req-2' }, { op: 'send', message: 'next' }, 'none'))).toBe('ok');
    const stored = await store.loadEvents(chatId, 1);
    expect(stored.filter((e) => e.text === 'hello')).toHaveLength(1);
    expect(stored.filter((e) => e.text === 'next')).toHaveLength(1);
  });

  // Regression test (this was a bug, now fixed): same root cause (live-sessions.ts:267-280): a refresh after an unknown-outcome write answers from
  // stale memory: the stored (and, with push, already notified) message is missing from the transcript
  // the client is given, so the refresh does not tell the truth about the session.
  it('a refresh after it shows what the store holds', async () => {
    const n = await startNode();
    const r = await n.client.requestChat(SERVICE, { nickname: 'Ann' });
    const chatId = r.session.chatId;
    const id = { secureKey: r.session.secureKey, userId: r.session.userId };
    faults.failAfterCommit = 1;
    await codeOf(n.client.perform(chatId, SERVICE, id, { op: 'send', message: 'hello' }, 'none'));
    const refreshed = await n.client.perform(chatId, SERVICE, id, { op: 'refresh' }, 1);
    // The transcript as stored (the stored session document may lag it: chat/catch-up.ts).
    const storedLast = (await store.loadEvents(chatId, 1)).at(-1)?.index;
    expect(refreshed.nextPosition).toBe((storedLast ?? 0) + 1);
    expect(refreshed.messages.some((m) => m.text === 'hello')).toBe(true);
  });
});

describe('a slow ownership check racing an operation that parks a dormant chat', () => {
  // Regression test (this was a bug, now fixed): src/chat-server/live-sessions.ts:252-264 (serial) awaits get() (which, while the ownership lease
  // is not valid, verifies the entry against the store: live-sessions.ts:185,206-217) before it chains onto
  // entry.tail. If the operation ahead of it leaves the chat dormant and finishes meanwhile, the entry is
  // parked (removed from memory, park() at line 102) and the late operation then runs on the detached entry:
  // a customer message that wakes the chat is committed (store: 'waiting') but memory still counts the
  // chat as parked-dormant and it is in no agent's queue (AgentOps.overview iterates the live map), until
  // something reloads it. serial() should re-check that the entry is still the live one (or re-get it).
  it('a customer message that wakes the chat puts it in the queue', async () => {
    const gateOpen: { release?: () => void } = {};
    const sessions = new LiveSessions(faulty(store, faults), '117', undefined, {
      isAlive: async (owner) => owner === '117',
      lease: { valid: () => false, lapses: () => 0 }, // the lease lapsed: every use checks ownership in the store
    });
    const chatId = 'CHAT-PARK-RACE-01';
    const now = clock.now();
    await sessions.create(
      openSession({ chatId, serviceName: SERVICE, secureKey: 'sk', userId: 'u', alias: '117', nickname: 'Ann', asyncMode: true }, now),
    );
    await sessions.serial(chatId, (e) => sessions.commit(e, core.agentJoin(e.session, { agentId: 'alice', nickname: 'Alice' }, now)));

    // The agent puts the chat on hold: it becomes dormant and, with nothing else queued, is parked.
    const holding = sessions.serial(chatId, (e) => sessions.commit(e, hold(e.session, 'alice', now)));
    // Meanwhile the customer writes; its ownership check is slow (held until the hold has finished).
    faults.gateLoadOwned = new Promise<void>((resolve) => (gateOpen.release = resolve));
    const waking = sessions.serial(chatId, (e) => {
      const c = say(e.session, 1, 'Message', { text: 'are you there?' }, now);
      const woken = e.session.state === 'dormant' ? wake(c.session, 60_000, now, () => true).session : c.session;
      return sessions.commit(e, { session: woken, events: c.events });
    });
    faults.gateLoadOwned = undefined;
    await holding;
    gateOpen.release?.();
    await waking;

    expect((await store.loadSession(chatId))?.state).toBe('waiting');
    // Memory must agree: the woken chat is live (offered to agents) and no longer counted dormant.
    const live = [...sessions.all()].find((e) => e.session.chatId === chatId);
    expect(live?.session.state).toBe('waiting');
    expect(sessions.counts().dormant).toBe(0);
  });
});
