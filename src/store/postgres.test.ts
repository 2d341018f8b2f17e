import { randomUUID } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { usePostgresAdmin } from '../../test/support/postgres-server.ts';
import { afterAttempt, notificationFor, type Notification } from '../chat/notification.ts';
import { agentJoin, openSession, say } from '../chat/session.ts';
import type { Change } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import { describeStoreConformance } from './conformance.ts';
import type { Store } from './port.ts';
import { openPostgresStore } from './postgres.ts';

const server = usePostgresAdmin();
const dropSchema = (schema: string): Promise<void> => server.dropSchema(schema);

const open = (schema: string, extra: Partial<Parameters<typeof openPostgresStore>[0]> = {}): Promise<Store> =>
  openPostgresStore({ url: server.url, poolSize: 4, schema, ...extra });

describeStoreConformance('postgres', () => {
  // A schema of its own per test (a UUID: quoting of '-' is exercised too), dropped afterwards.
  const schema = randomUUID();
  return {
    open: () => open(schema),
    reopen: () => open(schema),
    cleanup: () => dropSchema(schema),
  };
});

let seq = 0;
function newSession(): Change {
  seq += 1;
  return openSession(
    { chatId: `pg${seq}`, serviceName: 'svc', secureKey: `k${seq}`, userId: `u${seq}`, alias: '117', nickname: 'Ann', text: 'hello', userData: {} },
    1000 + seq,
  );
}

/** The outcome of p, handled at once (no unhandled rejection while the test waits for other things). */
function settle<T>(p: Promise<T>): Promise<PromiseSettledResult<T>> {
  return p.then(
    (value) => ({ status: 'fulfilled', value }),
    (reason: unknown) => ({ status: 'rejected', reason }),
  );
}

/** Settles within ms, or fails the test (an operation that hangs). */
async function within<T>(ms: number, p: Promise<T>): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms);
  });
  try {
    const [r] = await Promise.allSettled([Promise.race([p, timeout])]);
    if (r?.status === 'rejected' && r.reason instanceof Error && r.reason.message.startsWith('did not settle')) throw r.reason;
    return r as PromiseSettledResult<T>;
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP proxy to the server that can go silent (a network partition) or refuse connections. */
async function startProxy(targetPort: number): Promise<{ port: number; mode: 'pass' | 'silent' | 'refuse'; cutAll(): void; close(): Promise<void> }> {
  const pairs = new Set<[Socket, Socket]>();
  const state = { mode: 'pass' as 'pass' | 'silent' | 'refuse' };
  const srv: Server = createServer((down) => {
    if (state.mode === 'refuse') {
      down.destroy();
      return;
    }
    const up = connect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [down, up];
    pairs.add(pair);
    const forget = (): void => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('data', (b) => state.mode === 'pass' && up.write(b));
    up.on('data', (b) => state.mode === 'pass' && down.write(b));
    down.on('error', forget).on('close', forget);
    up.on('error', forget).on('close', forget);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const addr = srv.address();
  if (addr === null || typeof addr === 'string') throw new Error('no proxy port');
  return {
    port: addr.port,
    get mode() {
      return state.mode;
    },
    set mode(m) {
      state.mode = m;
    },
    cutAll() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        srv.close(() => resolve());
      }),
  };
}

describe('PostgreSQL store', () => {
  it('migrations are idempotent, and stores opening one schema at once all succeed', async () => {
    const schema = randomUUID();
    try {
      const stores = await Promise.all([open(schema), open(schema), open(schema), open(schema)]);
      const again = await open(schema);
      const versions = await server.admin.query(`SELECT version FROM ${pg.escapeIdentifier(schema)}.parley_migrations ORDER BY version`);
      expect(versions.rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
      const c = newSession();
      await stores[0]?.createSession(c);
      expect(await stores[3]?.loadSession(c.session.chatId)).toEqual(c.session);
      expect(await again.loadEvents(c.session.chatId, 1)).toEqual(c.events);
      await Promise.all([...stores, again].map((s) => s.close()));
      // The tables live in the schema, not in public.
      const inPublic = await server.admin.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename = 'sessions'");
      expect(inPublic.rows[0]).toEqual({ n: 0 });
    } finally {
      await dropSchema(schema);
    }
  });

  it('commits 50 concurrent changes of different sessions', async () => {
    const schema = randomUUID();
    const store = await open(schema, { poolSize: 8 });
    try {
      const created = Array.from({ length: 50 }, () => newSession());
      await Promise.all(created.map((c) => store.createSession(c)));
      const joins = created.map((c) => agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, 2000));
      const results = await Promise.allSettled(joins.map((j) => store.recordChange({ ...j, fence: { owner: '117', epoch: 1 } })));
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      for (const j of joins) {
        expect(await store.loadSession(j.session.chatId)).toEqual(j.session);
        expect((await store.loadEvents(j.session.chatId, 1)).map((e) => e.index)).toEqual([1, 2, 3]);
      }
      expect(await store.listOwnedOpenSessions('117')).toHaveLength(50);
    } finally {
      await store.close();
      await dropSchema(schema);
    }
  });

  it('commits writes of one session in the order they were issued, claims after them', async () => {
    const schema = randomUUID();
    const store = await open(schema, { poolSize: 8 });
    try {
      const c = newSession();
      await store.createSession({ ...c, session: { ...c.session, push: { subscription: SUB, active: true } } });
      // Issued without waiting, as the chat server does for one session's changes and the push engine for states.
      let s = c.session;
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 10; i++) {
        const m = say(s, 1, 'Message', { text: `m${i}` }, 2000 + i);
        s = m.session;
        writes.push(store.recordChange({ ...m, fence: { owner: '117', epoch: 1 } }));
      }
      const claim = store.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '201');
      await Promise.all(writes);
      expect((await claim)?.ownership).toEqual({ owner: '201', epoch: 2 });
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.index)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));

      const n0 = pushNotification(s);
      const states: Notification[] = [n0];
      for (let i = 1; i <= 5; i++) {
        states.push(afterAttempt(states[i - 1] as Notification, { kind: 'retry', reason: `r${i}` }, 3000 + i, POLICY));
      }
      await Promise.all(states.map((n) => store.saveNotifications([n])));
      expect(await store.loadActiveNotifications()).toEqual([states[5]]);
    } finally {
      await store.close();
      await dropSchema(schema);
    }
  });

  it('rejects promptly when nothing listens, when connections are cut, and when the server is silent', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 1));
      });
    });
    const cutting = await startProxy(server.server.port);
    cutting.mode = 'refuse';
    const silent = await startProxy(server.server.port);
    silent.mode = 'silent';
    try {
      for (const port of [closedPort, cutting.port]) {
        const t0 = Date.now();
        const r = await within(5000, openPostgresStore({ url: `postgres://postgres@127.0.0.1:${port}/parley`, poolSize: 1 }));
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(ParleyError);
        expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'UNAVAILABLE' });
        expect(Date.now() - t0).toBeLessThan(2000);
      }
      const t0 = Date.now();
      const hung = await within(5000, openPostgresStore({ url: `postgres://postgres@127.0.0.1:${silent.port}/parley`, poolSize: 1, connectTimeoutMs: 500 }));
      expect(hung.status).toBe('rejected');
      expect((hung as PromiseRejectedResult).reason).toMatchObject({ code: 'UNAVAILABLE' });
      expect(Date.now() - t0).toBeLessThan(4000);
    } finally {
      await cutting.close();
      await silent.close();
    }
  });

  it('rejects operations on a silent network instead of hanging, and works again when it is back', async () => {
    const schema = randomUUID();
    const proxy = await startProxy(server.server.port);
    const store = await openPostgresStore({
      url: `postgres://postgres@127.0.0.1:${proxy.port}/parley`,
      poolSize: 2,
      schema,
      connectTimeoutMs: 700,
      statementTimeoutMs: 500,
      queryTimeoutMs: 1000,
    });
    try {
      const c = newSession();
      await store.createSession(c);
      proxy.mode = 'silent';
      const j = agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, 2000);
      const ops = await Promise.all([
        within(5000, store.loadSession(c.session.chatId)),
        within(5000, store.recordChange(j)),
        within(5000, store.listOpenSessions()),
      ]);
      for (const r of ops) {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(Error);
      }
      proxy.cutAll();
      proxy.mode = 'pass';
      expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
      await store.recordChange(j);
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.index)).toEqual([1, 2, 3]);
    } finally {
      proxy.cutAll();
      proxy.mode = 'pass';
      await store.close();
      await proxy.close();
      await dropSchema(schema);
    }
  });

  it('a server restart rejects in-flight and new operations cleanly, then the same store works again', async () => {
    const schema = randomUUID();
    const store = await open(schema);
    const blocker = new pg.Client({ connectionString: server.url });
    blocker.on('error', () => undefined);
    try {
      const c = newSession();
      await store.createSession(c);
      // Holds the session's row lock, so that the change below is in flight when the server goes down.
      await blocker.connect();
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM ${pg.escapeIdentifier(schema)}.sessions WHERE chat_id = $1 FOR UPDATE`, [c.session.chatId]);
      const j = agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, 2000);
      const inflight = settle(store.recordChange(j));
      for (let i = 0; i < 50; i++) {
        const waiting = await server.admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'parley' AND wait_event_type = 'Lock'");
        if (waiting.rows[0]?.n === 1) break;
        await new Promise((r) => setTimeout(r, 20));
      }

      const restarting = server.server.restart();
      const during: Promise<PromiseSettledResult<unknown>>[] = [];
      let restarted = false;
      void restarting.finally(() => (restarted = true));
      while (!restarted) {
        during.push(settle(store.loadSession(c.session.chatId)), settle(store.listOpenSessions()));
        await new Promise((r) => setTimeout(r, 25));
      }
      await restarting;

      const settled = await within(10_000, Promise.all([inflight, ...during]));
      expect(settled.status).toBe('fulfilled');
      const [first, ...rest] = (settled as PromiseFulfilledResult<PromiseSettledResult<unknown>[]>).value;
      expect(rest.length).toBeGreaterThan(0);
      // The change waiting for the lock is refused UNAVAILABLE when its backend is terminated. Rarely the lock
      // holder's backend goes first and the change commits just before its own: clean as well, and stored.
      if (first?.status === 'rejected') expect(first.reason).toMatchObject({ code: 'UNAVAILABLE' });
      // Issued while the server was going down or starting: some fail, each with an Error, none hangs.
      expect(rest.some((r) => r.status === 'rejected')).toBe(true);
      for (const r of rest) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(Error);

      // The same store object, without reopening: the pool replaced its broken connections.
      if (first?.status === 'rejected') {
        expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
        await store.recordChange(j);
      }
      expect(await store.loadSession(c.session.chatId)).toEqual(j.session);
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.index)).toEqual([1, 2, 3]);
      const more = await Promise.all(Array.from({ length: 8 }, () => store.listOpenSessions()));
      expect(more.every((l) => l.length === 1)).toBe(true);
    } finally {
      await blocker.end().catch(() => undefined);
      await store.close();
      await dropSchema(schema);
    }
  });
});

const SUB = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: true } as const;
const POLICY = { resendDelayMs: 1000, resendAttempts: 10, backoffMs: () => 100 };

function pushNotification(s: Change['session']): Notification {
  const j = agentJoin(s, { agentId: 'b', nickname: 'Carl' }, 2500);
  const n = notificationFor({ ...j.session, push: { subscription: SUB, active: true } }, j.events, { id: 'n-order', now: 2500, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return n;
}
