/**
 * The async chat lifecycle on a manual clock. Idle control after each kind of activity, timers
 * across restarts and messages, dormant chats (parking, wake-up, last agent, transfers, closing paths),
 * flex-disconnect/flex-push timeouts, and the KPI counts and agent queues after every closing path.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ChatClient, getHealth, postMultipart, type TestServer } from './helpers.ts';
import { startClockedServer } from './support/clocked-server.ts';
import type { Notification } from '../src/chat/notification.ts';
import type { ChatEvent } from '../src/chat/types.ts';

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

async function setup(env: Record<string, string> = {}) {
  const started = await startClockedServer(env, 1_700_000_000_000);
  srv = started.srv;
  return started;
}

async function asyncChat(base: string, nickname = 'Ann', extra: Record<string, string> = {}) {
  const c = new ChatClient(base);
  const r = await c.start({ nickname, subject: 'Async', 'userData[GCTI_Chat_AsyncMode]': 'true', ...extra });
  expect(r.body.statusCode).toBe(0);
  return c;
}

const PUSH_FIELDS = {
  'userData[GCTI_Chat_PushSubscribe]': 'true',
  'userData[GCTI_GMS_NodeGroup]': 'gms-cluster',
  'userData[GCTI_GMS_PushDeviceId]': 'http://127.0.0.1:9/push',
  'userData[GCTI_GMS_PushDeviceType]': 'customhttp',
};

const ids = (list: Array<{ chatId: string }>) => list.map((x) => x.chatId);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const all = async (c: ChatClient): Promise<any> => (await c.op('refresh', { transcriptPosition: 1 })).body;
const idle = (msgs: Array<{ messageType?: string }>) => msgs.map((m) => m.messageType).filter((t) => t?.startsWith('IDLE_CONTROL') === true);

async function counts(base: string) {
  const h = await getHealth(base);
  return { ...h.sessions, flex: h.flex_users };
}

describe('async idle control after each kind of activity (checked)', () => {
  it('agent typing does not reset the async alert under major; agent typing does under typing', async () => {
    for (const [filter, resets] of [['major', false], ['typing', true]] as const) {
      const { srv: s, alice, tick } = await setup({ PARLEY_SETTINGS_ASYNC_IDLE_ALERT: '100', PARLEY_SETTINGS_ASYNC_IDLE_NOTICES: filter });
      const c = await asyncChat(s.url);
      await alice.accept(c.chatId);
      await tick(60 * SEC);
      expect((await alice.typing(c.chatId, true)).status).toBe(200);
      await tick(40 * SEC);
      expect(idle((await all(c)).messages), filter).toEqual(resets ? [] : ['IDLE_CONTROL_ALERT']);
      if (resets) {
        await tick(60 * SEC - 1);
        expect(idle((await all(c)).messages)).toEqual([]);
        await tick(1);
        expect(idle((await all(c)).messages)).toEqual(['IDLE_CONTROL_ALERT']);
      }
      await s.close();
      srv = undefined;
    }
  });

  it('a customer file delete during the close period stops the close under major; the next alert comes a full period later', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_SETTINGS_ASYNC_IDLE_ALERT: '100', PARLEY_SETTINGS_ASYNC_IDLE_CLOSE: '50' });
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    const up = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, c.ids(), { name: 'r.txt', type: 'text/plain', bytes: new TextEncoder().encode('x') });
    const fileId = up.body.userData['file-id'] as string;
    await tick(100 * SEC);
    expect(idle((await all(c)).messages)).toEqual(['IDLE_CONTROL_ALERT']);
    await tick(20 * SEC);
    expect((await c.op(`file/${fileId}/delete`)).body.statusCode).toBe(0);
    await tick(30 * SEC); // the original close time
    expect((await all(c)).chatEnded).toBe(false);
    await tick(70 * SEC - 1);
    expect(idle((await all(c)).messages)).toEqual(['IDLE_CONTROL_ALERT']);
    await tick(1);
    expect(idle((await all(c)).messages)).toEqual(['IDLE_CONTROL_ALERT', 'IDLE_CONTROL_ALERT']);
    await tick(50 * SEC);
    const end = await all(c);
    expect(end.chatEnded).toBe(true);
    expect(idle(end.messages)).toEqual(['IDLE_CONTROL_ALERT', 'IDLE_CONTROL_ALERT', 'IDLE_CONTROL_CLOSE']);
  });

  it('after a restart, the alert runs from the last message even though message-only changes do not rewrite the stored document', async () => {
    const { srv, alice, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await tick(10 * HOUR);
    await alice.send(c.chatId, 'still looking');
    await tick(2 * HOUR);
    await c.op('send', { message: 'thanks' });
    await tick(HOUR);
    await srv.restart();
    await alice.login();
    await tick(23 * HOUR - 1);
    expect(idle((await all(c)).messages)).toEqual([]);
    await tick(1);
    expect(idle((await all(c)).messages)).toEqual(['IDLE_CONTROL_ALERT']);
    await tick(HOUR);
    expect((await all(c)).chatEnded).toBe(true);
  });

  it('regular chat: a restart between alert and alert2 keeps alert2 and the close on their original deadlines', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_INACTIVITY_CONTROL_ENABLED: 'true', PARLEY_INACTIVITY_CONTROL_TIMEOUT_ALERT2: '30' });
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    await tick(100 * SEC);
    await c.op('send', { message: 'hello?' }); // message-only change: the stored document lags
    await tick(255 * SEC);
    await tick(10 * SEC);
    await srv.restart();
    await tick(20 * SEC - 1);
    expect(idle((await all(c)).messages)).toEqual(['IDLE_CONTROL_ALERT']);
    await tick(1);
    expect(idle((await all(c)).messages)).toEqual(['IDLE_CONTROL_ALERT', 'IDLE_CONTROL_ALERT']);
    await tick(45 * SEC - 1);
    expect((await all(c)).chatEnded).toBe(false);
    await tick(1);
    const end = await all(c);
    expect(end.chatEnded).toBe(true);
    expect(end.messages.filter((m: { messageType?: string }) => m.messageType !== undefined).map((m: { text: string }) => m.text)).toEqual([
      'Chat session will be closed soon due to inactivity of chat participants.',
      'Chat session will be closed very soon due to inactivity of chat participants.',
      'Chat session closed due to inactivity of chat participants.',
    ]);
  });
});

describe('dormant chats: parking, wake-up and the last agent (checked)', () => {
  it('a wake-up while the last agent is at capacity: only that agent for last-agent-timeout (refused for capacity), then anyone', async () => {
    const { srv, alice, bob, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    const x = await asyncChat(srv.url, 'X');
    const y = await asyncChat(srv.url, 'Y');
    expect((await alice.accept(x.chatId)).status).toBe(200);
    expect((await alice.accept(y.chatId)).status).toBe(200); // alice at max-chats 2
    await c.op('send', { message: 'news?' });
    expect(ids((await alice.overview()).body.waiting)).toEqual([c.chatId]);
    const full = await alice.accept(c.chatId);
    expect([full.status, full.body.error.code]).toEqual([409, 'AGENT_CAPACITY']);
    expect((await bob.accept(c.chatId)).status).toBe(409);
    await tick(600 * SEC);
    expect(ids((await bob.overview()).body.waiting)).toEqual([c.chatId]);
    expect((await bob.accept(c.chatId)).status).toBe(200);
    expect(await counts(srv.url)).toMatchObject({ active: 3, dormant: 0, total: 3 });
  });

  // Before agent presence this chat waited last-agent-timeout for the signed-out agent; now nobody waits for
  // an agent who is not online.
  it('a wake-up while the last agent is signed out: offered to anyone at once', async () => {
    const { srv, alice, bob } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await alice.call('POST', 'logout');
    await c.op('send', { message: 'news?' });
    expect(ids((await bob.overview()).body.waiting)).toEqual([c.chatId]);
    expect((await bob.accept(c.chatId)).status).toBe(200);
  });

  it('a transfer to a busy agent: the target is refused for capacity, the sender cannot take it back, then anyone after the timeout', async () => {
    const { srv, alice, bob, tick } = await setup();
    const busy = await asyncChat(srv.url, 'Busy');
    expect((await bob.accept(busy.chatId)).status).toBe(200); // bob at max-chats 1
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    const t = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' });
    expect(t.body.chat).toMatchObject({ state: 'waiting', routedTo: 'bob' });
    expect(ids((await bob.overview()).body.waiting)).toEqual([c.chatId]);
    expect((await bob.accept(c.chatId)).body.error.code).toBe('AGENT_CAPACITY');
    expect((await alice.accept(c.chatId)).body.error.code).toBe('CHAT_ALREADY_TAKEN');
    await tick(600 * SEC);
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expect((await alice.call('GET', 'agents')).body.agents.map((a: { activeChats: number }) => a.activeChats)).toEqual([1, 1]);
  });

  it('a parked dormant chat costs no memory, only timer entries; its idle alert still fires on time', async () => {
    const { srv, alice, tick } = await setup();
    const app = srv.running.app;
    const chats: ChatClient[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await asyncChat(srv.url, `C${i}`);
      await alice.accept(c.chatId);
      await alice.call('POST', `chats/${c.chatId}/hold`, {});
      chats.push(c);
    }
    expect(app.sessions.size).toBe(0);
    expect(await counts(srv.url)).toMatchObject({ active: 0, dormant: 5, total: 5 });
    expect(app.timers.pending).toBeLessThanOrEqual(10); // idle + disconnect per chat
    await tick(24 * HOUR);
    expect(await counts(srv.url)).toMatchObject({ active: 5, dormant: 0, total: 5 });
    for (const c of chats) expect(idle((await all(c)).messages)).toEqual(['IDLE_CONTROL_ALERT']);
  });
});

describe('closing paths: KPI counts and the agent queues (checked)', () => {
  it('the customer leaving a dormant (parked) chat: ended, out of the workbin, counts right', async () => {
    const { srv, alice } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    expect(await counts(srv.url)).toMatchObject({ active: 0, dormant: 1, total: 1 });
    const r = await c.op('disconnect');
    expect(r.body.chatEnded).toBe(true);
    expect(await counts(srv.url)).toMatchObject({ active: 0, dormant: 0, total: 0 });
    const ov = (await alice.overview()).body;
    expect([ids(ov.workbin), ids(ov.waiting), ids(ov.mine)]).toEqual([[], [], []]);
    expect(srv.running.app.sessions.size).toBe(0);
    // Nothing of it comes back later: no timer re-opens or re-counts it.
    await srv.running.app.timers.tick();
    expect(await counts(srv.url)).toMatchObject({ total: 0 });
  });

  it('the flex disconnect of a parked dormant chat ends it and counts right', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45' });
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await tick(45 * SEC);
    expect(await counts(srv.url)).toMatchObject({ active: 0, dormant: 0, total: 0 });
    expect(ids((await alice.overview()).body.workbin)).toEqual([]);
    const r = await all(c);
    expect(r.chatEnded).toBe(true);
    expect(r.messages.at(-1)).toMatchObject({ type: 'ParticipantLeft', from: { participantId: 1 } });
  });

  it('the async idle close of a chat woken by the alert: queue empty, counts zero, push carries notice + leaving with chatEnded', async () => {
    const { srv, alice, bob, tick } = await setup({ PARLEY_SETTINGS_FLEX_PUSH_ON_JOIN: 'true' });
    const outbox: Notification[] = [];
    srv.running.app.sessions.subscribe((_s, _e, o) => outbox.push(...o));
    const c = await asyncChat(srv.url, 'Ann', { ...PUSH_FIELDS, 'userData[GCTI_GMS_NotifyRequestor]': 'true' });
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    expect(await counts(srv.url)).toMatchObject({ dormant: 1, total: 1, flex: 1 });
    outbox.length = 0;
    await tick(24 * HOUR);
    expect(await counts(srv.url)).toMatchObject({ active: 1, dormant: 0, total: 1, flex: 1 });
    expect(outbox.map((n) => n.events.map((e) => e.messageType ?? e.type))).toEqual([['IDLE_CONTROL_ALERT']]);
    expect(outbox[0]?.chatEnded).toBe(false);
    outbox.length = 0;
    await tick(HOUR);
    expect(await counts(srv.url)).toMatchObject({ active: 0, dormant: 0, total: 0, flex: 0 });
    expect(outbox).toHaveLength(1);
    expect(outbox[0]?.events.map((e: ChatEvent) => e.messageType ?? `${e.type}:${e.from.participantId}`)).toEqual(['IDLE_CONTROL_CLOSE', 'ParticipantLeft:1']);
    expect(outbox[0]?.chatEnded).toBe(true);
    for (const a of [alice, bob]) {
      const ov = (await a.overview()).body;
      expect([ids(ov.workbin), ids(ov.waiting), ids(ov.mine)]).toEqual([[], [], []]);
    }
  });

  it('the async idle close of an active chat frees the agent: activeChats 0, mine empty, counts zero', async () => {
    const { srv, bob, tick } = await setup();
    const c = await asyncChat(srv.url);
    await bob.accept(c.chatId);
    await tick(25 * HOUR);
    await tick(0);
    // a single jump past both deadlines gives the alert now and the close async-idle-close later
    expect((await all(c)).chatEnded).toBe(false);
    await tick(HOUR);
    const end = await all(c);
    expect(end.chatEnded).toBe(true);
    expect(end.messages.slice(-3).map((m: { type: string; messageType?: string; from: { participantId: number } }) => m.messageType ?? `${m.type}:${m.from.participantId}`)).toEqual([
      'IDLE_CONTROL_CLOSE',
      'ParticipantLeft:2',
      'ParticipantLeft:1',
    ]);
    expect(await counts(srv.url)).toMatchObject({ active: 0, dormant: 0, total: 0 });
    expect((await bob.call('GET', 'agents')).body.agents.find((a: { agentId: string }) => a.agentId === 'bob').activeChats).toBe(0);
    const next = await asyncChat(srv.url, 'Next');
    expect((await bob.accept(next.chatId)).status).toBe(200);
  });

  it('a dormant chat is closed by resuming it and closing it; counts and workbin right', async () => {
    const { srv, alice } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    const direct = await alice.close(c.chatId);
    expect(direct.status).toBe(403); // not in the chat while it sleeps
    expect((await alice.call('POST', `chats/${c.chatId}/resume`, {})).status).toBe(200);
    expect((await alice.close(c.chatId)).status).toBe(200);
    expect(await counts(srv.url)).toMatchObject({ active: 0, dormant: 0, total: 0 });
    expect(ids((await alice.overview()).body.workbin)).toEqual([]);
    expect((await all(c)).chatEnded).toBe(true);
  });
});

describe('memory of dormant chats', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/agent-ops.ts:156 reads the chat with `this.sessions.get(chatId)` outside `serial`;
  // LiveSessions.load (src/chat-server/live-sessions.ts:293) puts it in memory and only the tail of `serial`
  // (src/chat-server/live-sessions.ts:313) parks a dormant session again. Contradicts live-sessions.ts ("Dormant
  // sessions of this node that are not held in memory (a million of them must fit)") and agent-ops.ts overview
  // ("dormant chats are parked"): every dormant chat an agent opens from the contact history (GET chats/{id},
  // its files, a desk `sync` frame) stays in memory with its whole transcript until its next timer or request.
  // Right: a dormant chat read for the history is parked again (or read without being held).
  it('reading a dormant chat from the contact history does not keep it in memory', async () => {
    const { srv, alice, bob } = await setup();
    const app = srv.running.app;
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.send(c.chatId, 'I will check');
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    expect(app.sessions.size).toBe(0);
    const r = await bob.call('GET', `chats/${c.chatId}`);
    expect(r.status).toBe(200);
    expect(r.body.chat.state).toBe('dormant');
    expect(app.sessions.size).toBe(0);
  });
});

describe('flex timeouts', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/client-ops.ts:176/244 tells the timers about the request (`requested`) BEFORE the
  // Update Data is applied, so the disconnect check is set from the session without push (flex-disconnect-
  // timeout); the subscription then committed (client-ops.ts:213, acknowledged at once) has no events, so
  // src/chat-server/node.ts:131 does not call `timers.changed`, and `changed` never re-derives the disconnect
  // deadline anyway (src/chat-server/session-timers.ts:75-84). Contradicts docs/lifecycle.md: "A request that
  // acknowledges a push subscription switches it to flex-push-timeout at once, also when that is the shorter
  // one." Right: disconnected flex-push-timeout (10 s) after the request; observed: 45 s.
  it('a push subscription made by Update Data switches the client to flex-push-timeout at once, also when shorter', async () => {
    const { srv, tick } = await setup({ PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45', PARLEY_SETTINGS_FLEX_PUSH_TIMEOUT: '10' });
    const c = await asyncChat(srv.url);
    const sub: Record<string, string> = {};
    for (const [k, v] of Object.entries(PUSH_FIELDS)) sub[k] = v;
    const r = await c.op('updateData', sub);
    expect(r.body.statusCode).toBe(0);
    expect(srv.running.app.sessions.peek(c.chatId)?.push?.active).toBe(true);
    await tick(10 * SEC);
    const open = srv.running.app.sessions.counts().open;
    await tick(35 * SEC);
    // (it does go at 45 s, flex-disconnect-timeout)
    expect({ at10s: open, at45s: srv.running.app.sessions.counts().open }).toEqual({ at10s: 0, at45s: 0 });
  });
});

describe('push subscription and the first request', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/client-ops.ts:271 captures `const s = entry.session` before `touch` (line 280), which
  // commits the push acknowledgement (activatePush); line 293 then builds the upload from the OLD `s`
  // (core.addFile(s, ...)) and commits it, silently turning `push.active` back to false. With
  // flex-push-on-join=false (the default) and an upload as the client's first request: no push notifications
  // (the agent's reply is not pushed), flex_users drops, and the client is disconnected after
  // flex-disconnect-timeout instead of flex-push-timeout. Contradicts docs/lifecycle.md ("A request that
  // acknowledges a push subscription switches it to flex-push-timeout") and flex-push-on-join ("otherwise at
  // the first request after it"). Right: the subscription stays acknowledged.
  it('a file upload as the first request after Request Chat acknowledges the push subscription for good', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45', PARLEY_SETTINGS_FLEX_PUSH_TIMEOUT: '600' });
    const outbox: Notification[] = [];
    srv.running.app.sessions.subscribe((_s, _e, o) => outbox.push(...o));
    const c = await asyncChat(srv.url, 'Pia', PUSH_FIELDS);
    expect(srv.running.app.sessions.peek(c.chatId)?.push?.active).toBe(false);
    const up = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, c.ids(), { name: 'r.txt', type: 'text/plain', bytes: new TextEncoder().encode('x') });
    expect(up.body.statusCode).toBe(0);
    const afterUpload = {
      active: srv.running.app.sessions.peek(c.chatId)?.push?.active,
      flex: srv.running.app.sessions.counts().flex,
    };
    await alice.accept(c.chatId);
    await alice.send(c.chatId, 'Got your file.');
    await tick(45 * SEC);
    expect({
      afterUpload,
      pushedAgentMessage: outbox.some((n) => n.events.some((e) => e.text === 'Got your file.')),
      openAfter45s: srv.running.app.sessions.counts().open,
    }).toEqual({ afterUpload: { active: true, flex: 1 }, pushedAgentMessage: true, openAfter45s: 1 });
  });
});

describe('restart: counts and queues', () => {
  it('a restart keeps the open/dormant/flex counts and every agent list as they were', async () => {
    const { srv, alice, bob, tick } = await setup({ PARLEY_SETTINGS_FLEX_PUSH_ON_JOIN: 'true' });
    const d1 = await asyncChat(srv.url, 'D1', PUSH_FIELDS);
    const d2 = await asyncChat(srv.url, 'D2');
    const act = await asyncChat(srv.url, 'Act');
    const woken = await asyncChat(srv.url, 'Woken');
    const queued = await asyncChat(srv.url, 'Queued');
    for (const c of [d1, d2, woken]) {
      await alice.accept(c.chatId);
      await alice.call('POST', `chats/${c.chatId}/hold`, {});
    }
    await bob.accept(act.chatId);
    await woken.op('send', { message: 'hello again' });
    await tick(MIN);
    const before = await counts(srv.url);
    expect(before).toMatchObject({ active: 3, dormant: 2, total: 5, flex: 1 });
    const lists = async () => {
      const a = (await alice.overview()).body;
      const b = (await bob.overview()).body;
      return { aw: ids(a.waiting).sort(), awb: ids(a.workbin).sort(), am: ids(a.mine), bw: ids(b.waiting), bm: ids(b.mine) };
    };
    const l1 = await lists();
    expect(l1).toEqual({ aw: [woken.chatId, queued.chatId].sort(), awb: [d1.chatId, d2.chatId].sort(), am: [], bw: [queued.chatId], bm: [act.chatId] });
    await srv.restart();
    await alice.login();
    await bob.login();
    expect(await counts(srv.url)).toEqual(before);
    expect(await lists()).toEqual(l1);
    expect(srv.running.app.sessions.size).toBe(3);
  });
});

describe('last-agent-timeout = 0', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat/routing.ts:56 routes a transfer for `Math.max(timeoutMs, 1)`: with
  // [routing] last-agent-timeout = 0 the chat is still offered only to the target for 1 ms, the other desks get
  // a `chat` frame with offered=false and the "anyone" announcement only at the next timer tick (up to 250 ms).
  // Contradicts docs/configuration.md:160 ("0 = anyone at once"); wake() (routing.ts:34) gets it right.
  // Right: with 0, no routing at all (offered to everyone at once).
  it('a transfer with last-agent-timeout 0 goes to anyone at once (option text: "0 = anyone at once")', async () => {
    const { srv, bob } = await setup({ PARLEY_ROUTING_LAST_AGENT_TIMEOUT: '0' });
    const c = await asyncChat(srv.url);
    await bob.accept(c.chatId);
    const t = await bob.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'alice' });
    expect(t.status).toBe(200);
    // bob handed it on; with no last-agent window he may take it back at once like anyone else
    expect(ids((await bob.overview()).body.waiting)).toEqual([c.chatId]);
  });

  it('a woken chat with last-agent-timeout 0 goes to anyone at once', async () => {
    const { srv, alice, bob } = await setup({ PARLEY_ROUTING_LAST_AGENT_TIMEOUT: '0' });
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await c.op('send', { message: 'hi' });
    expect(ids((await bob.overview()).body.waiting)).toEqual([c.chatId]);
  });
});

describe('empty idle messages', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat/idle-control.ts:75-92 (applyIdleAction) always appends the IDLE_CONTROL_ALERT / _CLOSE
  // notice with the configured text, also an empty one, and it is pushed to the customer. The Genesys
  // [inactivity-control] option texts (message-alert, message-alert2, message-close; docs.genesys.com
  // Options/ES/ChatServer-inactivity-control) say: "If an empty string is specified, no message is sent."
  // Right: no notice in the transcript for an empty message; the timers still run (close timeout-close later).
  it('message-alert set to an empty string sends no alert message; the close still comes timeout-close later', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_INACTIVITY_CONTROL_ENABLED: 'true', PARLEY_INACTIVITY_CONTROL_MESSAGE_ALERT: '' });
    expect(srv.config.inactivity.messageAlert).toBe('');
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    await tick(255 * SEC);
    const afterAlert = (await all(c)).messages.filter((m: { type: string }) => m.type === 'Notice');
    await tick(45 * SEC);
    const end = await all(c);
    expect({ afterAlert, ended: end.chatEnded }).toEqual({ afterAlert: [], ended: true });
  });
});


describe('what the customer is pushed along the dormant lifecycle (checked)', () => {
  it('hold: the agent leaving; the own wake-up message: nothing; resume: the agent joining; alert: the notice', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_SETTINGS_FLEX_PUSH_ON_JOIN: 'true' });
    const outbox: Notification[] = [];
    srv.running.app.sessions.subscribe((_s, _e, o) => outbox.push(...o));
    const c = await asyncChat(srv.url, 'Pia', PUSH_FIELDS);
    await alice.accept(c.chatId);
    const seen = () => outbox.splice(0).map((n) => n.events.map((e) => e.messageType ?? `${e.type}:${e.from.participantId}`));
    expect(seen()).toEqual([['ParticipantJoined:2']]);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    expect(seen()).toEqual([['ParticipantLeft:2']]);
    await c.op('send', { message: 'any news?' });
    expect(seen()).toEqual([]);
    expect((await alice.call('POST', `chats/${c.chatId}/resume`, {})).status).toBe(200);
    expect(seen()).toEqual([['ParticipantJoined:3']]);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    seen();
    await tick(24 * HOUR);
    expect(seen()).toEqual([['IDLE_CONTROL_ALERT']]);
  });
});
