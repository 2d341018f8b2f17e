/**
 * The session timers (src/chat-server/session-timers.ts) over real SQLite on a manual clock:
 * boundaries, dormant (parked) chats, restarts, ended chats and sessions that moved to another node.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hold } from '../chat/routing.ts';
import { activatePush, agentClose, agentJoin, clientDisconnect, openSession, say, type OpenSessionInput } from '../chat/session.ts';
import type { Change, ChatEvent, Session } from '../chat/types.ts';
import { ManualClock } from '../clock.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { Store } from '../store/port.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import { LiveSessions, type Ownership } from './live-sessions.ts';
import { SessionTimers, type SessionTimerSettings } from './session-timers.ts';
import { ALICE, MIN, PUSH, SEC, SETTINGS, type Node } from './session-timers.fixture.ts';


let dir: string;
let dbPath: string;
let clock: ManualClock;
let stores: Store[];
let nodes: Node[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'parley-review-timers-'));
  dbPath = join(dir, 'parley.db');
  clock = new ManualClock();
  stores = [];
  nodes = [];
});

afterEach(async () => {
  for (const n of nodes) n.timers.stop();
  for (const s of stores) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

function startNode(settings: SessionTimerSettings = SETTINGS, alias = '117', ownership?: Ownership, log: Logger = silentLogger): Node {
  const store = openSqliteStore({ path: dbPath, synchronous: 'normal' });
  stores.push(store);
  const sessions = new LiveSessions(store, alias, undefined, ownership);
  const timers = new SessionTimers(sessions, clock, settings, log);
  sessions.subscribe((s, events) => {
    if (events.length > 0) timers.changed(s);
  });
  const node = { store, sessions, timers };
  nodes.push(node);
  return node;
}

function input(chatId: string, extra: Partial<OpenSessionInput> = {}): OpenSessionInput {
  return { chatId, serviceName: 'support', secureKey: `sk-${chatId}`, userId: `u-${chatId}`, alias: '117', nickname: 'Jane', ...extra };
}

async function createChat(node: Node, chatId: string, extra: Partial<OpenSessionInput> = {}): Promise<Session> {
  const entry = await node.sessions.create(openSession(input(chatId, extra), clock.now()));
  node.timers.track(entry.session);
  return entry.session;
}

async function apply(node: Node, chatId: string, op: (s: Session, now: number) => Change): Promise<void> {
  await node.sessions.serial(chatId, (entry) => node.sessions.commit(entry, op(entry.session, clock.now())));
}

async function advance(node: Node, ms: number): Promise<void> {
  clock.advance(ms);
  await node.timers.tick();
}

async function stored(node: Node, chatId: string): Promise<{ session: Session; events: ChatEvent[] }> {
  const session = await node.store.loadSession(chatId);
  if (session === undefined) throw new Error(`no ${chatId}`);
  return { session, events: await node.store.loadEvents(chatId, 1) };
}

function idleNotices(events: readonly ChatEvent[]): Array<[string | undefined, number]> {
  return events.filter((e) => e.from.participantId === 0).map((e) => [e.messageType, e.utcTime]);
}

function warnCounter(): Logger & { warns: number } {
  const log = {
    warns: 0,
    debug: () => undefined,
    info: () => undefined,
    warn: () => void log.warns++,
    error: () => undefined,
    child: () => log,
  };
  return log;
}

describe('boundaries (checked, right)', () => {
  const { alertMs, closeMs } = SETTINGS.idle.async;

  it('a dormant, parked chat: alert exactly at hold + async-idle-alert, close exactly alert + async-idle-close, once each', async () => {
    const node = startNode();
    await createChat(node, 'd1', { asyncMode: true, push: PUSH });
    await apply(node, 'd1', (s, now) => agentJoin(s, ALICE, now));
    clock.advance(5 * MIN);
    const heldAt = clock.now();
    await apply(node, 'd1', (s, now) => hold(s, 'alice', now));
    expect(node.sessions.size).toBe(0); // parked
    expect(node.sessions.counts().dormant).toBe(1);
    await advance(node, alertMs - 1);
    expect(idleNotices((await stored(node, 'd1')).events)).toEqual([]);
    await advance(node, 1);
    const woken = await stored(node, 'd1');
    expect(idleNotices(woken.events)).toEqual([['IDLE_CONTROL_ALERT', heldAt + alertMs]]);
    expect(woken.session.state).toBe('waiting');
    expect(woken.session.routing).toEqual({ agentId: 'alice', until: heldAt + alertMs + SETTINGS.idle.lastAgentMs });
    await advance(node, closeMs - 1);
    expect((await stored(node, 'd1')).session.state).toBe('waiting');
    await advance(node, 1);
    await advance(node, closeMs);
    const closed = await stored(node, 'd1');
    expect(closed.session.state).toBe('ended');
    expect(idleNotices(closed.events)).toEqual([
      ['IDLE_CONTROL_ALERT', heldAt + alertMs],
      ['IDLE_CONTROL_CLOSE', heldAt + alertMs + closeMs],
    ]);
  });

  it('nothing is sent for a chat that ended before its idle deadline', async () => {
    const node = startNode();
    await createChat(node, 'e1', { asyncMode: true, push: PUSH });
    await apply(node, 'e1', (s, now) => agentJoin(s, ALICE, now));
    clock.advance(MIN);
    await apply(node, 'e1', (s, now) => agentClose(s, 'alice', now));
    const before = (await stored(node, 'e1')).events.length;
    await advance(node, alertMs + closeMs + SETTINGS.flexPushMs);
    expect((await stored(node, 'e1')).events.length).toBe(before);
  });

  it('a customer message to a parked dormant chat wakes it and restarts the alert from the message', async () => {
    const node = startNode();
    await createChat(node, 'w1', { asyncMode: true, push: PUSH });
    await apply(node, 'w1', (s, now) => agentJoin(s, ALICE, now));
    await apply(node, 'w1', (s, now) => hold(s, 'alice', now));
    clock.advance(alertMs - MIN);
    const said = clock.now();
    await apply(node, 'w1', (s, now) => say(s, 1, 'Message', { text: 'any news?' }, now));
    await advance(node, MIN); // the hold's deadline
    expect(idleNotices((await stored(node, 'w1')).events)).toEqual([]);
    await advance(node, alertMs - MIN - 1);
    expect(idleNotices((await stored(node, 'w1')).events)).toEqual([]);
    await advance(node, 1);
    expect(idleNotices((await stored(node, 'w1')).events)).toEqual([['IDLE_CONTROL_ALERT', said + alertMs]]);
  });
});

describe('restart (checked, right)', () => {
  const { alertMs, closeMs } = SETTINGS.idle.async;

  it('a parked dormant chat whose alert and close both passed while the node was down: one alert at start, the close async-idle-close after it', async () => {
    let node = startNode();
    await createChat(node, 'r1', { asyncMode: true, push: PUSH });
    await apply(node, 'r1', (s, now) => agentJoin(s, ALICE, now));
    await apply(node, 'r1', (s, now) => hold(s, 'alice', now));
    node.timers.stop();
    await node.store.close();
    stores = stores.filter((s) => s !== node.store);
    clock.advance(alertMs + closeMs + 5 * MIN);
    const up = clock.now();
    node = startNode();
    await node.sessions.loadOpen('all', (s) => node.timers.track(s));
    expect(node.sessions.size).toBe(0); // parked at once
    await node.timers.tick();
    await node.timers.tick();
    expect(idleNotices((await stored(node, 'r1')).events)).toEqual([['IDLE_CONTROL_ALERT', up]]);
    await advance(node, closeMs);
    const { session, events } = await stored(node, 'r1');
    expect(session.state).toBe('ended');
    expect(idleNotices(events)).toEqual([
      ['IDLE_CONTROL_ALERT', up],
      ['IDLE_CONTROL_CLOSE', up + closeMs],
    ]);
  });

  it('two restarts in a row do not send the alert again', async () => {
    let node = startNode();
    await createChat(node, 'r2', { asyncMode: true, push: PUSH });
    await advance(node, alertMs);
    for (let i = 0; i < 2; i++) {
      node.timers.stop();
      await node.store.close();
      stores = stores.filter((s) => s !== node.store);
      clock.advance(MIN);
      node = startNode();
      await node.sessions.loadOpen('all', (s) => node.timers.track(s));
      await node.timers.tick();
    }
    expect(idleNotices((await stored(node, 'r2')).events)).toHaveLength(1);
  });
});

describe('ended chats and their leftover timer entries', () => {
  // Regression test (this was a bug, now fixed). Was: a chat that ended keeps its disconnect (and idle) entries in the due-time index; when such an entry
  // comes due, SessionTimers.fire (src/chat-server/session-timers.ts:108, `this.sessions.serial(chatId, ...)`)
  // loads the ended session again (LiveSessions.load, src/chat-server/live-sessions.ts:273, `this.live.set`)
  // with its whole transcript, and nothing ever removes it: every ended chat comes back into memory for good
  // (`sessions.all()` then walks them on every desk overview). The timer should drop entries of chats that
  // ended (it knows: changed() saw the end) instead of reloading them, and an ended chat must stay out of memory.
  it('an ended chat is not loaded back into memory when its old disconnect entry comes due', async () => {
    const node = startNode();
    const N = 20;
    for (let i = 0; i < N; i++) await createChat(node, `x${i}`);
    clock.advance(SEC);
    for (let i = 0; i < N; i++) await apply(node, `x${i}`, (s, now) => clientDisconnect(s, now));
    expect(node.sessions.size).toBe(0); // "An ended session leaves memory"
    await advance(node, SETTINGS.flexDisconnectMs);
    expect(node.sessions.size).toBe(0);
  });

  // Regression test (this was a bug, now fixed). Was: same cause, for the idle entry of an async chat closed by its agent: when the old alert deadline comes,
  // session-timers.ts:108 reloads the ended chat into memory (live-sessions.ts:273) and it stays there.
  it('an async chat closed by the agent is not loaded back into memory by its old idle entry', async () => {
    const node = startNode();
    for (let i = 0; i < 10; i++) {
      await createChat(node, `y${i}`, { asyncMode: true, push: PUSH });
      await apply(node, `y${i}`, (s, now) => agentJoin(s, ALICE, now));
      await apply(node, `y${i}`, (s, now) => agentClose(s, 'alice', now));
    }
    expect(node.sessions.size).toBe(0);
    await advance(node, SETTINGS.idle.async.alertMs);
    expect(node.sessions.size).toBe(0);
  });

  it('the timers themselves drop the entries of ended chats once they come due', async () => {
    const node = startNode();
    for (let i = 0; i < 20; i++) await createChat(node, `z${i}`);
    clock.advance(SEC);
    for (let i = 0; i < 20; i++) await apply(node, `z${i}`, (s, now) => clientDisconnect(s, now));
    await advance(node, SETTINGS.flexDisconnectMs);
    expect(node.timers.pending).toBe(0);
    expect(node.timers.heapSize).toBe(0);
  });
});

describe('flex-push-timeout vs flex-disconnect-timeout', () => {
  // Regression test (this was a bug, now fixed). Was: the disconnect entry is set once by track() with the timeout of that moment; requested() and a change
  // of the subscription never move it earlier (session-timers.ts:85-87 and :137-143 only re-derive when the old
  // entry comes due). With flex-push-timeout shorter than flex-disconnect-timeout (both 1..1728000 s, nothing
  // forbids it), a client whose subscription is acknowledged after the start keeps flex-disconnect-timeout:
  // here it is disconnected 45 s after its last request instead of 20 s. The entry should move when the
  // timeout that applies becomes shorter.
  it('a subscription acknowledged at the first request makes a shorter flex-push-timeout apply from that request', async () => {
    const node = startNode({ ...SETTINGS, flexDisconnectMs: 45 * SEC, flexPushMs: 20 * SEC });
    await createChat(node, 'p1', { push: { ...PUSH, active: false } });
    clock.advance(SEC);
    await apply(node, 'p1', (s, now) => activatePush(s, now)); // the first request acknowledges it
    node.timers.requested('p1');
    await advance(node, 20 * SEC - 1);
    expect((await stored(node, 'p1')).session.state).toBe('waiting');
    await advance(node, 1); // 20 s after the last request
    expect((await stored(node, 'p1')).session.state).toBe('ended');
  });

  it('the longer flex-push-timeout applies once the subscription is acknowledged (checked, right)', async () => {
    const node = startNode();
    await createChat(node, 'p2', { push: { ...PUSH, active: false } });
    clock.advance(SEC);
    await apply(node, 'p2', (s, now) => activatePush(s, now));
    node.timers.requested('p2');
    await advance(node, SETTINGS.flexPushMs - 1);
    expect((await stored(node, 'p2')).session.state).toBe('waiting');
    await advance(node, 1);
    expect((await stored(node, 'p2')).session.state).toBe('ended');
  });
});

describe('a session that moved to another node', () => {
  // Regression test (this was a bug, now fixed). Was: when another node restored the session (this one was thought dead), this node's timer gets NOT_OWNER
  // and SessionTimers.tick (src/chat-server/session-timers.ts:99-101) treats it like a store failure: it
  // re-schedules the same entry 5 s later, forever (a store read and a warning every 5 s per moved session and
  // timer kind, until the chat ends on its new owner). The owner runs that chat's timers; NOT_OWNER should
  // drop the entry.
  it('drops its timer entries after NOT_OWNER instead of retrying every 5 s', async () => {
    const log = warnCounter();
    const a = startNode(SETTINGS, '117', { isAlive: async () => true }, log);
    await createChat(a, 'm1', { asyncMode: true, push: PUSH });
    // Node 201 judges 117 dead and restores the chat.
    const b = startNode(SETTINGS, '201', { isAlive: async (owner) => owner === '201' });
    await b.sessions.get('m1');
    expect((await b.store.loadOwned('m1'))?.ownership.owner).toBe('201');

    await advance(a, SETTINGS.idle.async.alertMs);
    for (let i = 0; i < 12; i++) await advance(a, 5 * SEC);
    // 117 neither acts on the chat nor keeps trying: at most the one failed attempt.
    expect(idleNotices((await stored(a, 'm1')).events)).toEqual([]);
    expect(log.warns).toBeLessThanOrEqual(1);
    expect(a.timers.pending).toBe(1); // the disconnect entry, due in a day; no idle entry any more
  });
});
