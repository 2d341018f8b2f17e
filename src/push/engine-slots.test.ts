/**
 * The push engine's slots (commit e8c0153 and its review): depth, chats' lists and their pruning,
 * registry.forget at chat end, in-flight races with forget/acknowledge/loadFor, stop(), the concurrency bound.
 * Manual clock, fake store, real GatewayRegistry (subclassed only to record forget calls), in-memory nodes.
 */
import { describe, expect, it } from 'vitest';
import { agentJoin, openSession, say } from '../chat/session.ts';
import { isFinal, notificationFor, type DeliveryOutcome, type Notification } from '../chat/notification.ts';
import type { Session } from '../chat/types.ts';
import { ManualClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import type { Store } from '../store/port.ts';
import { PushEngine } from './engine.ts';
import { GatewayRegistry } from './gateway-registry.ts';

const CREATED = 10_000;

function notification(id: string, o: { chatId?: string; resend?: boolean; chatEnded?: boolean; group?: string } = {}): Notification {
  const c = openSession({ chatId: o.chatId ?? `c-${id}`, serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'N', text: 'hi' }, CREATED);
  const j = agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, CREATED);
  const m = say(j.session, 2, 'Message', { text: 'hello' }, CREATED);
  const sub = { nodeGroup: o.group ?? 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: o.resend ?? true } as const;
  const session: Session = { ...m.session, push: { active: true, subscription: sub } };
  const n = notificationFor(session, m.events, { id, now: CREATED, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return o.chatEnded === true ? { ...n, chatEnded: true } : n;
}

class RecordingRegistry extends GatewayRegistry {
  readonly forgotten: string[] = [];
  override forget(chatId: string): void {
    this.forgotten.push(chatId);
    super.forget(chatId);
  }
}

function setup(o: { maxInFlight?: number; stored?: Notification[]; withNode?: boolean } = {}) {
  const clock = new ManualClock(CREATED);
  const saved = new Map<string, Notification>();
  for (const n of o.stored ?? []) saved.set(n.id, n);
  let loadGate: Promise<void> = Promise.resolve();
  const store = {
    saveNotifications: async (ns: readonly Notification[]) => {
      for (const n of ns) saved.set(n.id, n);
    },
    loadActiveNotifications: async () => [...saved.values()].filter((n) => !isFinal(n)),
    loadActiveNotificationsFor: async (chatId: string) => {
      const found = [...saved.values()].filter((n) => n.chatId === chatId && !isFinal(n));
      await loadGate;
      return found;
    },
  } as unknown as Store;
  const registry = new RecordingRegistry();
  const posts: Array<{ id: string; attempt: number; answer: (x: DeliveryOutcome) => void }> = [];
  let auto: DeliveryOutcome | undefined;
  const join = (nodeId = 'gw1', group = 'g') =>
    registry.register({
      nodeId,
      group,
      deliver: (n) =>
        auto !== undefined
          ? (posts.push({ id: n.id, attempt: n.attempts + 1, answer: () => {} }), Promise.resolve(auto))
          : new Promise<DeliveryOutcome>((answer) => posts.push({ id: n.id, attempt: n.attempts + 1, answer })),
    });
  if (o.withNode ?? true) join();
  const engine = new PushEngine({
    store,
    clock,
    registry,
    policy: { resendDelayMs: 1000, resendAttempts: 3, backoffMs: () => 100 },
    maxInFlight: o.maxInFlight ?? 8,
    log: silentLogger,
    metrics: createMetrics({ defaultMetrics: false }),
  });
  const internals = engine as unknown as { byChat: Map<string, { slots: unknown[]; ended: boolean }>; emptyChats: number; inFlight: number };
  const autoAnswer = (x: DeliveryOutcome | undefined) => {
    auto = x;
  };
  const gateLoads = () => {
    let open!: () => void;
    loadGate = new Promise<void>((r) => (open = r));
    return () => open();
  };
  return { clock, saved, store, registry, posts, engine, internals, join, autoAnswer, gateLoads };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('push engine slots: depth and chats', () => {
  it('forget during an in-flight POST, then acknowledge, then the POST returns: depth 0, nothing stored after forget', async () => {
    const { engine, posts, saved, internals } = setup();
    const n = notification('n1');
    engine.add([n]);
    const t = engine.tick();
    expect(posts.map((p) => p.id)).toEqual(['n1']);
    engine.acknowledge(n.chatId); // acked while in flight
    engine.forget(n.chatId); // then the session moves away
    expect(engine.depth).toBe(0);
    const before = saved.get('n1');
    posts[0]?.answer({ kind: 'delivered' });
    await t;
    await settle();
    expect(engine.depth).toBe(0);
    expect(saved.get('n1')).toBe(before);
    expect(internals.inFlight).toBe(0);
    expect(internals.emptyChats).toBe(1);
  });

  it('empty chats are pruned past 1,024 and the count matches what is in the map; a chat with slots is kept', async () => {
    const { engine, internals, autoAnswer } = setup();
    autoAnswer({ kind: 'delivered' });
    const many: Notification[] = [];
    for (let i = 0; i < 1100; i++) many.push(notification(`x${i}`, { resend: false }));
    const keep = notification('keep');
    engine.add([...many, keep]);
    // Non-resend: delivered = final, so 1,100 chats empty out; `keep` (resend) stays.
    for (let i = 0; i < 200 && engine.depth > 1; i++) await engine.tick();
    expect(engine.depth).toBe(1);
    await engine.tick(); // a tick prunes
    const empty = [...internals.byChat.values()].filter((c) => c.slots.length === 0).length;
    expect(internals.emptyChats).toBe(empty);
    expect(internals.byChat.has(keep.chatId)).toBe(true);
    expect(internals.byChat.size).toBeLessThan(1024);
    // `keep` is still resent
    expect(engine.attemptsOf('keep')).toBe(1);
  });
});

describe('push engine slots: registry.forget at chat end', () => {
  it('chatEnded before the last notification finishes: forgotten once, after it', async () => {
    const { engine, posts, registry } = setup();
    const a = notification('a', { chatId: 'c' });
    const b = notification('b', { chatId: 'c' });
    engine.add([a, b]);
    const t = engine.tick();
    engine.chatEnded('c');
    expect(registry.forgotten).toEqual([]);
    posts[0]?.answer({ kind: 'gone', reason: 'HTTP 410' });
    await settle();
    expect(registry.forgotten).toEqual([]);
    posts[1]?.answer({ kind: 'gone', reason: 'HTTP 410' });
    await t;
    expect(registry.forgotten).toEqual(['c']);
    expect(engine.depth).toBe(0);
  });

  it('chatEnded on a chat whose entry is kept empty: forgotten now, and the empty count goes down', async () => {
    const { engine, registry, internals, autoAnswer } = setup();
    autoAnswer({ kind: 'delivered' });
    engine.add([notification('a', { chatId: 'c', resend: false })]);
    await engine.tick();
    expect(internals.emptyChats).toBe(1);
    engine.chatEnded('c');
    expect(registry.forgotten).toEqual(['c']);
    expect(internals.emptyChats).toBe(0);
    expect(internals.byChat.has('c')).toBe(false);
  });

  it('a notification with chatEnded=true added to a chat kept empty: forgotten after it', async () => {
    const { engine, registry, internals, autoAnswer } = setup();
    autoAnswer({ kind: 'delivered' });
    engine.add([notification('a', { chatId: 'c', resend: false })]);
    await engine.tick();
    engine.add([notification('b', { chatId: 'c', resend: false, chatEnded: true })]);
    expect(internals.emptyChats).toBe(0);
    await engine.tick();
    expect(registry.forgotten).toEqual(['c']);
    expect(internals.emptyChats).toBe(0);
  });

  it('chatEnded, then the session moves away (forget) during the POST: forgotten once', async () => {
    const { engine, posts, registry } = setup();
    engine.add([notification('a', { chatId: 'c' })]);
    const t = engine.tick();
    engine.chatEnded('c');
    engine.forget('c');
    expect(registry.forgotten).toEqual(['c']);
    posts[0]?.answer({ kind: 'delivered' });
    await t;
    expect(registry.forgotten).toEqual(['c']);
  });

  it('a parked notification of an ended chat expires: the chat is forgotten', async () => {
    const { engine, registry, clock } = setup({ withNode: false });
    engine.add([notification('a', { chatId: 'c' })]);
    engine.chatEnded('c');
    await engine.tick();
    expect(engine.depth).toBe(1);
    clock.advance(1000 * 4);
    await engine.tick();
    expect(engine.depth).toBe(0);
    expect(registry.forgotten).toEqual(['c']);
  });
});

describe('push engine slots: in-flight races, stop, bound', () => {
  it('acknowledge during the POST, then a retry answer: never resent, depth 0', async () => {
    const { engine, posts, clock, saved } = setup();
    engine.add([notification('a')]);
    const t = engine.tick();
    engine.acknowledge('c-a');
    expect(engine.depth).toBe(1); // still tracked until the POST returns
    posts[0]?.answer({ kind: 'retry', reason: 'HTTP 503' });
    await t;
    expect(engine.depth).toBe(0);
    expect(saved.get('a')?.state).toBe('acked');
    clock.advance(5000);
    await engine.tick();
    expect(posts).toHaveLength(1);
  });

  it('stop() waits for the POST in flight and no attempt starts after it', async () => {
    const { engine, posts, clock } = setup();
    engine.run();
    engine.add([notification('a'), notification('b', { resend: false })]);
    await settle();
    expect(posts).toHaveLength(2);
    let stopped = false;
    const s = engine.stop().then(() => (stopped = true));
    posts[0]?.answer({ kind: 'retry', reason: 'x' });
    await settle();
    expect(stopped).toBe(false);
    engine.add([notification('c')]);
    posts[1]?.answer({ kind: 'delivered' });
    await s;
    expect(stopped).toBe(true);
    clock.advance(1000);
    await settle();
    expect(posts).toHaveLength(2);
  });

  it('the concurrency bound holds while forgotten POSTs are still in flight', async () => {
    const { engine, posts } = setup({ maxInFlight: 2 });
    engine.add([notification('a'), notification('b'), notification('c')]);
    const t = engine.tick();
    expect(posts).toHaveLength(2);
    engine.forget('c-a');
    engine.forget('c-b');
    const t2 = engine.tick();
    expect(posts).toHaveLength(2);
    posts[0]?.answer({ kind: 'delivered' });
    await settle();
    const t3 = engine.tick();
    expect(posts.map((p) => p.id)).toEqual(['a', 'b', 'c']);
    posts[1]?.answer({ kind: 'delivered' });
    posts[2]?.answer({ kind: 'delivered' });
    await Promise.all([t, t2, t3]);
  });

  it('loadFor skips what is tracked and acknowledges what it read while a refresh came', async () => {
    const a = notification('a', { chatId: 'c' });
    const b = notification('b', { chatId: 'c' });
    const { engine, saved, gateLoads, posts } = setup({ stored: [a, b] });
    engine.add([a]); // already tracked here
    const open = gateLoads();
    const l = engine.loadFor('c');
    engine.acknowledge('c');
    open();
    await l;
    await engine.tick();
    expect(engine.depth).toBe(0);
    expect(saved.get('b')?.state).toBe('acked');
    expect(posts).toHaveLength(0);
  });

  // Regression test (this was a bug, now fixed). Was: src/push/engine.ts:278 (tick skips a slot only when *that slot* is running) with engine.ts:165
  // (loadFor dedupes against the chat's live slots only). The previous version (git show e8c0153^:src/push/engine.ts,
  // tick: `this.inFlight.has(id)`) never let a notification have two POSTs in flight: a session lost (forget,
  // node.ts:105) and restored back here (loadFor, node.ts:102) while its POST is in flight now gets a second,
  // concurrent POST of the same notification with the same `attempt` number (docs/push.md: `attempt` is 1, 2, 3, ...
  // per POST); the first POST's answer is then dropped. Right: at most one POST in flight per notification id.
  it('a session lost and restored back while its POST is in flight: the notification is not POSTed twice at once', async () => {
    const n = notification('n1', { chatId: 'c' });
    const { engine, posts } = setup({ stored: [n] });
    engine.add([n]);
    const t = engine.tick();
    expect(posts.map((p) => p.id)).toEqual(['n1']);
    engine.forget('c'); // the session moved to another node
    await engine.loadFor('c'); // ... and came back here, the POST still in flight
    const t2 = engine.tick();
    // Old engine: the in-flight id is skipped. New: a second POST of n1, same attempt number.
    expect(posts.map((p) => `${p.id}#${p.attempt}`)).toEqual(['n1#1']);
    for (const p of posts) p.answer({ kind: 'delivered' });
    await Promise.all([t, t2]);
  });
});
