/**
 * Property-based fuzzing (fast-check) of a chat server node's internal API (`POST /internal/chat`, the
 * gateways' way in; src/chat-server/node-rpc.ts) over real HTTP, with the right node token: random JSON,
 * calls of every kind with fields of the wrong type, missing or extra, nested garbage. Invariants:
 *
 *  - never a 5xx: a malformed call gets 400 with `{error: {code, message}}` (INVALID_PARAMETER or
 *    MISSING_PARAMETER), a well-formed one 200 `{ok}` or the 4xx of its Parley error;
 *  - a rejected call opens no chat and changes no stored transcript;
 *  - the node keeps serving, and nothing throws uncaught.
 * A gateway of another version (a rolling upgrade) must get a clear refusal, never an internal error.
 *
 * Reproduce a failure with the seed fast-check prints: FUZZ_SEED=<seed> npx vitest run test/fuzz-node-api.test.ts
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildChatNode, type ChatNode } from '../src/chat-server/node.ts';
import { createNodeRpc, NODE_RPC_PATH, NODE_TOKEN_HEADER } from '../src/chat-server/node-rpc.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import type { Store } from '../src/store/port.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { BASE_INI, SERVICE } from './helpers.ts';
import { UncaughtTrap } from './support/arbitraries.ts';

const TOKEN = 'fuzz-node-token';
const seed = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);
const runs = (n: number) => ({ numRuns: n, ...(seed === undefined ? {} : { seed }) });

let dir: string;
let store: Store;
let node: ChatNode;
let server: Server;
let url: string;
let chat: { chatId: string; secureKey: string; userId: string; alias: string };
const trap = new UncaughtTrap();

beforeAll(async () => {
  trap.install();
  dir = mkdtempSync(join(tmpdir(), 'parley-fuzz-node-'));
  store = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
  const config = parseConfig(BASE_INI, 'test.ini', { PARLEY_STORE_PATH: join(dir, 'unused.db') });
  node = await buildChatNode(config, { store, clock: new ManualClock(), ids: createRandomIds(), log: silentLogger, autoRun: false }, { loadScope: 'all' });
  const rpc = createNodeRpc({ client: node.client, token: TOKEN, maxBodySize: 1 << 20, accepting: () => true });
  server = createServer((req, res) => void rpc(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${NODE_RPC_PATH}`;
  const r = await node.client.requestChat(SERVICE, { nickname: 'Ann' });
  chat = { chatId: r.session.chatId, secureKey: r.session.secureKey, userId: r.session.userId, alias: r.session.alias };
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await node.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  trap.uninstall();
});

async function call(body: string): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', [NODE_TOKEN_HEADER]: TOKEN }, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/** Anything JSON can say, with a bias to the shapes of the calls. */
const garbage = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 20 }),
  fc.constantFrom('all', 'none', 'send', 'refresh', SERVICE, '__proto__', 'constructor', ''),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 3 });

/** A call of a known kind whose fields may be right, wrong or missing. */
const callArb = fc.oneof(
  fc.record({
    call: fc.constant('requestChat'),
    serviceName: fc.oneof(fc.constant(SERVICE), garbage),
    input: fc.oneof(fc.record({ nickname: fc.oneof(fc.constant('Zed'), garbage) }), garbage),
    retryKey: maybe(fc.oneof(fc.record({ chatId: fc.oneof(fc.constant('FuzzChat00000001'), garbage), requestId: fc.oneof(fc.constant('r1'), garbage) }), garbage)),
  }),
  fc.record({
    call: fc.constantFrom('perform', 'upload', 'download'),
    chatId: fc.oneof(fc.constant('CHAT'), garbage),
    serviceName: fc.oneof(fc.constant(SERVICE), garbage),
    identity: fc.oneof(fc.constant('IDENTITY'), fc.record({ secureKey: fc.oneof(fc.constant('KEY'), garbage), userId: maybe(garbage), alias: maybe(garbage), requestId: maybe(garbage) }), garbage),
    op: maybe(
      fc.oneof(
        fc.record({ op: fc.constantFrom('send', 'refresh', 'startTyping', 'stopTyping', 'disconnect', 'pushUrl', 'updateNickname', 'updateData', 'customNotice', 'readReceipt', 'fileLimits', 'fileDelete'), message: maybe(garbage), nickname: maybe(garbage), userData: maybe(garbage), position: maybe(garbage), pushUrl: maybe(garbage), fileId: maybe(garbage) }),
        garbage,
      ),
    ),
    position: maybe(fc.oneof(fc.constantFrom('all', 'none', 0, 1), garbage)),
    file: maybe(fc.oneof(fc.record({ fileName: garbage, contentType: garbage, base64: garbage, description: maybe(garbage) }), garbage)),
    fileId: maybe(garbage),
  }),
  fc.record({ call: garbage }),
  garbage,
);

/** Replaces the placeholders with the real chat's values, so that some calls reach the session. */
function materialize(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (x === 'CHAT') return chat.chatId;
    if (x === 'KEY') return chat.secureKey;
    if (x === 'IDENTITY') return { secureKey: chat.secureKey, userId: chat.userId, alias: chat.alias };
    return x;
  });
}

describe('the internal node API under random calls', () => {
  it('answers every call with 200 {ok} or a 4xx {error}, never a 5xx; a refused call stores nothing', { timeout: 120_000 }, async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(callArb, async (c) => {
        const before = (await store.listOpenSessions()).length;
        const eventsBefore = (await store.loadEvents(chat.chatId, 1)).length;
        const r = await call(materialize(c) ?? 'null');
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        expect(r.status, JSON.stringify(r.json)).toBeLessThan(500);
        if (r.status === 200) {
          expect(r.json).toHaveProperty('ok');
          return;
        }
        const err = (r.json as { error?: { code?: unknown; message?: unknown } }).error;
        expect(typeof err?.code).toBe('string');
        expect(typeof err?.message).toBe('string');
        expect((await store.listOpenSessions()).length).toBe(before);
        expect((await store.loadEvents(chat.chatId, 1)).length).toBe(eventsBefore);
      }),
      runs(400),
    );
    await trap.expectNone('the random calls');
    // The generator reaches the chat code, not only the parser.
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(0);
  });

  it('answers bodies that are not JSON, or not a call, with 400', async () => {
    for (const body of ['', 'not json', '{', '[]', '"requestChat"', '42', 'null', '{"call":"nope"}', '{"call":"perform"}']) {
      const r = await call(body);
      expect(r.status, body).toBe(400);
    }
  });

  it('keeps only the customer fields of a Request Chat: a push state or async flag in the input is not taken', async () => {
    const input = { nickname: 'Mallory', push: { active: true, subscription: { nodeGroup: 'g', deviceId: 'x', deviceType: 'customhttp', resend: true } }, asyncMode: true };
    const r = await call(JSON.stringify({ call: 'requestChat', serviceName: SERVICE, input }));
    expect(r.status).toBe(200);
    const chatId = (r.json as { ok: { session: { chatId: string } } }).ok.session.chatId;
    const stored = await store.loadSession(chatId);
    expect(stored?.push).toBeUndefined();
    expect(stored?.asyncMode).toBe(false);
    expect(stored?.participants[0]?.nickname).toBe('Mallory');
  });
});
