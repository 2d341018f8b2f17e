/** One conformance suite for every Store adapter. Call it from the adapter's test file. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
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
      await store.createSession(c.session, c.events);
      expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
      expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
      expect(await store.loadEvents(c.session.chatId, 2)).toEqual(c.events.slice(1));
    });

    it('refuses a second session with the same chatId', async () => {
      const c = newSession();
      await store.createSession(c.session, c.events);
      await expect(store.createSession(c.session, [])).rejects.toThrow();
    });

    it('records changes atomically and keeps the index sequence', async () => {
      const c = newSession();
      await store.createSession(c.session, c.events);
      const j = agentJoin(c.session, { agentId: 'a1', nickname: 'Bob' }, 2000);
      await store.recordChange(j.session, j.events);
      const m = say(j.session, 2, 'Message', { text: 'hi' }, 3000);
      await store.recordChange(m.session, m.events);
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.index)).toEqual([1, 2, 3, 4]);
      expect((await store.loadSession(c.session.chatId))?.state).toBe('active');
    });

    it('rejects a change whose events skip an index, and keeps the stored data', async () => {
      const c = newSession();
      await store.createSession(c.session, c.events);
      const m = say(c.session, 1, 'Message', { text: 'x' }, 2000);
      const bad: Session = { ...m.session, subject: 'changed' };
      const skipped = m.events.map((e) => ({ ...e, index: e.index + 5 }));
      await expect(store.recordChange(bad, skipped)).rejects.toThrow();
      expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
      expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
    });

    it('a failing write does not fail writes batched with it', async () => {
      const a = newSession();
      const b = newSession();
      await store.createSession(a.session, a.events);
      const results = await Promise.allSettled([
        store.createSession(a.session, a.events),
        store.createSession(b.session, b.events),
      ]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
      expect(await store.loadSession(b.session.chatId)).toEqual(b.session);
    });

    it('rejects a change of an unknown session', async () => {
      const c = newSession();
      await expect(store.recordChange(c.session, [])).rejects.toThrow();
    });

    it('lists open sessions, not ended ones', async () => {
      const a = newSession(1000);
      const b = newSession(2000);
      await store.createSession(a.session, a.events);
      await store.createSession(b.session, b.events);
      await store.recordChange({ ...b.session, state: 'ended', endedAt: 3000 }, []);
      const open = await store.listOpenSessions();
      expect(open.map((s) => s.chatId)).toContain(a.session.chatId);
      expect(open.map((s) => s.chatId)).not.toContain(b.session.chatId);
    });

    it('stores file bytes with the change that announces them', async () => {
      const c = newSession();
      await store.createSession(c.session, c.events);
      const bytes = Buffer.from([0, 1, 2, 255]);
      await store.saveFile({ chatId: c.session.chatId, fileId: 'f1', bytes }, c.session, []);
      expect(await store.loadFile(c.session.chatId, 'f1')).toEqual(bytes);
      expect(await store.loadFile(c.session.chatId, 'nope')).toBeUndefined();
    });

    it('keeps everything across a restart', async () => {
      const c = newSession();
      await store.createSession(c.session, c.events);
      await store.close();
      store = await fx.reopen();
      expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
      expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
    });
  });
}
