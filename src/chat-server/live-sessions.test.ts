import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSession, say } from '../chat/session.ts';
import type { Store } from '../store/port.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import { LiveSessions } from './live-sessions.ts';

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
    store = new Proxy(real, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (prop === 'loadOwned' && typeof v === 'function') {
          return (...args: unknown[]) => {
            reads++;
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
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
