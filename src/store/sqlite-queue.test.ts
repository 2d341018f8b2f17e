/**
 * Review of the SQLite write queue: claims and node writes go through it, the one-by-one fallback, the lock
 * wait and close() with writes pending. These confirm behaviour that was checked and found right.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { openSession, say } from '../chat/session.ts';
import { openSqliteStore } from './sqlite.ts';

function tempDb(name: string): { path: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), `parley-queue-${name}-`));
  return { path: join(dir, 'store.db'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function chat(i: number, now = 1000) {
  return openSession({ chatId: `c${i}`, serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'N', text: 'hello' }, now);
}

const texts = (evs: readonly { type: string; text?: string }[]) => evs.map((e) => (e.type === 'Message' ? e.text : e.type));

describe('SQLite write queue', () => {
  it('a claim issued after a write of the old owner in the same turn sees that write; a later write of the old owner is fenced', async () => {
    const t = tempDb('claim-order');
    const store = openSqliteStore({ path: t.path, synchronous: 'normal' });
    try {
      const c = chat(1);
      await store.createSession(c);
      const m1 = say(c.session, 1, 'Message', { text: 'before the claim' }, 2000);
      const m2 = say(m1.session, 1, 'Message', { text: 'after the claim' }, 3000);
      const results = await Promise.allSettled([
        store.recordChange({ ...m1, fence: { owner: '117', epoch: 1 } }),
        store.claimSession('c1', { owner: '117', epoch: 1 }, '201'),
        store.recordChange({ ...m2, fence: { owner: '117', epoch: 1 } }),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
      const claimed = (results[1] as PromiseFulfilledResult<Awaited<ReturnType<typeof store.claimSession>>>).value;
      expect(claimed?.ownership).toEqual({ owner: '201', epoch: 2 });
      expect(claimed?.session).toEqual(m1.session);
      expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'NOT_OWNER' });
      expect(texts(await store.loadEvents('c1', 1))).toEqual([...texts(c.events), 'before the claim']);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('a bad write batched with good ones (a claim among them): each good one is applied once and resolves with its own result', async () => {
    const t = tempDb('batch');
    const store = openSqliteStore({ path: t.path, synchronous: 'normal' });
    try {
      const a = chat(1);
      const b = chat(2);
      await store.createSession(a);
      const m = say(a.session, 1, 'Message', { text: 'once' }, 2000);
      const results = await Promise.allSettled([
        store.recordChange(m),
        store.createSession(a), // duplicate: fails the batch
        store.claimSession('c1', { owner: '117', epoch: 1 }, '201'),
        store.createSession(b),
        store.claimSession('c1', { owner: '117', epoch: 1 }, '301'), // loses: the first claim won
        store.heartbeat('n1', 5),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
      expect((results[2] as PromiseFulfilledResult<unknown>).value).toMatchObject({ ownership: { owner: '201', epoch: 2 } });
      expect((results[4] as PromiseFulfilledResult<unknown>).value).toBeUndefined();
      expect(texts(await store.loadEvents('c1', 1))).toEqual([...texts(a.events), 'once']);
      expect(await store.loadOwned('c1')).toMatchObject({ ownership: { owner: '201', epoch: 2 } });
      expect(await store.loadSession('c2')).toEqual(b.session);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('node registration and heartbeats wait for a taken lock and then apply in order', async () => {
    const t = tempDb('nodes');
    const store = openSqliteStore({ path: t.path, synchronous: 'normal' });
    const other = new Database(t.path);
    try {
      other.prepare('BEGIN IMMEDIATE').run();
      const p = Promise.all([
        store.registerNode({ appDbid: 'n1', pid: 1, url: 'http://x', startedAt: 1, heartbeatAt: 1 }),
        store.heartbeat('n1', 2),
      ]);
      await new Promise((r) => setTimeout(r, 20));
      expect(await store.listNodes()).toEqual([]);
      other.prepare('COMMIT').run();
      await p;
      await store.heartbeat('n1', 3);
      expect((await store.listNodes())[0]?.heartbeatAt).toBe(3);
    } finally {
      other.close();
      await store.close();
      t.cleanup();
    }
  });

  it('close() commits writes still queued when the lock is free', async () => {
    const t = tempDb('close-flush');
    const store = openSqliteStore({ path: t.path, synchronous: 'normal' });
    const c = chat(1);
    const p = store.createSession(c);
    await store.close();
    await p;
    const again = openSqliteStore({ path: t.path, synchronous: 'normal' });
    try {
      expect(await again.loadSession('c1')).toEqual(c.session);
    } finally {
      await again.close();
      t.cleanup();
    }
  });

  it('close() with the lock taken beyond lockWaitMs rejects the queued writes, resolves, and leaves no write behind', async () => {
    const t = tempDb('close-busy');
    const store = openSqliteStore({ path: t.path, synchronous: 'normal', lockWaitMs: 150 });
    const other = new Database(t.path);
    try {
      const c = chat(1);
      const p = store.createSession(c).then(
        () => 'ok',
        (e: unknown) => (e as { code?: string }).code,
      );
      // The write is queued and retried every ms meanwhile.
      await new Promise((r) => setTimeout(r, 5));
      other.prepare('BEGIN IMMEDIATE').run();
      const q = store.createSession(chat(2)).then(
        () => 'ok',
        (e: unknown) => (e as { code?: string }).code,
      );
      await new Promise((r) => setTimeout(r, 20));
      await store.close();
      expect(await p).toBe('ok');
      expect(await q).toBe('UNAVAILABLE');
      await expect(store.createSession(chat(3))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      // Retry timers that were pending fire into a closed store without effect or error.
      await new Promise((r) => setTimeout(r, 20));
      other.prepare('ROLLBACK').run();
      expect(other.prepare("SELECT count(*) FROM sessions WHERE chat_id = 'c2'").pluck().get()).toBe(0);
    } finally {
      other.close();
      t.cleanup();
    }
  });

  it('keeps the state column equal to the document through doc-only and full updates (fenced and not)', async () => {
    const t = tempDb('state');
    const store = openSqliteStore({ path: t.path, synchronous: 'normal' });
    const raw = new Database(t.path, { readonly: true });
    try {
      const c = chat(1);
      await store.createSession(c);
      let s = c.session;
      const m = say(s, 1, 'Message', { text: 'x' }, 2000);
      await store.recordChange({ ...m, fence: { owner: '117', epoch: 1 } });
      s = m.session;
      const ended = { session: { ...s, state: 'ended' as const, updatedAt: 3000 }, events: [] };
      // A stale fence on a change of state: refused, nothing changes.
      await expect(store.recordChange({ ...ended, fence: { owner: '117', epoch: 9 } })).rejects.toMatchObject({ code: 'NOT_OWNER' });
      await store.recordChange({ ...ended, fence: { owner: '117', epoch: 1 } });
      const rows = raw.prepare("SELECT state, json_extract(doc, '$.state') AS docState FROM sessions").all() as { state: string; docState: string }[];
      expect(rows).toEqual([{ state: 'ended', docState: 'ended' }]);
    } finally {
      raw.close();
      await store.close();
      t.cleanup();
    }
  });
});
