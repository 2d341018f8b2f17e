/**
 * Two edges of this session's changes: the chat series off on gateway and receiver /metrics, and the
 * stores' check of every event index of a change (SQLite and a throwaway PostgreSQL).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSession, say } from '../src/chat/session.ts';
import { createMetrics } from '../src/metrics.ts';
import type { Store } from '../src/store/port.ts';
import { openPostgresStore } from '../src/store/postgres.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { usePostgresAdmin } from './support/postgres-server.ts';

// ---------------------------------------------------------------------------------------------------------
// /metrics of gateway and receiver processes
// ---------------------------------------------------------------------------------------------------------

describe('chat series off for a gateway or receiver process', () => {
  it('the series are still usable by code that takes them, but not served; the default serves them', async () => {
    const off = createMetrics({ defaultMetrics: false, chatSeries: false });
    off.chatMessages.inc({ from: 'Client' });
    off.pushNotifications.inc({ event: 'created' });
    expect(await off.registry.metrics()).not.toContain('parley_chat_messages_total');
    const on = createMetrics({ defaultMetrics: false });
    expect(await on.registry.metrics()).toContain('parley_chat_messages_total');
    expect(await on.registry.metrics()).toContain('parley_push_outbox_depth');
  });
});

// ---------------------------------------------------------------------------------------------------------
// Every event index of a change is checked (SQLite and PostgreSQL)
// ---------------------------------------------------------------------------------------------------------

const pgServer = usePostgresAdmin();

let seq = 0;
function chat() {
  seq++;
  return openSession({ chatId: `rv${seq}`, serviceName: 'svc', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Ann', text: 'hello' }, 1000);
}

for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`event indexes of a change (${kind})`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      if (kind === 'sqlite') {
        const d = mkdtempSync(join(tmpdir(), 'parley-index-store-'));
        store = await openSqliteStore({ path: join(d, 's.db'), synchronous: 'normal' });
        cleanup = async () => rmSync(d, { recursive: true, force: true });
      } else {
        const schema = randomUUID();
        store = await openPostgresStore({ url: pgServer.url, poolSize: 2, schema });
        cleanup = () => pgServer.dropSchema(schema);
      }
    });
    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    it('takes three events in a row and a change with no events; refuses them swapped, with the stores’ same message', async () => {
      const c = chat();
      await store.createSession(c);
      const one = say(c.session, 1, 'Message', { text: 'one' }, 2000);
      const two = say(one.session, 1, 'Message', { text: 'two' }, 2001);
      const three = say(two.session, 1, 'Message', { text: 'three' }, 2002);
      const [a, b, d] = [one.events[0], two.events[0], three.events[0]];
      if (a === undefined || b === undefined || d === undefined) throw new Error('no events');
      const fence = { owner: '117', epoch: 1 };
      await expect(store.recordChange({ session: three.session, events: [a, d, b], fence })).rejects.toMatchObject({
        code: 'INTERNAL',
        message: `event index ${d.index} does not follow ${a.index} in ${c.session.chatId}`,
      });
      await store.recordChange({ session: three.session, events: [a, b, d], fence });
      await store.recordChange({ session: { ...three.session, updatedAt: 3000 }, events: [], fence });
      expect((await store.loadEvents(c.session.chatId, 1)).map((e) => e.text ?? e.type)).toEqual(['ParticipantJoined', 'hello', 'one', 'two', 'three']);
      expect((await store.loadSession(c.session.chatId))?.updatedAt).toBe(3000);
    });
  });
}
