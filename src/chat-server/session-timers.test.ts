import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { agentJoin, openSession, say, type OpenSessionInput } from '../chat/session.ts';
import { hold, wake } from '../chat/routing.ts';
import type { Change, ChatEvent, Session } from '../chat/types.ts';
import { ManualClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import type { Store } from '../store/port.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import { LiveSessions } from './live-sessions.ts';
import { SessionTimers, type SessionTimerSettings } from './session-timers.ts';
import { ALICE, MIN, PUSH, SEC, SETTINGS, type Node } from './session-timers.fixture.ts';


let dir: string;
let dbPath: string;
let clock: ManualClock;
let stores: Store[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'parley-timers-'));
  dbPath = join(dir, 'parley.db');
  clock = new ManualClock();
  stores = [];
});

afterEach(async () => {
  for (const s of stores) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A chat server node over the SQLite file, wired like src/app.ts does. */
function startNode(settings: SessionTimerSettings = SETTINGS): Node {
  const store = openSqliteStore({ path: dbPath, synchronous: 'normal' });
  stores.push(store);
  const sessions = new LiveSessions(store, '117');
  const timers = new SessionTimers(sessions, clock, settings, silentLogger);
  sessions.subscribe((s, events) => {
    if (events.length > 0) timers.changed(s);
  });
  return { store, sessions, timers };
}

function input(chatId: string, extra: Partial<OpenSessionInput> = {}): OpenSessionInput {
  return { chatId, serviceName: 'support', secureKey: `sk-${chatId}`, userId: `u-${chatId}`, alias: '117', nickname: 'Jane', ...extra };
}

async function createChat(node: Node, chatId: string, extra: Partial<OpenSessionInput> = {}): Promise<Session> {
  const entry = await node.sessions.create(openSession(input(chatId, extra), clock.now()));
  node.timers.track(entry.session);
  return entry.session;
}

/** An async chat whose client has an active push subscription (so flex-push-timeout, one day, applies). */
function createAsyncChat(node: Node, chatId: string): Promise<Session> {
  return createChat(node, chatId, { asyncMode: true, push: PUSH });
}

/** Commits a pure operation on the live session, like the ops classes do. */
async function apply(node: Node, chatId: string, op: (s: Session, now: number) => Change): Promise<void> {
  await node.sessions.serial(chatId, (entry) => node.sessions.commit(entry, op(entry.session, clock.now())));
}

const clientSays = (text: string) => (s: Session, now: number) => say(s, 1, 'Message', { text }, now);

/** A customer message that wakes a dormant chat (ClientOps.wakeOnMessage). */
const clientWakes = (text: string) => (s: Session, now: number): Change => {
  const c = say(s, 1, 'Message', { text }, now);
  return { session: wake(c.session, SETTINGS.idle.lastAgentMs, now, SETTINGS.idle.agentOnline).session, events: c.events };
};

async function current(node: Node, chatId: string): Promise<{ session: Session; events: ChatEvent[] }> {
  const entry = await node.sessions.get(chatId);
  return { session: entry.session, events: await node.sessions.transcript(entry, 1) };
}

async function advance(node: Node, ms: number): Promise<void> {
  clock.advance(ms);
  await node.timers.tick();
}

function idleNotices(events: readonly ChatEvent[]): Array<[string | undefined, number]> {
  return events.filter((e) => e.from.participantId === 0).map((e) => [e.messageType, e.utcTime]);
}

describe('client disconnect (flex-disconnect-timeout / flex-push-timeout)', () => {
  it('disconnects a client without push after flexDisconnectMs without requests', async () => {
    const node = startNode();
    const t0 = clock.now();
    await createChat(node, 'c1');
    await advance(node, 45 * SEC - 1);
    expect((await current(node, 'c1')).session.state).toBe('waiting');
    await advance(node, 1);
    const { session, events } = await current(node, 'c1');
    expect(session.state).toBe('ended');
    expect(session.endedAt).toBe(t0 + 45 * SEC);
    expect(events.at(-1)).toMatchObject({ type: 'ParticipantLeft', from: { participantId: 1, type: 'Client' }, utcTime: t0 + 45 * SEC });
    // Stored, not only in memory.
    expect((await node.store.loadSession('c1'))?.state).toBe('ended');
  });

  it('a request meanwhile starts the timeout again', async () => {
    const node = startNode();
    await createChat(node, 'c1');
    await advance(node, 30 * SEC);
    node.timers.requested('c1');
    await advance(node, 15 * SEC); // 45 s after creation: not due any more
    expect((await current(node, 'c1')).session.state).toBe('waiting');
    await advance(node, 30 * SEC - 1); // 45 s - 1 ms after the request
    expect((await current(node, 'c1')).session.state).toBe('waiting');
    await advance(node, 1);
    expect((await current(node, 'c1')).session.state).toBe('ended');
  });

  it('leaves other chats alone', async () => {
    const node = startNode();
    await createChat(node, 'c1');
    await createChat(node, 'c2');
    await advance(node, 40 * SEC);
    node.timers.requested('c2');
    await advance(node, 5 * SEC);
    expect((await current(node, 'c1')).session.state).toBe('ended');
    expect((await current(node, 'c2')).session.state).toBe('waiting');
  });

  it('a push-subscribed (active) client gets flexPushMs instead', async () => {
    const node = startNode();
    await createChat(node, 'p1', { push: PUSH });
    await advance(node, 45 * SEC);
    expect((await current(node, 'p1')).session.state).toBe('waiting');
    await advance(node, SETTINGS.flexPushMs - 45 * SEC - 1);
    expect((await current(node, 'p1')).session.state).toBe('waiting');
    await advance(node, 1);
    const { session, events } = await current(node, 'p1');
    expect(session.state).toBe('ended');
    expect(events.at(-1)).toMatchObject({ type: 'ParticipantLeft', from: { participantId: 1 } });
  });

  it('an inactive (not yet acknowledged) subscription still gets flexDisconnectMs', async () => {
    const node = startNode();
    await createChat(node, 'p2', { push: { ...PUSH, active: false } });
    await advance(node, 45 * SEC);
    expect((await current(node, 'p2')).session.state).toBe('ended');
  });

  it('a subscription activated after the chat started switches to flexPushMs', async () => {
    const node = startNode();
    await createChat(node, 'p3');
    await apply(node, 'p3', (s, now) => ({ session: { ...s, push: PUSH, updatedAt: now }, events: [] }));
    await advance(node, 45 * SEC);
    expect((await current(node, 'p3')).session.state).toBe('waiting');
    await advance(node, SETTINGS.flexPushMs - 45 * SEC);
    expect((await current(node, 'p3')).session.state).toBe('ended');
  });
});

describe('async idle control', () => {
  const { alertMs, closeMs } = SETTINGS.idle.async;

  it('alerts at async-idle-alert and closes async-idle-close later', async () => {
    const node = startNode();
    const t0 = clock.now();
    await createAsyncChat(node, 'a1');
    await advance(node, alertMs - 1);
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([]);
    await advance(node, 1);
    let { session, events } = await current(node, 'a1');
    expect(idleNotices(events)).toEqual([['IDLE_CONTROL_ALERT', t0 + alertMs]]);
    expect(session.userData.GCTI_Chat_AsyncStatus).toBe('3');
    expect(session.userData.GCTI_Chat_AsyncCheckAt).toBe(new Date(t0 + alertMs + closeMs).toISOString());
    expect(session.state).toBe('waiting');

    await advance(node, closeMs - 1);
    expect((await current(node, 'a1')).session.state).toBe('waiting');
    await advance(node, 1);
    ({ session, events } = await current(node, 'a1'));
    expect(session.state).toBe('ended');
    expect(idleNotices(events)).toEqual([
      ['IDLE_CONTROL_ALERT', t0 + alertMs],
      ['IDLE_CONTROL_CLOSE', t0 + alertMs + closeMs],
    ]);
    expect(events.at(-1)).toMatchObject({ type: 'ParticipantLeft', from: { participantId: 1 } });
    expect((await node.store.loadSession('a1'))?.state).toBe('ended');
  });

  it('a late tick acts once, at the time of the tick', async () => {
    const node = startNode();
    const t0 = clock.now();
    await createAsyncChat(node, 'a1');
    await advance(node, alertMs + 5 * SEC);
    await node.timers.tick();
    const { session, events } = await current(node, 'a1');
    expect(idleNotices(events)).toEqual([['IDLE_CONTROL_ALERT', t0 + alertMs + 5 * SEC]]);
    expect(session.state).toBe('waiting');
  });

  it('a client message postpones the alert', async () => {
    const node = startNode();
    const t0 = clock.now();
    await createAsyncChat(node, 'a1');
    clock.advance(30 * MIN);
    await apply(node, 'a1', clientSays('hello?'));
    await advance(node, alertMs - 30 * MIN); // the original deadline
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([]);
    await advance(node, 30 * MIN - 1);
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([]);
    await advance(node, 1);
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([['IDLE_CONTROL_ALERT', t0 + 30 * MIN + alertMs]]);
  });

  it('a client message after the alert stops the close and starts a new alert timeout', async () => {
    const node = startNode();
    const t0 = clock.now();
    await createAsyncChat(node, 'a1');
    await advance(node, alertMs);
    clock.advance(5 * MIN);
    await apply(node, 'a1', clientSays('still here'));
    await advance(node, closeMs); // past the close of the first alert
    expect((await current(node, 'a1')).session.state).toBe('waiting');
    await advance(node, alertMs - closeMs);
    const { session, events } = await current(node, 'a1');
    expect(idleNotices(events)).toEqual([
      ['IDLE_CONTROL_ALERT', t0 + alertMs],
      ['IDLE_CONTROL_ALERT', t0 + alertMs + 5 * MIN + alertMs],
    ]);
    expect(session.state).toBe('waiting');
  });

  it('a notice that does not count (CustomNotice under major) does not postpone the alert', async () => {
    const node = startNode();
    const t0 = clock.now();
    await createAsyncChat(node, 'a1');
    clock.advance(30 * MIN);
    await apply(node, 'a1', (s, now) => say(s, 1, 'CustomNotice', { text: 'x' }, now));
    await advance(node, alertMs - 30 * MIN);
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([['IDLE_CONTROL_ALERT', t0 + alertMs]]);
  });

  it('wakes a dormant chat: the alert routes it to the workbin agent', async () => {
    const node = startNode();
    await createAsyncChat(node, 'a1');
    await apply(node, 'a1', (s, now) => agentJoin(s, ALICE, now));
    await apply(node, 'a1', (s, now) => hold(s, 'alice', now));
    expect((await current(node, 'a1')).session.state).toBe('dormant');
    const alertAt = clock.now() + alertMs;
    await advance(node, alertMs);
    const { session } = await current(node, 'a1');
    expect(session.state).toBe('waiting');
    expect(session.routing).toEqual({ agentId: 'alice', until: alertAt + SETTINGS.idle.lastAgentMs });
  });
});

describe('regular idle control ([inactivity-control])', () => {
  it('alert, alert2, close, and nothing while disabled', async () => {
    const ic = { ...SETTINGS.idle.inactivity, enabled: true, alertMs: 255 * SEC, alert2Ms: 30 * SEC, closeMs: 45 * SEC };
    const node = startNode({ ...SETTINGS, idle: { ...SETTINGS.idle, inactivity: ic } });
    const t0 = clock.now();
    await createChat(node, 'g1', { push: PUSH });
    await advance(node, 255 * SEC);
    await advance(node, 30 * SEC);
    await advance(node, 45 * SEC - 1);
    expect((await current(node, 'g1')).session.state).toBe('waiting');
    await advance(node, 1);
    const { session, events } = await current(node, 'g1');
    expect(session.state).toBe('ended');
    expect(events.filter((e) => e.from.participantId === 0).map((e) => [e.messageType, e.text, e.utcTime])).toEqual([
      ['IDLE_CONTROL_ALERT', 'closing soon', t0 + 255 * SEC],
      ['IDLE_CONTROL_ALERT', 'closing very soon', t0 + 285 * SEC],
      ['IDLE_CONTROL_CLOSE', 'closed', t0 + 330 * SEC],
    ]);
  });

  it('disabled: a regular chat gets no idle notices', async () => {
    const node = startNode();
    await createChat(node, 'g2', { push: PUSH });
    await advance(node, 60 * MIN);
    expect(idleNotices((await current(node, 'g2')).events)).toEqual([]);
    expect((await current(node, 'g2')).session.state).toBe('waiting');
  });
});

describe('restart in the middle of a timeout', () => {
  const { alertMs, closeMs } = SETTINGS.idle.async;

  async function restart(old: Node): Promise<Node> {
    old.timers.stop();
    await old.store.close();
    const node = startNode();
    await node.sessions.loadOpen();
    for (const { session } of node.sessions.all()) node.timers.track(session);
    return node;
  }

  it('the alert fires at the original deadline, derived from the stored activity', async () => {
    let node = startNode();
    const t0 = clock.now();
    await createAsyncChat(node, 'a1');
    await createAsyncChat(node, 'a2');
    clock.advance(10 * MIN);
    await apply(node, 'a1', clientSays('hi'));
    clock.advance(30 * MIN); // 40 min in: both alerts are pending
    await node.timers.tick();

    node = await restart(node);
    expect(node.sessions.size).toBe(2);
    expect(node.timers.pending).toBeGreaterThan(0);

    // a2: no activity since creation; its deadline is t0 + alertMs, 20 min from now, not alertMs from now.
    clock.set(t0 + alertMs - 1);
    await node.timers.tick();
    expect(idleNotices((await current(node, 'a2')).events)).toEqual([]);
    clock.set(t0 + alertMs);
    await node.timers.tick();
    expect(idleNotices((await current(node, 'a2')).events)).toEqual([['IDLE_CONTROL_ALERT', t0 + alertMs]]);
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([]);

    // a1: its message at t0 + 10 min set the deadline.
    clock.set(t0 + 10 * MIN + alertMs - 1);
    await node.timers.tick();
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([]);
    clock.set(t0 + 10 * MIN + alertMs);
    await node.timers.tick();
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([['IDLE_CONTROL_ALERT', t0 + 10 * MIN + alertMs]]);
  });

  it('after the alert, the close fires at alert + async-idle-close across a restart', async () => {
    let node = startNode();
    const t0 = clock.now();
    await createAsyncChat(node, 'a1');
    await advance(node, alertMs);
    expect(idleNotices((await current(node, 'a1')).events)).toHaveLength(1);
    clock.advance(closeMs / 2);

    node = await restart(node);
    clock.set(t0 + alertMs + closeMs - 1);
    await node.timers.tick();
    expect((await current(node, 'a1')).session.state).toBe('waiting');
    clock.set(t0 + alertMs + closeMs);
    await node.timers.tick();
    const { session, events } = await current(node, 'a1');
    expect(session.state).toBe('ended');
    expect(idleNotices(events)).toEqual([
      ['IDLE_CONTROL_ALERT', t0 + alertMs],
      ['IDLE_CONTROL_CLOSE', t0 + alertMs + closeMs],
    ]);
  });

  it('a deadline that passed while the node was down fires at the first tick', async () => {
    let node = startNode();
    const t0 = clock.now();
    await createAsyncChat(node, 'a1');
    await advance(node, 10 * MIN);
    await node.timers.tick();
    node.timers.stop();
    await node.store.close();
    clock.set(t0 + alertMs + MIN); // down for longer than the rest of the timeout
    node = startNode();
    await node.sessions.loadOpen();
    for (const { session } of node.sessions.all()) node.timers.track(session);
    await node.timers.tick();
    expect(idleNotices((await current(node, 'a1')).events)).toEqual([['IDLE_CONTROL_ALERT', t0 + alertMs + MIN]]);
  });

  it('the client gets a fresh disconnect timeout after a restart (last request is not stored)', async () => {
    let node = startNode();
    await createChat(node, 'c1');
    await advance(node, 40 * SEC);
    node = await restart(node);
    await advance(node, 44 * SEC);
    expect((await current(node, 'c1')).session.state).toBe('waiting');
    await advance(node, SEC);
    expect((await current(node, 'c1')).session.state).toBe('ended');
  });
});

describe('routing to the last agent', () => {
  const { alertMs } = SETTINGS.idle.async;
  const L = SETTINGS.idle.lastAgentMs;

  function announcements(node: Node): Session[] {
    const seen: Session[] = [];
    node.sessions.subscribe((s, events) => {
      if (events.length === 0) seen.push(s);
    });
    return seen;
  }

  async function dormantChat(node: Node, chatId: string): Promise<void> {
    await createAsyncChat(node, chatId);
    await apply(node, chatId, (s, now) => agentJoin(s, ALICE, now));
    await apply(node, chatId, (s, now) => hold(s, 'alice', now));
  }

  it('a chat woken by the idle alert is announced when its routing expires', async () => {
    const node = startNode();
    const seen = announcements(node);
    await dormantChat(node, 'r1');
    await advance(node, alertMs);
    const woken = (await current(node, 'r1')).session;
    expect(woken.routing?.agentId).toBe('alice');
    expect(seen).toEqual([]);
    await advance(node, L - 1);
    expect(seen).toEqual([]);
    await advance(node, 1);
    expect(seen.map((s) => s.chatId)).toEqual(['r1']);
    expect(seen[0]?.state).toBe('waiting');
    await advance(node, L);
    expect(seen).toHaveLength(1);
  });

  it('a chat woken by a customer message is announced when its routing expires', async () => {
    const node = startNode();
    const seen = announcements(node);
    await dormantChat(node, 'r2');
    clock.advance(MIN);
    await apply(node, 'r2', clientWakes('hello again'));
    expect((await current(node, 'r2')).session.routing?.agentId).toBe('alice');
    await advance(node, L - 1);
    expect(seen).toEqual([]);
    await advance(node, 1);
    expect(seen.map((s) => s.chatId)).toEqual(['r2']);
  });

  it('no announcement when the agent took the chat back in time', async () => {
    const node = startNode();
    const seen = announcements(node);
    await dormantChat(node, 'r3');
    clock.advance(MIN);
    await apply(node, 'r3', clientWakes('hello again'));
    clock.advance(L / 2);
    await apply(node, 'r3', (s, now) => agentJoin(s, ALICE, now));
    await advance(node, L);
    expect(seen).toEqual([]);
  });

  // Regression: found by this suite and fixed (the route timer reschedules when routed again).
  it('a chat routed a second time is announced when the second routing expires', async () => {
    const node = startNode();
    const seen = announcements(node);
    const t0 = clock.now();
    await dormantChat(node, 'r4');
    clock.set(t0 + 1000);
    await apply(node, 'r4', clientWakes('first')); // routed until t0 + 1000 + L
    clock.set(t0 + 2000);
    await apply(node, 'r4', (s, now) => agentJoin(s, ALICE, now));
    await apply(node, 'r4', (s, now) => hold(s, 'alice', now));
    clock.set(t0 + 3000);
    await apply(node, 'r4', clientWakes('second')); // routed until t0 + 3000 + L
    expect((await current(node, 'r4')).session.routing?.until).toBe(t0 + 3000 + L);
    clock.set(t0 + 1000 + L);
    await node.timers.tick();
    expect(seen).toEqual([]); // the first routing was superseded
    clock.set(t0 + 3000 + L);
    await node.timers.tick();
    expect(seen.map((s) => s.chatId)).toEqual(['r4']);
  });
});

describe('scale', () => {
  it('10,000 tracked async sessions keep O(sessions) timer entries after many changes', async () => {
    const node = startNode();
    const N = 10_000;
    const ids = Array.from({ length: N }, (_, i) => `bulk-${i}`);
    const entries = await Promise.all(ids.map((id) => node.sessions.create(openSession(input(id, { asyncMode: true, push: PUSH }), clock.now()))));
    for (const e of entries) node.timers.track(e.session);
    for (let round = 0; round < 4; round++) {
      clock.advance(SEC);
      await Promise.all(ids.map((id) => apply(node, id, clientSays(`m${round}`))));
      for (const id of ids.slice(0, 50)) node.timers.requested(id);
      await node.timers.tick();
    }
    expect(node.timers.pending).toBeLessThanOrEqual(3 * N);
    expect(node.timers.heapSize).toBeLessThanOrEqual(3 * N);
    // One disconnect and one idle entry per session.
    expect(node.timers.pending).toBe(2 * N);
    expect((await current(node, 'bulk-0')).session.lastIndex).toBe(5);
  }, 20_000);
});

describe('the timer rounds of run()', () => {
  it('start one round at a time: a round still busy is not joined by more every 250 ms', async () => {
    vi.useFakeTimers();
    try {
      const n = startNode();
      let running = 0;
      let most = 0;
      let rounds = 0;
      let release: () => void = () => undefined;
      n.timers.tick = async () => {
        rounds++;
        most = Math.max(most, ++running);
        await new Promise<void>((r) => (release = r));
        running--;
      };
      n.timers.run();
      await vi.advanceTimersByTimeAsync(1_000);
      expect({ rounds, most }).toEqual({ rounds: 1, most: 1 });
      release();
      await vi.advanceTimersByTimeAsync(250);
      expect(rounds).toBe(2);
      n.timers.stop();
      release();
    } finally {
      vi.useRealTimers();
    }
  });
});
