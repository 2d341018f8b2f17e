/**
 * The notification receiver end to end (the seeds' notification-receiver-app + custom-chat-app): real HTTP,
 * real browser WebSockets (`ws`), the gateway's real customhttp POSTs to /receiver/push, manual clocks.
 *
 * In-process cases run `parley start` with the receiver mounted at /receiver/* and `[push] customhttp.url`
 * pointing at its own /receiver/push; nothing ticks by itself (the node's push engine `tick()`, `receiver.tick()`).
 * The HA cases run the chat server as a real child process (new pid on restart) and the receiver here.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChatEvent } from '../src/chat/types.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { signWebhook } from '../src/push/signing.ts';
import { createReceiverRole, type ReceiverRole } from '../src/roles/receiver-role.ts';
import { AgentClient, BASE_INI, getHealth, memoryLogger } from './helpers.ts';
import { pushIni } from './receiver-fixture.ts';
import {
  agentMessage,
  Browser,
  cachedByToken,
  freePort,
  killChild,
  metric,
  mountReceiver,
  postPush,
  readCache,
  sleep,
  startChild,
  startInProcess,
  waitUntil,
  type InProcess,
} from './receiver-helpers.ts';

const ATTEMPTS_DELIVERED = 'parley_push_attempts_total{result="delivered"}';

/** Everything a test opened, closed after it whatever happened. */
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c();
    } catch {
      /* best effort */
    }
  }
});

async function inProcess(env: Record<string, string> = {}, opts: { random?: () => number } = {}): Promise<InProcess> {
  const p = await startInProcess(env, opts);
  cleanups.push(() => p.srv.close());
  return p;
}

async function browser(base: string): Promise<Browser> {
  const b = await Browser.open(base);
  cleanups.push(() => b.close());
  return b;
}

async function alice(base: string): Promise<AgentClient> {
  const a = new AgentClient(base, 'alice', 'alice-secret');
  await a.login();
  return a;
}

/** Indices strictly increasing by one: in order, no duplicate, no gap. */
function expectContiguous(events: readonly ChatEvent[], from = 1): void {
  expect(events.map((e) => e.index)).toEqual(events.map((_, i) => from + i));
}

const ackedAtLeast = (base: string, n: number) => waitUntil(async () => (await getHealth(base)).push.acked >= n, `push.acked >= ${n}`);

describe('receiver: push → browser → acknowledgement (in process, manual clock)', () => {
  it('delivers the agent events to the browser in order, exactly once, acknowledges them and no resend follows', async () => {
    const p = await inProcess();
    const b = await browser(p.url);
    const { chatId } = await b.start();
    const agent = await alice(p.url);
    expect((await agent.accept(chatId)).status).toBe(200);
    await p.tickPush();
    await b.waitForEvent((e) => e.type === 'ParticipantJoined' && e.from.type === 'Agent', 'the agent joined');
    await ackedAtLeast(p.url, 1);

    // Two notifications POSTed concurrently: the browser still sees them in index order.
    expect((await agent.send(chatId, 'Hello from Alice')).status).toBe(200);
    expect((await agent.send(chatId, 'How can I help?')).status).toBe(200);
    await p.tickPush();
    await b.waitForEvent((e) => e.text === 'How can I help?', 'the second agent message');
    await ackedAtLeast(p.url, 3);

    expect(b.log()).toEqual(['1:ParticipantJoined', '2:ParticipantJoined', '3:Message:Hello from Alice', '4:Message:How can I help?']);
    expect(b.events()[1]?.from).toMatchObject({ type: 'Agent', nickname: 'Alice' });
    const health = await getHealth(p.url);
    expect(health.push).toMatchObject({ outbox_depth: 0, acked: 3, failed: 0 });
    const posts = await metric(p.url, ATTEMPTS_DELIVERED);
    expect(posts).toBe(3);

    // Acknowledged: nothing is resent after one or two resend delays (15 s).
    const frames = b.frames.length;
    p.clock.advance(15_000);
    await p.tickPush();
    p.clock.advance(15_000);
    await p.tickPush();
    await sleep(100);
    expect(await metric(p.url, ATTEMPTS_DELIVERED)).toBe(posts);
    expect(b.frames).toHaveLength(frames);
    expectContiguous(b.events());
  });

  it('shows the browser its own messages (send frame → events frame with its Message)', async () => {
    const p = await inProcess();
    const b = await browser(p.url);
    const { chatId } = await b.start();
    b.send({ type: 'send', text: 'Where is my order?' });
    const own = (await b.next('events')) as unknown as { events: ChatEvent[]; nextPosition: number };
    expect(own.events).toEqual([expect.objectContaining({ index: 2, type: 'Message', text: 'Where is my order?', from: expect.objectContaining({ participantId: 1, type: 'Client' }) })]);
    expect(own.nextPosition).toBe(3);

    // With an agent in the chat, the reply to the next send carries the agent's unseen events first.
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await agent.send(chatId, 'Let me check');
    b.send({ type: 'send', text: 'Thanks' });
    await b.waitForEvent((e) => e.text === 'Thanks', 'own second message');
    expect(b.log()).toEqual(['1:ParticipantJoined', '2:Message:Where is my order?', '3:ParticipantJoined', '4:Message:Let me check', '5:Message:Thanks']);
    // The pushes of those agent events, arriving afterwards, show nothing twice.
    await p.tickPush();
    await ackedAtLeast(p.url, 2);
    await sleep(100);
    expectContiguous(b.events());
  });

  it('a browser away gets exactly the missed events on resume, and a reload with the same token continues the chat', async () => {
    const p = await inProcess();
    const first = await browser(p.url);
    const { token, chatId } = await first.start();
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await p.tickPush();
    await first.waitForEvent((e) => e.index === 2, 'agent joined');
    const from = first.position();
    expect(from).toBe(3);
    await first.close();

    await agent.send(chatId, 'Are you there?');
    await agent.send(chatId, 'I will wait');
    await p.tickPush(); // the pushes arrive while no browser is connected
    await ackedAtLeast(p.url, 3);

    const back = await browser(p.url);
    back.send({ type: 'resume', token, from });
    expect(await back.next('started')).toMatchObject({ token, chatId, resumed: true });
    const missed = (await back.next('events')) as unknown as { events: ChatEvent[]; nextPosition: number };
    expect(missed.events.map((e) => `${e.index}:${e.text}`)).toEqual(['3:Are you there?', '4:I will wait']);
    expect(missed.nextPosition).toBe(5);

    // A reload: a third tab with the same token continues (sends, and gets the agent's next push).
    await back.close();
    const reload = await browser(p.url);
    reload.send({ type: 'resume', token, from: 5 });
    await reload.next('started');
    expect(((await reload.next('events')) as unknown as { events: ChatEvent[] }).events).toEqual([]);
    reload.send({ type: 'send', text: 'Back again' });
    await reload.waitForEvent((e) => e.text === 'Back again', 'own message after reload');
    await agent.send(chatId, 'Welcome back');
    await p.tickPush();
    await reload.waitForEvent((e) => e.text === 'Welcome back', 'agent message after reload');
    expect(reload.log()).toEqual(['5:Message:Back again', '6:Message:Welcome back']);
  });

  // Regression: found by this suite and fixed.
  it('a browser that resumes before the missed pushes arrived does not get those events twice', async () => {
    const p = await inProcess();
    const first = await browser(p.url);
    const { token, chatId } = await first.start();
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await p.tickPush();
    await first.waitForEvent((e) => e.index === 2, 'agent joined');
    await ackedAtLeast(p.url, 1);
    const from = first.position();
    await first.close();

    await agent.send(chatId, 'Are you there?'); // its push is not POSTed yet (the engine has not ticked)
    const back = await browser(p.url);
    back.send({ type: 'resume', token, from });
    await back.next('started');
    await back.waitForEvent((e) => e.text === 'Are you there?', 'missed message');
    back.send({ type: 'send', text: 'Yes' });
    await back.waitForEvent((e) => e.text === 'Yes', 'own message');
    await sleep(100);
    // Actual: ['3:Message:Are you there?', '3:Message:Are you there?', '4:Message:Yes'].
    expect(back.log()).toEqual(['3:Message:Are you there?', '4:Message:Yes']);
  });
});

describe('receiver: the rare ping (never short polling)', () => {
  it('catches a push that never arrived at the next ping refresh', async () => {
    // No gateway node in the group: notifications are parked, nothing is POSTed.
    const p = await inProcess({ PARLEY_CHAT_ENABLE_NOTIFICATION_MODE: 'false', PARLEY_RECEIVER_PING_INTERVAL: '60' }, { random: () => 0.25 });
    const b = await browser(p.url);
    const { token, chatId } = await b.start();
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await agent.send(chatId, 'Did you get this?');
    await p.tickPush();
    expect(p.log.lines.some((l) => l.msg?.startsWith('push-flex: could not send notification - no gms node found') === true)).toBe(true);
    expect(await metric(p.url, ATTEMPTS_DELIVERED)).toBe(0);

    const dueAt = cachedByToken(p.cachePath, token).nextPingAt;
    expect(dueAt - p.clock.now()).toBe(15_001); // floor(0.25 × 60 s) + 1 ms
    // Not due yet: a tick does nothing (no polling).
    p.clock.advance(15_000);
    await p.role.receiver.tick();
    await sleep(50);
    expect(b.log()).toEqual(['1:ParticipantJoined']);
    expect(cachedByToken(p.cachePath, token).nextPingAt).toBe(dueAt);

    p.clock.advance(1);
    await p.role.receiver.tick();
    await b.waitForEvent((e) => e.text === 'Did you get this?', 'the missed message from the ping');
    expect(b.log()).toEqual(['1:ParticipantJoined', '2:ParticipantJoined', '3:Message:Did you get this?']);
    // The next ping is a whole interval later.
    expect(cachedByToken(p.cachePath, token).nextPingAt).toBe(p.clock.now() + 60_000);
    expect((await getHealth(p.url)).push.acked).toBeGreaterThanOrEqual(1);
  });

  it('spreads the first pings of sessions started at the same instant over the interval', async () => {
    let i = 0;
    const values = [0.1, 0.7, 0.3, 0.9, 0.5];
    const p = await inProcess({ PARLEY_RECEIVER_PING_INTERVAL: '60' }, { random: () => values[i++ % values.length] ?? 0 });
    const t0 = p.clock.now();
    const tabs = await Promise.all(values.map(() => browser(p.url)));
    const tokens = (await Promise.all(tabs.map((b, n) => b.start(`Customer ${n}`)))).map((s) => s.token);
    const due = tokens.map((t) => cachedByToken(p.cachePath, t).nextPingAt);
    expect(new Set(due).size).toBe(tokens.length);
    for (const d of due) {
      expect(d).toBeGreaterThan(t0);
      expect(d).toBeLessThanOrEqual(t0 + 60_000);
    }
    expect(Math.max(...due) - Math.min(...due)).toBeGreaterThanOrEqual(30_000);

    // Moving to the earliest due time pings that session only.
    const earliest = Math.min(...due);
    p.clock.set(earliest);
    await p.role.receiver.tick();
    const after = tokens.map((t) => cachedByToken(p.cachePath, t).nextPingAt);
    const moved = tokens.filter((_, n) => after[n] !== due[n]);
    expect(moved).toEqual([tokens[due.indexOf(earliest)]]);
    expect(after[due.indexOf(earliest)]).toBe(earliest + 60_000);
  });
});

describe('receiver: reconnect advice (shutdown-notify-flex-push)', () => {
  /**
   * The advice as a stopping chat server sends it (src/chat/notification.ts shutdownAdvice): the client's
   * ParticipantLeft with quit-reason-advice=reconnect, carrying the index of the session's last event
   * (it is not a transcript event) and nextPosition = last index + 1.
   */
  function advicePush(deviceId: string, chatId: string, lastIndex: number, notificationId: string) {
    const advice: ChatEvent = {
      index: lastIndex,
      type: 'ParticipantLeft',
      utcTime: Date.now(),
      from: { nickname: 'Ann', participantId: 1, type: 'Client' },
      userData: { 'quit-reason-advice': 'reconnect' },
    };
    return {
      deviceId,
      message: 'dummy message',
      type: 'push-url',
      notificationId,
      attempt: 1,
      data: { statusCode: 0, chatEnded: false, nextPosition: lastIndex + 1, messages: [advice], chatId, alias: '117' },
    };
  }

  it('does not show the ParticipantLeft of participant 1 with quit-reason-advice=reconnect and pings the session at once', async () => {
    const p = await inProcess({ PARLEY_RECEIVER_PING_INTERVAL: '600' });
    const b = await browser(p.url);
    const { token, chatId } = await b.start();
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await p.tickPush();
    await b.waitForEvent((e) => e.index === 2, 'agent joined');
    await ackedAtLeast(p.url, 1);
    const row = cachedByToken(p.cachePath, token);

    p.clock.advance(5_000);
    expect(row.nextPingAt).not.toBe(p.clock.now() + 600_000);
    const r = await postPush(p.url, advicePush(row.deviceId, chatId, 2, 'ntf_shutdown_advice'));
    expect(r.status).toBe(200);
    // Pinged at once: a refresh went to the gateway, so the next rare ping is an interval from now.
    await waitUntil(() => cachedByToken(p.cachePath, token).nextPingAt === p.clock.now() + 600_000, 'the ping after the advice');
    await sleep(100);
    expect(b.events().some((e) => e.type === 'ParticipantLeft')).toBe(false);
    expect(b.frames.filter((f) => f.type === 'events' && (f['chatEnded'] as boolean))).toHaveLength(0);

    // The chat goes on: the next agent message is delivered.
    await agent.send(chatId, 'still here');
    await p.tickPush();
    await b.waitForEvent((e) => e.text === 'still here', 'the message after the advice');
    expect(b.log()).toEqual(['1:ParticipantJoined', '2:ParticipantJoined', '3:Message:still here']);
  });

  // Regression: found by this suite and fixed.
  it('an advice that arrives before the push of the last event does not hide that event', async () => {
    const p = await inProcess({ PARLEY_RECEIVER_PING_INTERVAL: '600' });
    const b = await browser(p.url);
    const { token, chatId } = await b.start();
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await p.tickPush();
    await b.waitForEvent((e) => e.index === 2, 'agent joined');
    await ackedAtLeast(p.url, 1);
    const row = cachedByToken(p.cachePath, token);

    await agent.send(chatId, 'last words before maintenance'); // index 3, its push not yet POSTed
    p.clock.advance(5_000);
    expect((await postPush(p.url, advicePush(row.deviceId, chatId, 3, 'ntf_advice_first'))).status).toBe(200);
    await waitUntil(() => cachedByToken(p.cachePath, token).nextPingAt === p.clock.now() + 600_000, 'the ping after the advice');
    await p.tickPush(); // the message's own push, late
    // Actual: the browser never gets '3:Message:last words before maintenance'.
    await b.waitForEvent((e) => e.text === 'last words before maintenance', 'the last message', 1500);
  });
});

describe('receiver: bad input', () => {
  it('answers 410 for an unknown deviceId and 400 for a body that is not a JSON object', async () => {
    const p = await inProcess();
    const b = await browser(p.url);
    await b.start();
    const unknown = await postPush(p.url, { deviceId: 'parley-nobody', type: 'Message', notificationId: 'ntf_x', attempt: 1, data: { messages: [agentMessage(2, 'x')] } });
    expect(unknown.status).toBe(410);
    expect(unknown.body).toMatchObject({ error: { code: 'UNKNOWN_CHAT' } });
    const notJson = await postPush(p.url, '{"deviceId": ');
    expect(notJson.status).toBe(400);
    expect(notJson.body).toMatchObject({ error: { code: 'INVALID_PARAMETER' } });
    expect((await postPush(p.url, 'null')).status).toBe(400);
    expect((await postPush(p.url, '"text"')).status).toBe(400);
    await sleep(50);
    expect(b.log()).toEqual(['1:ParticipantJoined']);
  });

  // Regression: found by this suite and fixed.
  it('answers 400 for a JSON array push body', async () => {
    const p = await inProcess();
    const r = await postPush(p.url, '[1,2]');
    // Actual: 410 {error: {code: 'UNKNOWN_CHAT'}}.
    expect(r.status).toBe(400);
  });

  it('with a signing secret accepts the gateway’s signed pushes and refuses unsigned or wrongly signed ones (401, nothing delivered)', async () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const p = await inProcess({ PARLEY_RECEIVER_SIGNING_SECRET: secret, PARLEY_PUSH_SIGNING_SECRET: secret });
    const b = await browser(p.url);
    const { token, chatId } = await b.start();
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await p.tickPush();
    await b.waitForEvent((e) => e.index === 2, 'the signed push of the agent joining');
    await ackedAtLeast(p.url, 1);

    const { deviceId } = cachedByToken(p.cachePath, token);
    const body = JSON.stringify({ deviceId, type: 'push-url', notificationId: 'ntf_forged', attempt: 1, data: { statusCode: 0, chatEnded: false, nextPosition: 4, messages: [agentMessage(3, 'forged')] } });
    const unsigned = await postPush(p.url, body);
    expect(unsigned.status).toBe(401);
    expect(unsigned.body).toMatchObject({ error: { code: 'SIGNATURE_INVALID' } });
    const wrong = signWebhook('whsec_' + Buffer.from('another secret of 32 bytes......').toString('base64'), 'ntf_forged', Math.floor(Date.now() / 1000), body);
    expect((await postPush(p.url, body, { ...wrong })).status).toBe(401);
    const right = signWebhook(secret, 'ntf_forged', Math.floor(Date.now() / 1000), body);
    const tampered = await postPush(p.url, body.replace('forged', 'f0rged'), { ...right });
    expect(tampered.status).toBe(401);
    await sleep(100);
    expect(b.log()).toEqual(['1:ParticipantJoined', '2:ParticipantJoined']);
  });

  it('delivers the events of a duplicate push (same notificationId) once but acknowledges it again', async () => {
    const p = await inProcess({ PARLEY_RECEIVER_PING_INTERVAL: '600' });
    const b = await browser(p.url);
    const { token, chatId } = await b.start();
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await p.tickPush();
    await b.waitForEvent((e) => e.index === 2, 'agent joined');
    await ackedAtLeast(p.url, 1);
    await agent.send(chatId, 'Only once'); // index 3; its real push is not ticked

    const { deviceId } = cachedByToken(p.cachePath, token);
    const push = (attempt: number) => ({
      deviceId,
      message: 'dummy message',
      type: 'push-url',
      notificationId: 'ntf_dup',
      attempt,
      data: { statusCode: 0, chatEnded: false, nextPosition: 4, messages: [agentMessage(3, 'Only once')] },
    });
    const one = await postPush(p.url, push(1));
    expect(one).toMatchObject({ status: 200, body: { ok: true, duplicate: false } });
    await b.waitForEvent((e) => e.text === 'Only once', 'the pushed message');
    await waitUntil(() => cachedByToken(p.cachePath, token).nextPingAt === p.clock.now() + 600_000, 'the first acknowledgement');

    p.clock.advance(15_000);
    const two = await postPush(p.url, push(2));
    expect(two).toMatchObject({ status: 200, body: { ok: true, duplicate: true } });
    // Acknowledged again: a refresh went to the gateway after the resend.
    await waitUntil(() => cachedByToken(p.cachePath, token).nextPingAt === p.clock.now() + 600_000, 'the acknowledgement of the resend');
    await sleep(100);
    expect(b.log()).toEqual(['1:ParticipantJoined', '2:ParticipantJoined', '3:Message:Only once']);
  });

  it('answers garbage frames with error frames and closes the socket after 10', async () => {
    const p = await inProcess();
    const b = await browser(p.url);
    const garbage: unknown[] = ['not json', '[1,2]', '{"no":"type"}', { type: 42 }, { type: 'dance' }, { type: 'resume', token: 'x', from: -1 }, { type: 'resume', token: 5, from: 1 }, '', 'null'];
    for (const g of garbage) b.send(g);
    const codes: unknown[] = [];
    for (let n = 0; n < garbage.length; n++) codes.push(((await b.next('error'))['error'] as { code: string }).code);
    // An unknown type before start is refused as ACCESS_DENIED (the frame needs a session); both count as bad.
    expect(codes).toEqual(garbage.map((g) => ((g as { type?: unknown }).type === 'dance' ? 'ACCESS_DENIED' : 'INVALID_PARAMETER')));
    // Nine bad frames: still open, and a start without nickname (MISSING_PARAMETER) does not count.
    b.send({ type: 'start' });
    expect(await b.next('error')).toMatchObject({ error: { code: 'MISSING_PARAMETER' } });
    b.send({ type: 'ping' });
    await b.next('pong');
    b.ws.send(Buffer.from([0xde, 0xad]), { binary: true });
    expect(await b.next('error')).toMatchObject({ error: { code: 'INVALID_PARAMETER' } });
    expect(await b.closed).toBe(4400);
  });

  it('refuses a token it did not issue (ACCESS_DENIED, no events) and a send before start', async () => {
    const p = await inProcess();
    const owner = await browser(p.url);
    const { chatId } = await owner.start();
    const agent = await alice(p.url);
    await agent.accept(chatId);
    await agent.send(chatId, 'private');
    const thief = await browser(p.url);
    thief.send({ type: 'send', text: 'hello?' });
    expect(await thief.next('error')).toMatchObject({ error: { code: 'ACCESS_DENIED' } });
    thief.send({ type: 'resume', token: 'a'.repeat(32), from: 1 });
    expect(await thief.next('error')).toMatchObject({ error: { code: 'ACCESS_DENIED' } });
    thief.send({ type: 'leave' });
    expect(await thief.next('error')).toMatchObject({ error: { code: 'ACCESS_DENIED' } });
    // The owner's pushes never reach the refused tab.
    await p.tickPush();
    await owner.waitForEvent((e) => e.text === 'private', 'owner gets the message');
    await sleep(100);
    expect(thief.events()).toEqual([]);
    expect(thief.frames.map((f) => f.type)).toEqual(['error', 'error', 'error']);
  });
});

/** The chat server as a child process; the receiver in this process behind its own HTTP server. */
describe('receiver: HA with a real chat server process', () => {
  /** The chat server process of the running test (replaced by restartChild). */
  let child: ChildProcess | undefined;

  async function setupHa(opts: { refuseGatewayPushes?: () => boolean } = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'parley-receiver-'));
    // Cleanups run in reverse: browsers, receiver server and role first, then the child, then the files.
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    cleanups.push(async () => {
      if (child !== undefined) await killChild(child);
      child = undefined;
    });
    const chatPort = await freePort();
    const receiverPort = await freePort();
    const ini =
      BASE_INI.replace('port = 0', `port = ${chatPort}`).replace('[http]', `[store]\npath = ${join(dir, 'parley.db')}\n[http]`) +
      pushIni(`http://127.0.0.1:${receiverPort}/receiver`, '[receiver]\nenabled = false\n');
    const iniPath = join(dir, 'parley.ini');
    writeFileSync(iniPath, ini);
    const first = await startChild(iniPath);
    child = first.proc;
    const chatUrl = first.url;
    expect(chatUrl).toBe(`http://127.0.0.1:${chatPort}`);

    const cachePath = join(dir, 'receiver.db');
    const config = parseConfig(ini, 'receiver.ini', { PARLEY_RECEIVER_STORE_PATH: cachePath, PARLEY_RECEIVER_PING_INTERVAL: '600' });
    const clock = new ManualClock(Date.now());
    const log = memoryLogger();
    const role: ReceiverRole = createReceiverRole(config, { gatewayUrl: chatUrl, healthUrls: [`${chatUrl}/health`], clock, log, autoRun: false, random: () => 0.5 });
    cleanups.push(() => role.close());
    const refuse = opts.refuseGatewayPushes;
    const mounted = await mountReceiver(role, receiverPort, (req, res) => {
      // Optionally the gateway's own POSTs are refused (503) while the test's POSTs (x-test) go through.
      if (refuse?.() === true && req.url === '/receiver/push' && req.headers['x-test'] === undefined) {
        req.resume();
        res.writeHead(503).end();
        return true;
      }
      return false;
    });
    cleanups.push(() => mounted.close());
    const restartChild = async () => {
      const next = await startChild(iniPath);
      child = next.proc;
      expect(next.url).toBe(chatUrl);
      return next.proc;
    };
    return { chatUrl, receiverUrl: mounted.url, role, clock, log, cachePath, restartChild };
  }

  /** Browser starts a chat through the receiver; the agent accepts on the chat server; the push arrives. */
  async function chatWithAgent(h: Awaited<ReturnType<typeof setupHa>>) {
    const b = await browser(h.receiverUrl);
    const { token, chatId } = await b.start();
    const acked = (await getHealth(h.chatUrl)).push.acked as number;
    const agent = await alice(h.chatUrl);
    await agent.accept(chatId);
    await b.waitForEvent((e) => e.index === 2, 'agent joined (pushed by the child process)');
    // Acknowledged, and nothing left that a restarted chat server would resend.
    await waitUntil(async () => {
      const health = await getHealth(h.chatUrl);
      return health.push.acked > acked && health.push.outbox_depth === 0;
    }, 'the acknowledgement of the join push');
    return { b, token, chatId };
  }

  it('pings every cached session of a chat server that restarted with a new pid; the chat continues', async () => {
    const h = await setupHa();
    const one = await chatWithAgent(h);
    const two = await chatWithAgent(h);
    await h.role.health.poll();
    const pid1 = h.role.health.nodes().get('117');
    expect(pid1).toBe(child?.pid);

    if (child !== undefined) await killChild(child);
    const proc = await h.restartChild();
    h.clock.advance(1_000);
    const before = readCache(h.cachePath).map((r) => r.nextPingAt);
    expect(before.every((t) => t !== h.clock.now() + 600_000)).toBe(true);

    await h.role.health.poll();
    expect(h.role.health.nodes().get('117')).toBe(proc.pid);
    expect(proc.pid).not.toBe(pid1);
    expect(h.log.lines.some((l) => l.msg === 'chat server node restarted')).toBe(true);
    expect(h.log.lines.find((l) => l.msg?.includes('restoring its sessions') === true)?.obj).toMatchObject({ alias: '117', sessions: 2 });
    // Both sessions were refreshed successfully on the new process (next ping an interval from now).
    await waitUntil(() => readCache(h.cachePath).every((r) => r.nextPingAt === h.clock.now() + 600_000), 'restoration pings of both sessions');
    for (const r of readCache(h.cachePath)) expect(r).toMatchObject({ alias: '117', ended: false });
    expect(h.log.lines.some((l) => l.msg === 'refresh failed; retrying')).toBe(false);

    // An agent message after the restart reaches the browser through a push from the new process.
    const agent = await alice(h.chatUrl);
    expect((await agent.send(one.chatId, 'after the restart')).status).toBe(200);
    await one.b.waitForEvent((e) => e.text === 'after the restart', 'message after restart');
    expect(one.b.log()).toEqual(['1:ParticipantJoined', '2:ParticipantJoined', '3:Message:after the restart']);
    expect(two.b.log()).toEqual(['1:ParticipantJoined', '2:ParticipantJoined']);
  });

  it('restores the sessions of a chat server that stopped answering (health-failures polls); the failed ping is retried until it is back', async () => {
    const h = await setupHa();
    const s = await chatWithAgent(h);
    await h.role.health.poll();
    if (child !== undefined) await killChild(child);

    await h.role.health.poll();
    await h.role.health.poll();
    expect(h.log.lines.some((l) => l.msg === 'chat server node unreachable')).toBe(false);
    await h.role.health.poll(); // the third failure in a row
    expect(h.log.lines.find((l) => l.msg === 'chat server node unreachable')?.obj).toMatchObject({ alias: '117', failures: 3 });
    const failed = await waitUntil(() => h.log.lines.find((l) => l.msg === 'refresh failed; retrying'), 'the failed restoration ping');
    expect(failed.obj).toMatchObject({ chatId: s.chatId, failures: 1, retryInMs: 1000 });
    expect(cachedByToken(h.cachePath, s.token).nextPingAt).toBe(h.clock.now() + 1000);

    await h.restartChild();
    h.clock.advance(1000);
    await h.role.receiver.tick();
    expect(cachedByToken(h.cachePath, s.token).nextPingAt).toBe(h.clock.now() + 600_000);
    expect(h.log.lines.filter((l) => l.msg === 'refresh failed; retrying')).toHaveLength(1);

    const agent = await alice(h.chatUrl);
    await agent.send(s.chatId, 'I am back');
    await s.b.waitForEvent((e) => e.text === 'I am back', 'message after the node came back');
    expectContiguous(s.b.events());
  });

  it('acknowledges a push that arrives while the gateway is down once it is back: nothing is lost', async () => {
    let refuse = false;
    const h = await setupHa({ refuseGatewayPushes: () => refuse });
    const s = await chatWithAgent(h);
    const { deviceId } = cachedByToken(h.cachePath, s.token);

    refuse = true; // the gateway's POST of the next message does not get through
    const agent = await alice(h.chatUrl);
    expect((await agent.send(s.chatId, 'while you were away')).status).toBe(200);
    if (child !== undefined) await killChild(child);

    // The push (without payload) reaches the receiver while the gateway is down: 200, its ack fails.
    const r = await postPush(h.receiverUrl, { deviceId, message: 'dummy message', type: 'push-url', notificationId: 'ntf_while_down', attempt: 1 }, { 'x-test': '1' });
    expect(r.status).toBe(200);
    await waitUntil(() => h.log.lines.find((l) => l.msg === 'refresh failed; retrying'), 'the failed acknowledgement');
    expect(s.b.events().some((e) => e.text === 'while you were away')).toBe(false);

    await h.restartChild();
    h.clock.advance(1000);
    await h.role.receiver.tick();
    await s.b.waitForEvent((e) => e.text === 'while you were away', 'the message fetched by the retried refresh');
    expect(s.b.log()).toEqual(['1:ParticipantJoined', '2:ParticipantJoined', '3:Message:while you were away']);
    // The new process loaded the unacknowledged notification; the retried refresh acknowledged it.
    await waitUntil(async () => {
      const health = await getHealth(h.chatUrl);
      return health.push.outbox_depth === 0 && health.push.acked >= 1;
    }, 'the acknowledgement on the restarted chat server');
  });
});
