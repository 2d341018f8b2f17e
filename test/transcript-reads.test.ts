/**
 * Replies that read the transcript from the store (live sessions hold none, since db43ccf).
 *
 * A whole node (buildApp: gateway + chat server in one process) over a real SQLite store, served on
 * 127.0.0.1 port 0. The store is wrapped by a proxy that counts `loadEvents` and can make the next ones fail
 * (a store outage arriving between the commit of an operation and the read of its reply).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../src/app.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import { listen } from '../src/roles/listen.ts';
import type { Store } from '../src/store/port.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { AgentClient, BASE_INI, ChatClient, openAgentSocket, postForm, postMultipart } from './helpers.ts';
import { pushIni, pushUserData, startFakeReceiver, type FakeReceiver } from './receiver-fixture.ts';

interface ReadFaults {
  /** The next `fail` calls of loadEvents throw (a store that went away). */
  fail: number;
  /** Calls of loadEvents so far. */
  loads: number;
}

function readFaulty(real: Store, f: ReadFaults): Store {
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'loadEvents') {
        return async (chatId: string, from: number) => {
          f.loads++;
          if (f.fail > 0) {
            f.fail--;
            throw new Error('injected: connection refused');
          }
          return target.loadEvents(chatId, from);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Node {
  app: App;
  url: string;
  faults: ReadFaults;
  dbPath: string;
  clock: ManualClock;
  stop(): Promise<void>;
}

async function startNode(extraIni = '', dir = mkdtempSync(join(tmpdir(), 'parley-tr-'))): Promise<Node> {
  const dbPath = join(dir, 'parley.db');
  const config = parseConfig(BASE_INI + extraIni, 'test.ini', { PARLEY_STORE_PATH: dbPath, PARLEY_RECEIVER_STORE_PATH: join(dir, 'receiver.db') });
  const store = openSqliteStore({ path: dbPath, synchronous: 'normal' });
  const faults: ReadFaults = { fail: 0, loads: 0 };
  const clock = new ManualClock(Date.now());
  const app = await buildApp(config, { store: readFaulty(store, faults), clock, ids: createRandomIds(), log: silentLogger, autoRun: false, random: () => 0 });
  const http = await listen({ host: '127.0.0.1', port: 0, maxConnections: 0 }, app.handle, app.upgrade);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await http.close();
    await app.close();
    await store.close();
  };
  cleanups.push(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { app, url: http.url, faults, dbPath, clock, stop };
}

/** The stored transcript of a chat, read through a second connection to the SQLite file. */
function storedEvents(dbPath: string, chatId: string): Array<{ index: number; type: string; text?: string }> {
  const db = new Database(dbPath, { readonly: true });
  try {
    return (db.prepare('SELECT doc FROM events WHERE chat_id = ? ORDER BY idx').pluck().all(chatId) as string[]).map((d) => JSON.parse(d));
  } finally {
    db.close();
  }
}

function storedChats(dbPath: string): string[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db.prepare('SELECT chat_id FROM sessions').pluck().all() as string[];
  } finally {
    db.close();
  }
}

const indices = (msgs: Array<{ index?: number }>) => msgs.map((m) => m.index);

describe('replies read from the store: what they carry', () => {
  it('send and refresh carry the right events; a client up to date is answered without a store read', async () => {
    const n = await startNode();
    const c = new ChatClient(n.url);
    const start = await c.start({ nickname: 'Ann', subject: 'Order 42', text: 'hello' });
    expect(indices(start.body.messages)).toEqual([1, 2]);
    const sent = await c.op('send', { message: 'm3', transcriptPosition: 2 });
    expect(indices(sent.body.messages)).toEqual([2, 3]);
    expect(sent.body.messages.at(-1)).toMatchObject({ type: 'Message', text: 'm3' });
    expect(sent.body.nextPosition).toBe(4);
    n.faults.loads = 0;
    const upToDate = await c.op('refresh', { transcriptPosition: 4 });
    expect(upToDate.body).toMatchObject({ statusCode: 0, messages: [], nextPosition: 4 });
    const huge = await c.op('refresh', { transcriptPosition: '999999999999999' });
    expect(huge.body).toMatchObject({ statusCode: 0, messages: [], nextPosition: 4 });
    expect(n.faults.loads).toBe(0);
    const none = await c.op('refresh', { transcriptPosition: 0 });
    expect(none.body.messages).toEqual([]);
    const all = await c.op('refresh', {});
    expect(indices(all.body.messages)).toEqual([1, 2, 3]);
  });

  it('agent views: accept carries the whole transcript, ?from= and sync from 0 / past the end / huge', async () => {
    const n = await startNode();
    const c = new ChatClient(n.url);
    await c.start({ nickname: 'Ann', subject: 's', text: 'hello' });
    await c.op('send', { message: 'two' });
    const alice = new AgentClient(n.url, 'alice', 'alice-secret');
    await alice.login();
    const acc = await alice.accept(c.chatId);
    expect(acc.status).toBe(200);
    expect(indices(acc.body.events)).toEqual([1, 2, 3, 4]);
    const sent = await alice.send(c.chatId, 'hi');
    expect(indices(sent.body.events)).toEqual([5]);
    const from3 = await alice.call('GET', `chats/${c.chatId}?from=3`);
    expect(indices(from3.body.events)).toEqual([3, 4, 5]);
    const from0 = await alice.call('GET', `chats/${c.chatId}?from=0`);
    expect(indices(from0.body.events)).toEqual([1, 2, 3, 4, 5]);
    const past = await alice.call('GET', `chats/${c.chatId}?from=6`);
    expect(past.body.events).toEqual([]);
    const huge = await alice.call('GET', `chats/${c.chatId}?from=99999999999999999999`);
    expect(huge.status).toBe(200);
    expect(huge.body.events).toEqual([]);
    const desk = await openAgentSocket(n.url, alice.token);
    cleanups.push(() => desk.ws.close());
    await desk.next('ready');
    desk.ws.send(JSON.stringify({ type: 'sync', chatId: c.chatId, from: 0 }));
    expect(indices((await desk.next('sync'))['events'] as Array<{ index: number }>)).toEqual([1, 2, 3, 4, 5]);
    desk.ws.send(JSON.stringify({ type: 'sync', chatId: c.chatId, from: 1e300 }));
    expect((await desk.next('sync'))['events']).toEqual([]);
  });

  it('after a restart, a document that lags its transcript (message-only writes) is caught up: refresh shows everything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parley-tr-'));
    const n = await startNode('', dir);
    const c = new ChatClient(n.url);
    await c.start({ nickname: 'Ann', subject: 's' });
    const alice = new AgentClient(n.url, 'alice', 'alice-secret');
    await alice.login();
    await alice.accept(c.chatId);
    for (let i = 0; i < 4; i++) await c.op('send', { message: `m${i}` });
    await n.stop();
    const m = await startNode('', dir);
    const c2 = Object.assign(new ChatClient(m.url), { chatId: c.chatId, userId: c.userId, secureKey: c.secureKey, alias: c.alias });
    const r = await c2.op('refresh', { transcriptPosition: 1 });
    expect(r.body.statusCode).toBe(0);
    expect(indices(r.body.messages)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(r.body.nextPosition).toBe(7);
    const s = await c2.op('send', { message: 'after', transcriptPosition: 7 });
    expect(indices(s.body.messages)).toEqual([7]);
  });
});

describe('ended and dormant chats read back from the store', () => {
  it('an ended chat: a late refresh and a second disconnect carry the events asked for', async () => {
    const n = await startNode();
    const c = new ChatClient(n.url);
    await c.start({ nickname: 'Ann', subject: 's', text: 'hello' });
    await c.op('send', { message: 'bye' });
    const d = await c.op('disconnect', { transcriptPosition: 3 });
    expect(d.body.chatEnded).toBe(true);
    expect(indices(d.body.messages)).toEqual([3, 4]);
    const again = await c.op('disconnect', { transcriptPosition: 4 });
    expect(again.body).toMatchObject({ statusCode: 0, chatEnded: true, nextPosition: 5 });
    expect(indices(again.body.messages)).toEqual([4]);
    const late = await c.op('refresh', { transcriptPosition: 1 });
    expect(indices(late.body.messages)).toEqual([1, 2, 3, 4]);
  });
});

describe('a store that fails while the reply reads the transcript', () => {
  it('a refresh whose read fails is a clean Chat API error', async () => {
    const n = await startNode();
    const c = new ChatClient(n.url);
    await c.start();
    n.faults.fail = 1;
    const r = await c.op('refresh', { transcriptPosition: 1 });
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ statusCode: 1, messages: [], errors: [{ code: 124 }] });
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/client-ops.ts:216-219 (perform) commits the message, then reply() reads the
  // transcript from the store (client-ops.ts:333-340 -> live-sessions.ts:433); when that read fails the
  // client is answered 503 UNAVAILABLE although the message is stored. docs/errors.md (UNAVAILABLE): "The
  // chat store failed or is closed ...; nothing was changed. Retry later" — the client retries and the
  // message is in the transcript twice (a Chat API client through this gateway carries no requestId). Before
  // db43ccf the reply could not fail after the commit. Fixed: once the change is committed, the reply must
  // not fail on the read (answer without the events / with what the commit appended), or not commit first.
  it('send with transcriptPosition: a failed read after the commit answers UNAVAILABLE ("nothing was changed") although the message is stored', async () => {
    const n = await startNode();
    const c = new ChatClient(n.url);
    await c.start();
    n.faults.fail = 1;
    const r = await c.op('send', { message: 'pay by card?', transcriptPosition: 1 });
    const stored = storedEvents(n.dbPath, c.chatId).filter((e) => e.text === 'pay by card?');
    // Either the send succeeded (and says so), or it failed and nothing was stored.
    if (r.body.statusCode === 0) expect(stored).toHaveLength(1);
    else expect(stored).toHaveLength(0);
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/client-ops.ts:175-176 (open): the chat is created and announced (hooks.created, the
  // agents' queue) and only then reply(entry, 'all') reads the transcript (client-ops.ts:333-340); a failed
  // read answers the Request Chat 503 UNAVAILABLE ("nothing was changed", docs/errors.md) while the chat
  // stays stored and waiting in the queue with tokens nobody has: a ghost chat an agent can accept, and the
  // client's retry opens a second one. Fixed: a created chat must be answered (its ParticipantJoined/Message
  // events are those of the change just committed), or not created.
  it('Request Chat: a failed read after the create answers UNAVAILABLE although the chat was opened and queued', async () => {
    const n = await startNode();
    const url = `${n.url}/genesys/2/chat/customer-support`;
    n.faults.fail = 1;
    const r = await postForm(url, { nickname: 'Ann', subject: 'Order 42' });
    const chats = storedChats(n.dbPath);
    if (r.body.statusCode === 0) expect(chats).toEqual([r.body.chatId]);
    else {
      expect(r.status).toBe(503);
      expect(chats).toEqual([]);
    }
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/agent-ops.ts:113-119 (accept) commits the agent's join, then whole() reads the
  // transcript (agent-ops.ts:199-201); a failed read answers 503 UNAVAILABLE — docs/errors.md: "nothing was
  // changed" — but the agent is in the chat, and the customer has been told so (ParticipantJoined). Right:
  // answer the committed accept (or fail before committing).
  it('agent accept: a failed read after the join answers UNAVAILABLE although the agent joined', async () => {
    const n = await startNode();
    const c = new ChatClient(n.url);
    await c.start();
    const alice = new AgentClient(n.url, 'alice', 'alice-secret');
    await alice.login();
    n.faults.fail = 1;
    const r = await alice.accept(c.chatId);
    const joined = storedEvents(n.dbPath, c.chatId).filter((e) => e.type === 'ParticipantJoined').length;
    if (r.status === 200) expect(joined).toBe(2);
    else expect(joined).toBe(1);
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/client-ops.ts:327-328 (upload): the file and its FileUploaded event are committed,
  // then reply() reads the transcript; a failed read answers 503 UNAVAILABLE ("nothing was changed",
  // docs/errors.md) without the file-id, yet the file is stored and counts against upload-max-files. Right:
  // the committed upload is answered with its file-id.
  it('file upload: a failed read after the commit answers UNAVAILABLE although the file is stored', async () => {
    const n = await startNode();
    const c = new ChatClient(n.url);
    await c.start();
    n.faults.fail = 1;
    const r = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, { ...c.ids(), transcriptPosition: 1 }, { name: 'a.txt', type: 'text/plain', bytes: Buffer.from('abc') });
    const uploaded = storedEvents(n.dbPath, c.chatId).filter((e) => e.type === 'FileUploaded');
    if (r.body.statusCode === 0) expect(uploaded).toHaveLength(1);
    else expect(uploaded).toHaveLength(0);
  });
});

describe('a refresh whose read fails, with push notifications waiting', () => {
  let rcv: FakeReceiver | undefined;
  afterEach(async () => {
    await rcv?.close();
    rcv = undefined;
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/client-ops.ts:206-208 calls hooks.refreshed (push.acknowledge: every pending
  // notification of the chat is marked acked, persisted, and never resent) before reply() reads the
  // transcript; when that read fails the client gets 503 and none of the events, yet its notifications are
  // acknowledged. client-ops.ts:79 ClientHooks.refreshed: "A successful refresh ... acknowledges the
  // session's notifications"; docs/errors.md UNAVAILABLE: "nothing was changed". Before db43ccf the reply
  // could not fail after the hook. Fixed: acknowledge only once the refresh's reply is ready.
  it('a refresh answered UNAVAILABLE does not acknowledge the pending push notifications', async () => {
    rcv = await startFakeReceiver();
    const n = await startNode(pushIni(rcv.url).replace('enable_notification_mode = true', 'enable_notification_mode = false'));
    const c = new ChatClient(n.url);
    const r0 = await c.start({ nickname: 'Ann', ...pushUserData('dev-1', { GCTI_GMS_PushResend: 'true' }) });
    expect(r0.body.statusCode).toBe(0);
    const alice = new AgentClient(n.url, 'alice', 'alice-secret');
    await alice.login();
    await alice.accept(c.chatId);
    await alice.send(c.chatId, 'are you there?');
    const before = n.app.push.depth;
    expect(before).toBeGreaterThan(0);
    n.faults.fail = 1;
    const r = await c.op('refresh', { transcriptPosition: 1 });
    expect(r.status).toBe(503);
    expect(r.body.messages).toEqual([]);
    // Nothing acknowledged: the notifications are still tracked and stored active (not 'acked').
    const db = new Database(n.dbPath, { readonly: true });
    const states = (db.prepare('SELECT doc FROM notifications WHERE chat_id = ?').pluck().all(c.chatId) as string[]).map((d) => (JSON.parse(d) as { state: string }).state);
    db.close();
    expect(states).not.toContain('acked');
    expect(n.app.push.depth).toBe(before);
  });
});
