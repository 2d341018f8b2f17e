/**
 * Parity of the SQLite and PostgreSQL stores behind the Store port, after `onlyEventFields` and
 * `removeFiles` (src/store/port.ts). Every test runs on both stores: a SQLite file in a temp dir (two store
 * instances on it when a test needs two writers) and a PostgreSQL schema of its own on the throwaway server
 * of test/support/postgres-server.ts (two pools on it).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { catchUp } from '../src/chat/catch-up.ts';
import { notificationFor, type Notification } from '../src/chat/notification.ts';
import { agentJoin, openSession, say } from '../src/chat/session.ts';
import type { Change, Session } from '../src/chat/types.ts';
import { ParleyError } from '../src/errors.ts';
import type { ChangeRecord, Store } from '../src/store/port.ts';
import { openPostgresStore } from '../src/store/postgres.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { usePostgresAdmin } from './support/postgres-server.ts';

const server = usePostgresAdmin();

interface Backend {
  /** Another store instance on the same database (another process, or another node). */
  open(): Promise<Store>;
  cleanup(): Promise<void>;
}

const BACKENDS: Record<'sqlite' | 'postgres', () => Backend> = {
  sqlite: () => {
    const dir = mkdtempSync(join(tmpdir(), 'parley-parity-'));
    return {
      open: async () => openSqliteStore({ path: join(dir, 'store.db'), synchronous: 'normal' }),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
  postgres: () => {
    const schema = `parity-${randomUUID()}`;
    return {
      open: () => openPostgresStore({ url: server.url, poolSize: 4, schema }),
      cleanup: async () => {
        await server.dropSchema(schema);
      },
    };
  },
};

let seq = 0;
function newSession(chatId = `parity${++seq}`, text = 'hello', userData: Record<string, string> = {}): Change {
  return openSession(
    { chatId, serviceName: 'svc', secureKey: `k${seq}`, userId: `u${seq}`, alias: '117', nickname: 'Ann', text, userData },
    1000,
  );
}

const SUB = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: true } as const;

function notification(s: Session, id: string): Notification {
  const j = agentJoin({ ...s, push: { subscription: SUB, active: true } }, { agentId: 'zz', nickname: 'Zed' }, 2000);
  const n = notificationFor(j.session, j.events, { id, now: 2000, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return n;
}

/** The error code of a settled write: 'ok', a ParleyError code, or 'other: ...'. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof ParleyError ? e.code : `other: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/** Everything a change may have written for a session. */
async function snapshot(store: Store, chatId: string, fileIds: readonly string[]) {
  const files: Record<string, string | undefined> = {};
  for (const f of fileIds) files[f] = (await store.loadFile(chatId, f))?.toString('hex');
  return {
    owned: await store.loadOwned(chatId),
    events: await store.loadEvents(chatId, 1),
    files,
    outbox: (await store.loadActiveNotificationsFor(chatId)).map((n) => n.id).sort(),
  };
}

describe.each(['sqlite', 'postgres'] as const)('store parity: %s', (kind) => {
  let backend: Backend;
  let store: Store;
  const extra: Store[] = [];

  beforeEach(async () => {
    backend = BACKENDS[kind]();
    store = await backend.open();
  });

  afterEach(async () => {
    for (const s of extra.splice(0)) await s.close();
    await store.close();
    await backend.cleanup();
  });

  const second = async (): Promise<Store> => {
    const s = await backend.open();
    extra.push(s);
    return s;
  };

  it('error codes of recordChange: unknown chat, stale fence, bad index; fence first; onlyEventFields the same', async () => {
    const c = newSession();
    await store.createSession(c);
    const m = say(c.session, 1, 'Message', { text: 'next' }, 2000);
    const bad = { ...m, events: m.events.map((e) => ({ ...e, index: 9 })) };
    const ghost = newSession('never-created');
    const ghostMsg = say(ghost.session, 1, 'Message', { text: 'x' }, 2000);
    const cases: Array<[string, ChangeRecord]> = [
      ['UNKNOWN_CHAT', { ...ghostMsg }],
      ['UNKNOWN_CHAT', { ...ghostMsg, fence: { owner: '117', epoch: 1 } }],
      ['UNKNOWN_CHAT', { ...ghostMsg, onlyEventFields: true }],
      ['UNKNOWN_CHAT', { ...ghostMsg, onlyEventFields: true, fence: { owner: '117', epoch: 1 } }],
      ['NOT_OWNER', { ...m, fence: { owner: '117', epoch: 2 } }],
      ['NOT_OWNER', { ...m, fence: { owner: '999', epoch: 1 } }],
      ['NOT_OWNER', { ...m, onlyEventFields: true, fence: { owner: '117', epoch: 0 } }],
      ['NOT_OWNER', { ...bad, fence: { owner: '117', epoch: 2 } }],
      ['NOT_OWNER', { ...bad, onlyEventFields: true, fence: { owner: '117', epoch: 2 } }],
      ['INTERNAL', { ...bad }],
      ['INTERNAL', { ...bad, fence: { owner: '117', epoch: 1 } }],
      ['INTERNAL', { ...bad, onlyEventFields: true, fence: { owner: '117', epoch: 1 } }],
      // The index that is already stored (a replay of the creation's events).
      ['INTERNAL', { session: c.session, events: c.events, fence: { owner: '117', epoch: 1 } }],
    ];
    const got: string[] = [];
    for (const [, change] of cases) got.push(await codeOf(store.recordChange(change)));
    expect(got).toEqual(cases.map(([code]) => code));
    expect(await store.loadOwned(c.session.chatId)).toEqual({ session: c.session, ownership: { owner: '117', epoch: 1 } });
    expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
    expect(await store.loadSession('never-created')).toBeUndefined();
  });

  it('a failed change writes nothing at all: no events, no file, no removed file, no outbox, no document', async () => {
    const c = newSession();
    await store.createSession(c);
    await store.recordChange({ session: c.session, events: [], file: { fileId: 'keep', bytes: Buffer.from('kept bytes') } });
    await store.recordChange({ session: c.session, events: [], file: { fileId: 'gone', bytes: Buffer.from('to be deleted') } });
    await store.saveNotifications([notification(c.session, 'n-before')]);
    const before = await snapshot(store, c.session.chatId, ['keep', 'gone', 'new']);
    const m = say(c.session, 1, 'Message', { text: 'refused' }, 2000);
    const changed = { ...m, session: { ...m.session, userData: { changed: 'yes' } } };
    const rest = { file: { fileId: 'new', bytes: Buffer.from('new bytes') }, removeFiles: ['gone'], outbox: [notification(c.session, 'n-refused')] };
    const failures: ChangeRecord[] = [
      { ...changed, ...rest, fence: { owner: '117', epoch: 7 } },
      { ...m, ...rest, onlyEventFields: true, fence: { owner: '117', epoch: 7 } },
      { ...changed, ...rest, events: m.events.map((e) => ({ ...e, index: 42 })), fence: { owner: '117', epoch: 1 } },
      { ...m, ...rest, onlyEventFields: true, events: m.events.map((e) => ({ ...e, index: 42 })), fence: { owner: '117', epoch: 1 } },
      // The file id is taken already: the whole change fails.
      { ...changed, ...rest, file: { fileId: 'keep', bytes: Buffer.from('other') }, fence: { owner: '117', epoch: 1 } },
      { ...m, ...rest, onlyEventFields: true, file: { fileId: 'keep', bytes: Buffer.from('other') }, fence: { owner: '117', epoch: 1 } },
    ];
    for (const [i, f] of failures.entries()) {
      expect(`${i}: ${await codeOf(store.recordChange(f))}`).not.toBe(`${i}: ok`);
      expect(await snapshot(store, c.session.chatId, ['keep', 'gone', 'new'])).toEqual(before);
    }
    // And the same change with a good fence goes through whole.
    await store.recordChange({ ...m, ...rest, onlyEventFields: true, fence: { owner: '117', epoch: 1 } });
    const after = await snapshot(store, c.session.chatId, ['keep', 'gone', 'new']);
    expect(after.files).toEqual({ keep: Buffer.from('kept bytes').toString('hex'), gone: undefined, new: Buffer.from('new bytes').toString('hex') });
    expect(after.events.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(after.outbox).toEqual(['n-before', 'n-refused']);
  });

  it('onlyEventFields cannot get around the fence: a claim by another instance, or a renewal, stops the old owner', async () => {
    const other = await second();
    const c = newSession();
    await store.createSession(c);
    const m1 = say(c.session, 1, 'Message', { text: 'one' }, 2000);
    await store.recordChange({ ...m1, onlyEventFields: true, fence: { owner: '117', epoch: 1 } });
    const claimed = await other.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '201');
    expect(claimed?.ownership).toEqual({ owner: '201', epoch: 2 });
    const m2 = say(m1.session, 1, 'Message', { text: 'zombie' }, 3000);
    expect(await codeOf(store.recordChange({ ...m2, onlyEventFields: true, fence: { owner: '117', epoch: 1 } }))).toBe('NOT_OWNER');
    // The epoch alone is not enough either: owner and epoch both.
    expect(await codeOf(store.recordChange({ ...m2, onlyEventFields: true, fence: { owner: '117', epoch: 2 } }))).toBe('NOT_OWNER');
    await other.renewOwnership('201');
    expect(await codeOf(store.recordChange({ ...m2, onlyEventFields: true, fence: { owner: '201', epoch: 2 } }))).toBe('NOT_OWNER');
    expect((await other.loadEvents(c.session.chatId, 1)).map((e) => e.text ?? e.type)).toEqual(['ParticipantJoined', 'hello', 'one']);
    await store.recordChange({ ...m2, onlyEventFields: true, fence: { owner: '201', epoch: 3 } });
    expect((await other.loadEvents(c.session.chatId, 1)).map((e) => e.index)).toEqual([1, 2, 3, 4]);
    // Whatever the store kept as the document, the loader's fold gives the session.
    const loaded = await other.loadOwned(c.session.chatId);
    expect(catchUp(loaded?.session as Session, await other.loadEvents(c.session.chatId, 1))).toEqual(m2.session);
  });

  it('removeFiles removes the bytes of this chat only, never those of a file of the same id in another chat', async () => {
    const a = newSession();
    const b = newSession();
    await store.createSession(a);
    await store.createSession(b);
    await store.recordChange({ session: a.session, events: [], file: { fileId: 'shared-id', bytes: Buffer.from('a') } });
    await store.recordChange({ session: b.session, events: [], file: { fileId: 'shared-id', bytes: Buffer.from('b') } });
    await store.recordChange({ session: b.session, events: [], file: { fileId: 'only-b', bytes: Buffer.from('bb') } });
    await store.recordChange({ session: a.session, events: [], removeFiles: ['only-b'] });
    await store.recordChange({ session: a.session, events: [], removeFiles: ['shared-id'], onlyEventFields: true });
    expect(await store.loadFile(a.session.chatId, 'shared-id')).toBeUndefined();
    expect(await store.loadFile(b.session.chatId, 'shared-id')).toEqual(Buffer.from('b'));
    expect(await store.loadFile(b.session.chatId, 'only-b')).toEqual(Buffer.from('bb'));
    // Empty arrays everywhere are a valid change.
    await store.recordChange({ session: a.session, events: [], removeFiles: [], outbox: [] });
    expect(await store.loadSession(a.session.chatId)).toEqual(a.session);
  });

  it('odd ids (quotes, %, slashes, spaces, emoji, 1000 characters) and text with null bytes, lone surrogates and huge documents round-trip', async () => {
    const ids = [`a'b"c;--`, 'x%_*?/..\\y', ' spaced id ', 'émoji-😀-漢字', 'z'.repeat(1000)];
    const nasty = 'nul\u0000in the middle \ud800 lone \udfff surrogates \u2028\u2029 and 😀';
    const huge = 'é'.repeat(60_000);
    for (const id of ids) {
      const c = newSession(id, nasty, { big: huge, [nasty]: nasty });
      await store.createSession(c);
      const m = say(c.session, 1, 'Message', { text: nasty }, 2000);
      await store.recordChange({ ...m, onlyEventFields: true, fence: { owner: '117', epoch: 1 }, file: { fileId: `file ${id}`, bytes: Buffer.from([0, 0xff, 0]) } });
      const loaded = await store.loadOwned(id);
      const events = await store.loadEvents(id, 1);
      expect(catchUp(loaded?.session as Session, events)).toEqual(m.session);
      expect(events.at(-1)?.text).toBe(nasty);
      expect(await store.loadFile(id, `file ${id}`)).toEqual(Buffer.from([0, 0xff, 0]));
    }
    expect((await store.listOwnedOpenSessions('117')).map((s) => s.chatId).sort()).toEqual([...ids].sort());
    // A huge document (the store does not bound it), written whole and read back.
    const big = newSession('huge-doc');
    await store.createSession(big);
    const hugeDoc: Session = { ...big.session, userData: { big: 'é😀'.repeat(2_000_000) }, updatedAt: 5000 };
    await store.recordChange({ session: hugeDoc, events: [], fence: { owner: '117', epoch: 1 } });
    expect(await store.loadSession('huge-doc')).toEqual(hugeDoc);
  });

  // Regression test (this was a bug, now fixed). Was: src/store/postgres.ts:451 (loadSession), :457 (loadOwned), :463 (claimSession), :491 (loadEvents), :517 (loadFile) pass
  // the id as a text parameter, and PostgreSQL refuses a NUL character in text ("invalid byte sequence for
  // encoding UTF8: 0x00", SQLSTATE 22021), so the read fails with a raw pg error where the SQLite store (and
  // the port, src/store/port.ts:71 "The session, or undefined") answers undefined. Reachable: a chat id comes
  // from the URL path (src/gateway/chat-api.ts parseRoute decodes %00), and the chat server's own KPI probe
  // reads the session '\u0000probe' (src/chat-server/kpi.ts:49). Right: undefined / [] on both stores.
  it('reads of an id with a NUL character answer "none", not an error (as on SQLite)', async () => {
    expect(await store.loadSession('\u0000probe')).toBeUndefined();
    expect(await store.loadOwned('a\u0000b')).toBeUndefined();
    expect(await store.loadEvents('a\u0000b', 1)).toEqual([]);
    expect(await store.loadFile('chat', 'file\u0000id')).toBeUndefined();
    expect(await store.claimSession('a\u0000b', { owner: '117', epoch: 1 }, '201')).toBeUndefined();
  });

  it('a change whose events repeat an index inside it is refused whole on both', async () => {
    const c = newSession();
    await store.createSession(c);
    const m = say(c.session, 1, 'Message', { text: 'one' }, 2000);
    const ev = m.events[0];
    if (ev === undefined) throw new Error('no event');
    const r = await codeOf(store.recordChange({ ...m, events: [ev, { ...ev, text: 'dup' }], fence: { owner: '117', epoch: 1 } }));
    expect(r).not.toBe('ok');
    expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
    expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
  });

  it('empty inputs and a closed store: the same answers on both', async () => {
    const c = newSession();
    await store.createSession({ ...c, events: [], outbox: [], removeFiles: [] });
    expect(await store.loadEvents(c.session.chatId, 1)).toEqual([]);
    await store.recordChange({ ...c, outbox: [], removeFiles: [] });
    expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
    expect(await store.loadRecentSessions([], 10)).toEqual([]);
    expect(await store.loadRecentSessions(['waiting'], 0)).toEqual([]);
    expect(await store.listWorkbin('nobody', 10)).toEqual([]);
    expect(await store.loadActiveNotifications('nobody')).toEqual([]);
    expect(await store.loadActiveNotificationsFor('nobody')).toEqual([]);
    expect(await store.listNodes()).toEqual([]);
    expect(await store.heartbeat('nobody', 1)).toBe(false);
    await store.removeNode('nobody');
    await store.renewOwnership('nobody');
    await store.saveNotifications([]);
    const closed = await second();
    await closed.close();
    await closed.close();
    const m = say(c.session, 1, 'Message', { text: 'late' }, 3000);
    const ops: Array<() => Promise<unknown>> = [
      () => closed.createSession(newSession()),
      () => closed.recordChange({ ...m, onlyEventFields: true }),
      () => closed.loadSession(c.session.chatId),
      () => closed.loadOwned(c.session.chatId),
      () => closed.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '201'),
      () => closed.renewOwnership('117'),
      () => closed.listOwnedOpenSessions('117'),
      () => closed.loadEvents(c.session.chatId, 1),
      () => closed.listOpenSessions(),
      () => closed.listWorkbin('a', 1),
      () => closed.loadRecentSessions(['ended'], 1),
      () => closed.loadFile(c.session.chatId, 'f'),
      () => closed.saveNotifications([notification(c.session, 'n')]),
      () => closed.loadActiveNotifications(),
      () => closed.loadActiveNotificationsFor(c.session.chatId),
      () => closed.registerNode({ appDbid: '1', pid: 1, url: 'http://x', startedAt: 1, heartbeatAt: 1 }),
      () => closed.heartbeat('1', 2),
      () => closed.listNodes(),
      () => closed.removeNode('1'),
    ];
    const codes: string[] = [];
    for (const op of ops) codes.push(await codeOf(Promise.resolve().then(op)));
    expect(codes).toEqual(ops.map(() => 'UNAVAILABLE'));
    expect(await store.loadEvents(c.session.chatId, 1)).toEqual(c.events);
  });

  it('two store instances writing the same session at once keep the index sequence: one wins each index, no duplicate, no gap', async () => {
    const other = await second();
    const c = newSession();
    await store.createSession(c);
    let s = c.session;
    for (let round = 0; round < 25; round++) {
      const mine = say(s, 1, 'Message', { text: `a${round}` }, 2000 + round);
      const theirs = say(s, 1, 'Message', { text: `b${round}` }, 2000 + round);
      const r = await Promise.all([
        codeOf(store.recordChange({ ...mine, onlyEventFields: round % 2 === 0, fence: { owner: '117', epoch: 1 } })),
        codeOf(other.recordChange({ ...theirs, onlyEventFields: round % 3 === 0, fence: { owner: '117', epoch: 1 } })),
      ]);
      expect(r.filter((x) => x === 'ok')).toHaveLength(1);
      expect(r.filter((x) => x !== 'ok')).toEqual(['INTERNAL']);
      s = r[0] === 'ok' ? mine.session : theirs.session;
    }
    const events = await store.loadEvents(c.session.chatId, 1);
    expect(events.map((e) => e.index)).toEqual(Array.from({ length: 27 }, (_, i) => i + 1));
    expect(catchUp((await other.loadSession(c.session.chatId)) as Session, events)).toEqual(s);
  });

  it('a claim racing a stream of writes of the old owner: the writes before it commit, every one after it fails, the claim returns the session as committed', async () => {
    const other = await second();
    const c = newSession();
    await store.createSession(c);
    let s = c.session;
    const writes: Array<Promise<string>> = [];
    const sessions: Session[] = [];
    for (let i = 0; i < 20; i++) {
      const m = say(s, 1, 'Message', { text: `m${i}` }, 2000 + i);
      s = m.session;
      sessions.push(s);
      writes.push(codeOf(store.recordChange({ ...m, onlyEventFields: i % 2 === 1, fence: { owner: '117', epoch: 1 } })));
      if (i === 5) await new Promise((r) => setImmediate(r));
    }
    const claim = other.claimSession(c.session.chatId, { owner: '117', epoch: 1 }, '201');
    const codes = await Promise.all(writes);
    const claimed = await claim;
    expect(claimed?.ownership).toEqual({ owner: '201', epoch: 2 });
    const ok = codes.filter((x) => x === 'ok').length;
    // A prefix commits, the rest is fenced off; the events are exactly that prefix.
    expect(codes).toEqual([...Array(ok).fill('ok'), ...Array(20 - ok).fill('NOT_OWNER')]);
    const events = await other.loadEvents(c.session.chatId, 1);
    expect(events.map((e) => e.index)).toEqual(Array.from({ length: 2 + ok }, (_, i) => i + 1));
    const expected = ok === 0 ? c.session : sessions[ok - 1];
    expect(catchUp(claimed?.session as Session, events)).toEqual(expected);
  });
});
