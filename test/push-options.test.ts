/**
 * Push as configured the GMS way: [chat]/[push]/[push.<provider>] options, the session's
 * userData keys, resends and acknowledgement on a manual clock, signing. Real receiver on 127.0.0.1:0,
 * real SQLite in a temp dir (startTestServer).
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function setup(opts: { extraIni?: string; env?: Record<string, string>; ini?: (url: string) => string } = {}) {
  const r = await startFakeReceiver();
  rcv = r;
  const clock = new ManualClock(Date.now());
  const log = memoryLogger();
  const s = await startTestServer(opts.ini?.(r.url) ?? pushIni(r.url, opts.extraIni), opts.env ?? {}, { clock, autoPush: false, random: () => 0, log });
  srv = s;
  const alice = new AgentClient(s.url, 'alice', 'alice-secret');
  await alice.login();
  return { rcv: r, srv: s, clock, alice, log, push: s.running.app.push };
}

async function subscribedChat(base: string, deviceId: string, extra: Record<string, string> = {}) {
  const c = new ChatClient(base);
  const r = await c.start({ nickname: 'Ann', ...pushUserData(deviceId, extra) });
  expect(r.body.statusCode).toBe(0);
  return c;
}

const RESEND = { GCTI_GMS_PushResend: 'true' } as const;
const failedLines = (log: ReturnType<typeof memoryLogger>) => log.lines.filter((l) => l.msg === 'push notification failed');

describe('subscription keys', () => {
  it('GCTI_GMS_PushDeviceId of 256 characters is accepted and sent verbatim; 257 is refused (102) and creates no session', async () => {
    const { srv, alice, rcv, push } = await setup();
    const id256 = 'd'.repeat(256);
    const c = await subscribedChat(srv.url, id256);
    await alice.accept(c.chatId);
    await push.tick();
    expect((await rcv.waitFor(1))[0]?.body.deviceId).toBe(id256);
    const before = (await getHealth(srv.url)).sessions.total;
    const r = await postForm(`${srv.url}/genesys/2/chat/customer-support`, { nickname: 'A', ...pushUserData('d'.repeat(257)) });
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toMatchObject({ code: 102 });
    expect((await getHealth(srv.url)).sessions.total).toBe(before);
  });

  it('booleans accept 1/yes/TRUE: PushSubscribe=YES subscribes, PushResend=1 gives push-url, PushIncludePayload=yes carries data', async () => {
    const { srv, alice, rcv, push } = await setup();
    const c = new ChatClient(srv.url);
    const ud = pushUserData('dev-b', { GCTI_Chat_PushSubscribe: 'YES', GCTI_GMS_PushResend: '1', GCTI_GMS_PushIncludePayload: 'yes', GCTI_GMS_PushDeviceType: 'CustomHTTP' });
    expect((await c.start({ nickname: 'Ann', ...ud })).body.statusCode).toBe(0);
    await alice.accept(c.chatId);
    await push.tick();
    const [p] = await rcv.waitFor(1);
    expect(p?.body).toMatchObject({ deviceId: 'dev-b', type: 'push-url', attempt: 1 });
    expect(p?.body.data).toMatchObject({ chatId: c.chatId, secureKey: c.secureKey });
  });

  it('updateData with GCTI_GMS_PushDeviceType=fcm on a running session is refused (102)', async () => {
    const { srv } = await setup();
    const c = new ChatClient(srv.url);
    await c.start();
    const bad = await c.op('updateData', pushUserData('dev-x', { GCTI_GMS_PushDeviceType: 'fcm' }));
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0]).toMatchObject({ code: 102 });
  });

  it('flex-push-on-join=false: a refresh with a wrong secureKey does not activate the subscription', async () => {
    const { srv, alice, rcv, push } = await setup({ env: { PARLEY_SETTINGS_FLEX_PUSH_ON_JOIN: 'false' } });
    const c = await subscribedChat(srv.url, 'dev-late');
    const wrong = await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { secureKey: 'f'.repeat(20) });
    expect(wrong.status).toBe(403);
    await alice.accept(c.chatId);
    await push.tick();
    await sleep(50);
    expect(rcv.received).toHaveLength(0);
    await c.op('refresh');
    await alice.send(c.chatId, 'now');
    await push.tick();
    expect((await rcv.waitFor(1))[0]?.body).toMatchObject({ deviceId: 'dev-late', type: 'Message' });
  });
});

describe('payload and flex-push-content', () => {
  it('default flex-push-content (session-id, user-id) carries chatId and userId only', async () => {
    const { srv, alice, rcv, push } = await setup({
      ini: (url) => pushIni(url).replace('flex-push-content = session-id, user-id, secure-key, app-dbid\n', ''),
    });
    const c = await subscribedChat(srv.url, 'dev-def', { GCTI_GMS_PushIncludePayload: 'true' });
    await alice.accept(c.chatId);
    await push.tick();
    const [p] = await rcv.waitFor(1);
    const data = p?.body.data as Record<string, unknown>;
    expect(data).toMatchObject({ chatId: c.chatId, userId: c.userId, statusCode: 0, chatEnded: false });
    expect(Object.keys(data).sort()).toEqual(['chatEnded', 'chatId', 'messages', 'nextPosition', 'statusCode', 'userId']);
  });

  it('[chat.<service>] push_notification_include_payload=false overrides [chat] true; the session key overrides both', async () => {
    const { srv, alice, rcv, push } = await setup({
      extraIni: '[chat.customer-support]\npush_notification_include_payload = false\n',
      env: { PARLEY_CHAT_PUSH_NOTIFICATION_INCLUDE_PAYLOAD: 'true' },
    });
    const a = await subscribedChat(srv.url, 'dev-svc');
    await alice.accept(a.chatId);
    await push.tick();
    const [pa] = await rcv.waitFor(1);
    expect(pa?.body.data).toBeUndefined();
    const b = await subscribedChat(srv.url, 'dev-sess', { GCTI_GMS_PushIncludePayload: 'true' });
    await alice.accept(b.chatId);
    await push.tick();
    const [, pb] = await rcv.waitFor(2);
    expect(pb?.body.deviceId).toBe('dev-sess');
    expect(pb?.body.data).toMatchObject({ chatId: b.chatId });
  });

  it('the end of the chat is notified with chatEnded=true; the customer\'s own message is not in the payload', async () => {
    const { srv, alice, rcv, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-end', { GCTI_GMS_PushIncludePayload: 'true' });
    await alice.accept(c.chatId);
    await push.tick();
    await c.op('send', { message: 'mine' });
    await push.tick();
    await sleep(50);
    expect(rcv.received).toHaveLength(1);
    await alice.close(c.chatId);
    await push.tick();
    const [, end] = await rcv.waitFor(2);
    expect(end?.body.data.chatEnded).toBe(true);
    expect((end?.body.data.messages as Array<{ from: { participantId: number } }>).every((m) => m.from.participantId !== 1)).toBe(true);
  });
});

describe('providers', () => {
  it('an unknown GCTI_GMS_PushProvider: no POST anywhere, the notification fails with that reason', async () => {
    const { srv, alice, rcv, push, log } = await setup();
    const c = await subscribedChat(srv.url, 'dev-unk', { GCTI_GMS_PushProvider: 'NoSuchProvider', ...RESEND });
    await alice.accept(c.chatId);
    await push.tick();
    await sleep(50);
    expect(rcv.received).toHaveLength(0);
    expect(failedLines(log)[0]?.obj).toMatchObject({ reason: expect.stringContaining('NoSuchProvider') });
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, failed: 1 });
  });

  it('a named provider without debug.customhttp.* uses its own url/message for GCTI_GMS_PushDebug sessions', async () => {
    const { srv, alice, rcv, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-sms-dbg', { GCTI_GMS_PushProvider: 'AsyncSMSChat', GCTI_GMS_PushDebug: 'true' });
    await alice.accept(c.chatId);
    await push.tick();
    const [p] = await rcv.waitFor(1);
    expect(p?.path).toBe('/sms');
    expect(p?.body.message).toBe('sms message');
  });

  it('pushEnabled without customhttp: nothing is POSTed and the GMS line is logged with the deviceId', async () => {
    const { srv, alice, rcv, push, log } = await setup({ env: { PARLEY_PUSH_PUSHENABLED: 'comet' } });
    const c = await subscribedChat(srv.url, 'dev-off');
    await alice.accept(c.chatId);
    await push.tick();
    await sleep(50);
    expect(rcv.received).toHaveLength(0);
    expect(log.lines.some((l) => (l.msg ?? '').startsWith('Event was not pushed for delivery to customhttp for device dev-off'))).toBe(true);
  });
});

describe('resend and acknowledgement', () => {
  it('flex-push-resend-attempts=0: one POST, no resend, failed at the resend delay', async () => {
    const { srv, alice, rcv, push, clock } = await setup({ env: { PARLEY_SETTINGS_FLEX_PUSH_RESEND_ATTEMPTS: '0' } });
    const c = await subscribedChat(srv.url, 'dev-0', RESEND);
    await alice.accept(c.chatId);
    await push.tick();
    expect(rcv.received).toHaveLength(1);
    clock.advance(14_999);
    await push.tick();
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1 });
    clock.advance(1);
    await push.tick();
    await sleep(50);
    expect(rcv.received).toHaveLength(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, failed: 1 });
  });

  it('a request other than refresh (send, startTyping) does not acknowledge; the resend goes on', async () => {
    const { srv, alice, rcv, push, clock } = await setup();
    const c = await subscribedChat(srv.url, 'dev-na', RESEND);
    await alice.accept(c.chatId);
    await push.tick();
    expect(rcv.received).toHaveLength(1);
    await c.op('startTyping');
    await c.op('send', { message: 'hi' });
    clock.advance(15_000);
    await push.tick();
    expect(rcv.received).toHaveLength(2);
    expect(rcv.received[1]?.body).toMatchObject({ attempt: 2, notificationId: rcv.received[0]?.body.notificationId });
  });

  it('resends keep the notificationId/webhook-id, carry a fresh timestamp, verify, and the secret is never logged', async () => {
    const secret = 'plain-text-secret-XYZZY';
    const { srv, alice, rcv, push, clock, log } = await setup({ env: { PARLEY_PUSH_SIGNING_SECRET: secret } });
    const c = await subscribedChat(srv.url, 'dev-sig', RESEND);
    await alice.accept(c.chatId);
    await push.tick();
    clock.advance(15_000);
    await push.tick();
    const [a, b] = await rcv.waitFor(2);
    expect(a?.headers['webhook-id']).toBe(a?.body.notificationId);
    expect(b?.headers['webhook-id']).toBe(a?.headers['webhook-id']);
    expect(Number(b?.headers['webhook-timestamp']) - Number(a?.headers['webhook-timestamp'])).toBe(15);
    for (const p of [a, b]) {
      expect(() => verifyWebhook(secret, p?.headers ?? {}, p?.raw ?? '', { nowSec: Number(p?.headers['webhook-timestamp']) })).not.toThrow();
    }
    expect(JSON.stringify(log.lines)).not.toContain(secret);
  });

  // Regression test (this was a bug, now fixed). Was: a 429/503 Retry-After longer than flex-push-resend-delay is not honoured: the engine retries after
  // the resend delay instead. src/chat/notification.ts:175 computes
  //   wait = Math.min(Math.max(backoff, retryAfterMs), resendDelayMs)
  // so the cap meant for the exponential backoff ("0.5 s, 1 s, 2 s, ... at most the resend delay") also cuts
  // Retry-After down. docs/push.md (Delivery and resending) says "`Retry-After` of 429/503 honoured", and
  // src/push/retry-policy.ts:16,88 parses it "capped at 1 hour" (MAX_RETRY_AFTER_MS), which the engine makes
  // moot. Right behaviour: no attempt before Retry-After (failing the notification if that is past its
  // deadline), e.g. Retry-After: 30 with the 15 s resend delay → next POST not before 30 s.
  it('429 with Retry-After: 30 (longer than the 15 s resend delay): no retry before 30 s', async () => {
    const { srv, alice, rcv, push, clock } = await setup();
    const c = await subscribedChat(srv.url, 'dev-ra', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'status', status: 429, headers: { 'retry-after': '30' } });
    await push.tick();
    expect(rcv.received).toHaveLength(1);
    rcv.behave({ kind: 'status', status: 200 });
    clock.advance(15_000);
    await push.tick();
    clock.advance(14_999);
    await push.tick();
    expect(rcv.received).toHaveLength(1);
  });
});
