/**
 * Push end to end: Request Chat subscribes, the agent acts, the gateway POSTs to a real receiver on port 0.
 * Resend schedules run on a manual clock (the engine ticks only when told), so nothing waits for real time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.ts';
import { verifyWebhook } from '../src/push/signing.ts';
import { AgentClient, ChatClient, getHealth, memoryLogger, postForm, startTestServer, type TestServer } from './helpers.ts';
import { pushIni, pushUserData, startFakeReceiver, type FakeReceiver } from './receiver-fixture.ts';

let srv: TestServer | undefined;
let rcv: FakeReceiver | undefined;
afterEach(async () => {
  await srv?.close();
  await rcv?.close();
  srv = undefined;
  rcv = undefined;
});

async function setup(opts: { extraIni?: string; env?: Record<string, string>; manual?: boolean } = {}) {
  rcv = await startFakeReceiver();
  const clock = new ManualClock(Date.now());
  const log = memoryLogger();
  srv = await startTestServer(pushIni(rcv.url, opts.extraIni), opts.env ?? {}, opts.manual === true ? { clock, autoPush: false, random: () => 0, log } : { log });
  const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
  await alice.login();
  return { rcv, srv, clock, alice, log };
}

async function subscribedChat(base: string, deviceId: string, extra: Record<string, string> = {}) {
  const c = new ChatClient(base);
  const r = await c.start({ nickname: 'Ann', ...pushUserData(deviceId, extra) });
  expect(r.body.statusCode).toBe(0);
  return c;
}

describe('customhttp notifications', () => {
  it('POSTs {deviceId, message, type} for an agent message, without payload by default', async () => {
    const { rcv, srv, alice } = await setup();
    const c = await subscribedChat(srv.url, 'dev-1');
    await alice.accept(c.chatId);
    await alice.send(c.chatId, 'Hello from Alice');
    const got = await rcv.waitFor(2);
    expect(got.map((p) => p.path)).toEqual(['/push', '/push']);
    expect(got[0]?.headers['content-type']).toBe('application/json');
    expect(got[0]?.body).toEqual({ deviceId: 'dev-1', message: 'dummy message', type: 'ParticipantJoined', notificationId: expect.stringMatching(/^ntf_/), attempt: 1 });
    expect(got[1]?.body).toMatchObject({ deviceId: 'dev-1', type: 'Message', attempt: 1 });
    expect(got[1]?.body.data).toBeUndefined();
  });

  it('includes the events and the flex-push-content tokens with GCTI_GMS_PushIncludePayload', async () => {
    const { rcv, srv, alice } = await setup();
    const c = await subscribedChat(srv.url, 'dev-2', { GCTI_GMS_PushIncludePayload: 'true' });
    await alice.accept(c.chatId);
    await alice.send(c.chatId, 'Payload please');
    const [, msg] = await rcv.waitFor(2);
    expect(msg?.body.data).toEqual({
      statusCode: 0,
      chatEnded: false,
      nextPosition: 4,
      messages: [expect.objectContaining({ index: 3, type: 'Message', text: 'Payload please', from: { nickname: 'Alice', participantId: 2, type: 'Agent' } })],
      chatId: c.chatId,
      userId: c.userId,
      secureKey: c.secureKey,
      alias: '117',
    });
  });

  it('takes the payload default from [chat] push_notification_include_payload and honours flex-push-content', async () => {
    const { rcv, srv, alice } = await setup({ env: { PARLEY_CHAT_PUSH_NOTIFICATION_INCLUDE_PAYLOAD: 'true', PARLEY_SETTINGS_FLEX_PUSH_CONTENT: 'session-id' } });
    const c = await subscribedChat(srv.url, 'dev-3');
    await alice.accept(c.chatId);
    const [joined] = await rcv.waitFor(1);
    expect(joined?.body.data.chatId).toBe(c.chatId);
    expect(joined?.body.data).not.toHaveProperty('secureKey');
    expect(joined?.body.data).not.toHaveProperty('userId');
    expect(joined?.body.data).not.toHaveProperty('alias');
  });

  it('uses the debug URL and message for GCTI_GMS_PushDebug, and a named provider for GCTI_GMS_PushProvider', async () => {
    const { rcv, srv, alice } = await setup();
    const d = await subscribedChat(srv.url, 'dev-debug', { GCTI_GMS_PushDebug: 'true' });
    await alice.accept(d.chatId);
    const [dbg] = await rcv.waitFor(1);
    expect(dbg?.path).toBe('/debug');
    expect(dbg?.body.message).toBe('debug message');
    const s = await subscribedChat(srv.url, 'dev-sms', { GCTI_GMS_PushProvider: 'AsyncSMSChat' });
    await alice.accept(s.chatId);
    const [, sms] = await rcv.waitFor(2);
    expect(sms?.path).toBe('/sms');
    expect(sms?.body).toMatchObject({ deviceId: 'dev-sms', message: 'sms message' });
  });

  it('notifies only other participants, plus the abandon with GCTI_GMS_NotifyRequestor', async () => {
    const { rcv, srv } = await setup();
    const quiet = await subscribedChat(srv.url, 'dev-quiet');
    await quiet.op('send', { message: 'me' });
    await quiet.op('disconnect');
    const loud = await subscribedChat(srv.url, 'dev-loud', { GCTI_GMS_NotifyRequestor: 'true' });
    await loud.op('send', { message: 'me' });
    await loud.op('disconnect');
    const [left] = await rcv.waitFor(1);
    await new Promise((r) => setTimeout(r, 100));
    expect(rcv.received).toHaveLength(1);
    expect(left?.body).toMatchObject({ deviceId: 'dev-loud', type: 'ParticipantLeft' });
  });

  it('refuses an incomplete subscription or an unknown device type at Request Chat', async () => {
    const { srv } = await setup();
    const url = `${srv.url}/genesys/2/chat/customer-support`;
    const before = (await getHealth(srv.url)).sessions.total;
    const noGroup = await postForm(url, { nickname: 'A', 'userData[GCTI_Chat_PushSubscribe]': 'true', 'userData[GCTI_GMS_PushDeviceId]': 'd', 'userData[GCTI_GMS_PushDeviceType]': 'customhttp' });
    expect(noGroup.status).toBe(400);
    expect(noGroup.body.errors[0]).toMatchObject({ code: 101, advice: expect.stringContaining('GCTI_GMS_NodeGroup') });
    const fcm = await postForm(url, { nickname: 'A', ...pushUserData('d', { GCTI_GMS_PushDeviceType: 'fcm' }) });
    expect(fcm.status).toBe(400);
    expect(fcm.body.errors[0]).toMatchObject({ code: 102, advice: expect.stringContaining('customhttp') });
    const notBool = await postForm(url, { nickname: 'A', ...pushUserData('d', { GCTI_GMS_PushResend: 'maybe' }) });
    expect(notBool.status).toBe(400);
    expect((await getHealth(srv.url)).sessions.total).toBe(before);
  });

  it('refuses a subscription when flex-push-enabled is false', async () => {
    const { srv } = await setup({ env: { PARLEY_SETTINGS_FLEX_PUSH_ENABLED: 'false' } });
    const r = await postForm(`${srv.url}/genesys/2/chat/customer-support`, { nickname: 'A', ...pushUserData('d') });
    expect(r.status).toBe(400);
    expect(r.body.errors[0].advice).toContain('flex-push-enabled');
  });

  it('without flex-push-on-join the subscription starts at the first request after Request Chat', async () => {
    const { rcv, srv, alice } = await setup({ env: { PARLEY_SETTINGS_FLEX_PUSH_ON_JOIN: 'false' } });
    const c = await subscribedChat(srv.url, 'dev-late');
    await alice.accept(c.chatId);
    await new Promise((r) => setTimeout(r, 100));
    expect(rcv.received).toHaveLength(0);
    await c.op('refresh');
    await alice.send(c.chatId, 'now you hear me');
    const [msg] = await rcv.waitFor(1);
    expect(msg?.body).toMatchObject({ deviceId: 'dev-late', type: 'Message' });
  });

  it('subscribes a running session through updateData', async () => {
    const { rcv, srv, alice } = await setup();
    const c = new ChatClient(srv.url);
    await c.start();
    expect((await c.op('updateData', pushUserData('dev-later'))).body.statusCode).toBe(0);
    await alice.accept(c.chatId);
    const [joined] = await rcv.waitFor(1);
    expect(joined?.body).toMatchObject({ deviceId: 'dev-later', type: 'ParticipantJoined' });
    const fresh = new ChatClient(srv.url);
    await fresh.start();
    const bad = await fresh.op('updateData', { 'userData[GCTI_Chat_PushSubscribe]': 'true' });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].advice).toContain('GCTI_GMS_NodeGroup');
    expect((await fresh.op('refresh')).body.statusCode).toBe(0);
  });

  it('signs every POST with Standard Webhooks headers when [push] signing-secret is set', async () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const { rcv, srv, alice } = await setup({ env: { PARLEY_PUSH_SIGNING_SECRET: secret } });
    const c = await subscribedChat(srv.url, 'dev-signed');
    await alice.accept(c.chatId);
    const [p] = await rcv.waitFor(1);
    expect(p?.headers['webhook-id']).toBe(p?.body.notificationId);
    expect(() => verifyWebhook(secret, p?.headers ?? {}, p?.raw ?? '')).not.toThrow();
    expect(() => verifyWebhook(secret, p?.headers ?? {}, (p?.raw ?? '').replace('dev-signed', 'dev-forged'))).toThrow();
  });
});

describe('reliable delivery (GCTI_GMS_PushResend) on a manual clock', () => {
  it('is of type push-url and is resent every flex-push-resend-delay until a refresh acknowledges it', async () => {
    const { rcv, srv, clock, alice } = await setup({ manual: true });
    const c = await subscribedChat(srv.url, 'dev-r', { GCTI_GMS_PushResend: 'true', GCTI_GMS_PushIncludePayload: 'true' });
    await alice.accept(c.chatId);
    const push = srv.running.app.push;
    await push.tick();
    const [first] = await rcv.waitFor(1);
    expect(first?.body).toMatchObject({ type: 'push-url', attempt: 1 });
    clock.advance(14_999);
    await push.tick();
    expect(rcv.received).toHaveLength(1);
    clock.advance(1);
    await push.tick();
    const [, second] = await rcv.waitFor(2);
    expect(second?.body).toMatchObject({ type: 'push-url', attempt: 2, notificationId: first?.body.notificationId });

    // A refresh with a wrong secureKey acknowledges nothing.
    const wrong = await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { secureKey: 'f'.repeat(20) });
    expect(wrong.status).toBe(403);
    clock.advance(15_000);
    await push.tick();
    expect(rcv.received).toHaveLength(3);

    // The receiver acknowledges with the tokens the push carried; a duplicate acknowledgement is harmless.
    const data = first?.body.data;
    const ack = await postForm(`${c.chatUrl}/${data.chatId}/refresh`, { secureKey: data.secureKey, userId: data.userId, alias: data.alias, transcriptPosition: data.nextPosition });
    expect(ack.body.statusCode).toBe(0);
    expect((await c.op('refresh')).body.statusCode).toBe(0);
    clock.advance(60_000);
    await push.tick();
    expect(rcv.received).toHaveLength(3);
    const health = await getHealth(srv.url);
    expect(health.push).toMatchObject({ outbox_depth: 0, acked: 1, failed: 0 });
  });

  it('stops after flex-push-resend-attempts without acknowledgement and records the failure', async () => {
    const { rcv, srv, clock, alice, log } = await setup({ manual: true });
    const c = await subscribedChat(srv.url, 'dev-f', { GCTI_GMS_PushResend: 'true' });
    await alice.accept(c.chatId);
    const push = srv.running.app.push;
    for (let i = 0; i < 8; i++) {
      await push.tick();
      clock.advance(15_000);
    }
    expect(rcv.received).toHaveLength(4); // the first POST and 3 resends
    const health = await getHealth(srv.url);
    expect(health.push).toMatchObject({ outbox_depth: 0, failed: 1 });
    expect(log.lines.some((l) => l.msg === 'push notification failed')).toBe(true);
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toMatch(/parley_push_notifications_total\{event="failed"\} 1/);
  });

  it('logs "no gms node found in group", tries again at the next activity, and sends as soon as a gateway node joins', async () => {
    const { srv, alice, log } = await setup({ manual: true, env: { PARLEY_CHAT_ENABLE_NOTIFICATION_MODE: 'false' } });
    const c = await subscribedChat(srv.url, 'dev-n', { GCTI_GMS_PushResend: 'true' });
    await alice.accept(c.chatId);
    const push = srv.running.app.push;
    await push.tick();
    const noNode = (l: { msg?: unknown }) => l.msg === 'push-flex: could not send notification - no gms node found in group=gms-cluster';
    expect(log.lines.filter(noNode)).toHaveLength(1);
    // Activity of the session: tried again, still no node (said once: the condition is the same).
    await c.op('send', { message: 'anyone?' });
    await push.tick();
    expect(log.lines.filter(noNode)).toHaveLength(1);
    const delivered: string[] = [];
    srv.running.app.registry.register({
      nodeId: 'late-gms',
      group: 'gms-cluster',
      deliver: async (n) => {
        delivered.push(n.id);
        return { kind: 'delivered' };
      },
    });
    // The node joining is enough: no activity of the session is needed.
    await push.tick();
    expect(delivered).toHaveLength(1);
  });
});
