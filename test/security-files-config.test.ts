/**
 * Security: the agent file endpoint and the other download paths (who may read a
 * file, how a browser-renderable type is served), the sign-in throttle, the internal API through odd
 * request targets, push targets with credentials, and secrets in configuration errors. Real `parley start`
 * on 127.0.0.1 port 0 with SQLite in a temp dir.
 */
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.ts';
import { ParleyError } from '../src/errors.ts';
import { AgentClient, BASE_INI, ChatClient, memoryLogger, postMultipart, startTestServer, type TestServer } from './helpers.ts';
import { Browser } from './receiver-helpers.ts';
import { pushIni, pushUserData, startFakeReceiver, type FakeReceiver } from './receiver-fixture.ts';

let srv: TestServer | undefined;
let rcv: FakeReceiver | undefined;
const browsers: Browser[] = [];
afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await srv?.close();
  await rcv?.close();
  srv = undefined;
  rcv = undefined;
});

const CAROL = `
[agent.carol]
name = Carol
password = carol-secret
max-chats = 3
`;

async function agent(base: string, id: string, password: string): Promise<AgentClient> {
  const a = new AgentClient(base, id, password);
  await a.login();
  return a;
}

async function upload(c: ChatClient, name: string, type: string, content: string): Promise<string> {
  const r = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, c.ids(), { name, type, bytes: Buffer.from(content) });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.userData['file-id'] as string;
}

async function agentFile(base: string, token: string, chatId: string, fileId: string): Promise<{ status: number; text: string; headers: Headers }> {
  const r = await fetch(`${base}/agent/api/chats/${chatId}/files/${fileId}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

describe('agent file endpoint: only agents who may read the chat get its files', () => {
  it('a chat transferred away is no longer readable by the agent who handed it on, nor by an agent it is not offered to', async () => {
    srv = await startTestServer(CAROL);
    const alice = await agent(srv.url, 'alice', 'alice-secret');
    const bob = await agent(srv.url, 'bob', 'bob-secret-1');
    const carol = await agent(srv.url, 'carol', 'carol-secret');
    const c = new ChatClient(srv.url);
    await c.start();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const fileId = await upload(c, 'card.txt', 'text/plain', 'CARD-NUMBER-4111');

    // Transferred to Bob: offered only to Bob for last-agent-timeout (600 s).
    expect((await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' })).status).toBe(200);
    for (const [who, a] of [['alice', alice], ['carol', carol]] as const) {
      const r = await agentFile(srv.url, a.token, c.chatId, fileId);
      expect(r.status, who).toBe(403);
      expect(r.text, who).not.toContain('CARD-NUMBER');
      expect(JSON.parse(r.text), who).toMatchObject({ error: { code: 'AGENT_NOT_IN_CHAT' } });
    }
    expect((await agentFile(srv.url, bob.token, c.chatId, fileId)).text).toBe('CARD-NUMBER-4111');

    // Bob takes it: it is Bob's live chat, private to him.
    expect((await bob.accept(c.chatId)).status).toBe(200);
    for (const a of [alice, carol]) expect((await agentFile(srv.url, a.token, c.chatId, fileId)).status).toBe(403);
    expect((await agentFile(srv.url, bob.token, c.chatId, fileId)).status).toBe(200);
  });

  it('a signed-out token and an expired-looking (unknown) token get 401, never the bytes', async () => {
    srv = await startTestServer();
    const alice = await agent(srv.url, 'alice', 'alice-secret');
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    const fileId = await upload(c, 'card.txt', 'text/plain', 'CARD-NUMBER-4111');
    const token = alice.token;
    expect((await alice.call('POST', 'logout', {})).status).toBe(200);
    for (const t of [token, `${token}x`, '']) {
      const r = await agentFile(srv.url, t, c.chatId, fileId);
      expect(r.status).toBe(401);
      expect(r.text).not.toContain('CARD-NUMBER');
    }
    // The token is not accepted from the query string or a cookie either.
    const q = await fetch(`${srv.url}/agent/api/chats/${c.chatId}/files/${fileId}?token=${token}&access_token=${token}`, { headers: { cookie: `token=${token}` } });
    expect(q.status).toBe(401);
  });
});

describe('downloads of browser-renderable types cannot run in the page origin', () => {
  const TYPES = { PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_FILE_TYPES: 'txt:html:svg' };
  const HTML = '<html><body><script>parent.stolen = sessionStorage.getItem("token")</script></body></html>';
  const SVG = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>';

  function expectAttachment(headers: Headers, what: string): void {
    expect(headers.get('content-disposition') ?? '', what).toMatch(/^attachment;/);
    expect(headers.get('x-content-type-options'), what).toBe('nosniff');
    expect(headers.get('cache-control'), what).toBe('no-store');
  }

  it('agent API and Chat API downloads of text/html, image/svg+xml and a .txt claimed as text/html are attachments with nosniff', async () => {
    srv = await startTestServer('', TYPES);
    const alice = await agent(srv.url, 'alice', 'alice-secret');
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    const files = [
      await upload(c, 'evil.html', 'text/html', HTML),
      await upload(c, 'evil.svg', 'image/svg+xml', SVG),
      await upload(c, 'innocent.txt', 'text/html', HTML),
    ];
    for (const fileId of files) {
      const a = await agentFile(srv.url, alice.token, c.chatId, fileId);
      expect(a.status).toBe(200);
      expectAttachment(a.headers, `agent ${fileId}`);
      const q = new URLSearchParams(c.ids()).toString();
      const g = await fetch(`${c.chatUrl}/${c.chatId}/file/${fileId}/download?${q}`);
      expect(g.status).toBe(200);
      expectAttachment(g.headers, `chat api ${fileId}`);
      await g.arrayBuffer();
    }
  });

  it('the receiver download (/receiver/file/{id}) of an SVG is an attachment with nosniff', async () => {
    srv = await startTestServer('', TYPES);
    const b = await Browser.open(srv.url);
    browsers.push(b);
    const { token } = await b.start();
    const fd = new FormData();
    fd.append('file', new Blob([Buffer.from(SVG)], { type: 'image/svg+xml' }), 'evil.svg');
    const up = await fetch(`${srv.url}/receiver/file`, { method: 'POST', headers: { 'x-parley-session': token }, body: fd });
    expect(up.status).toBe(200);
    const fileId = ((await up.json()) as { userData: Record<string, string> }).userData['file-id'];
    const r = await fetch(`${srv.url}/receiver/file/${fileId}?session=${encodeURIComponent(token)}`);
    expect(r.status).toBe(200);
    expectAttachment(r.headers, 'receiver');
    expect(await r.text()).toBe(SVG);
  });
});

describe('agent sign-in throttle', () => {
  it('X-Forwarded-For, X-Real-IP and Forwarded do not give a guesser a fresh budget', async () => {
    srv = await startTestServer();
    const statuses: number[] = [];
    for (let i = 0; i < 14; i++) {
      const res = await fetch(`${srv.url}/agent/api/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': `203.0.113.${i}`, 'x-real-ip': `198.51.100.${i}`, forwarded: `for=192.0.2.${i}` },
        body: JSON.stringify({ agentId: 'alice', password: `wrong-${i}` }),
      });
      statuses.push(res.status);
      await res.arrayBuffer();
    }
    expect(statuses.slice(0, 10)).toEqual(new Array(10).fill(401));
    expect(statuses.slice(10)).toEqual([429, 429, 429, 429]);
  });
});

/** A raw HTTP/1.1 request; answers the status line and the body. */
function rawRequest(base: string, text: string): Promise<{ status: string; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), hostname, () => s.write(text));
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('end', () => resolve({ status: got.split('\r\n')[0] ?? '', body: got.slice(got.indexOf('\r\n\r\n') + 4) }));
    s.on('error', reject);
  });
}

describe('internal API through the public listener', () => {
  it('odd request targets and Host headers reach /internal/chat only with the token', async () => {
    srv = await startTestServer('', { PARLEY_NODE_INTERNAL_TOKEN: 'node-token-0123456789' });
    const body = JSON.stringify({ call: 'requestChat', serviceName: 'customer-support', input: { nickname: 'Mallory' } });
    const targets = [
      '/internal/chat',
      '//internal/chat',
      '/internal/chat/',
      '/internal//chat',
      '/x/../internal/chat',
      '/x/%2e%2e/internal/chat',
      '/x/..%2finternal/chat',
      '/%69nternal/chat',
      '/internal%2fchat',
      'http://127.0.0.1/internal/chat',
      'http://localhost:1/internal/chat',
    ];
    for (const target of targets) {
      for (const host of ['127.0.0.1', 'localhost', 'internal']) {
        const r = await rawRequest(
          srv.url,
          `POST ${target} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        );
        expect(r.status, `${target} host ${host}`).toMatch(/^HTTP\/1\.1 4\d\d /);
        expect(r.body, target).not.toContain('secureKey');
      }
    }
    // Control: with the token it is the node's API.
    const ok = await rawRequest(
      srv.url,
      `POST /internal/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-parley-node-token: node-token-0123456789\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    expect(ok.status).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('the notification socket refuses odd paths and wrong tokens without the token', async () => {
    srv = await startTestServer('', { PARLEY_NODE_INTERNAL_TOKEN: 'node-token-0123456789' });
    const { WebSocket } = await import('ws');
    const ws = srv.url.replace('http', 'ws');
    for (const [path, headers] of [
      ['/internal/notifications', {}],
      ['/internal/notifications', { 'x-parley-node-token': 'node-token-012345678' }],
      ['/internal/notifications', { 'x-parley-node-token': 'node-token-0123456789x' }],
      ['//internal/notifications', {}],
      ['/internal/notifications/', {}],
    ] as const) {
      const s = new WebSocket(`${ws}${path}`, { headers });
      const opened = await new Promise<boolean>((resolve) => {
        s.once('open', () => resolve(true));
        s.once('error', () => resolve(false));
        s.once('close', () => resolve(false));
      });
      s.terminate();
      expect(opened, path).toBe(false);
    }
  });
});

describe('push targets with credentials in the URL', () => {
  // Regression test (this was a bug, now fixed). Was: src/push/http-delivery.ts:158-159 (parseTarget keeps only `u.origin` and the path) silently drops
  // the userinfo of `[push] customhttp.url = http://user:pass@host/...`, and nothing refuses such a URL:
  // the config accepts it (src/config/catalogue.ts:259, pattern /^https?:\/\/\S+$/) and `checkTarget`
  // (src/push/ssrf.ts:281, which refuses "credentials in the URL") is never called outside its unit test.
  // So a receiver protected by Basic auth gets unauthenticated POSTs, answers 401, and every notification
  // is retried and finally failed, with no hint why. An engineer expects either the config refused at
  // start (like every other bad push option) or the credentials sent as `authorization: Basic ...`.
  it('a customhttp.url with user:password is either refused at start or its credentials are sent', async () => {
    rcv = await startFakeReceiver();
    const withCreds = rcv.url.replace('http://', 'http://pushuser:pa55w0rd-XYZ@');
    let refused = false;
    try {
      srv = await startTestServer(pushIni(withCreds), {}, { log: memoryLogger() });
    } catch (e) {
      refused = e instanceof ParleyError && e.code === 'CONFIG_INVALID';
    }
    if (refused) return;
    const base = (srv as TestServer).url;
    const c = new ChatClient(base);
    const r = await c.start({ nickname: 'Ann', ...pushUserData('dev-creds') });
    expect(r.body.statusCode).toBe(0);
    // The agent joining is the first notification (flex-push-on-join).
    expect((await (await agent(base, 'alice', 'alice-secret')).accept(c.chatId)).status).toBe(200);
    const [first] = await rcv.waitFor(1);
    expect(first?.headers.authorization).toBe(`Basic ${Buffer.from('pushuser:pa55w0rd-XYZ').toString('base64')}`);
  });

  it('the refusal names the option without repeating the credentials', async () => {
    rcv = await startFakeReceiver();
    const withCreds = rcv.url.replace('http://', 'http://pushuser:pa55w0rd-XYZ@');
    const err = await startTestServer(pushIni(rcv.url, '\n[push.SecondProvider]\ncustomhttp.url = ' + withCreds + '/x\n'), {}, { log: memoryLogger() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParleyError);
    expect((err as ParleyError).code).toBe('CONFIG_INVALID');
    const text = `${(err as Error).message} ${JSON.stringify((err as ParleyError).details ?? {})}`;
    expect(text).toContain('customhttp.url');
    expect(text).not.toContain('pa55w0rd');
  });
});

describe('secrets in configuration errors', () => {
  // Regression test (this was a bug, now fixed). Was: src/config/ini.ts:72 quotes the whole malformed line in the CONFIG_INVALID message ("expected
  // \"key = value\", got \"...\""), which `parley` prints to stderr (src/cli.ts:103), i.e. the service log.
  // A secret written with a colon or a missing "=" (`internal-token: ...`, `password alice-secret`) ends up
  // in the log in clear, although the config deliberately hides secret values in its other messages
  // (src/config/values.ts:13-16, `secret: true` options) and docs/security.md ("secrets in logs") promises
  // they are not logged. Right behaviour: name the line (and the key when it looks like one) without
  // quoting the value, at least for lines whose key is a secret option.
  it('a malformed line of a secret option does not quote the secret in the error', () => {
    const cases = [
      `[node]\ninternal-token: node-token-SECRET-1\n`,
      `[agent.alice]\nname = Alice\npassword alice-SECRET-2\n`,
      `[push]\nsigning-secret: whsec_SECRET-3\n`,
    ];
    for (const extra of cases) {
      let message = '';
      try {
        parseConfig(BASE_INI.replace(/\[agent\.alice\][^[]*/, '') + extra, 'test.ini', { PARLEY_STORE_PATH: ':memory:' });
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message, extra).toMatch(/line \d+/);
      expect(message, extra).not.toMatch(/SECRET-\d/);
    }
  });

  it('(control) a bad value of a secret option is not quoted', () => {
    let message = '';
    try {
      parseConfig(BASE_INI.replace('password = alice-secret', 'password = short'), 'test.ini', { PARLEY_STORE_PATH: ':memory:' });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/password/);
    expect(message).not.toContain('short');
  });
});
