/**
 * HA semantics of both adapters with TWO store instances on one database (two nodes): concurrent
 * claims, a write of the old owner in flight during a claim, fenced writes after it, unicode and large
 * documents, many events, and close with writes pending. Real SQLite files and a real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { usePostgresAdmin } from '../../test/support/postgres-server.ts';
import { notificationFor } from '../chat/notification.ts';
import { agentJoin, openSession, say } from '../chat/session.ts';
import type { Change, Session } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import type { Store } from './port.ts';
import { openPostgresStore } from './postgres.ts';
import { openSqliteStore } from './sqlite.ts';

const server = usePostgresAdmin();

interface Pair {
  a: Store;
  b: Store;
  reopen(): Promise<Store>;
  cleanup(): Promise<void>;
}

const opened: Store[] = [];
let cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  for (const c of cleanups.splice(0)) await c();
  cleanups = [];
});

async function sqlitePair(): Promise<Pair> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-review-stores-'));
  const path = join(dir, 'p.db');
  const open = async () => {
    const s = openSqliteStore({ path, synchronous: 'normal' });
    opened.push(s);
    return s;
  };
  const pair = { a: await open(), b: await open(), reopen: open, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
  cleanups.push(pair.cleanup);
  return pair;
}

async function postgresPair(): Promise<Pair> {
  const schema = `review_${randomUUID().slice(0, 8)}`;
  const open = async () => {
    const s = await openPostgresStore({ url: server.url, poolSize: 3, schema });
    opened.push(s);
    return s;
  };
  const pair = {
    a: await open(),
    b: await open(),
    reopen: open,
    cleanup: async () => {
      await server.dropSchema(schema);
    },
  };
  cleanups.push(pair.cleanup);
  return pair;
}

let seq = 0;
function newSession(alias = '201', text = 'hello'): Change {
  seq += 1;
  return openSession(
    { chatId: `rv${seq}-${randomUUID().slice(0, 6)}`, serviceName: 'svc', secureKey: `k${seq}`, userId: `u${seq}`, alias, nickname: 'Ann', text, userData: { a: '1' } },
    1000 + seq,
  );
}

const SUB = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: true } as const;

const settle = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (reason: unknown) => ({ ok: false as const, reason }),
  );
const codeOf = (e: unknown): string | undefined => (e instanceof ParleyError ? e.code : undefined);

for (const [name, makePair] of [
  ['sqlite', sqlitePair],
  ['postgres', postgresPair],
] as const) {
  describe(`review ${name}: two store instances on one database`, () => {
    it('of many claims racing from two instances exactly one wins, at epoch + 1', async () => {
      const { a, b } = await makePair();
      const c = newSession();
      await a.createSession(c);
      const from = { owner: '201', epoch: 1 };
      const results = await Promise.all([
        settle(a.claimSession(c.session.chatId, from, '202')),
        settle(b.claimSession(c.session.chatId, from, '203')),
        settle(a.claimSession(c.session.chatId, from, '204')),
        settle(b.claimSession(c.session.chatId, from, '205')),
      ]);
      const won = results.filter((r) => r.ok && r.value !== undefined);
      expect(won).toHaveLength(1);
      const w = won[0];
      const owner = w?.ok === true ? w.value?.ownership : undefined;
      expect(owner?.epoch).toBe(2);
      expect((await b.loadOwned(c.session.chatId))?.ownership).toEqual(owner);
    });

    it('a write of the old owner in flight during the claim: committed before it (and returned by it) or refused NOT_OWNER with nothing written', async () => {
      for (let round = 0; round < 8; round++) {
        const { a, b } = await makePair();
        const c = subscribedSession();
        await a.createSession(c);
        const chatId = c.session.chatId;
        const j = agentJoin(c.session, { agentId: 'x', nickname: 'Bob' }, 2000);
        const n = notificationFor(j.session, j.events, { id: `n-${chatId}`, now: 2000, content: ['session-id'] });
        if (n === undefined) throw new Error('no notification');
        const write = settle(
          a.recordChange({ ...j, outbox: [n], file: { fileId: 'f', bytes: Buffer.from([0, 255, 1]) }, fence: { owner: '201', epoch: 1 } }),
        );
        if (round % 2 === 1) await new Promise((r) => setTimeout(r, 1));
        const claim = await b.claimSession(chatId, { owner: '201', epoch: 1 }, '202');
        const w = await write;
        expect(claim).toBeDefined();
        const events = await b.loadEvents(chatId, 1);
        if (w.ok) {
          expect(claim?.session).toEqual(j.session);
          expect(events).toEqual([...c.events, ...j.events]);
          expect((await b.loadActiveNotificationsFor(chatId)).map((x) => x.id)).toEqual([n.id]);
          expect(await b.loadFile(chatId, 'f')).toEqual(Buffer.from([0, 255, 1]));
        } else {
          expect(codeOf(w.reason)).toBe('NOT_OWNER');
          expect(claim?.session).toEqual(c.session);
          expect(events).toEqual(c.events);
          expect(await b.loadActiveNotificationsFor(chatId)).toEqual([]);
          expect(await b.loadFile(chatId, 'f')).toBeUndefined();
        }
        // After the claim, the old owner's fence is refused whatever it writes.
        const after = say(w.ok ? j.session : c.session, 1, 'Message', { text: 'late' }, 3000);
        const late = await settle(a.recordChange({ ...after, fence: { owner: '201', epoch: 1 } }));
        expect(!late.ok && codeOf(late.reason)).toBe('NOT_OWNER');
        expect(await b.loadEvents(chatId, 1)).toEqual(events);
        // The new owner's fence is accepted.
        await b.recordChange({ ...after, fence: { owner: '202', epoch: 2 } });
        expect((await a.loadEvents(chatId, 1)).length).toBe(events.length + 1);
      }
    });

    it('round-trips unicode (emoji, CJK, RTL, lone surrogates, NUL), a large document and 1,000 events in order', async () => {
      const { a, b } = await makePair();
      const weird = 'h\u00e9llo \u{1F600} \u4e2d\u6587 \u05e9\u05dc\u05d5\u05dd \ud800 x\u0000y \\ "q" \u2028';
      const c = newSession('201', weird);
      const big = { ...c.session, userData: { blob: 'x'.repeat(512 * 1024), weird } } as Session;
      await a.createSession({ ...c, session: big });
      let s: Session = big;
      const all = [...c.events];
      for (let batch = 0; batch < 10; batch++) {
        const events = [];
        for (let i = 0; i < 100; i++) {
          const m = say(s, 1, 'Message', { text: `${weird} ${batch}-${i}` }, 2000 + batch * 100 + i);
          s = m.session;
          events.push(...m.events);
        }
        await a.recordChange({ session: s, events, fence: { owner: '201', epoch: 1 } });
        all.push(...events);
      }
      expect(await b.loadSession(c.session.chatId)).toEqual(s);
      const loaded = await b.loadEvents(c.session.chatId, 1);
      expect(loaded).toEqual(all);
      expect(loaded.length).toBe(1000 + c.events.length);
    });

    it('close with writes pending: every write issued before close commits', async () => {
      const p = await makePair();
      const c = newSession();
      await p.a.createSession(c);
      let s = c.session;
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) {
        const m = say(s, 1, 'Message', { text: `m${i}` }, 2000 + i);
        s = m.session;
        writes.push(p.a.recordChange({ ...m, fence: { owner: '201', epoch: 1 } }));
      }
      await p.a.close();
      await Promise.all(writes);
      const again = await p.reopen();
      expect((await again.loadEvents(c.session.chatId, 1)).length).toBe(c.events.length + 50);
      expect(await again.loadSession(c.session.chatId)).toEqual(s);
    });
  });
}

function subscribedSession(): Change {
  const c = newSession();
  return { ...c, session: { ...c.session, push: { subscription: SUB, active: true } } };
}
