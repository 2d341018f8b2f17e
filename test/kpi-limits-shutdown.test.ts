/**
 * The chat server's health/KPI document, /metrics, the admission limits (limit-for-sessions,
 * limit-for-flex-users, limits-restore-threshold, pending subscriptions, concurrent Request Chats) and the
 * planned-shutdown advice (shutdown-notify-flex-push), also after the session moved to another node.
 * Real nodes (buildChatNode) over real SQLite files in a temp dir, real HTTP on 127.0.0.1 port 0.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DeliveryOutcome, Notification } from '../src/chat/notification.ts';
import type { ChatNode } from '../src/chat-server/node.ts';
import { ManualClock } from '../src/clock.ts';
import { ParleyError } from '../src/errors.ts';
import { counterValue } from '../src/metrics.ts';
import type { Store } from '../src/store/port.ts';
import { AgentClient, ChatClient, getHealth, postForm, SERVICE, startTestServer, type TestServer } from './helpers.ts';
import { SharedFileNodes } from './support/shared-file-nodes.ts';

const PUSH_UD = (deviceId: string, extra: Record<string, string> = {}) => ({
  GCTI_Chat_PushSubscribe: 'true',
  GCTI_GMS_NodeGroup: 'group-1',
  GCTI_GMS_PushDeviceId: deviceId,
  GCTI_GMS_PushDeviceType: 'customhttp',
  ...extra,
});
const PUSH_INI = '[settings]\nflex-push-on-join = true\nflex-push-enabled = true\n';

let cluster: SharedFileNodes | undefined;
let alive = new Set<string>();
const servers: TestServer[] = [];

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
  for (const s of servers.splice(0)) await s.close();
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

/** A real node (manual clock, engines ticked by hand) over a SQLite file shared by every node of the test. */
async function makeNode(appDbid = '201', extraIni = '', clock = new ManualClock(), wrap?: (s: Store) => Store): Promise<ChatNode> {
  cluster ??= new SharedFileNodes();
  alive = cluster.alive;
  alive.add(appDbid);
  return cluster.node(appDbid, { extraIni, clock, random: () => 0, ...(wrap === undefined ? {} : { wrap }) });
}

const codeOf = (e: unknown) => (e instanceof ParleyError ? e.code : String(e));

describe('shutdown-notify-flex-push: the reconnect advice', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/node.ts:179 — notifyShutdown() walks only `sessions.all()`, the sessions held in
  // memory; a dormant (on hold) session is parked out of memory (live-sessions.ts park(), and every dormant
  // session is parked at start-up, live-sessions.ts:149) and gets no advice. docs/configuration.md (shutdown-notify-flex-push row) and
  // docs/deployment.md:133 say the advice goes to *every push-subscribed session*, the KPI counts it among
  // flex_users, and async chats (the ones that rely on the advice: no polling) are mostly dormant — exactly
  // the sessions the seed's HA section is about. Right: each open push-subscribed session of the node, parked
  // or not, gets the advice once.
  it('a dormant (parked) push-subscribed session gets the advice like an active one', async () => {
    const node = await makeNode('201', PUSH_INI);
    const gw = memoryGateway();
    node.registry.register(gw.node);
    const alice = node.agents.account('alice');
    const active = await node.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_UD('dev-active') });
    const held = await node.client.requestChat(SERVICE, { nickname: 'Bea', userData: PUSH_UD('dev-held', { GCTI_Chat_AsyncMode: 'true' }) });
    await node.agentOps.accept(alice, held.session.chatId);
    await node.agentOps.hold(alice, held.session.chatId);
    await node.push.tick();
    expect(node.sessions.counts()).toMatchObject({ open: 2, flex: 2, dormant: 1 });
    expect((await node.kpi.health()).flex_users).toBe(2);

    const sent = await node.notifyShutdown();
    const advised = gw.delivered.filter(isAdvice).map((n) => n.chatId);
    expect(advised.filter((c) => c === active.session.chatId)).toHaveLength(1);
    expect(advised.filter((c) => c === held.session.chatId)).toHaveLength(1);
    expect(sent).toBe(2);
  });

  it('sends exactly one advice per in-memory subscribed session, none to ended, unsubscribed or pending ones', async () => {
    const node = await makeNode('201', '[settings]\nflex-push-on-join = false\n');
    const gw = memoryGateway();
    node.registry.register(gw.node);
    const sub = await node.client.requestChat(SERVICE, { nickname: 'A', userData: PUSH_UD('d1') });
    // Acknowledged by its next request.
    await node.client.perform(sub.session.chatId, SERVICE, { secureKey: sub.session.secureKey }, { op: 'refresh' }, 'none');
    const pending = await node.client.requestChat(SERVICE, { nickname: 'B', userData: PUSH_UD('d2') });
    const plain = await node.client.requestChat(SERVICE, { nickname: 'C' });
    const ended = await node.client.requestChat(SERVICE, { nickname: 'D', userData: PUSH_UD('d4') });
    await node.client.perform(ended.session.chatId, SERVICE, { secureKey: ended.session.secureKey }, { op: 'refresh' }, 'none');
    await node.client.perform(ended.session.chatId, SERVICE, { secureKey: ended.session.secureKey }, { op: 'disconnect' }, 'none');
    await node.push.tick();
    const sent = await node.notifyShutdown();
    expect(sent).toBe(1);
    const advice = gw.delivered.filter(isAdvice);
    expect(advice.map((n) => n.chatId)).toEqual([sub.session.chatId]);
    expect(pending.session.chatId).not.toBe(plain.session.chatId);
    // The advice is the client's own ParticipantLeft at the last index, not a new transcript event.
    const ev = advice[0]?.events[0];
    expect(ev).toMatchObject({ type: 'ParticipantLeft', from: { participantId: 1 }, userData: { 'quit-reason-advice': 'reconnect' } });
    expect(advice[0]?.nextPosition).toBe((ev?.index ?? 0) + 1);
  });
});

describe('limits: what they count', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/limits.ts:24-39 (update() runs only inside admit()/state()) — the "limit reached" state is only re-evaluated when admit() or
  // state() is called (a Request Chat, or a GET /health). A node that reached limit-for-sessions through
  // creations (each admitted while the figure was still below the limit) and then dropped to a figure above
  // the restore threshold admits a new session, while the very same node refuses it if a monitoring probe
  // happened to GET /health while it was at the limit. limits.ts:2-5 and docs/deployment.md:140-143: once a
  // limit is reached, new sessions are refused until the figure drops below limits-restore-threshold percent
  // of the limit (Genesys: "the level which metric must drop below in order to restore the service"). Right:
  // refused in both cases (the full state follows the figure, not who looked at it).
  it('after reaching limit-for-sessions, a node at 50 % of it with threshold 40 refuses, whether or not /health was polled', async () => {
    const node = await makeNode('201', '[settings]\nlimit-for-sessions = 2\nlimits-restore-threshold = 40\n');
    const a = await node.client.requestChat(SERVICE, { nickname: 'A' });
    await node.client.requestChat(SERVICE, { nickname: 'B' });
    expect(node.sessions.counts().open).toBe(2); // the limit is reached
    await node.client.perform(a.session.chatId, SERVICE, { secureKey: a.session.secureKey }, { op: 'disconnect' }, 'none');
    expect(node.sessions.counts().open).toBe(1); // 50 %: not below 40 %
    const third = await node.client.requestChat(SERVICE, { nickname: 'C' }).then(
      () => 'admitted',
      (e: unknown) => codeOf(e),
    );
    expect(third).toBe('UNAVAILABLE');
  });

  it('the same traffic with a /health poll at the limit is refused (shows the observer effect of the bug above)', async () => {
    const node = await makeNode('201', '[settings]\nlimit-for-sessions = 2\nlimits-restore-threshold = 40\n');
    const a = await node.client.requestChat(SERVICE, { nickname: 'A' });
    await node.client.requestChat(SERVICE, { nickname: 'B' });
    expect(node.admission.state().sessionsFull).toBe(true); // what GET /health does
    await node.client.perform(a.session.chatId, SERVICE, { secureKey: a.session.secureKey }, { op: 'disconnect' }, 'none');
    const third = await node.client.requestChat(SERVICE, { nickname: 'C' }).then(
      () => 'admitted',
      (e: unknown) => codeOf(e),
    );
    expect(third).toBe('UNAVAILABLE');
  });

  // Regression test (this was a bug, now fixed). Was: src/chat-server/live-sessions.ts:275 (load throws NOT_OWNER) before :294 (unpark) — a dormant session parked out of
  // memory stays in `parked` when its load finds it owned by another live node (NOT_OWNER is thrown before
  // unpark). An in-memory session in the same situation is forgotten (lose() → evict(), live-sessions.ts:180),
  // but a parked one is counted forever in counts(): /health sessions.total/dormant/flex_users and the
  // admission figures of limit-for-sessions / limit-for-flex-users (limits.ts counts) include a session the node
  // no longer handles (docs/deployment.md:60: "one that moved is refused with NOT_OWNER and forgotten"). Right:
  // once the node learns that the parked session moved, it leaves the counts.
  it('a parked dormant session restored by another node leaves the old node\u2019s counts once it learns (NOT_OWNER)', async () => {
    const x = await makeNode('201', PUSH_INI);
    const y = await makeNode('202', PUSH_INI);
    const alice = x.agents.account('alice');
    const c = await x.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_UD('dev-1', { GCTI_Chat_AsyncMode: 'true' }) });
    const chatId = c.session.chatId;
    await x.agentOps.accept(alice, chatId);
    await x.agentOps.hold(alice, chatId);
    expect(x.sessions.counts()).toEqual({ open: 1, flex: 1, dormant: 1 });
    expect(x.sessions.size).toBe(0); // parked
    // x stalls; the client's refresh restores the session on y.
    alive.delete('201');
    await y.client.perform(chatId, SERVICE, { secureKey: c.session.secureKey }, { op: 'refresh' }, 'none');
    expect(y.sessions.counts()).toMatchObject({ open: 1, dormant: 1 });
    alive.add('201');
    // x touches it (an agent resume from x's desk, say): refused, it lives on y now.
    const late = await x.agentOps.accept(alice, chatId).then(
      () => 'ok',
      (e: unknown) => codeOf(e),
    );
    expect(late).toBe('NOT_OWNER');
    expect(x.sessions.counts()).toEqual({ open: 0, flex: 0, dormant: 0 });
  });

  it('in-memory session restored elsewhere: the old node drops it from its counts after NOT_OWNER (contrast to the parked case)', async () => {
    const x = await makeNode('201', PUSH_INI);
    const y = await makeNode('202', PUSH_INI);
    const alice = x.agents.account('alice');
    const c = await x.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_UD('dev-1') });
    const chatId = c.session.chatId;
    await x.agentOps.accept(alice, chatId);
    alive.delete('201');
    await y.client.perform(chatId, SERVICE, { secureKey: c.session.secureKey }, { op: 'refresh' }, 'none');
    alive.add('201');
    const late = await x.agentOps.send(alice, chatId, 'late').then(
      () => 'ok',
      (e: unknown) => codeOf(e),
    );
    expect(late).toBe('NOT_OWNER');
    expect(x.sessions.counts()).toEqual({ open: 0, flex: 0, dormant: 0 });
  });

  it('ended sessions leave the figures; dormant ones count as open; a refused creation stores and counts nothing', async () => {
    const node = await makeNode('201', `${PUSH_INI}limit-for-sessions = 3\nlimit-for-flex-users = 1\nlimits-restore-threshold = 80\n`);
    const alice = node.agents.account('alice');
    const f = await node.client.requestChat(SERVICE, { nickname: 'F', userData: PUSH_UD('d1', { GCTI_Chat_AsyncMode: 'true' }) });
    await node.agentOps.accept(alice, f.session.chatId);
    await node.agentOps.hold(alice, f.session.chatId);
    // flex figure 1 = limit: a subscribed Request Chat is refused, an unsubscribed one is not.
    const refused = await node.client.requestChat(SERVICE, { nickname: 'G', userData: PUSH_UD('d2') }).then(
      () => 'admitted',
      (e: unknown) => codeOf(e),
    );
    expect(refused).toBe('UNAVAILABLE');
    const stores0 = (cluster as SharedFileNodes).openStore();
    expect((await stores0.listOpenSessions()).length).toBe(1);
    expect(await counterValue(node.metrics.chatSessionsCreated)).toBe(1);
    const plain = await node.client.requestChat(SERVICE, { nickname: 'H' });
    await node.client.requestChat(SERVICE, { nickname: 'I' });
    // 3 open (one of them dormant and parked) = limit-for-sessions.
    expect(node.sessions.counts()).toEqual({ open: 3, flex: 1, dormant: 1 });
    expect(codeOf(await node.client.requestChat(SERVICE, { nickname: 'J' }).catch((e: unknown) => e))).toBe('UNAVAILABLE');
    expect((await stores0.listOpenSessions()).length).toBe(3);
    // An ended one leaves the figure: 2 < 80 % of 3 = 2.4, admitted again.
    await node.client.perform(plain.session.chatId, SERVICE, { secureKey: plain.session.secureKey }, { op: 'disconnect' }, 'none');
    expect(node.sessions.counts().open).toBe(2);
    await node.client.requestChat(SERVICE, { nickname: 'K' });
    expect(await counterValue(node.metrics.chatSessionsCreated)).toBe(4);
    const h = await node.kpi.health();
    expect(h.sessions).toEqual({ active: 2, dormant: 1, total: 3 });
    expect(h.flex_users).toBe(1);
  });
});

describe('KPI counters after real traffic', () => {
  it('sessions, messages by sender, push created/delivered/acked; a restart neither doubles nor replays them', async () => {
    const node = await makeNode('201', PUSH_INI);
    const gw = memoryGateway();
    node.registry.register(gw.node);
    const alice = node.agents.account('alice');
    const c = await node.client.requestChat(SERVICE, { nickname: 'Ann', userData: PUSH_UD('dev-1') });
    const id = { secureKey: c.session.secureKey };
    await node.agentOps.accept(alice, c.session.chatId);
    await node.client.perform(c.session.chatId, SERVICE, id, { op: 'send', message: 'one' }, 'none');
    await node.client.perform(c.session.chatId, SERVICE, id, { op: 'send', message: 'two' }, 'none');
    await node.agentOps.send(alice, c.session.chatId, 'hello');
    await node.push.tick();
    const m = node.metrics;
    expect(await counterValue(m.chatMessages, { from: 'Client' })).toBe(2);
    expect(await counterValue(m.chatMessages, { from: 'Agent' })).toBe(1);
    expect(await counterValue(m.chatSessionsCreated)).toBe(1);
    // Notifications: the agent joining and the agent message (the client's own events are not pushed to it).
    const h1 = await node.kpi.health();
    expect(h1.push.created).toBe(gw.delivered.length);
    expect(h1.push.delivered).toBe(gw.delivered.length);
    await node.client.perform(c.session.chatId, SERVICE, id, { op: 'refresh' }, 'none');
    const h2 = await node.kpi.health();
    expect(h2.app_dbid).toBe('201');
    expect(h2.process_os_pid).toBe(process.pid);
    expect(h2.sessions).toEqual({ active: 1, dormant: 0, total: 1 });
    expect(h2.flex_users).toBe(1);
    // Restart on the same store: the figures come back from the store, the counters start again at 0 and
    // nothing stored is replayed into them.
    await (cluster as SharedFileNodes).stop(node);
    const again = await makeNode('201', PUSH_INI);
    const h3 = await again.kpi.health();
    expect(h3.sessions).toEqual({ active: 1, dormant: 0, total: 1 });
    expect(h3.flex_users).toBe(1);
    expect(h3.push).toMatchObject({ created: 0, delivered: 0, failed: 0 });
    expect(await counterValue(again.metrics.chatMessages)).toBe(0);
    expect(await counterValue(again.metrics.chatSessionsCreated)).toBe(0);
  });
});

describe('HTTP: /health, /metrics and requests while shutting down (parley start)', () => {
  it('Request Chat over limit-for-sessions: 503, Chat API v2 error (statusCode 1, code 124), nothing stored', async () => {
    const srv = await startTestServer('', { PARLEY_SETTINGS_LIMIT_FOR_SESSIONS: '1' });
    servers.push(srv);
    const a = new ChatClient(srv.url);
    expect((await a.start()).body.statusCode).toBe(0);
    const b = await postForm(`${srv.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Bob' });
    expect(b.status).toBe(503);
    expect(b.body).toMatchObject({ statusCode: 1, chatEnded: false, messages: [], errors: [{ code: 124, advice: expect.any(String) }] });
    expect(b.body.secureKey).toBeUndefined();
    const h = await getHealth(srv.url);
    expect(h.sessions.total).toBe(1);
    expect(h.limits).toEqual({ sessionsFull: true, flexFull: false });
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toMatch(/^parley_chat_sessions_created_total 1$/m);
  });

  it('during a planned shutdown every Chat API request gets 503 statusCode 1 and changes nothing; /health says accepting=false', async () => {
    const srv = await startTestServer('');
    servers.push(srv);
    const c = new ChatClient(srv.url);
    await c.start();
    const before = await getHealth(srv.url);
    srv.running.app.accepting = false;
    const start = await postForm(`${srv.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Late' });
    expect(start.status).toBe(503);
    expect(start.body).toMatchObject({ statusCode: 1, chatEnded: false, messages: [], errors: [{ code: 124 }] });
    const send = await c.op('send', { message: 'during shutdown' });
    expect(send.status).toBe(503);
    expect(send.body).toMatchObject({ statusCode: 1, chatId: c.chatId, errors: [{ code: 124 }] });
    expect(send.body.secureKey).toBeUndefined();
    const h = await getHealth(srv.url);
    expect(h.accepting).toBe(false);
    expect(h.sessions).toEqual(before.sessions);
    srv.running.app.accepting = true;
    const r = await c.refresh();
    expect(r.body.messages.filter((m: { type: string }) => m.type === 'Message')).toEqual([]);
  });

  it('/health is 200 with the documented fields, /metrics lists the documented series', async () => {
    const srv = await startTestServer('');
    servers.push(srv);
    const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
    await alice.login();
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    await c.op('send', { message: 'hi' });
    await alice.send(c.chatId, 'hello');
    const h = await getHealth(srv.url);
    for (const k of ['status', 'app_dbid', 'process_os_pid', 'start_time', 'sessions', 'flex_users', 'messages_per_second', 'notifications_per_second', 'outbox_depth', 'store_latency_ms', 'push', 'role', 'accepting', 'gateway_nodes', 'limits']) {
      expect(h, k).toHaveProperty(k);
    }
    expect(h.app_dbid).toBe('117');
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    for (const s of ['parley_push_notifications_total', 'parley_push_attempts_total', 'parley_push_outbox_depth', 'parley_chat_sessions_created_total', 'parley_chat_messages_total']) {
      expect(text).toContain(s);
    }
    expect(text).toMatch(/^parley_chat_messages_total\{from="Client"\} 1$/m);
    expect(text).toMatch(/^parley_chat_messages_total\{from="Agent"\} 1$/m);
  });
});

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
