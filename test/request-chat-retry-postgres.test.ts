/**
 * The Request Chat retry key (a gateway sending the same Request Chat again) on PostgreSQL: a throwaway server
 * (test/support/postgres-server.ts), a schema per test, real chat server nodes each with its own pool.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientReply } from '../src/chat-server/client-ops.ts';
import { buildChatNode, type ChatNode } from '../src/chat-server/node.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { ParleyError } from '../src/errors.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import type { Store } from '../src/store/port.ts';
import { openPostgresStore } from '../src/store/postgres.ts';
import { BASE_INI, SERVICE } from './helpers.ts';
import { usePostgresAdmin } from './support/postgres-server.ts';

const server = usePostgresAdmin();
let schema: string;
let alive: Set<string>;
const clock = new ManualClock();
const stores: Store[] = [];
const nodes: ChatNode[] = [];

afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
  for (const s of stores.splice(0)) await s.close();
  await server.dropSchema(schema);
});

async function makeNode(appDbid: string): Promise<{ node: ChatNode; store: Store }> {
  const store = await openPostgresStore({ url: server.url, poolSize: 4, schema });
  stores.push(store);
  const config = parseConfig(BASE_INI, 'test.ini', { PARLEY_NODE_APP_DBID: appDbid });
  const node = await buildChatNode(
    config,
    { store, clock, ids: createRandomIds(), log: silentLogger, autoRun: false },
    { loadScope: 'owned', isAlive: async (owner) => alive.has(owner) },
  );
  nodes.push(node);
  return { node, store };
}

function fresh(): void {
  schema = `review-${randomUUID()}`;
  alive = new Set(['201', '202']);
}

describe('the retry key on PostgreSQL', () => {
  it('concurrent attempts on one node: one chat, all answers the same chat, counted once', async () => {
    fresh();
    const { node, store } = await makeNode('201');
    const key = { chatId: 'PgChat0000000001', requestId: 'pg-req-1' };
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => node.client.requestChat(SERVICE, { nickname: 'Ann' }, key)));
    const ok = results.filter((r): r is PromiseFulfilledResult<ClientReply> => r.status === 'fulfilled').map((r) => r.value);
    expect(ok).toHaveLength(6);
    expect(new Set(ok.map((r) => r.session.secureKey)).size).toBe(1);
    expect((await store.listOpenSessions()).map((s) => s.chatId)).toEqual([key.chatId]);
    expect(node.sessions.counts().open).toBe(1);
    expect((await node.metrics.chatSessionsCreated.get()).values[0]?.value).toBe(1);
  });

  it('the key survives the store: a node restoring the chat of a dead node answers the replay with it', async () => {
    fresh();
    const { node: x } = await makeNode('201');
    const { node: y, store } = await makeNode('202');
    const key = { chatId: 'PgChat0000000002', requestId: 'pg-req-2' };
    const first = await x.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    const live = await y.client.requestChat(SERVICE, { nickname: 'Ann' }, key).catch((e: unknown) => e);
    expect((live as ParleyError).code).toBe('NOT_OWNER');
    alive.delete('201');
    const again = await y.client.requestChat(SERVICE, { nickname: 'Ann' }, key);
    expect(again.session.secureKey).toBe(first.session.secureKey);
    expect((await store.loadOwned(key.chatId))?.ownership.owner).toBe('202');
    expect((await store.listOpenSessions()).length).toBe(1);
  });

  // Regression test (this was a bug, now fixed). Was: same as in request-chat-retry-cluster.test.ts, on PostgreSQL: the loser of two concurrent attempts on
  // two nodes answers UNAVAILABLE (the unique violation, through guard) because requestChat's catch block
  // (src/chat-server/client-ops.ts:128) swallows openedBy's NOT_OWNER. Right: NOT_OWNER naming the owner.
  it('two attempts at once on two nodes: one chat; the loser answers NOT_OWNER naming the winner', async () => {
    fresh();
    const { node: x, store } = await makeNode('201');
    const { node: y } = await makeNode('202');
    const key = { chatId: 'PgChat0000000003', requestId: 'pg-req-3' };
    const results = await Promise.allSettled([x.client.requestChat(SERVICE, { nickname: 'Ann' }, key), y.client.requestChat(SERVICE, { nickname: 'Ann' }, key)]);
    expect((await store.listOpenSessions()).map((s) => s.chatId)).toEqual([key.chatId]);
    const owner = (await store.loadOwned(key.chatId))?.ownership.owner;
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(lost).toHaveLength(1);
    const err = lost[0]?.reason as ParleyError;
    expect({ code: err.code, owner: err.details?.['owner'] }).toEqual({ code: 'NOT_OWNER', owner });
  });
});
