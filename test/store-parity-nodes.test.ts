/**
 * Chat server nodes (buildChatNode, LiveSessions) over the PostgreSQL store restart, restore and
 * delete files exactly as over SQLite after message-only changes (the SQLite store keeps a lagging document
 * then, the PostgreSQL store writes it whole). Every test runs on both stores: a SQLite file shared by the
 * nodes of a test, or a PostgreSQL schema of its own with a pool per node.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentAccount } from '../src/chat-server/agent-directory.ts';
import { buildChatNode, type ChatNode } from '../src/chat-server/node.ts';
import { catchUp } from '../src/chat/catch-up.ts';
import type { Session } from '../src/chat/types.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { ParleyError } from '../src/errors.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import type { Store } from '../src/store/port.ts';
import { openPostgresStore } from '../src/store/postgres.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { BASE_INI, SERVICE, getHealth, postForm, startTestServer, type TestServer } from './helpers.ts';
import { usePostgresAdmin } from './support/postgres-server.ts';

const server = usePostgresAdmin();

const ALICE: AgentAccount = { agentId: 'alice', name: 'Alice', password: 'alice-secret', maxChats: 2 };
const IDLE_INI = '[settings]\nflex-disconnect-timeout = 3600\n[inactivity-control]\nenabled = true\ntimeout-alert = 60\ntimeout-close = 30\n';

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof ParleyError ? e.code : `non-parley: ${String(e)}`;
  }
};

describe.each(['sqlite', 'postgres'] as const)('chat server nodes over the %s store', (kind) => {
  let dir: string;
  let schema: string;
  let clock: ManualClock;
  let alive: Set<string>;
  const stores: Store[] = [];
  const nodes: ChatNode[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'parley-parity2-'));
    schema = `parity2-${randomUUID()}`;
    clock = new ManualClock();
    alive = new Set(['201', '202']);
  });

  afterEach(async () => {
    for (const n of nodes.splice(0)) await n.close();
    for (const s of stores.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
    await server.dropSchema(schema);
  });

  async function openStore(): Promise<Store> {
    const s = kind === 'sqlite' ? openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' }) : await openPostgresStore({ url: server.url, poolSize: 4, schema });
    stores.push(s);
    return s;
  }

  async function makeNode(appDbid: string, extraIni = ''): Promise<ChatNode> {
    const config = parseConfig(BASE_INI + extraIni, 'test.ini', { PARLEY_NODE_APP_DBID: appDbid, PARLEY_STORE_PATH: join(dir, 'unused.db') });
    const node = await buildChatNode(
      config,
      { store: await openStore(), clock, ids: createRandomIds(), log: silentLogger, autoRun: false },
      { loadScope: 'owned', isAlive: async (owner) => alive.has(owner) },
    );
    nodes.push(node);
    return node;
  }

  async function stopNode(n: ChatNode): Promise<void> {
    nodes.splice(nodes.indexOf(n), 1);
    await n.close();
  }

  async function idleNotices(store: Store, chatId: string): Promise<string[]> {
    return (await store.loadEvents(chatId, 1)).filter((e) => e.type === 'Notice' && e.from.type === 'External').map((e) => e.text ?? '');
  }

  /** A chat with an agent, messages both ways and typing: all message-only changes after the join. */
  async function chatWithMessages(x: ChatNode, chatId: string) {
    const r = await x.client.requestChat(SERVICE, { nickname: 'Ann' }, { chatId, requestId: 'open' });
    await x.agentOps.accept(ALICE, chatId);
    const id = { secureKey: r.session.secureKey, userId: r.session.userId };
    for (let i = 0; i < 3; i++) {
      clock.advance(10_000);
      await x.agentOps.send(ALICE, chatId, `agent ${i}`);
      clock.advance(1_000);
      await x.client.perform(chatId, SERVICE, id, { op: 'send', message: `client ${i}` }, 'none');
    }
    const lastMessageAt = clock.now();
    clock.advance(5_000);
    await x.agentOps.typing(ALICE, chatId, true);
    return { id, lastMessageAt };
  }

  it('a restart under the same app dbid holds the session exactly as before; the idle alert counts from the last message', async () => {
    const x = await makeNode('201', IDLE_INI);
    const chatId = 'ParityRestart01';
    const { lastMessageAt } = await chatWithMessages(x, chatId);
    const before = x.sessions.peek(chatId);
    const reader = await openStore();
    const events = await reader.loadEvents(chatId, 1);
    expect(events.map((e) => e.index)).toEqual(Array.from({ length: before?.lastIndex ?? 0 }, (_, i) => i + 1));
    // Whatever the store kept as the document, folded with the events it is the session.
    expect(catchUp((await reader.loadSession(chatId)) as Session, events)).toEqual(before);
    await stopNode(x);
    const x2 = await makeNode('201', IDLE_INI);
    expect(x2.sessions.peek(chatId)).toEqual(before);
    expect(await x2.sessions.transcript(await x2.sessions.get(chatId), 1)).toEqual(events);
    clock.set(lastMessageAt + 59_000);
    await x2.timers.tick();
    expect(await idleNotices(reader, chatId)).toEqual([]);
    clock.set(lastMessageAt + 60_500);
    await x2.timers.tick();
    expect(await idleNotices(reader, chatId)).toHaveLength(1);
  });

  it('a node restoring the session of a dead node holds exactly the transcript, positions and activity', async () => {
    const x = await makeNode('201', IDLE_INI);
    const y = await makeNode('202', IDLE_INI);
    const chatId = 'ParityRestore01';
    const { id } = await chatWithMessages(x, chatId);
    const before = x.sessions.peek(chatId);
    alive.delete('201');
    const restored = await y.sessions.get(chatId);
    expect(restored.session).toEqual({ ...before, alias: '202' });
    const reader = await openStore();
    const events = await reader.loadEvents(chatId, 1);
    expect(restored.session.lastIndex).toBe(events.length);
    expect(await y.sessions.transcript(restored, 1)).toEqual(events);
    // The old owner is fenced off, message-only or not.
    expect(await codeOf(x.agentOps.send(ALICE, chatId, 'zombie'))).toBe('NOT_OWNER');
    // The new owner goes on with the next index.
    clock.advance(1_000);
    const r = await y.client.perform(chatId, SERVICE, id, { op: 'send', message: 'after the restore' }, 1);
    expect(r.messages.map((m) => ('index' in m ? m.index : undefined))).toEqual(Array.from({ length: (before?.lastIndex ?? 0) + 1 }, (_, i) => i + 1));
  });

  it('a deleted file is gone from the store with its change, also after a restart; files of other chats stay', async () => {
    const x = await makeNode('201');
    const a = await x.client.requestChat(SERVICE, { nickname: 'Ann' }, { chatId: 'ParityFileA', requestId: 'a' });
    const b = await x.client.requestChat(SERVICE, { nickname: 'Ben' }, { chatId: 'ParityFileB', requestId: 'b' });
    const ida = { secureKey: a.session.secureKey, userId: a.session.userId };
    const idb = { secureKey: b.session.secureKey, userId: b.session.userId };
    const up = async (chatId: string, id: typeof ida, text: string): Promise<string> => {
      const r = await x.client.upload(chatId, SERVICE, id, { fileName: `${text}.txt`, contentType: 'text/plain', bytes: Buffer.from(text) }, 'none');
      return String(r.userData?.['file-id']);
    };
    const fa = await up('ParityFileA', ida, 'alpha');
    const fa2 = await up('ParityFileA', ida, 'alpha2');
    const fb = await up('ParityFileB', idb, 'beta');
    const reader = await openStore();
    expect(await reader.loadFile('ParityFileA', fa)).toEqual(Buffer.from('alpha'));
    await x.client.perform('ParityFileA', SERVICE, ida, { op: 'fileDelete', fileId: fa }, 'none');
    expect(await reader.loadFile('ParityFileA', fa)).toBeUndefined();
    expect(await reader.loadFile('ParityFileA', fa2)).toEqual(Buffer.from('alpha2'));
    expect(await reader.loadFile('ParityFileB', fb)).toEqual(Buffer.from('beta'));
    await stopNode(x);
    const x2 = await makeNode('201');
    expect(x2.sessions.peek('ParityFileA')?.files.map((f) => [f.fileId, f.deleted])).toEqual([
      [fa, true],
      [fa2, false],
    ]);
    expect(await codeOf(x2.client.download('ParityFileA', SERVICE, ida, fa))).not.toBe('ok');
    expect((await x2.client.download('ParityFileA', SERVICE, ida, fa2)).bytes).toEqual(Buffer.from('alpha2'));
    expect((await x2.client.download('ParityFileB', SERVICE, idb, fb)).bytes).toEqual(Buffer.from('beta'));
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/kpi.ts:49 probes the store with loadSession('\u0000probe'); PostgreSQL refuses a NUL
  // in a text parameter (SQLSTATE 22021, src/store/postgres.ts:451 passes it as is), so on the PostgreSQL
  // store every probe fails and GET /health always says "store_latency_ms": -1 (store unreachable) for a
  // healthy store; docs/deployment.md "Health, KPIs and metrics" shows it as the store's latency. Right: a
  // latency >= 0 on both stores (a probe id PostgreSQL accepts, or NUL ids answered "none" by the store).
  it('the KPI store probe measures a healthy store: store_latency_ms is not -1', async () => {
    const x = await makeNode('201');
    await x.kpi.sample();
    const h = await x.kpi.health();
    expect(h.store_latency_ms).toBeGreaterThanOrEqual(0);
  });

  // Regression test (this was a bug, now fixed). Was: src/store/postgres.ts:457 (loadOwned, read by LiveSessions.load, src/chat-server/live-sessions.ts:303)
  // sends a chat id with a NUL character (from the URL path: src/gateway/chat-api.ts parseRoute decodes %00)
  // to PostgreSQL, which fails with SQLSTATE 22021; guard() turns that into UNAVAILABLE (503, wire 124,
  // "retry later") where the SQLite store answers UNKNOWN_CHAT (404, wire 104). A client told to retry an id
  // that can never exist. Right: UNKNOWN_CHAT on both stores (the store answers "none" for such an id).
  it('an operation on a chat id with a NUL character is UNKNOWN_CHAT, as for any unknown id', async () => {
    const x = await makeNode('201');
    expect(await codeOf(x.client.perform('Parity\u0000Chat', SERVICE, { secureKey: 'k', userId: 'u' }, { op: 'refresh' }, 1))).toBe('UNKNOWN_CHAT');
    expect(await codeOf(x.agentOps.transcript(ALICE, 'Parity\u0000Chat'))).toBe('UNKNOWN_CHAT');
  });
});

describe.each(['sqlite', 'postgres'] as const)('the whole process over HTTP on the %s store', (kind) => {
  let srv: TestServer | undefined;

  afterEach(async () => {
    await srv?.close();
    srv = undefined;
    // The process uses the server's default schema (public) of this file's own PostgreSQL server.
    if (kind === 'postgres') await server.admin.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
  });

  const start = async (): Promise<TestServer> =>
    (srv = await startTestServer('', kind === 'postgres' ? { PARLEY_STORE_TYPE: 'postgres', PARLEY_STORE_URL: server.url } : {}));

  // Regression test (this was a bug, now fixed). Was: the same as above, end to end: src/gateway/chat-api.ts:69 decodes %00 in the chatId segment, the
  // node reads it from the PostgreSQL store (src/store/postgres.ts:457), which fails with SQLSTATE 22021, and
  // the client gets 503 UNAVAILABLE ("retry later") for a chat that does not exist; over SQLite it is 404
  // UNKNOWN_CHAT (test/bad-input.test.ts 'refuses an unknown chatId with 404 UNKNOWN_CHAT'). Right: 404 on both.
  it('a chatId with %00 is 404 UNKNOWN_CHAT, and /health reports a store latency, not -1', async () => {
    const s = await start();
    const open = await postForm(`${s.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Ann' });
    expect(open.status).toBe(200);
    const { secureKey, userId, alias } = open.body as { secureKey: string; userId: string; alias: string };
    const r = await postForm(`${s.url}/genesys/2/chat/${SERVICE}/AAAAAAAA%00AAAAAAA/refresh`, { secureKey, userId, alias });
    expect(r.status).toBe(404);
    expect(JSON.stringify(r.body)).toContain('104');
    const health = await getHealth(s.url);
    expect(health.store_latency_ms).toBeGreaterThanOrEqual(0);
  });
});
