/**
 * limit-for-flex-users against pending subscriptions, and the shutdown advice after the session
 * it was sent for is restored on another node. Real nodes (buildChatNode) over one real SQLite file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeliveryOutcome, Notification } from '../src/chat/notification.ts';
import { buildChatNode, type ChatNode } from '../src/chat-server/node.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { ParleyError } from '../src/errors.ts';
import { createRandomIds } from '../src/ids.ts';
import { silentLogger } from '../src/log.ts';
import type { Store } from '../src/store/port.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import { BASE_INI, SERVICE } from './helpers.ts';

const PUSH_UD = (deviceId: string, extra: Record<string, string> = {}) => ({
  GCTI_Chat_PushSubscribe: 'true',
  GCTI_GMS_NodeGroup: 'group-1',
  GCTI_GMS_PushDeviceId: deviceId,
  GCTI_GMS_PushDeviceType: 'customhttp',
  ...extra,
});

let dir: string | undefined;
let alive = new Set<string>();
const stores: Store[] = [];
const nodes: ChatNode[] = [];

afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
  for (const s of stores.splice(0)) await s.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
  alive = new Set();
});

function memoryGateway(group = 'group-1') {
  const delivered: Notification[] = [];
  return {
    delivered,
    node: {
      nodeId: `mem-${group}`,
      group,
      deliver: async (n: Notification): Promise<DeliveryOutcome> => {
        delivered.push(n);
        return { kind: 'delivered' };
      },
    },
  };
}

const isAdvice = (n: Notification) => n.events.some((e) => e.type === 'ParticipantLeft' && e.from.participantId === 1 && e.userData?.['quit-reason-advice'] === 'reconnect');
const codeOf = (e: unknown) => (e instanceof ParleyError ? e.code : String(e));

async function makeNode(appDbid: string, extraIni: string, clock: ManualClock, wrap: (s: Store) => Store = (s) => s): Promise<ChatNode> {
  dir ??= mkdtempSync(join(tmpdir(), 'parley-kpi2-'));
  alive.add(appDbid);
  const store = openSqliteStore({ path: join(dir, 'parley.db'), synchronous: 'normal' });
  stores.push(store);
  const config = parseConfig(BASE_INI + extraIni, 'test.ini', { PARLEY_NODE_APP_DBID: appDbid, PARLEY_STORE_PATH: join(dir, 'unused.db') });
  const node = await buildChatNode(
    config,
    { store: wrap(store), clock, ids: createRandomIds(), log: silentLogger, autoRun: false, random: () => 0 },
    { loadScope: 'owned', isAlive: async (o) => alive.has(o) },
  );
  nodes.push(node);
  return node;
}

/** loadActiveNotificationsFor waits for `gate` (a slow read of the outbox of a restored session). */
function slowOutboxRead(gate: { p?: Promise<void> }) {
  return (real: Store): Store =>
    new Proxy(real, {
      get(target, prop, receiver) {
        if (prop === 'loadActiveNotificationsFor') {
          return async (chatId: string) => {
            if (gate.p !== undefined) await gate.p;
            return target.loadActiveNotificationsFor(chatId);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
}

describe('limit-for-flex-users and subscriptions acknowledged after creation (flex-push-on-join = false, the default)', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/limits.ts:30 with live-sessions.ts:133 — the flex figure counts only *active*
  // subscriptions, and admission is checked only at Request Chat. With flex-push-on-join=false (the default)
  // every subscribed Request Chat starts pending, so none of them counts and all are admitted; each is then
  // activated by the client's next request without any check, and the node ends up with more flex users than
  // limit-for-flex-users. docs/configuration.md (limit-for-flex-users: "Most push-subscribed (flex) sessions
  // this node handles") and wire facts §3.6 ("the maximum number of flex users that Chat Server handles
  // simultaneously"). Right: a pending subscription counts against the limit at admission (or its activation
  // is refused over the limit): the node never holds more flex users than the limit.
  it('two subscribed Request Chats against limit-for-flex-users = 1 never give the node 2 flex users', async () => {
    const node = await makeNode('201', '[settings]\nlimit-for-flex-users = 1\n', new ManualClock());
    const opened: Array<{ chatId: string; secureKey: string }> = [];
    for (const dev of ['d1', 'd2']) {
      const r = await node.client.requestChat(SERVICE, { nickname: dev, userData: PUSH_UD(dev) }).then(
        (x) => x.session,
        (e: unknown) => codeOf(e),
      );
      if (typeof r !== 'string') opened.push(r);
    }
    for (const s of opened) {
      await node.client.perform(s.chatId, SERVICE, { secureKey: s.secureKey }, { op: 'refresh' }, 'none').catch(() => undefined);
    }
    expect(node.sessions.counts().flex).toBeLessThanOrEqual(1);
    expect((await node.kpi.health()).flex_users).toBeLessThanOrEqual(1);
  });

  it('with flex-push-on-join = true the second subscribed Request Chat is refused at the limit (statusCode 1 retryable)', async () => {
    const node = await makeNode('201', '[settings]\nflex-push-on-join = true\nlimit-for-flex-users = 1\n', new ManualClock());
    await node.client.requestChat(SERVICE, { nickname: 'a', userData: PUSH_UD('d1') });
    const second = await node.client.requestChat(SERVICE, { nickname: 'b', userData: PUSH_UD('d2') }).then(
      () => 'admitted',
      (e: unknown) => codeOf(e),
    );
    expect(second).toBe('UNAVAILABLE');
    expect(node.sessions.counts()).toMatchObject({ open: 1, flex: 1 });
  });
});

describe('the shutdown advice after the session moves to another node', () => {
  const INI = '[settings]\nflex-push-on-join = true\nshutdown-notify-flex-push = 1\nflex-push-resend-delay = 15\nflex-push-resend-attempts = 3\n';

  async function scenario(gate: { p?: Promise<void> }) {
    const clock = new ManualClock();
    const x = await makeNode('201', INI, clock);
    const y = await makeNode('202', INI, clock, slowOutboxRead(gate));
    const gx = memoryGateway();
    const gy = memoryGateway();
    x.registry.register(gx.node);
    y.registry.register(gy.node);
    const c = await x.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_UD('dev-1', { GCTI_GMS_PushResend: 'true' }) });
    await x.push.tick();
    // Planned stop of x: it leaves, advises, closes.
    alive.delete('201');
    expect(await x.notifyShutdown()).toBe(1);
    expect(gx.delivered.filter(isAdvice)).toHaveLength(1);
    await x.close();
    await new Promise((r) => setTimeout(r, 50)); // x's fire-and-forget notification writes
    return { clock, x, y, gx, gy, c };
  }

  it('the receiver\u2019s refresh restores the session on y and acknowledges the advice: y never sends it again', async () => {
    const gate: { p?: Promise<void> } = {};
    const { clock, y, gy, c } = await scenario(gate);
    // The receiver's answer to the advice: a refresh (through the gateway, to a live node).
    await y.client.perform(c.session.chatId, SERVICE, { secureKey: c.session.secureKey }, { op: 'refresh' }, 'none');
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 6; i++) {
      clock.advance(16_000);
      await y.push.tick();
    }
    expect(gy.delivered.filter(isAdvice)).toEqual([]);
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/node.ts:100 (`void push.loadFor(...)` in onRestored) vs node.ts:163 (refreshed →
  // push.acknowledge). The restoring node reads the session's outbox in the background; the very refresh that
  // restored the session acknowledges "every notification of the session not yet final" at once, i.e. before
  // that read returned when the store is not instant (PostgreSQL in a cluster). The outbox read then tracks
  // the already-acknowledged notifications (here the shutdown advice, awaiting its acknowledgement with
  // GCTI_GMS_PushResend) and y resends them: the device is told to reconnect again after it did, and every
  // restore duplicates the pending pushes. docs/push.md:111-112 (a refresh acknowledges **every**
  // notification of the session not yet final, and resending stops) and the seeds ("send a ping Refresh request ... to acknowledge the delivery (which then
  // stops the resending logic in Chat Server)"). Right: the acknowledgement of the restoring request covers
  // the outbox taken over (wait for loadFor before acknowledging, or acknowledge what it loads afterwards).
  it('a slow outbox read on the restoring node: the acknowledged advice is not resent', async () => {
    let open!: () => void;
    const gate: { p?: Promise<void> } = { p: new Promise<void>((r) => (open = r)) };
    const { clock, y, gy, c } = await scenario(gate);
    await y.client.perform(c.session.chatId, SERVICE, { secureKey: c.session.secureKey }, { op: 'refresh' }, 'none');
    open();
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 6; i++) {
      clock.advance(16_000);
      await y.push.tick();
    }
    expect(gy.delivered.filter(isAdvice)).toEqual([]);
  });
});

describe('limit-for-sessions under concurrent Request Chats', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/client-ops.ts:110 (admit) and live-sessions.ts:192-196 (create) — admission reads the
  // figure synchronously, but a session is counted only after its store write committed (create → account).
  // Request Chats that arrive together (the same event-loop turn, or while the store commits) all see the
  // old figure and are all admitted, so a node with limit-for-sessions = 2 opens 6 sessions. Wire facts §3.6:
  // "Defines the maximum number of chat sessions that Chat Server handles simultaneously"; docs/deployment.md
  // :140-142 (the limits bound the open sessions of a node). Right: admitted-but-not-yet-stored creations
  // count (reserve a slot at admit, release it if the write fails), so at most 2 are opened and the rest get
  // the retryable UNAVAILABLE.
  it('6 Request Chats at once against limit-for-sessions = 2 open at most 2 sessions', async () => {
    const node = await makeNode('201', '[settings]\nlimit-for-sessions = 2\n', new ManualClock());
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        node.client.requestChat(SERVICE, { nickname: `c${i}` }).then(
          () => 'ok',
          (e: unknown) => codeOf(e),
        ),
      ),
    );
    expect(results.filter((r) => r === 'ok').length).toBeLessThanOrEqual(2);
    expect(results.filter((r) => r !== 'ok').every((r) => r === 'UNAVAILABLE')).toBe(true);
    expect(node.sessions.counts().open).toBeLessThanOrEqual(2);
  });

  it('the same Request Chats one after another: exactly 2 opened, 4 refused with UNAVAILABLE', async () => {
    const node = await makeNode('201', '[settings]\nlimit-for-sessions = 2\n', new ManualClock());
    const results: string[] = [];
    for (let i = 0; i < 6; i++) {
      results.push(
        await node.client.requestChat(SERVICE, { nickname: `c${i}` }).then(
          () => 'ok',
          (e: unknown) => codeOf(e),
        ),
      );
    }
    expect(results).toEqual(['ok', 'ok', 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
  });
});
