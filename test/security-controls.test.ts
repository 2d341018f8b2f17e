/**
 * The controls of docs/security.md checked against the code over real HTTP on 127.0.0.1
 * (rate limits, body and field limits in every encoding, secureKey checks, the agent API's bearer tokens,
 * the push SSRF guard, log redaction). Each test here confirms a control that holds.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { constantTimeEqual } from '../src/chat/secure-compare.ts';
import { ManualClock } from '../src/clock.ts';
import { parseConfig } from '../src/config/load.ts';
import { createLogger } from '../src/log.ts';
import { HttpDelivery } from '../src/push/http-delivery.ts';
import { parseAllowList } from '../src/push/ssrf.ts';
import { AgentClient, BASE_INI, ChatClient, postForm, postMultipart, postRaw, SERVICE, startTestServer, type TestServer } from './helpers.ts';
import { pushEngine } from './receiver-helpers.ts';
import { pushIni, pushUserData } from './receiver-fixture.ts';

let srv: TestServer | undefined;
let local: Server | undefined;
let delivery: HttpDelivery | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
  await delivery?.close();
  delivery = undefined;
  if (local !== undefined) await new Promise((r) => local?.close(r));
  local = undefined;
});

describe('rate limits', () => {
  it('X-Forwarded-For and similar headers do not give a client a fresh per-client bucket', async () => {
    const clock = new ManualClock(Date.now());
    srv = await startTestServer('', { PARLEY_HTTP_RATE_LIMIT_PER_CLIENT: '1' }, { clock, autoPush: false });
    const url = `${srv.url}/genesys/2/chat/${SERVICE}`;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const spoof = `203.0.113.${i}`;
      statuses.push((await postForm(url, { nickname: 'Ann' }, { 'x-forwarded-for': spoof, 'x-real-ip': spoof, forwarded: `for=${spoof}` })).status);
    }
    expect(statuses).toEqual([200, 200, 429, 429, 429]);
    const limited = await postForm(url, { nickname: 'Ann' });
    expect(limited.status).toBe(429);
    expect(limited.body).toMatchObject({ statusCode: 1, messages: [], errors: [{ code: 123 }] });
    expect(limited.body.secureKey).toBeUndefined();
  });

  it('the per-session bucket is shared by every encoding and by GET downloads', async () => {
    const clock = new ManualClock(Date.now());
    srv = await startTestServer('', { PARLEY_HTTP_RATE_LIMIT_PER_SESSION: '1' }, { clock, autoPush: false });
    const c = new ChatClient(srv.url);
    await c.start();
    const base = `${c.chatUrl}/${c.chatId}`;
    expect((await postRaw(`${base}/refresh`, JSON.stringify({ secureKey: c.secureKey }), 'application/json')).status).toBe(200);
    expect((await postMultipart(`${base}/refresh`, { secureKey: c.secureKey })).status).toBe(200);
    expect((await fetch(`${base}/file/nofile/download?secureKey=${c.secureKey}`)).status).toBe(429);
    expect((await postRaw(`${base}/refresh`, `secureKey=${c.secureKey}`, 'text/plain')).status).toBe(429);
    // Percent-encoding the chatId does not make another bucket.
    const encoded = `${c.chatUrl}/${[...c.chatId].map((ch) => `%${ch.charCodeAt(0).toString(16)}`).join('')}/refresh`;
    expect((await postForm(encoded, { secureKey: c.secureKey })).status).toBe(429);
  });
});

describe('reading another customer\u2019s chat', () => {
  it('a wrong secureKey or userId gets 403 without transcript or tokens; another service gets 404; nothing changes', async () => {
    srv = await startTestServer();
    const c = new ChatClient(srv.url);
    await c.start();
    await c.op('send', { message: 'my order number is 42' });
    const base = `${c.chatUrl}/${c.chatId}`;
    const tries: Array<Record<string, string>> = [{ secureKey: 'f'.repeat(20) }, { secureKey: c.secureKey, userId: 'F'.repeat(16) }, { secureKey: c.secureKey.toUpperCase() }, { secureKey: c.secureKey.slice(0, 19) }];
    for (const fields of tries) {
      const r = await postForm(`${base}/send`, { ...fields, message: 'injected' });
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ statusCode: 2, messages: [], errors: [{ code: 105 }] });
      expect(r.body.secureKey).toBeUndefined();
      expect(r.body.userId).toBeUndefined();
      expect(JSON.stringify(r.body)).not.toContain('order number');
    }
    // Repeated keys: the first value is the one checked, in every position.
    expect((await postRaw(`${base}/refresh`, `secureKey=${'0'.repeat(20)}&secureKey=${c.secureKey}`, 'application/x-www-form-urlencoded')).status).toBe(403);
    const other = await postForm(`${srv.url}/genesys/2/chat/other/${c.chatId}/refresh`, { secureKey: c.secureKey });
    expect(other.status).toBe(404);
    expect(other.body.messages).toEqual([]);
    const dl = await fetch(`${base}/file/x/download?secureKey=${'0'.repeat(20)}`);
    expect(dl.status).toBe(403);
    const all = await c.op('refresh', { transcriptPosition: 1 });
    expect(all.body.messages.map((m: { text?: string }) => m.text)).not.toContain('injected');
  });
});

describe('body and field limits in every encoding', () => {
  const ENV = { PARLEY_HTTP_MAX_FIELD_LENGTH: '100', PARLEY_HTTP_MAX_BODY_SIZE: '110000' };

  it('a field over max-field-length is refused with 413 in urlencoded, text/plain, no type, JSON and multipart', async () => {
    srv = await startTestServer('', ENV);
    const c = new ChatClient(srv.url);
    await c.start();
    const url = `${c.chatUrl}/${c.chatId}/send`;
    const long = 'x'.repeat(101);
    const form = `secureKey=${c.secureKey}&message=${long}`;
    const replies = [
      await postRaw(url, form, 'application/x-www-form-urlencoded'),
      await postRaw(url, form, 'text/plain'),
      await postRaw(url, form),
      await postRaw(url, `secureKey=${c.secureKey}&message=${'%C3%A9'.repeat(101)}`, 'application/x-www-form-urlencoded'),
      await postRaw(url, JSON.stringify({ secureKey: c.secureKey, message: long }), 'application/json'),
      await postRaw(url, JSON.stringify({ secureKey: c.secureKey, userData: { k: long } }), 'application/json'),
      await postMultipart(url, { secureKey: c.secureKey, message: long }),
      await postMultipart(`${c.chatUrl}/${c.chatId}/updateData`, { secureKey: c.secureKey, 'userData[k]': long }),
    ];
    for (const r of replies) {
      expect(r.status).toBe(413);
      expect(r.body).toMatchObject({ statusCode: 2, errors: [{ code: 109 }] });
    }
    const all = await c.op('refresh', { transcriptPosition: 1 });
    expect(all.body.messages.filter((m: { type: string }) => m.type === 'Message')).toEqual([]);
  });

  it('a body over max-body-size is refused with 413 whether declared, chunked or multipart, and the server keeps serving', async () => {
    srv = await startTestServer('', ENV);
    const c = new ChatClient(srv.url);
    await c.start();
    const url = `${c.chatUrl}/${c.chatId}/updateData`;
    const big = `secureKey=${c.secureKey}&` + Array.from({ length: 12_000 }, (_, i) => `userData[k${i}]=v`).join('&');
    expect(Buffer.byteLength(big)).toBeGreaterThan(110_000);
    const declared = await postRaw(url, big, 'application/x-www-form-urlencoded');
    expect(declared.status).toBe(413);
    expect(declared.body).toMatchObject({ errors: [{ code: 108 }] });
    const chunks = [Buffer.from(big.slice(0, 60_000)), Buffer.from(big.slice(60_000))];
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        const next = chunks.shift();
        if (next === undefined) ctl.close();
        else ctl.enqueue(next);
      },
    });
    const chunked = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: stream, duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(413);
    const fd = new FormData();
    fd.append('secureKey', c.secureKey);
    fd.append('file', new Blob([Buffer.alloc(120_000, 97)], { type: 'text/plain' }), 'a.txt');
    const multi = await fetch(`${c.chatUrl}/${c.chatId}/file`, { method: 'POST', body: fd });
    expect(multi.status).toBe(413);
    const many = await postMultipart(url, { secureKey: c.secureKey, ...Object.fromEntries(Array.from({ length: 1100 }, (_, i) => [`userData[m${i}]`, 'v'])) });
    expect(many.status).toBe(400);
    const r = await c.op('refresh', { transcriptPosition: 1 });
    expect(r.status).toBe(200);
    expect(JSON.stringify(r.body)).not.toContain('k11999');
  });
});

describe('agent API and desk', () => {
  it('takes bearer tokens only from the authorization header: no cookie is set or read, no CORS for foreign pages', async () => {
    srv = await startTestServer();
    const login = await fetch(`${srv.url}/agent/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', origin: 'http://evil.example' },
      body: JSON.stringify({ agentId: 'alice', password: 'alice-secret' }),
    });
    expect(login.status).toBe(200);
    expect(login.headers.get('set-cookie')).toBeNull();
    expect(login.headers.get('access-control-allow-origin')).toBeNull();
    const { token } = (await login.json()) as { token: string };
    expect(Buffer.from(token, 'base64url')).toHaveLength(24);
    for (const cookie of [`token=${token}`, `authorization=Bearer ${token}`, `session=${token}`]) {
      const r = await fetch(`${srv.url}/agent/api/chats`, { headers: { cookie, origin: 'http://evil.example' } });
      expect(r.status).toBe(401);
    }
    const pre = await fetch(`${srv.url}/agent/api/chats`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    expect((await fetch(`${srv.url}/agent/api/chats`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    const desk = await fetch(`${srv.url}/desk/`);
    expect(desk.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(desk.headers.get('x-frame-options')).toBe('DENY');
    expect(desk.headers.get('set-cookie')).toBeNull();
  });

  it('refuses wrong passwords and unknown agents alike, and a signed-out token', async () => {
    srv = await startTestServer();
    const wrong = new AgentClient(srv.url, 'alice', 'alice-secreT');
    await expect(wrong.login()).rejects.toThrow();
    const ghost = new AgentClient(srv.url, 'mallory', 'alice-secret');
    await expect(ghost.login()).rejects.toThrow();
    const a = new AgentClient(srv.url, 'alice', 'alice-secret');
    await a.login();
    expect((await a.call('POST', 'logout')).status).toBe(200);
    expect((await a.overview()).status).toBe(401);
  });

  it('an agent password under 8 characters is refused by the config', () => {
    expect(() => parseConfig(BASE_INI + '\n[agent.eve]\npassword = 1234567\n', 't.ini')).toThrow(/password/);
  });
});

describe('constant-time comparison', () => {
  it('compares by value for equal and unequal lengths', () => {
    expect(constantTimeEqual('abc', 'abc')).toBe(true);
    expect(constantTimeEqual('abc', 'abd')).toBe(false);
    expect(constantTimeEqual('abc', 'abcabc')).toBe(false);
    expect(constantTimeEqual('', 'a')).toBe(false);
    expect(constantTimeEqual('', '')).toBe(true);
    expect(constantTimeEqual('a\u0000', 'a')).toBe(false);
  });
});

describe('push SSRF guard', () => {
  it('never connects to loopback through IP literals in any spelling or a name resolving to it, and follows no redirect', async () => {
    let hits = 0;
    local = createServer((req, res) => {
      hits++;
      req.resume();
      res.writeHead(302, { location: '/elsewhere' }).end();
    });
    await new Promise<void>((r) => local?.listen(0, '127.0.0.1', r));
    const port = (local.address() as AddressInfo).port;
    delivery = new HttpDelivery({ timeoutMs: 2000, connectionsPerOrigin: 1, allow: parseAllowList(['public']) });
    for (const host of ['127.0.0.1', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '0x7f.1', '2130706433', '017700000001', '127.1', '0.0.0.0', '[::1]', '[::]', 'localhost']) {
      const r = await delivery.post(`http://${host}:${port}/receiver/push`, '{}', {});
      expect(r, host).toEqual({ error: 'EPUSHFORBIDDEN' });
    }
    expect(await delivery.post(`file:///etc/passwd`, '{}', {})).toEqual({ error: 'EPUSHFORBIDDEN' });
    expect(hits).toBe(0);
    await delivery.close();
    delivery = new HttpDelivery({ timeoutMs: 2000, connectionsPerOrigin: 1, allow: parseAllowList(['loopback']) });
    const r = await delivery.post(`http://127.0.0.1:${port}/receiver/push`, '{}', {});
    expect(r).toMatchObject({ status: 302 });
    expect(hits).toBe(1);
  });
});

describe('secrets in logs', () => {
  it('a real run (api key, agent sign-ins, a refused push carrying the secureKey) logs none of its secrets', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = createLogger({ destination: sink, level: 'debug' });
    const clock = new ManualClock(Date.now());
    srv = await startTestServer(pushIni('http://127.0.0.1:9/receiver'), { PARLEY_HTTP_API_KEY: 'api-key-secret-1', PARLEY_PUSH_ALLOWED_NETWORKS: 'public' }, { clock, autoPush: false, log });
    const r = await postForm(`${srv.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Ann', ...pushUserData('dev-log') }, { 'x-api-key': 'api-key-secret-1' });
    expect(r.status).toBe(200);
    const bad = new AgentClient(srv.url, 'alice', 'wrong-password-1');
    await expect(bad.login()).rejects.toThrow();
    const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
    await alice.login();
    await alice.accept(r.body.chatId);
    await pushEngine(srv.running.app).tick();
    await new Promise((res) => setTimeout(res, 50));
    const text = lines.join('');
    expect(text.length).toBeGreaterThan(0);
    for (const secret of [r.body.secureKey as string, 'api-key-secret-1', 'wrong-password-1', 'alice-secret', alice.token]) expect(text).not.toContain(secret);
  });
});
