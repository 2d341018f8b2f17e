/**
 * Push under receiver faults: error statuses, hangs, redirects, dropped connections, a receiver that is down,
 * 410 Gone, 429 Retry-After, a restart with a pending outbox, acknowledgement edge cases and the SSRF guard.
 * Every test runs the engine on a manual clock (`push.tick()` after moving it); only the request timeout
 * (`request-timeout = 1` in pushIni) takes real time. Each test ends by checking that the Chat API still answers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.ts';
import { AgentClient, ChatClient, getHealth, memoryLogger, postForm, startTestServer, type TestServer } from './helpers.ts';
import { pushIni, pushUserData, startFakeReceiver, type FakeReceiver, type ReceivedPush } from './receiver-fixture.ts';

let srv: TestServer | undefined;
const receivers: FakeReceiver[] = [];
afterEach(async () => {
  await srv?.close();
  srv = undefined;
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

/** A receiver that is closed after the test (closing one twice is harmless). */
async function receiver(port = 0): Promise<FakeReceiver> {
  const r = await startFakeReceiver(port);
  receivers.push(r);
  return r;
}

const RESEND = { GCTI_GMS_PushResend: 'true' } as const;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function setup(opts: { extraIni?: string; env?: Record<string, string>; receiverUrl?: (r: FakeReceiver) => string } = {}) {
  const rcv = await receiver();
  const clock = new ManualClock(Date.now());
  const log = memoryLogger();
  const url = opts.receiverUrl?.(rcv) ?? rcv.url;
  srv = await startTestServer(pushIni(url, opts.extraIni), opts.env ?? {}, { clock, autoPush: false, random: () => 0, log });
  const s = srv;
  const alice = new AgentClient(s.url, 'alice', 'alice-secret');
  await alice.login();
  return { rcv, srv: s, clock, alice, log, push: () => s.running.app.push };
}

async function subscribedChat(base: string, deviceId: string, extra: Record<string, string> = {}) {
  const c = new ChatClient(base);
  const r = await c.start({ nickname: 'Ann', ...pushUserData(deviceId, extra) });
  expect(r.body.statusCode).toBe(0);
  return c;
}

/** The server is still up and a normal Chat API refresh answers statusCode 0 (note: this acknowledges). */
async function stillServing(s: TestServer, c: ChatClient): Promise<void> {
  const r = await postForm(`${s.url}/genesys/2/chat/${c.service}/${c.chatId}/refresh`, { ...c.ids() });
  expect(r.status).toBe(200);
  expect(r.body.statusCode).toBe(0);
  expect((await getHealth(s.url)).status).toBe('ok');
}

const attempts = (got: readonly ReceivedPush[]) => got.map((p) => p.body.attempt as number);
const failedLines = (log: ReturnType<typeof memoryLogger>) => log.lines.filter((l) => l.msg === 'push notification failed');

describe('receiver answers 500', () => {
  it('without resend: exactly one POST, then the notification has failed', async () => {
    const { rcv, srv, clock, alice, log, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-500');
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'status', status: 500 });
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    for (let i = 0; i < 5; i++) {
      clock.advance(15_000);
      await push().tick();
    }
    expect(rcv.received).toHaveLength(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, created: 1, delivered: 0, failed: 1 });
    expect(failedLines(log)).toHaveLength(1);
    expect(failedLines(log)[0]?.obj).toMatchObject({ reason: 'HTTP 500', attempts: 1 });
    await stillServing(srv, c);
  });

  it('with resend: retried after exactly 500 ms, delivered when the receiver recovers, resent until acknowledged', async () => {
    const { rcv, srv, clock, alice, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-500r', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'status', status: 500 });
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 0, failed: 0 });

    rcv.behave({ kind: 'status', status: 200 });
    clock.advance(499);
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    clock.advance(1);
    await push().tick();
    expect(rcv.received).toHaveLength(2);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 1, failed: 0 });

    // Delivered, not acknowledged: resent every 15 s.
    clock.advance(14_999);
    await push().tick();
    expect(rcv.received).toHaveLength(2);
    clock.advance(1);
    await push().tick();
    expect(rcv.received).toHaveLength(3);
    const ids = new Set(rcv.received.map((p) => p.body.notificationId));
    expect(ids.size).toBe(1);
    expect(attempts(rcv.received)).toEqual([1, 2, 3]);

    // The refresh acknowledges; nothing more is sent.
    await stillServing(srv, c);
    for (let i = 0; i < 4; i++) {
      clock.advance(15_000);
      await push().tick();
    }
    expect(rcv.received).toHaveLength(3);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, delivered: 1, acked: 1, failed: 0 });
  });
});

describe('receiver hangs', () => {
  it('with resend: the attempt times out after about 1 s and is retried', async () => {
    const { rcv, srv, clock, alice, log, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-hang', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'hang' });
    const t0 = Date.now();
    await push().tick();
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(4_000);
    expect(rcv.received).toHaveLength(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 0, failed: 0 });
    expect(log.lines.some((l) => l.msg === 'customhttp push not delivered' && JSON.stringify(l.obj).includes('"timeout"'))).toBe(true);

    rcv.behave({ kind: 'status', status: 200 });
    clock.advance(499);
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    clock.advance(1);
    await push().tick();
    expect(rcv.received).toHaveLength(2);
    expect(rcv.received[1]?.body).toMatchObject({ attempt: 2, notificationId: rcv.received[0]?.body.notificationId });
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 1 });
    await stillServing(srv, c);
  });

  it('keeps at most max-concurrency POSTs outstanding and does not starve the other sessions', async () => {
    const { rcv, srv, clock, alice, push } = await setup({ env: { PARLEY_PUSH_MAX_CONCURRENCY: '2' } });
    const bob = new AgentClient(srv.url, 'bob', 'bob-secret-1');
    await bob.login();
    const c1 = await subscribedChat(srv.url, 'dev-c1', RESEND);
    const c2 = await subscribedChat(srv.url, 'dev-c2', RESEND);
    const c3 = await subscribedChat(srv.url, 'dev-c3', RESEND);
    await alice.accept(c1.chatId);
    await alice.accept(c2.chatId);
    await bob.accept(c3.chatId);
    expect((await getHealth(srv.url)).push.outbox_depth).toBe(3);

    rcv.behave({ kind: 'hang' });
    const first = push().tick();
    await rcv.waitFor(2);
    await sleep(300);
    expect(rcv.received).toHaveLength(2); // the third waits for a slot
    // The server keeps answering while POSTs hang.
    expect((await getHealth(srv.url)).push.outbox_depth).toBe(3);
    await first;
    expect(rcv.received.map((p) => p.body.deviceId).sort()).toEqual(['dev-c1', 'dev-c2']);

    // The two timed-out ones wait for their backoff; the third gets a slot now.
    const second = push().tick();
    await rcv.waitFor(3);
    await sleep(200);
    expect(rcv.received).toHaveLength(3);
    expect(rcv.received[2]?.body.deviceId).toBe('dev-c3');
    await second;

    // The receiver recovers: everything is delivered, two at a time.
    rcv.behave({ kind: 'status', status: 200 });
    clock.advance(500);
    await push().tick();
    expect(rcv.received).toHaveLength(5);
    await push().tick();
    expect(rcv.received).toHaveLength(6);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 3, delivered: 3, failed: 0 });
    expect(new Set(rcv.received.slice(3).map((p) => p.body.deviceId))).toEqual(new Set(['dev-c1', 'dev-c2', 'dev-c3']));
    for (const c of [c1, c2, c3]) await stillServing(srv, c);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, acked: 3 });
  });
});

describe('receiver redirects (301 with Location)', () => {
  it('is not followed; without resend the notification fails', async () => {
    const { rcv, srv, clock, alice, log, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-301');
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'status', status: 301, headers: { location: `${rcv.url}/moved` } });
    await push().tick();
    clock.advance(15_000);
    await push().tick();
    await sleep(50);
    expect(rcv.received.map((p) => p.path)).toEqual(['/push']);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, failed: 1 });
    expect(failedLines(log)[0]?.obj).toMatchObject({ reason: 'HTTP 301' });
    await stillServing(srv, c);
  });

  it('is not followed; with resend it is retried at the original URL', async () => {
    const { rcv, srv, clock, alice, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-301r', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'status', status: 301, headers: { location: `${rcv.url}/moved` } });
    await push().tick();
    clock.advance(500);
    await push().tick();
    await sleep(50);
    expect(rcv.received.map((p) => p.path)).toEqual(['/push', '/push']);
    expect(attempts(rcv.received)).toEqual([1, 2]);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 0, failed: 0 });
    await stillServing(srv, c);
  });
});

describe('receiver closes the connection without answering', () => {
  it('with resend: retried, and delivered once the receiver answers', async () => {
    const { rcv, srv, clock, alice, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-close', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'close' });
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 0, failed: 0 });
    clock.advance(500);
    await push().tick();
    expect(rcv.received).toHaveLength(2);
    rcv.behave({ kind: 'status', status: 200 });
    clock.advance(1_000); // second consecutive failure: backoff 1000 ms
    await push().tick();
    expect(rcv.received).toHaveLength(3);
    expect(attempts(rcv.received)).toEqual([1, 2, 3]);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 1, failed: 0 });
    await stillServing(srv, c);
  });
});

describe('receiver down (connection refused)', () => {
  it('with resend: fails after the deadline, then a receiver back on the same port gets new notifications', async () => {
    const { rcv, srv, clock, alice, log, push } = await setup();
    const port = rcv.port;
    const c = await subscribedChat(srv.url, 'dev-down', RESEND);
    await rcv.close();
    const createdAt = clock.now();
    await alice.accept(c.chatId);
    let ticks = 0;
    while (push().depth > 0 && ticks < 200) {
      await push().tick();
      ticks++;
      if (push().depth > 0) clock.advance(500);
    }
    expect(push().depth).toBe(0);
    // The deadline is createdAt + delay × (attempts + 1) = 60 s; it gave up before passing it.
    expect(clock.now() - createdAt).toBeLessThanOrEqual(60_000);
    expect(clock.now() - createdAt).toBeGreaterThanOrEqual(45_000);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, delivered: 0, failed: 1 });
    const failed = failedLines(log);
    expect(failed).toHaveLength(1);
    expect(failed[0]?.obj).toMatchObject({ reason: expect.stringMatching(/^undeliverable: /) });
    expect((failed[0]?.obj as { attempts: number }).attempts).toBeGreaterThan(3);

    const back = await receiver(port);
    await alice.send(c.chatId, 'are you back?');
    await push().tick();
    expect(back.received).toHaveLength(1);
    expect(back.received[0]?.body).toMatchObject({ deviceId: 'dev-down', type: 'push-url', attempt: 1 });
    expect((await getHealth(srv.url)).push).toMatchObject({ created: 2, delivered: 1, failed: 1 });
    await stillServing(srv, c);
  });
});

describe('410 Gone', () => {
  it('exactly one POST even with resend, and the notification fails', async () => {
    const { rcv, srv, clock, alice, log, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-410', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'status', status: 410 });
    await push().tick();
    for (let i = 0; i < 6; i++) {
      clock.advance(15_000);
      await push().tick();
    }
    expect(rcv.received).toHaveLength(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, failed: 1, delivered: 0 });
    expect(failedLines(log)[0]?.obj).toMatchObject({ reason: 'HTTP 410', attempts: 1 });
    await stillServing(srv, c);
  });
});

describe('429 with Retry-After', () => {
  it('with resend: the next attempt is not before Retry-After: 5', async () => {
    const { rcv, srv, clock, alice, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-429', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'status', status: 429, headers: { 'retry-after': '5' } });
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    rcv.behave({ kind: 'status', status: 200 });
    clock.advance(500); // the backoff alone would retry here
    await push().tick();
    clock.advance(4_499);
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    clock.advance(1);
    await push().tick();
    expect(rcv.received).toHaveLength(2);
    expect(rcv.received[1]?.body).toMatchObject({ attempt: 2, notificationId: rcv.received[0]?.body.notificationId });
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 1 });
    await stillServing(srv, c);
  });
});

describe('the outbox survives a restart', () => {
  it('a pending notification is POSTed again, with the same id, by the restarted engine', async () => {
    const { rcv, srv, clock, alice, log, push } = await setup();
    const port = rcv.port;
    const c = await subscribedChat(srv.url, 'dev-restart', RESEND);
    await rcv.close();
    await alice.accept(c.chatId);
    await push().tick();
    expect(push().depth).toBe(1);
    const notDelivered = log.lines.find((l) => l.msg === 'customhttp push not delivered');
    const id = (notDelivered?.obj as { notificationId?: string } | undefined)?.notificationId;
    expect(id).toMatch(/^ntf_/);

    const before = push();
    await srv.restart();
    expect(push()).not.toBe(before);
    expect(push().depth).toBe(1);
    const back = await receiver(port);
    clock.advance(500);
    await push().tick();
    expect(back.received).toHaveLength(1);
    expect(back.received[0]?.body).toMatchObject({ deviceId: 'dev-restart', type: 'push-url', notificationId: id, attempt: 2 });

    const after = new ChatClient(srv.url);
    Object.assign(after, { chatId: c.chatId, userId: c.userId, secureKey: c.secureKey, alias: c.alias });
    await stillServing(srv, after);
    expect(push().depth).toBe(0);
    clock.advance(60_000);
    await push().tick();
    expect(back.received).toHaveLength(1);
  });
});

describe('acknowledgement edge cases', () => {
  it('a wrong secureKey does not acknowledge; secureKey alone does; a duplicate acknowledgement is harmless', async () => {
    const { rcv, srv, clock, alice, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-ack', RESEND);
    await alice.accept(c.chatId);
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    const refreshUrl = `${c.chatUrl}/${c.chatId}/refresh`;

    expect((await postForm(refreshUrl, { secureKey: 'f'.repeat(20) })).status).toBe(403);
    expect((await postForm(refreshUrl, { secureKey: c.secureKey, userId: 'not-the-user' })).status).toBe(403);
    clock.advance(15_000);
    await push().tick();
    expect(rcv.received).toHaveLength(2);

    const ack = await postForm(refreshUrl, { secureKey: c.secureKey });
    expect(ack.status).toBe(200);
    expect(ack.body.statusCode).toBe(0);
    expect(push().depth).toBe(0);
    const again = await postForm(refreshUrl, { secureKey: c.secureKey });
    expect(again.body.statusCode).toBe(0);
    expect((await c.op('refresh')).body.statusCode).toBe(0);
    for (let i = 0; i < 4; i++) {
      clock.advance(15_000);
      await push().tick();
    }
    expect(rcv.received).toHaveLength(2);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, delivered: 1, acked: 1, failed: 0 });
  });

  // Regression: found by this suite and fixed in PushEngine.acknowledge/attempt.
  it('an acknowledgement that arrives while a POST is in flight ends it acknowledged, not resent', async () => {
    const { rcv, srv, clock, alice, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-inflight', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'hang' });
    const ticking = push().tick();
    await rcv.waitFor(1);
    const ack = await c.op('refresh');
    expect(ack.body.statusCode).toBe(0);
    await ticking;
    rcv.behave({ kind: 'status', status: 200 });
    for (let i = 0; i < 8; i++) {
      clock.advance(500);
      await push().tick();
    }
    clock.advance(60_000);
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, acked: 1, failed: 0 });
  });

  it('the server keeps answering after an acknowledgement races an in-flight POST', async () => {
    const { rcv, srv, alice, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-inflight2', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'hang' });
    const ticking = push().tick();
    await rcv.waitFor(1);
    expect((await c.op('refresh')).body.statusCode).toBe(0);
    await ticking;
    await stillServing(srv, c);
  });
});

describe('SSRF guard', () => {
  it('an IP-literal target outside allowed-networks is never contacted and fails at once, even with resend', async () => {
    const { rcv, srv, clock, alice, log, push } = await setup({ env: { PARLEY_PUSH_ALLOWED_NETWORKS: 'public' } });
    const c = await subscribedChat(srv.url, 'dev-ssrf', RESEND);
    await alice.accept(c.chatId);
    await push().tick();
    expect(push().depth).toBe(0);
    clock.advance(15_000);
    await push().tick();
    await sleep(100);
    expect(rcv.received).toHaveLength(0);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, delivered: 0, failed: 1 });
    expect(failedLines(log)[0]?.obj).toMatchObject({ reason: 'EPUSHFORBIDDEN', attempts: 1 });
    await stillServing(srv, c);
  });

  it('a host name (localhost) that resolves outside allowed-networks is refused by the lookup guard', async () => {
    const { rcv, srv, clock, alice, log, push } = await setup({
      env: { PARLEY_PUSH_ALLOWED_NETWORKS: 'public' },
      receiverUrl: (r) => `http://localhost:${r.port}`,
    });
    const c = await subscribedChat(srv.url, 'dev-ssrf-dns', RESEND);
    await alice.accept(c.chatId);
    await push().tick();
    expect(push().depth).toBe(0);
    clock.advance(15_000);
    await push().tick();
    await sleep(100);
    expect(rcv.received).toHaveLength(0);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, delivered: 0, failed: 1 });
    expect(failedLines(log)[0]?.obj).toMatchObject({ reason: 'EPUSHFORBIDDEN', attempts: 1 });
    await stillServing(srv, c);
  });

  it('the same localhost target is reached when loopback is allowed (control)', async () => {
    const { rcv, srv, alice, push } = await setup({ receiverUrl: (r) => `http://localhost:${r.port}` });
    const c = await subscribedChat(srv.url, 'dev-localhost', RESEND);
    await alice.accept(c.chatId);
    await push().tick();
    expect(rcv.received).toHaveLength(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ delivered: 1, failed: 0 });
    await stillServing(srv, c);
  });
});

describe('a receiver that answers slowly', () => {
  it('is not counted twice: attempts 1, 2, 3 carry the same notificationId and delivered counts once', async () => {
    const { rcv, srv, clock, alice, push } = await setup();
    const c = await subscribedChat(srv.url, 'dev-slow', RESEND);
    await alice.accept(c.chatId);
    rcv.behave({ kind: 'hang' });
    await push().tick(); // times out after ~1 s
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, delivered: 0 });
    rcv.behave({ kind: 'status', status: 200 });
    clock.advance(500);
    await push().tick();
    clock.advance(15_000);
    await push().tick();
    expect(attempts(rcv.received)).toEqual([1, 2, 3]);
    expect(new Set(rcv.received.map((p) => p.body.notificationId)).size).toBe(1);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 1, created: 1, delivered: 1, failed: 0 });
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toMatch(/parley_push_notifications_total\{event="delivered"\} 1\b/);
    await stillServing(srv, c);
    expect((await getHealth(srv.url)).push).toMatchObject({ outbox_depth: 0, acked: 1 });
  });
});
