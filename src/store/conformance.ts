/** One conformance suite for every Store adapter. Call it from the adapter's test file. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acknowledge, afterAttempt, notificationFor, type Notification } from '../chat/notification.ts';
import { agentJoin, openSession, say } from '../chat/session.ts';
import type { Session } from '../chat/types.ts';
import type { Store } from './port.ts';

export interface StoreFixture {
  open(): Promise<Store>;
  /** Opens the same database again (a restart). */
  reopen(): Promise<Store>;
  cleanup(): Promise<void>;
}

let seq = 0;
function newSession(now = 1000) {
  seq += 1;
  return openSession(
    {
      chatId: `chat${seq}`,
      serviceName: 'svc',
      secureKey: `key${seq}`,
      userId: `user${seq}`,
      alias: '117',
      nickname: 'Ann',
      text: 'hello',
      userData: { a: '1' },
    },
    now,
  );
}

const SUB = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: true } as const;
const POLICY = { resendDelayMs: 1000, resendAttempts: 3, backoffMs: () => 100 };

function subscribed(now = 1000) {
  const c = newSession(now);
  return { ...c, session: { ...c.session, push: { subscription: SUB, active: true } } };
}

function notification(s: Session, id: string): Notification {
  const j = agentJoin(s, { agentId: 'a', nickname: 'Bob' }, 2000);
  const n = notificationFor(j.session, j.events, { id, now: 2000, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return n;
}

export function describeStoreConformance(name: string, makeFixture: () => StoreFixture): void {
  describe(`Store conformance: ${name}`, () => {
    let fx: StoreFixture;
    let store: Store;
    beforeEach(async () => {
      fx = makeFixture();
      store = await fx.open();
    });
    afterEach(async () => {
      await store.close();
      await fx.cleanup();
    });

    it('creates a session and reads it back with its events', async () => {
      const c = newSession();
      await store.createSession(c);
      expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
      expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
      expect(await store.loadEvents(c.session.chatId, 2)).toEqual(c.events.slice(1));
    });

    it('refuses a second session with the same chatId', async () => {
      const c = newSession();
      await store.createSession(c);
      await expect(store.createSession({ session: c.session, events: [] })).rejects.toThrow();
    });

    it('records changes atomically and keeps the index sequence', async () => {
      const c = newSession();
      await store.createSession(c);
      const j = agentJoin(c.session, { agentId: 'a1', nickname: 'Bob' }, 2000);
      await store.recordChange(j);
      const m = say(j.session, 2, 'Message', { text: 'hi' }, 3000);
      await store.recordChange(m);
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.index)).toEqual([1, 2, 3, 4]);
      expect((await store.loadSession(c.session.chatId))?.state).toBe('active');
    });

    it('rejects a change whose events skip an index, and keeps the stored data', async () => {
      const c = newSession();
      await store.createSession(c);
      const m = say(c.session, 1, 'Message', { text: 'x' }, 2000);
      const bad: Session = { ...m.session, subject: 'changed' };
      const skipped = m.events.map((e) => ({ ...e, index: e.index + 5 }));
      await expect(store.recordChange({ session: bad, events: skipped })).rejects.toThrow();
      expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
      expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
    });

    it('a failing write does not fail writes batched with it', async () => {
      const a = newSession();
      const b = newSession();
      await store.createSession(a);
      const results = await Promise.allSettled([
        store.createSession(a),
        store.createSession(b),
      ]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
      expect(await store.loadSession(b.session.chatId)).toEqual(b.session);
    });

    it('rejects a change of an unknown session', async () => {
      const c = newSession();
      await expect(store.recordChange({ session: c.session, events: [] })).rejects.toThrow();
    });

    it('lists open sessions, not ended ones', async () => {
      const a = newSession(1000);
      const b = newSession(2000);
      await store.createSession(a);
      await store.createSession(b);
      await store.recordChange({ session: { ...b.session, state: 'ended', endedAt: 3000 }, events: [] });
      const open = await store.listOpenSessions();
      expect(open.map((s) => s.chatId)).toContain(a.session.chatId);
      expect(open.map((s) => s.chatId)).not.toContain(b.session.chatId);
    });

    it('lists recent sessions by state, newest first', async () => {
      const a = newSession(1000);
      const b = newSession(2000);
      const c = newSession(3000);
      for (const x of [a, b, c]) await store.createSession(x);
      await store.recordChange({ session: { ...a.session, state: 'ended', updatedAt: 5000 }, events: [] });
      await store.recordChange({ session: { ...b.session, state: 'dormant', updatedAt: 4000 }, events: [] });
      const recent = await store.loadRecentSessions(['ended', 'dormant'], 10);
      expect(recent.map((s) => s.chatId)).toEqual([a.session.chatId, b.session.chatId]);
      expect(await store.loadRecentSessions(['ended', 'dormant'], 1)).toHaveLength(1);
      expect(await store.loadRecentSessions([], 10)).toEqual([]);
    });

    it('lists an agent workbin from the store, newest first', async () => {
      const a = newSession(1000);
      const b = newSession(2000);
      const c = newSession(3000);
      for (const x of [a, b, c]) await store.createSession(x);
      await store.recordChange({ session: { ...a.session, state: 'dormant', workbin: { agentId: 'alice', since: 4000 }, updatedAt: 4000 }, events: [] });
      await store.recordChange({ session: { ...b.session, state: 'dormant', workbin: { agentId: 'alice', since: 5000 }, updatedAt: 5000 }, events: [] });
      await store.recordChange({ session: { ...c.session, state: 'dormant', workbin: { agentId: 'bob', since: 6000 }, updatedAt: 6000 }, events: [] });
      expect((await store.listWorkbin('alice', 10)).map((s) => s.chatId)).toEqual([b.session.chatId, a.session.chatId]);
      await store.recordChange({ session: { ...b.session, state: 'waiting', updatedAt: 7000 }, events: [] });
      expect((await store.listWorkbin('alice', 10)).map((s) => s.chatId)).toEqual([a.session.chatId]);
      expect(await store.listWorkbin('nobody', 10)).toEqual([]);
    });

    it('stores file bytes with the change that announces them', async () => {
      const c = newSession();
      await store.createSession(c);
      const bytes = Buffer.from([0, 1, 2, 255]);
      await store.recordChange({ session: c.session, events: [], file: { fileId: 'f1', bytes } });
      expect(await store.loadFile(c.session.chatId, 'f1')).toEqual(bytes);
      expect(await store.loadFile(c.session.chatId, 'nope')).toBeUndefined();
    });

    it('removes the bytes of deleted files with the change, and not at all when the change fails', async () => {
      const c = newSession();
      await store.createSession(c);
      await store.recordChange({ session: c.session, events: [], file: { fileId: 'f1', bytes: Buffer.from('one') } });
      await store.recordChange({ session: c.session, events: [], file: { fileId: 'f2', bytes: Buffer.from('two') } });
      const refused = await store
        .recordChange({ session: c.session, events: [], removeFiles: ['f1'], fence: { owner: 'somebody-else', epoch: 99 } })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(Error);
      expect(await store.loadFile(c.session.chatId, 'f1')).toEqual(Buffer.from('one'));
      await store.recordChange({ session: c.session, events: [], removeFiles: ['f1', 'never-stored'] });
      expect(await store.loadFile(c.session.chatId, 'f1')).toBeUndefined();
      expect(await store.loadFile(c.session.chatId, 'f2')).toEqual(Buffer.from('two'));
    });

    it('commits the outbox with the change, and not at all when the change fails', async () => {
      const c = subscribed();
      await store.createSession(c);
      const j = agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, 2000);
      const n = notification(c.session, 'n1');
      await store.recordChange({ ...j, outbox: [n] });
      expect(await store.loadActiveNotifications()).toEqual([n]);
      const skipped = { session: j.session, events: j.events.map((e) => ({ ...e, index: 99 })), outbox: [notification(c.session, 'n2')] };
      await expect(store.recordChange(skipped)).rejects.toThrow();
      expect((await store.loadActiveNotifications()).map((x) => x.id)).toEqual(['n1']);
    });

    it('updates notification states; final ones are no longer active', async () => {
      const c = subscribed();
      await store.createSession(c);
      const a = notification(c.session, 'a');
      const b = notification(c.session, 'b');
      await store.saveNotifications([a, b]);
      const delivered = afterAttempt(a, { kind: 'delivered' }, 3000, POLICY);
      await store.saveNotifications([delivered, acknowledge(b, 3000)]);
      expect(await store.loadActiveNotifications()).toEqual([delivered]);
      await store.saveNotifications([acknowledge(delivered, 4000)]);
      expect(await store.loadActiveNotifications()).toEqual([]);
    });

    it('keeps everything across a restart', async () => {
      const c = newSession();
      await store.createSession(c);
      await store.close();
      store = await fx.reopen();
      expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
      expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
    });

    it('owns a new session by its alias at epoch 1; a claim is a compare-and-set that exactly one racer wins', async () => {
      const c = newSession();
      await store.createSession(c);
      expect((await store.loadOwned(c.session.chatId))?.ownership).toEqual({ owner: '117', epoch: 1 });
      const results = await Promise.all([
        store.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '201'),
        store.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '202'),
      ]);
      expect(results.filter((r) => r !== undefined)).toHaveLength(1);
      const winner = results.find((r) => r !== undefined);
      expect((await store.loadOwned(c.session.chatId))?.ownership).toEqual(winner?.ownership);
      expect(winner?.ownership.epoch).toBe(2);
      expect(winner?.session).toEqual(c.session);
      expect(await store.claimSession('no-such-chat', { owner: '117', epoch: 1 }, '201')).toBeUndefined();
    });

    it('fences writes: the old owner can no longer change a claimed session', async () => {
      const c = newSession();
      await store.createSession(c);
      const m = say(c.session, 1, 'Message', { text: 'from the old owner' }, 2000);
      await store.recordChange({ ...m, fence: { owner: '117', epoch: 1 } });
      await store.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '201');
      const late = say(m.session, 1, 'Message', { text: 'too late' }, 3000);
      await expect(store.recordChange({ ...late, fence: { owner: '117', epoch: 1 } })).rejects.toMatchObject({ code: 'NOT_OWNER' });
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.text ?? e.type)).toEqual(['ParticipantJoined', 'hello', 'from the old owner']);
      await store.recordChange({ ...late, fence: { owner: '201', epoch: 2 } });
      expect(await store.listOwnedOpenSessions('201')).toEqual([expect.objectContaining({ chatId: c.session.chatId })]);
      expect(await store.listOwnedOpenSessions('117')).toEqual([]);
    });

    it('fences first: an old owner whose events no longer follow the stored ones gets NOT_OWNER, and nothing is written', async () => {
      const c = newSession();
      await store.createSession(c);
      await store.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '201');
      const theirs = say(c.session, 1, 'Message', { text: 'from the new owner' }, 2000);
      await store.recordChange({ ...theirs, fence: { owner: '201', epoch: 2 } });
      // The old owner still holds the session as it was: its next event has the index the new owner used.
      const stale = say(c.session, 1, 'Message', { text: 'from the old owner' }, 2500);
      await expect(store.recordChange({ ...stale, fence: { owner: '117', epoch: 1 } })).rejects.toMatchObject({ code: 'NOT_OWNER' });
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.text ?? e.type)).toEqual(['ParticipantJoined', 'hello', 'from the new owner']);
      expect(await store.loadSession(c.session.chatId)).toEqual(theirs.session);
    });

    it('refuses a change whose events skip or repeat an index, at any place in the change, and writes none of it', async () => {
      const c = newSession();
      await store.createSession(c);
      const one = say(c.session, 1, 'Message', { text: 'one' }, 2000);
      const two = say(one.session, 1, 'Message', { text: 'two' }, 2001);
      const [a, b] = [one.events[0], two.events[0]];
      if (a === undefined || b === undefined) throw new Error('no events');
      const cases = [
        [a, { ...b, index: a.index + 2 }],
        [a, { ...b, index: a.index }],
        [{ ...a, index: a.index + 1 }, b],
      ];
      for (const events of cases) {
        await expect(store.recordChange({ session: two.session, events, fence: { owner: '117', epoch: 1 } })).rejects.toMatchObject({ code: 'INTERNAL' });
      }
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.text ?? e.type)).toEqual(['ParticipantJoined', 'hello']);
      expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
      await store.recordChange({ session: two.session, events: [a, b], fence: { owner: '117', epoch: 1 } });
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.text ?? e.type)).toEqual(['ParticipantJoined', 'hello', 'one', 'two']);
    });

    it('renews the epochs of an owner at start-up, so that a claim based on the old epoch fails', async () => {
      const c = newSession();
      await store.createSession(c);
      await store.renewOwnership('117');
      expect((await store.loadOwned(c.session.chatId))?.ownership).toEqual({ owner: '117', epoch: 2 });
      expect(await store.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '201')).toBeUndefined();
      await expect(store.recordChange({ session: c.session, events: [], fence: { owner: '117', epoch: 1 } })).rejects.toMatchObject({ code: 'NOT_OWNER' });
    });

    it('loads the active notifications of the sessions one node owns', async () => {
      const a = subscribed();
      const b = subscribed();
      await store.createSession(a);
      await store.createSession(b);
      await store.saveNotifications([notification(a.session, 'na'), notification(b.session, 'nb')]);
      expect(await store.claimSession(b.session.chatId, { owner: '117', epoch: 1 }, '201')).toBeDefined();
      expect((await store.loadActiveNotifications('117')).map((n) => n.id)).toEqual(['na']);
      expect((await store.loadActiveNotifications('201')).map((n) => n.id)).toEqual(['nb']);
      expect((await store.loadActiveNotifications('999')).map((n) => n.id)).toEqual([]);
      expect((await store.loadActiveNotifications()).map((n) => n.id).sort()).toEqual(['na', 'nb']);
    });

    it('loads the active notifications of one session', async () => {
      const a = subscribed();
      const b = subscribed();
      await store.createSession(a);
      await store.createSession(b);
      await store.saveNotifications([notification(a.session, 'na'), notification(b.session, 'nb')]);
      expect((await store.loadActiveNotificationsFor(a.session.chatId)).map((n) => n.id)).toEqual(['na']);
    });

    it('registers nodes with pid, URL and heartbeat', async () => {
      await store.registerNode({ appDbid: '201', pid: 11, url: 'http://127.0.0.1:1', startedAt: 1000, heartbeatAt: 1000 });
      await store.registerNode({ appDbid: '202', pid: 12, url: 'http://127.0.0.1:2', startedAt: 1000, heartbeatAt: 1000 });
      expect(await store.heartbeat('201', 5000)).toBe(true);
      expect(await store.heartbeat('299', 5000)).toBe(false);
      await store.registerNode({ appDbid: '202', pid: 13, url: 'http://127.0.0.1:3', startedAt: 6000, heartbeatAt: 6000 });
      expect(await store.listNodes()).toEqual([
        { appDbid: '201', pid: 11, url: 'http://127.0.0.1:1', startedAt: 1000, heartbeatAt: 5000 },
        { appDbid: '202', pid: 13, url: 'http://127.0.0.1:3', startedAt: 6000, heartbeatAt: 6000 },
      ]);
      await store.removeNode('201');
      expect((await store.listNodes()).map((n) => n.appDbid)).toEqual(['202']);
    });

    it('keeps active notifications across a restart', async () => {
      const c = subscribed();
      await store.createSession(c);
      const n = notification(c.session, 'n-restart');
      await store.saveNotifications([n]);
      await store.close();
      store = await fx.reopen();
      expect(await store.loadActiveNotifications()).toEqual([n]);
    });
  });
}
