/**
 * Security of the receiver (docs/security.md: "a browser claiming another session through the
 * receiver", "forged pushes", "floods"): real `parley start` on 127.0.0.1 port 0, real SQLite in a temp dir.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ManualClock } from '../src/clock.ts';
import { signWebhook } from '../src/push/signing.ts';
import { parseConfig } from '../src/config/load.ts';
import { signOwnPushes } from '../src/roles/start.ts';
import { AgentClient, ChatClient, getHealth, postForm, startTestServer, type TestServer } from './helpers.ts';
import { Browser, postPush } from './receiver-helpers.ts';
import { request } from 'node:http';

let srv: TestServer | undefined;
const browsers: Browser[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
  for (const s of sockets.splice(0)) s.terminate();
  await srv?.close();
  srv = undefined;
});

async function tab(base: string): Promise<Browser> {
  const b = await Browser.open(base);
  browsers.push(b);
  return b;
}

/** A POST of a form from another loopback address (127.0.0.2): a client that is not the receiver. */
function postFormFrom(localAddress: string, url: string, fields: Record<string, string>): Promise<{ status: number; body: { statusCode?: number } }> {
  const body = new URLSearchParams(fields).toString();
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', localAddress, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { statusCode?: number } }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('receiver: browsers never hold the secureKey', () => {
  it('the started frame and the events carry the browser token, not the secureKey', async () => {
    srv = await startTestServer();
    const b = await tab(srv.url);
    const { token } = await b.start();
    const secureKey = srv.running.receiver?.receiver.session(token).secureKey ?? '';
    expect(secureKey).toMatch(/^[0-9a-f]{20}$/);
    expect(token).not.toBe(secureKey);
    expect(JSON.stringify(b.frames)).not.toContain(secureKey);
  });

  it('an unknown browser token is refused on every receiver entry point', async () => {
    srv = await startTestServer();
    const b = await tab(srv.url);
    await b.start();
    const other = await tab(srv.url);
    other.send({ type: 'resume', token: 'not-a-token', from: 1 });
    expect((await other.next('error')).error).toMatchObject({ code: 'ACCESS_DENIED' });
    const limits = await fetch(`${srv.url}/receiver/file-limits?session=not-a-token`);
    expect(limits.status).toBe(403);
    const dl = await fetch(`${srv.url}/receiver/file/abc?session=not-a-token`);
    expect(dl.status).toBe(403);
    const fd = new FormData();
    fd.append('file', new Blob([Buffer.from('x')], { type: 'text/plain' }), 'a.txt');
    const up = await fetch(`${srv.url}/receiver/file`, { method: 'POST', headers: { 'x-parley-session': 'not-a-token' }, body: fd });
    expect(up.status).toBe(403);
  });

  // Regression test (this was a gap, now closed). Was: GET /receiver/file-limits hands the browser the whole Chat API v2 reply of the gateway, secureKey
  // and userId included: src/receiver/receiver-http.ts:86 sends `await o.receiver.operate(...)` (a ChatReply,
  // src/receiver/gateway-client.ts:9-20, built by okEnvelope in src/gateway/envelope.ts:19-32) as it is.
  // Contradicts docs/security.md:31 ("browsers hold their own random token, never the `secureKey`"). Right
  // behaviour: answer only the limits (the file-client-cfg-get userData), never chatId/userId/secureKey/alias.
  it('GET /receiver/file-limits does not reveal the secureKey to the browser', async () => {
    srv = await startTestServer();
    const b = await tab(srv.url);
    const { token } = await b.start();
    const secureKey = srv.running.receiver?.receiver.session(token).secureKey ?? '';
    const res = await fetch(`${srv.url}/receiver/file-limits?session=${encodeURIComponent(token)}`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(secureKey);
  });

  // Regression test (this was a gap, now closed). Was: POST /receiver/file answers the browser with the gateway's Chat API reply as it is, secureKey and
  // userId included: src/receiver/receiver-http.ts:69-70 (`sendJson(res, 200, reply)`, the ChatReply of
  // src/receiver/receiver.ts:223-231). Contradicts docs/security.md:31 ("browsers hold their own random
  // token, never the `secureKey`"). Right behaviour: answer the file id (and events), without tokens.
  it('POST /receiver/file does not reveal the secureKey to the browser', async () => {
    srv = await startTestServer();
    const b = await tab(srv.url);
    const { token } = await b.start();
    const secureKey = srv.running.receiver?.receiver.session(token).secureKey ?? '';
    const fd = new FormData();
    fd.append('file', new Blob([Buffer.from('order 42 receipt')], { type: 'text/plain' }), 'receipt.txt');
    const res = await fetch(`${srv.url}/receiver/file`, { method: 'POST', headers: { 'x-parley-session': token }, body: fd });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(secureKey);
  });
});

describe('receiver: floods', () => {
  it('the per-client limit holds for a direct Chat API client on another address (control)', async () => {
    const clock = new ManualClock(Date.now());
    srv = await startTestServer('', { PARLEY_HTTP_RATE_LIMIT_PER_CLIENT: '1', PARLEY_HTTP_RATE_LIMIT_EXEMPT: '127.0.0.1' }, { clock, autoPush: false });
    const api = `${srv.url}/genesys/2/chat/customer-support`;
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await postFormFrom('127.0.0.2', api, { nickname: 'Ann' })).status);
    expect(statuses).toEqual([200, 200, 429, 429]);
  });

  // Regression test (this was a gap, now closed). Was: a browser on the customer page is not limited per client address at all: every chat it starts
  // through /receiver/ws reaches the Chat API from the receiver's own address, which the documented setup
  // exempts (config/parley.ini:14-18, `rate-limit-exempt = 127.0.0.1, ::1`; the receiver would otherwise
  // share one bucket for all browsers), and src/receiver/receiver-http.ts:193-204 (start) and :64-71, :85
  // apply no bucket of their own. Contradicts docs/security.md:28 ("token buckets per client address ...").
  // Right behaviour: the receiver limits each browser's address (the same [http] rate-limit-per-client) before
  // calling the gateway, so a browser gets at most the burst of chats a direct client gets.
  it('a browser on another address cannot start more chats through /receiver/ws than its per-client burst', async () => {
    const clock = new ManualClock(Date.now());
    srv = await startTestServer('', { PARLEY_HTTP_RATE_LIMIT_PER_CLIENT: '1', PARLEY_HTTP_RATE_LIMIT_EXEMPT: '127.0.0.1' }, { clock, autoPush: false });
    const ws = new WebSocket(`${srv.url.replace(/^http/, 'ws')}/receiver/ws`, { localAddress: '127.0.0.2' });
    sockets.push(ws);
    const frames: Array<{ type: string }> = [];
    let wake: (() => void) | undefined;
    ws.on('message', (d) => {
      frames.push(JSON.parse(d.toString()) as { type: string });
      wake?.();
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const answered = () => frames.filter((f) => f.type === 'started' || f.type === 'error').length;
    for (let i = 0; i < 6; i++) {
      ws.send(JSON.stringify({ type: 'start', nickname: `Flood ${i}` }));
      while (answered() <= i) await new Promise<void>((r) => (wake = r));
    }
    const started = frames.filter((f) => f.type === 'started').length;
    expect(started).toBeLessThanOrEqual(2);
  });
});

describe('receiver: signed pushes', () => {
  const SECRET = 'whsec_' + Buffer.from('review-secret-0123456789abcdef').toString('base64');

  it('refuses unsigned, tampered, wrongly keyed and stale pushes with 401 and accepts a good signature', async () => {
    srv = await startTestServer('', { PARLEY_RECEIVER_SIGNING_SECRET: SECRET });
    const body = JSON.stringify({ deviceId: 'nobody', message: 'x', type: 'Message', notificationId: 'ntf_1', attempt: 1 });
    const now = Math.floor(Date.now() / 1000);
    const good = signWebhook(SECRET, 'ntf_1', now, body);
    expect((await postPush(srv.url, body)).status).toBe(401);
    expect((await postPush(srv.url, body.replace('nobody', 'nobodz'), { ...good })).status).toBe(401);
    const otherKey = signWebhook('whsec_' + Buffer.from('another-secret-0123456789').toString('base64'), 'ntf_1', now, body);
    expect((await postPush(srv.url, body, { ...otherKey })).status).toBe(401);
    const stale = signWebhook(SECRET, 'ntf_1', now - 301, body);
    expect((await postPush(srv.url, body, { ...stale })).status).toBe(401);
    const future = signWebhook(SECRET, 'ntf_1', now + 301, body);
    expect((await postPush(srv.url, body, { ...future })).status).toBe(401);
    // The id is part of what is signed: the same signature under another webhook-id fails.
    expect((await postPush(srv.url, body, { ...good, 'webhook-id': 'ntf_2' })).status).toBe(401);
    // A good signature passes verification (the device is unknown to this receiver: 410).
    expect((await postPush(srv.url, body, { ...good })).status).toBe(410);
  });

  it('pushes to the receiver of the same process are signed with a secret drawn at start: an unsigned one is refused', async () => {
    // As in config/parley.ini: customhttp.url empty = this process's own receiver.
    srv = await startTestServer(
      '[settings]\nflex-push-on-join = true\nflex-push-content = session-id, user-id, secure-key, app-dbid\n' +
        '[chat]\nenable_notification_mode = true\n[push]\npushEnabled = customhttp\ncustomhttp.url =\nallowed-networks = loopback\n',
    );
    expect((await postPush(srv.url, { deviceId: 'nobody', message: 'x' })).status).toBe(401);
    // The gateway's own pushes are signed with it: the browser gets the agent's join, acknowledged, none failed.
    const b = await Browser.open(srv.url);
    try {
      const { chatId } = await b.start();
      const agent = new AgentClient(srv.url, 'alice', 'alice-secret');
      await agent.login();
      expect((await agent.accept(chatId)).status).toBe(200);
      await b.waitForEvent((e) => e.type === 'ParticipantJoined' && e.from.type === 'Agent', 'the agent joined');
      const push = (await getHealth(srv.url)).push;
      expect(push.failed).toBe(0);
      expect(push.delivered).toBeGreaterThanOrEqual(1);
    } finally {
      b.close();
    }
  });

  it('a secret set on one side only is used on both for the own receiver', () => {
    const base = parseConfig('[chat.s]\n[agent.a]\npassword = 12345678\n', 't.ini');
    const onPush = signOwnPushes({ ...base, push: { ...base.push, signingSecret: 'push-side' } });
    expect([onPush.push.signingSecret, onPush.receiver.signingSecret]).toEqual(['push-side', 'push-side']);
    const onReceiver = signOwnPushes({ ...base, receiver: { ...base.receiver, signingSecret: 'receiver-side' } });
    expect([onReceiver.push.signingSecret, onReceiver.receiver.signingSecret]).toEqual(['receiver-side', 'receiver-side']);
    const drawn = signOwnPushes(base, () => 'whsec_drawn');
    expect([drawn.push.signingSecret, drawn.receiver.signingSecret]).toEqual(['whsec_drawn', 'whsec_drawn']);
    // Pushes going elsewhere, or no receiver here: the file's settings as they are.
    const elsewhere = { ...base, push: { ...base.push, customhttpUrl: 'https://push.example.com/' } };
    expect(signOwnPushes(elsewhere, () => 'whsec_drawn')).toBe(elsewhere);
  });

  it('a receiver fed by another gateway and given no secret does not verify pushes (as documented: only "when a secret is set")', async () => {
    srv = await startTestServer('[push]\ncustomhttp.url = http://127.0.0.1:9/\n');
    const r = await postPush(srv.url, { deviceId: 'nobody', message: 'x' });
    expect(r.status).toBe(410);
  });
});

describe('receiver: direct Chat API client is unaffected by the receiver path (control)', () => {
  it('a chat started directly still needs its secureKey', async () => {
    srv = await startTestServer();
    const c = new ChatClient(srv.url);
    await c.start();
    const r = await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { secureKey: '0'.repeat(20) });
    expect(r.status).toBe(403);
  });
});
