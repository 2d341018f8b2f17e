/**
 * Review of PostgreSQL's single-statement recordChange (RECORD_CHANGE) and its named statements.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usePostgresServer } from '../../test/support/postgres-server.ts';
import { notificationFor } from '../chat/notification.ts';
import { agentJoin, openSession, say } from '../chat/session.ts';
import type { Session } from '../chat/types.ts';
import type { Store } from './port.ts';
import { openPostgresStore } from './postgres.ts';

const server = usePostgresServer();
let admin: pg.Pool;
const schema = `record-change-${randomUUID()}`;
let store: Store;

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: server.url, max: 3, options: `-c search_path=${pg.escapeIdentifier(schema)}` });
  store = await openPostgresStore({ url: server.url, poolSize: 4, schema });
});

afterAll(async () => {
  await store.close();
  await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
  await admin.end();
});

let seq = 0;
function chat() {
  seq += 1;
  return openSession({ chatId: `rv${seq}`, serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'N', text: 'hello' }, 1000);
}

const SUB = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: true } as const;

/** A push-subscribed session, and an agent join on it with the notification it raises. */
function subscribedJoin() {
  const c = chat();
  const sub = { ...c, session: { ...c.session, push: { subscription: SUB, active: true } } as Session };
  const j = agentJoin(sub.session, { agentId: 'a', nickname: 'Bob' }, 2000);
  const n = notificationFor(j.session, j.events, { id: `n-${c.session.chatId}`, now: 2000, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return { c: sub, j, n };
}

describe('PostgreSQL recordChange in one statement', () => {
  it('a fenced change whose events do not follow fails whole: no session update, no file, no outbox', async () => {
    const { c, j: m, n } = subscribedJoin();
    await store.createSession(c);
    const skipped = { ...m, events: m.events.map((e) => ({ ...e, index: e.index + 5 })) };
    await expect(
      store.recordChange({ ...skipped, fence: { owner: '117', epoch: 1 }, file: { fileId: 'f1', bytes: Buffer.from('abc') }, outbox: [n] }),
    ).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(await store.loadSession(c.session.chatId)).toEqual(c.session);
    expect(await store.loadFile(c.session.chatId, 'f1')).toBeUndefined();
    expect(await store.loadActiveNotificationsFor(c.session.chatId)).toEqual([]);
  });

  it('a change with a file and an outbox under a valid fence writes all of them; under a stale fence none', async () => {
    const { c, j: m, n } = subscribedJoin();
    await store.createSession(c);
    await expect(
      store.recordChange({ ...m, fence: { owner: '117', epoch: 2 }, file: { fileId: 'f1', bytes: Buffer.from('abc') }, outbox: [n] }),
    ).rejects.toMatchObject({ code: 'NOT_OWNER' });
    expect(await store.loadFile(c.session.chatId, 'f1')).toBeUndefined();
    expect(await store.loadActiveNotificationsFor(c.session.chatId)).toEqual([]);
    await store.recordChange({ ...m, fence: { owner: '117', epoch: 1 }, file: { fileId: 'f1', bytes: Buffer.from('abc') }, outbox: [n] });
    expect((await store.loadFile(c.session.chatId, 'f1'))?.toString()).toBe('abc');
    expect((await store.loadActiveNotificationsFor(c.session.chatId)).map((x) => x.id)).toEqual([n.id]);
    expect(await store.loadSession(c.session.chatId)).toEqual(m.session);
  });

  // The index check reads the statement's snapshot, taken before the session UPDATE waits for the row lock:
  // a writer that holds the row, adds the same event index and commits meanwhile makes the INSERT hit the
  // primary key. That is reported as INTERNAL (the index is already stored), like an index that does not
  // follow, not as a generic store failure.
  it('a change racing a concurrent writer of the same event index fails with INTERNAL (index does not follow)', async () => {
    const c = chat();
    await store.createSession(c);
    const m = say(c.session, 1, 'Message', { text: 'mine' }, 2000);
    const ev = m.events[0]!;
    const other = await admin.connect();
    try {
      await other.query('BEGIN');
      await other.query('UPDATE sessions SET updated_at = updated_at WHERE chat_id = $1', [c.session.chatId]);
      await other.query('INSERT INTO events (chat_id, idx, doc) VALUES ($1, $2, $3)', [c.session.chatId, ev.index, JSON.stringify({ ...ev, text: 'theirs' })]);
      const mine = store.recordChange({ ...m, fence: { owner: '117', epoch: 1 } }).then(
        () => 'ok',
        (e: unknown) => e,
      );
      // Let the statement start and block on the row lock.
      await new Promise((r) => setTimeout(r, 200));
      await other.query('COMMIT');
      const outcome = await mine;
      expect(outcome).toMatchObject({ code: 'INTERNAL' });
    } finally {
      other.release();
    }
  });
});
