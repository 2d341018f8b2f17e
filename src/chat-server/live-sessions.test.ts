import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { agentJoin, agentLeave, clientDisconnect, openSession, say } from '../chat/session.ts';
import type { ParleyError } from '../errors.ts';
import type { Store } from '../store/port.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import { LiveSessions } from './live-sessions.ts';

/** The store, with `onCall` run at every call of its method `method`. */
function counting(store: Store, method: keyof Store, onCall: () => void): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === method && typeof v === 'function') {
        return (...args: unknown[]) => {
          onCall();
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

describe('LiveSessions and the ownership lease', () => {
  let dir: string;
  let store: Store;
  let reads: number;
  let leaseValid: boolean;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'parley-live-'));
    const real = openSqliteStore({ path: join(dir, 'live.db'), synchronous: 'normal' });
    reads = 0;
    // Counts the ownership checks (loadOwned) the sessions make.
    store = counting(real, 'loadOwned', () => reads++);
    leaseValid = true;
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Nodes 117 (this one) and 201 are alive.
  const sessions = () => new LiveSessions(store, '117', undefined, { isAlive: async (owner) => owner === '117' || owner === '201', lease: { valid: () => leaseValid, lapses: () => 0 } });

  const opened = () =>
    openSession({ chatId: 'c1', serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Ann', text: 'hello' }, 1000);

  it('answers from memory while the lease holds', async () => {
    const live = sessions();
    await live.create(opened());
    const a = await live.get('c1');
    const b = await live.get('c1');
    expect(a).toBe(b);
    expect(reads).toBe(0);
  });

  it('with the lease lapsed, checks the store before every use and keeps a session it still owns', async () => {
    const live = sessions();
    await live.create(opened());
    leaseValid = false;
    const entry = await live.get('c1');
    expect(entry.session.chatId).toBe('c1');
    await live.get('c1');
    expect(reads).toBe(2);
    leaseValid = true;
    await live.get('c1');
    expect(reads).toBe(2);
  });

  it('with the lease lapsed, refuses and forgets a session another node restored meanwhile', async () => {
    const live = sessions();
    const c = await live.create(opened());
    // Node 201 judged 117 dead and restored the session; it has moved on with it.
    const claimed = await store.claimSession('c1', { owner: '117', epoch: 1 }, '201');
    expect(claimed).toBeDefined();
    const m = say(c.session, 1, 'Message', { text: 'written on 201' }, 2000);
    await store.recordChange({ ...m, fence: { owner: '201', epoch: 2 } });
    // While the lease holds, 117 could not have been judged dead; here it lapsed.
    leaseValid = false;
    await expect(live.get('c1')).rejects.toMatchObject({ code: 'NOT_OWNER' });
    expect(live.size).toBe(0);
    // Asked again, it is loaded from the store and found owned by the live node 201: NOT_OWNER, pointing there.
    await expect(live.get('c1')).rejects.toMatchObject({ code: 'NOT_OWNER', details: { owner: '201' } });
  });
});

describe('LiveSessions and a stored document that lags its transcript (SQLite)', () => {
  let dir: string;
  let store: Store;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'parley-live-'));
    store = openSqliteStore({ path: join(dir, 'live.db'), synchronous: 'normal' });
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function activeChat(sessions: LiveSessions, now: number) {
    const opened = openSession({ chatId: 'c1', serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Ann' }, now);
    const entry = await sessions.create(opened);
    await sessions.serial('c1', (e) => sessions.commit(e, agentJoin(e.session, { agentId: 'alice', nickname: 'Alice' }, now + 1)));
    return entry;
  }

  it('messages leave the stored document as it was; a restarted node loads the session as memory had it', async () => {
    const sessions = new LiveSessions(store, '117');
    await activeChat(sessions, 1_000);
    const docBefore = await store.loadSession('c1');
    for (let i = 0; i < 5; i++) {
      await sessions.serial('c1', (e) => sessions.commit(e, say(e.session, i % 2 === 0 ? 1 : 2, i === 3 ? 'TypingStarted' : 'Message', { text: `m${i}` }, 2_000 + i)));
    }
    const inMemory = sessions.peek('c1');
    // Not rewritten for the messages: the document still says what it said after the join.
    expect(await store.loadSession('c1')).toEqual(docBefore);
    expect((await store.loadEvents('c1', 1)).at(-1)?.index).toBe(inMemory?.lastIndex);

    const restarted = new LiveSessions(store, '117');
    await restarted.loadOpen('owned');
    expect(restarted.peek('c1')).toEqual(inMemory);
    expect(restarted.peek('c1')?.activity.typing).toBe(2_003);

    // A change of anything else writes the document whole again.
    await restarted.serial('c1', (e) => restarted.commit(e, agentLeave(e.session, 'alice', 3_000)));
    expect(await store.loadSession('c1')).toEqual(restarted.peek('c1'));
  });

  it('holds no transcript: replies read it from the store, and not at all for a client already up to date', async () => {
    let loads = 0;
    const sessions = new LiveSessions(counting(store, 'loadEvents', () => loads++), '117');
    const entry = await activeChat(sessions, 1_000);
    for (let i = 0; i < 3; i++) await sessions.serial('c1', (e) => sessions.commit(e, say(e.session, 1, 'Message', { text: `m${i}` }, 2_000 + i)));
    expect(Object.keys(entry)).not.toContain('events');
    const last = entry.session.lastIndex;
    loads = 0;
    expect(await sessions.transcript(entry, last + 1)).toEqual([]);
    expect(await sessions.transcript(entry, 10 ** 15)).toEqual([]);
    expect(loads).toBe(0);
    const all = await sessions.transcript(entry, 1);
    expect(all.map((e) => e.index)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    expect(all.at(-1)).toMatchObject({ type: 'Message', text: 'm2' });
    expect((await sessions.transcript(entry, last - 1)).map((e) => e.index)).toEqual([last - 1, last]);
    expect((await sessions.transcript(entry, 0)).map((e) => e.index)).toEqual(all.map((e) => e.index));
    // Memory behind the store (a write whose outcome was unknown): only what memory knows of is shown.
    const behind = { ...entry, session: { ...entry.session, lastIndex: last - 2 } };
    expect((await sessions.transcript(behind, 1)).map((e) => e.index)).toEqual(Array.from({ length: last - 2 }, (_, i) => i + 1));
  });

  it('a message of a node that lost the session is refused NOT_OWNER and stores nothing, like any write', async () => {
    const sessions = new LiveSessions(store, '117');
    await activeChat(sessions, 1_000);
    const stored = await store.loadOwned('c1');
    expect(await store.claimSession('c1', stored?.ownership ?? { owner: '', epoch: 0 }, '118')).toBeDefined();
    const before = await store.loadEvents('c1', 1);
    const err = await sessions.serial('c1', (e) => sessions.commit(e, say(e.session, 1, 'Message', { text: 'late' }, 2_000))).catch((e: unknown) => e);
    expect((err as ParleyError).code).toBe('NOT_OWNER');
    expect(await store.loadEvents('c1', 1)).toEqual(before);
  });

  it('an event-only write of a session the store does not have is refused UNKNOWN_CHAT', async () => {
    const s = openSession({ chatId: 'ghost', serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Ann' }, 1_000);
    const c = say(s.session, 1, 'Message', { text: 'x' }, 2_000);
    const err = await store.recordChange({ ...c, onlyEventFields: true }).catch((e: unknown) => e);
    expect((err as ParleyError).code).toBe('UNKNOWN_CHAT');
    const fenced = await store.recordChange({ ...c, onlyEventFields: true, fence: { owner: '117', epoch: 1 } }).catch((e: unknown) => e);
    expect((fenced as ParleyError).code).toBe('UNKNOWN_CHAT');
    expect(await store.loadEvents('ghost', 1)).toEqual([]);
  });
});

describe('LiveSessions and ended sessions', () => {
  let dir: string;
  let store: Store;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'parley-live-'));
    store = openSqliteStore({ path: join(dir, 'live.db'), synchronous: 'normal' });
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('operations on an ended session run one at a time, and nothing of it stays held once they are done', async () => {
    const sessions = new LiveSessions(store, '117');
    const opened = openSession({ chatId: 'e1', serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Ann' }, 1_000);
    await sessions.create(opened);
    await sessions.serial('e1', (e) => sessions.commit(e, clientDisconnect(e.session, 2_000)));
    let running = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 10 }, () =>
        sessions.serial('e1', async (e) => {
          expect(e.session.state).toBe('ended');
          most = Math.max(most, ++running);
          await new Promise((r) => setTimeout(r, 2));
          running--;
        }),
      ),
    );
    expect(most).toBe(1);
    expect(sessions.size).toBe(0);
    expect((sessions as unknown as { endedInUse: Map<string, unknown> }).endedInUse.size).toBe(0);
  });
});
