/**
 * Bad input over real HTTP: every malformed, unauthorized or out-of-limit request gets a clean error
 * (Chat API v2 envelope, or the agent API's `{ error: { code, message } }`), never a 5xx, and leaves the
 * chat exactly as it was: a `refresh` with the right tokens before and after sees the same transcript.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ERRORS, type ErrorCode } from '../src/errors.ts';
import {
  AgentClient,
  ChatClient,
  SERVICE,
  openAgentSocket,
  postForm,
  postMultipart,
  postRaw,
  startTestServer,
  type ApiResponse,
  type TestServer,
} from './helpers.ts';

/** A first message that must never show up in an error reply. */
const SECRET_TEXT = 'my card number is 4111-1111';

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  await server?.close();
});

// ---------------------------------------------------------------------------------------------------------
// Helpers

/** Starts a chat with a first message, so the transcript has something to leak. */
async function newChat(base = server.url, headers: Record<string, string> = {}): Promise<ChatClient> {
  const c = new ChatClient(base);
  const r = await postForm(c.chatUrl, { nickname: 'Ann', subject: 'Order 42', text: SECRET_TEXT }, headers);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  c.chatId = r.body.chatId;
  c.userId = r.body.userId;
  c.secureKey = r.body.secureKey;
  c.alias = r.body.alias;
  c.nextPosition = r.body.nextPosition;
  return c;
}

function opUrl(c: ChatClient, op: string): string {
  return `${c.chatUrl}/${c.chatId}/${op}`;
}

/** The right tokens, without alias (it may be stale anyway). */
function tokens(c: ChatClient): Record<string, string> {
  return { secureKey: c.secureKey, userId: c.userId };
}

interface Snapshot {
  readonly nextPosition: number;
  readonly chatEnded: boolean;
  readonly messages: unknown[];
}

/** The whole transcript as a `refresh` with the right tokens sees it. */
async function snapshot(c: ChatClient, headers: Record<string, string> = {}): Promise<Snapshot> {
  const r = await postForm(opUrl(c, 'refresh'), { ...tokens(c), transcriptPosition: 1 }, headers);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  expect(r.body.statusCode).toBe(0);
  return { nextPosition: r.body.nextPosition, chatEnded: r.body.chatEnded, messages: r.body.messages };
}

/** Runs `act` and checks that the chat's transcript and state did not change. */
async function expectUnchanged(c: ChatClient, act: () => Promise<ApiResponse>, headers: Record<string, string> = {}): Promise<ApiResponse> {
  const before = await snapshot(c, headers);
  const r = await act();
  expect(await snapshot(c, headers), 'the transcript changed').toEqual(before);
  return r;
}

async function liveSessions(base = server.url): Promise<number> {
  const r = await fetch(`${base}/health`);
  const body = (await r.json()) as { sessions: { total: number } };
  return body.sessions.total;
}

/** Runs a Request Chat that must fail, and checks that no session was created. */
async function expectNoNewSession(act: () => Promise<ApiResponse>, base = server.url): Promise<ApiResponse> {
  const before = await liveSessions(base);
  const r = await act();
  expect(await liveSessions(base), 'a session was created').toBe(before);
  return r;
}

/**
 * A clean Chat API v2 error: the code's HTTP status, `statusCode` 1 or 2, `chatEnded`, no messages, one
 * error with the wire code, and no tokens or transcript of `c` anywhere in the reply.
 */
function expectChatError(r: ApiResponse, code: ErrorCode, c?: ChatClient): void {
  const spec = ERRORS[code];
  const text = JSON.stringify(r.body);
  expect(r.status, text).toBe(spec.http);
  expect(r.status).toBeLessThan(500);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  expect([1, 2]).toContain(r.body.statusCode);
  expect(r.body.statusCode).toBe(spec.statusCode);
  expect(r.body.chatEnded).toBe(code === 'CHAT_ENDED');
  expect(r.body.messages).toEqual([]);
  expect(r.body.errors).toEqual([{ code: spec.wire, advice: expect.any(String) }]);
  expect(r.body.errors[0].advice).not.toBe('');
  for (const key of ['secureKey', 'userId', 'nextPosition', 'userData']) expect(r.body).not.toHaveProperty(key);
  if (c !== undefined) {
    expect(text).not.toContain(c.secureKey);
    expect(text).not.toContain(c.userId);
  }
  expect(text).not.toContain(SECRET_TEXT);
}

function expectAgentError(r: ApiResponse, code: ErrorCode): void {
  expect(r.status, JSON.stringify(r.body)).toBe(ERRORS[code].http);
  expect(r.body).toEqual({ error: { code, message: expect.any(String) } });
}

function bytes(size: number): Uint8Array {
  return new Uint8Array(size).fill(0x61);
}

function upload(c: ChatClient, name: string, size: number, type = 'text/plain'): Promise<ApiResponse> {
  return postMultipart(opUrl(c, 'file'), tokens(c), { name, type, bytes: bytes(size) });
}

/** The `file/limits` userData: limits and the client's usage. */
async function fileUsage(c: ChatClient): Promise<{ files: string; total: string }> {
  const r = await postForm(opUrl(c, 'file/limits'), tokens(c));
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { files: r.body.userData['used-upload-max-files'], total: r.body.userData['used-upload-max-total-size'] };
}

// ---------------------------------------------------------------------------------------------------------

describe('Request Chat', () => {
  it.each([
    ['no nickname and no firstName/lastName', { subject: 'Order 42' }],
    ['only firstName', { firstName: 'Ann' }],
    ['only lastName', { lastName: 'Lee' }],
    ['a blank nickname', { nickname: '   ' }],
    ['an empty nickname and a blank lastName', { nickname: '', firstName: 'Ann', lastName: ' ' }],
  ])('refuses %s with MISSING_PARAMETER', async (_what, fields) => {
    const r = await expectNoNewSession(() => postForm(`${server.url}/genesys/2/chat/${SERVICE}`, fields));
    expectChatError(r, 'MISSING_PARAMETER');
  });

  it('refuses a userData key longer than 256 characters (INVALID_PARAMETER)', async () => {
    const r = await expectNoNewSession(() =>
      postForm(`${server.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Ann', [`userData[${'k'.repeat(257)}]`]: 'v' }),
    );
    expectChatError(r, 'INVALID_PARAMETER');
  });

  it('refuses an unknown service name with 404 UNKNOWN_SERVICE', async () => {
    const r = await expectNoNewSession(() => postForm(`${server.url}/genesys/2/chat/no-such-service`, { nickname: 'Ann' }));
    expectChatError(r, 'UNKNOWN_SERVICE');
  });

  it('refuses an unsupported content type with 415', async () => {
    const r = await expectNoNewSession(() =>
      postRaw(`${server.url}/genesys/2/chat/${SERVICE}`, '<chat><nickname>Ann</nickname></chat>', 'application/xml'),
    );
    expectChatError(r, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('refuses multipart without a boundary', async () => {
    const body = '--x\r\nContent-Disposition: form-data; name="nickname"\r\n\r\nAnn\r\n--x--\r\n';
    const r = await expectNoNewSession(() => postRaw(`${server.url}/genesys/2/chat/${SERVICE}`, body, 'multipart/form-data'));
    expectChatError(r, 'INVALID_PARAMETER');
  });

  it('refuses multipart whose body does not use the declared boundary', async () => {
    const body = '--x\r\nContent-Disposition: form-data; name="nickname"\r\n\r\nAnn\r\n--x--\r\n';
    const r = await expectNoNewSession(() =>
      postRaw(`${server.url}/genesys/2/chat/${SERVICE}`, body, 'multipart/form-data; boundary=other-boundary'),
    );
    expectChatError(r, 'INVALID_PARAMETER');
  });

  it.each([
    ['truncated JSON', '{"nickname":'],
    ['not JSON at all', 'nickname=Ann'],
    ['a JSON array', '["Ann"]'],
    ['a JSON string', '"Ann"'],
    ['a nested object as a field', '{"nickname":{"first":"Ann"}}'],
  ])('refuses %s sent as application/json with INVALID_PARAMETER', async (_what, body) => {
    const r = await expectNoNewSession(() => postRaw(`${server.url}/genesys/2/chat/${SERVICE}`, body, 'application/json'));
    expectChatError(r, 'INVALID_PARAMETER');
  });

  it('refuses a body over the default max-body-size (10 MiB) with 413', async () => {
    const body = `nickname=Ann&text=${'a'.repeat(10 * 1024 * 1024 + 1)}`;
    const r = await expectNoNewSession(() => postRaw(`${server.url}/genesys/2/chat/${SERVICE}`, body, 'application/x-www-form-urlencoded'));
    expectChatError(r, 'BODY_TOO_LARGE');
  });

  it('refuses GET with 405', async () => {
    const res = await fetch(`${server.url}/genesys/2/chat/${SERVICE}?nickname=Ann`);
    const r: ApiResponse = { status: res.status, headers: res.headers, body: await res.json() };
    expectChatError(r, 'METHOD_NOT_ALLOWED');
  });
});

describe('Request Chat and operations with small http limits', () => {
  let small: TestServer;
  const MAX_BODY = 110_000;
  const MAX_FIELD = 100;

  beforeAll(async () => {
    small = await startTestServer('', {
      PARLEY_HTTP_MAX_BODY_SIZE: String(MAX_BODY),
      PARLEY_HTTP_MAX_FIELD_LENGTH: String(MAX_FIELD),
    });
  });

  afterAll(async () => {
    await small?.close();
  });

  const requestUrl = () => `${small.url}/genesys/2/chat/${SERVICE}`;

  it('refuses a body over max-body-size (declared content-length) with 413 BODY_TOO_LARGE', async () => {
    const body = `nickname=Ann&text=${'a'.repeat(MAX_BODY + 10)}`;
    const r = await expectNoNewSession(() => postRaw(requestUrl(), body, 'application/x-www-form-urlencoded'), small.url);
    expectChatError(r, 'BODY_TOO_LARGE');
  });

  it('refuses a chunked body over max-body-size (no content-length) with 413 BODY_TOO_LARGE', async () => {
    const chunk = new TextEncoder().encode('a'.repeat(10_000));
    const stream = new ReadableStream<Uint8Array>({
      start(ctrl) {
        ctrl.enqueue(new TextEncoder().encode('nickname=Ann&text='));
        for (let i = 0; i < 15; i++) ctrl.enqueue(chunk);
        ctrl.close();
      },
    });
    const r = await expectNoNewSession(async () => {
      const res = await fetch(requestUrl(), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: stream,
        duplex: 'half',
      } as RequestInit);
      return { status: res.status, headers: res.headers, body: await res.json() };
    }, small.url);
    expectChatError(r, 'BODY_TOO_LARGE');
  });

  it('refuses a multipart body over max-body-size with 413', async () => {
    const fields: Record<string, string> = { nickname: 'Ann' };
    for (let i = 0; i < 1200; i++) fields[`userData[k${i}]`] = 'v'.repeat(MAX_FIELD);
    const r = await expectNoNewSession(() => postMultipart(requestUrl(), fields), small.url);
    expectChatError(r, 'BODY_TOO_LARGE');
  });

  it.each([
    ['form-urlencoded', 'form'],
    ['multipart', 'multipart'],
    ['JSON', 'json'],
  ])('refuses a field longer than max-field-length (%s) with 413 MESSAGE_TOO_LONG', async (_what, how) => {
    const nickname = 'n'.repeat(MAX_FIELD + 1);
    const r = await expectNoNewSession(() => {
      if (how === 'form') return postForm(requestUrl(), { nickname });
      if (how === 'multipart') return postMultipart(requestUrl(), { nickname });
      return postRaw(requestUrl(), JSON.stringify({ nickname }), 'application/json');
    }, small.url);
    expectChatError(r, 'MESSAGE_TOO_LONG');
  });

  it.each([
    ['form-urlencoded', 'form'],
    ['multipart', 'multipart'],
    ['JSON', 'json'],
  ])('refuses more than 1000 fields, userData keys included (%s), with 400 INVALID_PARAMETER', async (_what, how) => {
    const fields: Record<string, string> = { nickname: 'Ann' };
    for (let i = 0; i < 1000; i++) fields[`userData[k${i}]`] = 'v';
    const r = await expectNoNewSession(() => {
      if (how === 'form') return postForm(requestUrl(), fields);
      if (how === 'multipart') return postMultipart(requestUrl(), fields);
      const { nickname, ...rest } = fields;
      const userData = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k.slice('userData['.length, -1), v]));
      return postRaw(requestUrl(), JSON.stringify({ nickname, userData }), 'application/json');
    }, small.url);
    expectChatError(r, 'INVALID_PARAMETER');
  });

  it('accepts a field of exactly max-field-length', async () => {
    const r = await postForm(requestUrl(), { nickname: 'n'.repeat(MAX_FIELD) });
    expect(r.status).toBe(200);
    expect(r.body.statusCode).toBe(0);
  });

  it('refuses a too long message on send and leaves the transcript unchanged', async () => {
    const c = await newChat(small.url);
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'send'), { ...tokens(c), message: 'm'.repeat(MAX_FIELD + 1) }));
    expectChatError(r, 'MESSAGE_TOO_LONG', c);
  });

  it('refuses a too large body on send and leaves the transcript unchanged', async () => {
    const c = await newChat(small.url);
    const r = await expectUnchanged(c, () =>
      postForm(opUrl(c, 'send'), { ...tokens(c), message: 'hello', padding: 'p'.repeat(MAX_BODY) }),
    );
    expectChatError(r, 'BODY_TOO_LARGE', c);
  });
});

describe('operations', () => {
  it('refuses an unknown chatId with 404 UNKNOWN_CHAT', async () => {
    const c = await newChat();
    const r = await postForm(`${c.chatUrl}/AAAAAAAAAAAAAAAA/refresh`, tokens(c));
    expectChatError(r, 'UNKNOWN_CHAT', c);
  });

  it.each([
    ['refresh', {}],
    ['send', { message: 'injected' }],
    ['disconnect', {}],
    ['updateNickname', { nickname: 'Mallory' }],
    ['file/limits', {}],
  ])('refuses %s with a wrong secureKey (403) without leaking transcript or tokens', async (op, fields) => {
    const c = await newChat();
    const wrongKey = c.secureKey.replace(/^./, (ch) => (ch === '0' ? '1' : '0'));
    const r = await expectUnchanged(c, () => postForm(opUrl(c, op), { secureKey: wrongKey, userId: c.userId, alias: c.alias, ...fields }));
    expectChatError(r, 'ACCESS_DENIED', c);
  });

  it('refuses a secureKey of another length (403)', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'send'), { secureKey: `${c.secureKey}0`, message: 'injected' }));
    expectChatError(r, 'ACCESS_DENIED', c);
  });

  it('refuses the right secureKey with a wrong userId (403)', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () =>
      postForm(opUrl(c, 'send'), { secureKey: c.secureKey, userId: '0000000000000000', message: 'injected' }),
    );
    expectChatError(r, 'ACCESS_DENIED', c);
  });

  it("refuses another chat's secureKey (403)", async () => {
    const c = await newChat();
    const other = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'send'), { ...tokens(other), message: 'injected' }));
    expectChatError(r, 'ACCESS_DENIED', c);
  });

  it.each([
    ['absent', { userId: 'x' }],
    ['empty', { secureKey: '', userId: 'x' }],
  ])('refuses a missing secureKey (%s) with 400 MISSING_PARAMETER', async (_what, ids) => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'send'), { ...ids, userId: c.userId, message: 'hi' }));
    expectChatError(r, 'MISSING_PARAMETER', c);
  });

  it('reports a chat of another service as UNKNOWN_CHAT, even with the right tokens', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(`${server.url}/genesys/2/chat/other/${c.chatId}/refresh`, tokens(c)));
    expectChatError(r, 'UNKNOWN_CHAT', c);
  });

  it('reports an unknown service on an operation path as UNKNOWN_SERVICE', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(`${server.url}/genesys/2/chat/nope/${c.chatId}/send`, { ...tokens(c), message: 'x' }));
    expectChatError(r, 'UNKNOWN_SERVICE', c);
  });

  it('refuses send on an ended chat with CHAT_ENDED (chatEnded true); refresh still answers statusCode 0', async () => {
    const c = await newChat();
    const d = await postForm(opUrl(c, 'disconnect'), tokens(c));
    expect(d.status).toBe(200);
    expect(d.body.chatEnded).toBe(true);

    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'send'), { ...tokens(c), message: 'too late' }));
    expectChatError(r, 'CHAT_ENDED', c);
    expect(r.body.chatEnded).toBe(true);
    expect(r.body.statusCode).toBe(2);

    const refresh = await postForm(opUrl(c, 'refresh'), { ...tokens(c), transcriptPosition: 1 });
    expect(refresh.status).toBe(200);
    expect(refresh.body.statusCode).toBe(0);
    expect(refresh.body.chatEnded).toBe(true);
    expect(refresh.body.errors).toBeUndefined();
    expect(refresh.body.messages.map((m: { type: string }) => m.type)).toEqual(['ParticipantJoined', 'Message', 'ParticipantLeft']);
  });

  it.each([
    ['startTyping', {}],
    ['pushUrl', { pushUrl: 'https://example.com/' }],
    ['updateNickname', { nickname: 'Bea' }],
    ['updateData', { 'userData[k]': 'v' }],
    ['file/limits', {}],
  ])('refuses %s on an ended chat with CHAT_ENDED', async (op, fields) => {
    const c = await newChat();
    expect((await postForm(opUrl(c, 'disconnect'), tokens(c))).status).toBe(200);
    const r = await expectUnchanged(c, () => postForm(opUrl(c, op), { ...tokens(c), ...fields }));
    expectChatError(r, 'CHAT_ENDED', c);
  });

  it('refuses an upload on an ended chat with CHAT_ENDED', async () => {
    const c = await newChat();
    expect((await postForm(opUrl(c, 'disconnect'), tokens(c))).status).toBe(200);
    const r = await expectUnchanged(c, () => upload(c, 'late.txt', 10));
    expectChatError(r, 'CHAT_ENDED', c);
  });

  it.each([
    ['no message field', {}],
    ['an empty message', { message: '' }],
    ['a whitespace message', { message: ' \t\n ' }],
  ])('refuses send with %s (MISSING_PARAMETER)', async (_what, fields) => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'send'), { ...tokens(c), ...fields }));
    expectChatError(r, 'MISSING_PARAMETER', c);
  });

  it.each(['abc', '-1', '1.5', '1e3', '0x10', '+1'])('refuses transcriptPosition=%s with 400 INVALID_PARAMETER', async (pos) => {
    const c = await newChat();
    const refresh = await expectUnchanged(c, () => postForm(opUrl(c, 'refresh'), { ...tokens(c), transcriptPosition: pos }));
    expectChatError(refresh, 'INVALID_PARAMETER', c);
    // A send with a bad position must not append its message either.
    const send = await expectUnchanged(c, () => postForm(opUrl(c, 'send'), { ...tokens(c), message: 'hi', transcriptPosition: pos }));
    expectChatError(send, 'INVALID_PARAMETER', c);
  });

  it('refuses readReceipt without transcriptPosition (MISSING_PARAMETER) or with a bad one (INVALID_PARAMETER)', async () => {
    const c = await newChat();
    const missing = await expectUnchanged(c, () => postForm(opUrl(c, 'readReceipt'), tokens(c)));
    expectChatError(missing, 'MISSING_PARAMETER', c);
    const blank = await expectUnchanged(c, () => postForm(opUrl(c, 'readReceipt'), { ...tokens(c), transcriptPosition: ' ' }));
    expectChatError(blank, 'MISSING_PARAMETER', c);
    const bad = await expectUnchanged(c, () => postForm(opUrl(c, 'readReceipt'), { ...tokens(c), transcriptPosition: '-1' }));
    expectChatError(bad, 'INVALID_PARAMETER', c);
  });

  it.each(['javascript:alert(1)', 'ftp://x', 'not a url', '/relative/path', 'data:text/html,<b>x</b>'])(
    'refuses pushUrl=%s with INVALID_PARAMETER',
    async (pushUrl) => {
      const c = await newChat();
      const r = await expectUnchanged(c, () => postForm(opUrl(c, 'pushUrl'), { ...tokens(c), pushUrl }));
      expectChatError(r, 'INVALID_PARAMETER', c);
    },
  );

  it('refuses pushUrl without a pushUrl (MISSING_PARAMETER)', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'pushUrl'), tokens(c)));
    expectChatError(r, 'MISSING_PARAMETER', c);
  });

  it.each([
    ['absent', {}],
    ['empty', { nickname: '' }],
    ['blank', { nickname: '   ' }],
  ])('refuses updateNickname with a %s nickname (MISSING_PARAMETER)', async (_what, fields) => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'updateNickname'), { ...tokens(c), ...fields }));
    expectChatError(r, 'MISSING_PARAMETER', c);
  });

  it.each(['frobnicate', 'file/limits/extra', 'refresh/again', 'REFRESH'])('refuses the unknown operation %s with 404 NOT_FOUND', async (op) => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, op), { ...tokens(c), message: 'x' }));
    expectChatError(r, 'NOT_FOUND', c);
  });

  it.each(['GET', 'PUT', 'DELETE'])('refuses %s on an operation with 405 METHOD_NOT_ALLOWED', async (method) => {
    const c = await newChat();
    const r = await expectUnchanged(c, async () => {
      const q = new URLSearchParams({ ...tokens(c), message: 'via query' });
      const res = await fetch(`${opUrl(c, 'send')}?${q}`, { method });
      return { status: res.status, headers: res.headers, body: await res.json() };
    });
    expectChatError(r, 'METHOD_NOT_ALLOWED', c);
  });

  it.each([
    ['as the chatId', (c: ChatClient) => `${c.chatUrl}/%E0%A4%A/refresh`],
    ['as the service', (c: ChatClient) => `${server.url}/genesys/2/chat/%E0%A4%A/${c.chatId}/refresh`],
    ['as the operation', (c: ChatClient) => `${c.chatUrl}/${c.chatId}/%E0%A4%A`],
    ['as the Request Chat service', () => `${server.url}/genesys/2/chat/%E0%A4%A`],
    ['a lone %', (c: ChatClient) => `${c.chatUrl}/%/refresh`],
  ])('refuses percent-encoding garbage %s with 404 NOT_FOUND', async (_what, url) => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(url(c), { ...tokens(c), nickname: 'Ann' }));
    expectChatError(r, 'NOT_FOUND', c);
  });
});

describe('files', () => {
  it('refuses an upload over upload-max-file-size with 413 FILE_TOO_LARGE', async () => {
    const c = await newChat();
    const usage = await fileUsage(c);
    const r = await expectUnchanged(c, () => upload(c, 'big.txt', 40_001));
    expectChatError(r, 'FILE_TOO_LARGE', c);
    expect(await fileUsage(c)).toEqual(usage);
  });

  it.each(['x.exe', 'noextension', 'archive.txt.exe', 'x.'])('refuses the file type of %s with 415 FILE_TYPE_FORBIDDEN', async (name) => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => upload(c, name, 10, 'application/octet-stream'));
    expectChatError(r, 'FILE_TYPE_FORBIDDEN', c);
  });

  it('refuses a 4th upload when upload-max-files is 3 (FILE_LIMIT_REACHED)', async () => {
    const c = await newChat();
    for (const name of ['a.txt', 'b.txt', 'c.txt']) expect((await upload(c, name, 10)).status).toBe(200);
    const r = await expectUnchanged(c, () => upload(c, 'd.txt', 10));
    expectChatError(r, 'FILE_LIMIT_REACHED', c);
    expect(await fileUsage(c)).toEqual({ files: '3', total: '30' });
  });

  it('refuses an upload that would exceed upload-max-total-size (FILE_LIMIT_REACHED)', async () => {
    const c = await newChat();
    // 39 999, not 40 000: a file of exactly upload-max-file-size is refused (see the BUG test below).
    expect((await upload(c, 'a.txt', 39_999)).status).toBe(200);
    expect((await upload(c, 'b.txt', 39_999)).status).toBe(200);
    const r = await expectUnchanged(c, () => upload(c, 'c.txt', 20_003));
    expectChatError(r, 'FILE_LIMIT_REACHED', c);
    expect(await fileUsage(c)).toEqual({ files: '2', total: '79998' });
    // Exactly up to the total limit is fine.
    expect((await upload(c, 'c.txt', 20_002)).status).toBe(200);
    expect(await fileUsage(c)).toEqual({ files: '3', total: '100000' });
  });

  // Regression: found by this suite and fixed.
  it('accepts an upload of exactly upload-max-file-size', async () => {
    const c = await newChat();
    const r = await upload(c, 'exact.txt', 40_000);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  });

  it('accepts an upload of one byte under upload-max-file-size', async () => {
    const c = await newChat();
    const r = await upload(c, 'almost.txt', 39_999);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  });

  it('refuses an upload with no file part (MISSING_PARAMETER)', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postMultipart(opUrl(c, 'file'), tokens(c)));
    expectChatError(r, 'MISSING_PARAMETER', c);
  });

  it('refuses an upload sent form-urlencoded (no file part) with MISSING_PARAMETER', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'file'), { ...tokens(c), file: 'abc' }));
    expectChatError(r, 'MISSING_PARAMETER', c);
  });

  it('refuses an upload with two file parts (INVALID_PARAMETER)', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, async () => {
      const fd = new FormData();
      for (const [k, v] of Object.entries(tokens(c))) fd.append(k, v);
      fd.append('file', new Blob([bytes(10)], { type: 'text/plain' }), 'a.txt');
      fd.append('file', new Blob([bytes(10)], { type: 'text/plain' }), 'b.txt');
      const res = await fetch(opUrl(c, 'file'), { method: 'POST', body: fd });
      return { status: res.status, headers: res.headers, body: await res.json() };
    });
    expectChatError(r, 'INVALID_PARAMETER', c);
    expect(await fileUsage(c)).toEqual({ files: '0', total: '0' });
  });

  it('refuses a file part with another name (INVALID_PARAMETER)', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, async () => {
      const fd = new FormData();
      for (const [k, v] of Object.entries(tokens(c))) fd.append(k, v);
      fd.append('attachment', new Blob([bytes(10)], { type: 'text/plain' }), 'a.txt');
      const res = await fetch(opUrl(c, 'file'), { method: 'POST', body: fd });
      return { status: res.status, headers: res.headers, body: await res.json() };
    });
    expectChatError(r, 'INVALID_PARAMETER', c);
  });

  it('refuses an upload with a wrong secureKey (403) and stores nothing', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () =>
      postMultipart(opUrl(c, 'file'), { secureKey: 'f'.repeat(20) }, { name: 'a.txt', type: 'text/plain', bytes: bytes(10) }),
    );
    expectChatError(r, 'ACCESS_DENIED', c);
    expect(await fileUsage(c)).toEqual({ files: '0', total: '0' });
  });

  it('refuses a download of an unknown fileId with 404 UNKNOWN_FILE', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'file/NOSUCHFILE/download'), tokens(c)));
    expectChatError(r, 'UNKNOWN_FILE', c);
  });

  it("refuses a download of another chat's file with UNKNOWN_FILE", async () => {
    const owner = await newChat();
    const up = await upload(owner, 'a.txt', 10);
    expect(up.status).toBe(200);
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, `file/${up.body.userData['file-id']}/download`), tokens(c)));
    expectChatError(r, 'UNKNOWN_FILE', c);
  });

  it('refuses a download beyond download-attempts (DOWNLOAD_LIMIT_REACHED)', async () => {
    const c = await newChat();
    const up = await upload(c, 'a.txt', 10);
    expect(up.status).toBe(200);
    const url = opUrl(c, `file/${up.body.userData['file-id']}/download`);
    for (let i = 0; i < 2; i++) {
      const ok = await postForm(url, tokens(c));
      expect(ok.status).toBe(200);
      expect(Buffer.from(ok.body).toString()).toBe('a'.repeat(10));
    }
    const r = await expectUnchanged(c, () => postForm(url, tokens(c)));
    expectChatError(r, 'DOWNLOAD_LIMIT_REACHED', c);
    // GET counts the same way.
    const get = await fetch(`${url}?${new URLSearchParams(tokens(c))}`);
    expectChatError({ status: get.status, headers: get.headers, body: await get.json() }, 'DOWNLOAD_LIMIT_REACHED', c);
  });

  it('refuses a download with a wrong secureKey (403) without sending the file', async () => {
    const c = await newChat();
    const up = await upload(c, 'a.txt', 10);
    const r = await postForm(opUrl(c, `file/${up.body.userData['file-id']}/download`), { secureKey: 'f'.repeat(20) });
    expectChatError(r, 'ACCESS_DENIED', c);
  });

  it('refuses a delete of an unknown file with 404 UNKNOWN_FILE', async () => {
    const c = await newChat();
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'file/NOSUCHFILE/delete'), tokens(c)));
    expectChatError(r, 'UNKNOWN_FILE', c);
  });

  it('refuses a second delete of the same file with UNKNOWN_FILE', async () => {
    const c = await newChat();
    const up = await upload(c, 'a.txt', 10);
    const url = opUrl(c, `file/${up.body.userData['file-id']}/delete`);
    expect((await postForm(url, tokens(c))).status).toBe(200);
    const r = await expectUnchanged(c, () => postForm(url, tokens(c)));
    expectChatError(r, 'UNKNOWN_FILE', c);
  });

  it('leaves file/limits usage unchanged after every kind of rejected upload', async () => {
    const c = await newChat();
    expect((await upload(c, 'ok.txt', 1234)).status).toBe(200);
    const usage = await fileUsage(c);
    expect(usage).toEqual({ files: '1', total: '1234' });

    expectChatError(await upload(c, 'big.txt', 40_001), 'FILE_TOO_LARGE', c);
    expectChatError(await upload(c, 'x.exe', 10), 'FILE_TYPE_FORBIDDEN', c);
    expectChatError(await postMultipart(opUrl(c, 'file'), tokens(c)), 'MISSING_PARAMETER', c);
    expectChatError(await postMultipart(opUrl(c, 'file'), { ...tokens(c), transcriptPosition: 'x' }, { name: 'a.txt', type: 'text/plain', bytes: bytes(5) }), 'INVALID_PARAMETER', c);

    expect(await fileUsage(c)).toEqual(usage);
  });
});

describe('API key', () => {
  let keyed: TestServer;
  const KEY = 'k-123';

  beforeAll(async () => {
    keyed = await startTestServer('', { PARLEY_HTTP_API_KEY: KEY });
  });

  afterAll(async () => {
    await keyed?.close();
  });

  const requestUrl = () => `${keyed.url}/genesys/2/chat/${SERVICE}`;

  it('refuses Request Chat without a key with 401 API_KEY_REQUIRED', async () => {
    const r = await expectNoNewSession(() => postForm(requestUrl(), { nickname: 'Ann' }), keyed.url);
    expectChatError(r, 'API_KEY_REQUIRED');
  });

  it.each([
    ['a wrong apikey', { apikey: 'k-124' }],
    ['a wrong x-api-key', { 'x-api-key': 'k-12' }],
    ['an empty apikey', { apikey: '' }],
  ])('refuses %s with 401', async (_what, headers) => {
    const r = await expectNoNewSession(() => postForm(requestUrl(), { nickname: 'Ann' }, headers), keyed.url);
    expectChatError(r, 'API_KEY_REQUIRED');
  });

  it.each([
    ['apikey', { apikey: KEY }],
    ['x-api-key', { 'x-api-key': KEY }],
  ])('accepts the key in the %s header', async (_what, headers) => {
    const r = await postForm(requestUrl(), { nickname: 'Ann' }, headers);
    expect(r.status).toBe(200);
    expect(r.body.statusCode).toBe(0);
  });

  it('refuses an operation without the key and leaves the transcript unchanged', async () => {
    const headers = { apikey: KEY };
    const c = await newChat(keyed.url, headers);
    const r = await expectUnchanged(c, () => postForm(opUrl(c, 'send'), { ...tokens(c), message: 'no key' }), headers);
    expectChatError(r, 'API_KEY_REQUIRED', c);
  });
});

describe('CORS', () => {
  const url = () => `${server.url}/genesys/2/chat/${SERVICE}`;

  it('answers a preflight from an allowed origin with 204 and access-control-allow-origin', async () => {
    const res = await fetch(url(), {
      method: 'OPTIONS',
      headers: { origin: 'http://allowed.example', 'access-control-request-method': 'POST' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://allowed.example');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
  });

  it('refuses a preflight from another origin with 403 and no access-control-allow-origin', async () => {
    const res = await fetch(url(), {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('adds access-control-allow-origin to a POST from the allowed origin, errors included', async () => {
    const ok = await postForm(url(), { nickname: 'Ann' }, { origin: 'http://allowed.example' });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe('http://allowed.example');
    const bad = await postForm(url(), {}, { origin: 'http://allowed.example' });
    expectChatError(bad, 'MISSING_PARAMETER');
    expect(bad.headers.get('access-control-allow-origin')).toBe('http://allowed.example');
  });

  it('adds no access-control-allow-origin to a POST from another origin', async () => {
    const r = await postForm(url(), { nickname: 'Ann' }, { origin: 'http://evil.example' });
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('agent API', () => {
  let alice: AgentClient;
  let bob: AgentClient;

  beforeAll(async () => {
    alice = new AgentClient(server.url, 'alice', 'alice-secret');
    bob = new AgentClient(server.url, 'bob', 'bob-secret-1');
    await alice.login();
    await bob.login();
  });

  // Each test starts with both agents free: close whatever they accepted.
  afterEach(async () => {
    for (const a of [alice, bob]) {
      const o = await a.overview();
      for (const chat of o.body.mine as Array<{ chatId: string }>) await a.close(chat.chatId);
    }
  });

  /** A raw call with any body and any token. */
  async function raw(method: string, path: string, body?: string, token?: string): Promise<ApiResponse> {
    const res = await fetch(`${server.url}/agent/api/${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
      ...(body === undefined ? {} : { body }),
    });
    return { status: res.status, headers: res.headers, body: await res.json() };
  }

  it.each([
    ['a wrong password', { agentId: 'alice', password: 'alice-secreT' }],
    ['an unknown agent', { agentId: 'mallory', password: 'alice-secret' }],
    ['an empty password', { agentId: 'alice', password: '' }],
  ])('refuses login with %s (401 AGENT_AUTH_FAILED)', async (_what, body) => {
    const r = await raw('POST', 'login', JSON.stringify(body));
    expectAgentError(r, 'AGENT_AUTH_FAILED');
    expect(JSON.stringify(r.body)).not.toContain('alice-secret');
  });

  it('refuses login with a missing or non-string field (400)', async () => {
    expectAgentError(await raw('POST', 'login', JSON.stringify({ agentId: 'alice' })), 'MISSING_PARAMETER');
    expectAgentError(await raw('POST', 'login', JSON.stringify({ agentId: 'alice', password: 12345678 })), 'INVALID_PARAMETER');
  });

  it.each([
    ['no token', undefined],
    ['a bogus token', 'bogus-token'],
  ])('refuses calls with %s (401 AGENT_AUTH_FAILED)', async (_what, token) => {
    const c = await newChat();
    expectAgentError(await raw('GET', 'chats', undefined, token), 'AGENT_AUTH_FAILED');
    expectAgentError(await raw('GET', 'me', undefined, token), 'AGENT_AUTH_FAILED');
    expectAgentError(await raw('GET', `chats/${c.chatId}`, undefined, token), 'AGENT_AUTH_FAILED');
    const r = await expectUnchanged(c, () => raw('POST', `chats/${c.chatId}/accept`, '{}', token));
    expectAgentError(r, 'AGENT_AUTH_FAILED');
    expect(JSON.stringify(r.body)).not.toContain(SECRET_TEXT);
  });

  it('refuses a malformed authorization header (401)', async () => {
    const res = await fetch(`${server.url}/agent/api/chats`, { headers: { authorization: `Basic ${alice.token}` } });
    expectAgentError({ status: res.status, headers: res.headers, body: await res.json() }, 'AGENT_AUTH_FAILED');
  });

  it('refuses a token after logout (401)', async () => {
    const carol = new AgentClient(server.url, 'alice', 'alice-secret');
    await carol.login();
    expect((await carol.call('POST', 'logout', {})).status).toBe(200);
    expectAgentError(await carol.overview(), 'AGENT_AUTH_FAILED');
  });

  it('refuses send, leave and close on a chat the agent is not in (403 AGENT_NOT_IN_CHAT)', async () => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const r1 = await expectUnchanged(c, () => bob.send(c.chatId, 'not mine'));
    expectAgentError(r1, 'AGENT_NOT_IN_CHAT');
    expectAgentError(await expectUnchanged(c, () => bob.typing(c.chatId, true)), 'AGENT_NOT_IN_CHAT');
    expectAgentError(await expectUnchanged(c, () => bob.leave(c.chatId)), 'AGENT_NOT_IN_CHAT');
    expectAgentError(await expectUnchanged(c, () => bob.close(c.chatId)), 'AGENT_NOT_IN_CHAT');
    expectAgentError(await bob.call('GET', `chats/${c.chatId}`), 'AGENT_NOT_IN_CHAT');
  });

  it('refuses send on a waiting chat nobody accepted (403 AGENT_NOT_IN_CHAT)', async () => {
    const c = await newChat();
    expectAgentError(await expectUnchanged(c, () => alice.send(c.chatId, 'hello')), 'AGENT_NOT_IN_CHAT');
  });

  it('refuses actions on an unknown chat (404 UNKNOWN_CHAT)', async () => {
    expectAgentError(await alice.accept('AAAAAAAAAAAAAAAA'), 'UNKNOWN_CHAT');
    expectAgentError(await alice.send('AAAAAAAAAAAAAAAA', 'x'), 'UNKNOWN_CHAT');
  });

  // Regression: found by this suite and fixed.
  it('refuses percent-encoding garbage in the chat id with a 4xx, not 500', async () => {
    const r = await alice.call('GET', 'chats/%E0%A4%A');
    expect(r.status).toBeLessThan(500);
    expect(r.status).toBe(404);
    expect(['NOT_FOUND', 'UNKNOWN_CHAT']).toContain(r.body.error.code);
  });

  it('lets exactly one of two agents accepting the same chat at once win (one 200, one 409 CHAT_ALREADY_TAKEN)', async () => {
    const c = await newChat();
    const [a, b] = await Promise.all([alice.accept(c.chatId), bob.accept(c.chatId)]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([200, 409]);
    const loser = a.status === 409 ? a : b;
    expectAgentError(loser, 'CHAT_ALREADY_TAKEN');
    const winner = a.status === 200 ? 'alice' : 'bob';
    expect((a.status === 200 ? a : b).body.chat.agents).toEqual([winner]);
    const s = await snapshot(c);
    const joined = (s.messages as Array<{ type: string; from: { type: string } }>).filter((m) => m.type === 'ParticipantJoined' && m.from.type === 'Agent');
    expect(joined).toHaveLength(1);
  });

  it('refuses an accept over max-chats (bob has 1) with 409 AGENT_CAPACITY', async () => {
    const first = await newChat();
    const second = await newChat();
    expect((await bob.accept(first.chatId)).status).toBe(200);
    const r = await expectUnchanged(second, () => bob.accept(second.chatId));
    expectAgentError(r, 'AGENT_CAPACITY');
    const o = await bob.overview();
    expect((o.body.waiting as Array<{ chatId: string }>).map((w) => w.chatId)).toContain(second.chatId);
  });

  // Regression: found by this suite and fixed.
  it('refuses concurrent accepts over max-chats (bob has 1): exactly one 200, the rest 409 AGENT_CAPACITY', async () => {
    for (let round = 0; round < 5; round++) {
      const chats = [await newChat(), await newChat(), await newChat()];
      const replies = await Promise.all(chats.map((c) => bob.accept(c.chatId)));
      const mine = (await bob.overview()).body.mine as Array<{ chatId: string }>;
      for (const m of mine) await bob.close(m.chatId);
      expect(replies.map((r) => r.status).sort()).toEqual([200, 409, 409]);
      for (const r of replies.filter((x) => x.status !== 200)) expectAgentError(r, 'AGENT_CAPACITY');
      expect(mine).toHaveLength(1);
    }
  });

  it.each(['abc', '-1', '1.5'])('refuses a transcript request with from=%s (400 INVALID_PARAMETER)', async (from) => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expectAgentError(await alice.call('GET', `chats/${c.chatId}?from=${from}`), 'INVALID_PARAMETER');
  });

  it.each(['{not json', 'text=hello', '[1,2]', '"hello"', 'null'])('refuses the non-object body %s with 400 INVALID_PARAMETER', async (body) => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const r = await expectUnchanged(c, () => raw('POST', `chats/${c.chatId}/send`, body, alice.token));
    expectAgentError(r, 'INVALID_PARAMETER');
  });

  it('refuses a non-JSON login body with 400', async () => {
    expectAgentError(await raw('POST', 'login', 'agentId=alice&password=alice-secret'), 'INVALID_PARAMETER');
  });

  it.each([
    ['a string', 'yes'],
    ['a number', 1],
    ['null', null],
    ['absent', undefined],
  ])('refuses typing with %s instead of a boolean (400 INVALID_PARAMETER)', async (_what, typing) => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const r = await expectUnchanged(c, () => alice.call('POST', `chats/${c.chatId}/typing`, { typing }));
    expectAgentError(r, 'INVALID_PARAMETER');
  });

  it('refuses send with a blank or non-string text (400)', async () => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expectAgentError(await expectUnchanged(c, () => alice.send(c.chatId, '  ')), 'MISSING_PARAMETER');
    expectAgentError(await expectUnchanged(c, () => alice.call('POST', `chats/${c.chatId}/send`, { text: 42 })), 'INVALID_PARAMETER');
    expectAgentError(await expectUnchanged(c, () => alice.call('POST', `chats/${c.chatId}/send`, {})), 'MISSING_PARAMETER');
  });

  it('refuses an unknown action (404) and a wrong method (405)', async () => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expectAgentError(await expectUnchanged(c, () => alice.call('POST', `chats/${c.chatId}/frobnicate`, {})), 'NOT_FOUND');
    expectAgentError(await expectUnchanged(c, () => alice.call('GET', `chats/${c.chatId}/send`)), 'METHOD_NOT_ALLOWED');
  });
});

describe('agent WebSocket', () => {
  type Frame = Record<string, unknown>;

  interface RawSocket {
    readonly ws: WebSocket;
    /** The next frame not yet taken. */
    frame(): Promise<Frame>;
    readonly closed: Promise<{ code: number; reason: string }>;
  }

  /** Opens the agent socket without sending anything. */
  async function rawSocket(): Promise<RawSocket> {
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/agent/api/ws`);
    const queue: Frame[] = [];
    const waiters: Array<(f: Frame) => void> = [];
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as Frame;
      const w = waiters.shift();
      if (w !== undefined) w(f);
      else queue.push(f);
    });
    const closed = new Promise<{ code: number; reason: string }>((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const frame = () =>
      new Promise<Frame>((resolve) => {
        const f = queue.shift();
        if (f !== undefined) resolve(f);
        else waiters.push(resolve);
      });
    return { ws, frame, closed };
  }

  const sockets: WebSocket[] = [];
  afterEach(() => {
    for (const ws of sockets.splice(0)) ws.terminate();
  });

  let alice: AgentClient;
  beforeAll(async () => {
    alice = new AgentClient(server.url, 'alice', 'alice-secret');
    await alice.login();
  });

  it.each([
    ['ping', { type: 'ping' }],
    ['sync', { type: 'sync', chatId: 'AAAAAAAAAAAAAAAA', from: 1 }],
  ])('answers a %s frame before auth with an error frame and closes with 4401', async (_what, frame) => {
    const s = await rawSocket();
    sockets.push(s.ws);
    s.ws.send(JSON.stringify(frame));
    expect(await s.frame()).toEqual({ type: 'error', error: { code: 'AGENT_AUTH_FAILED', message: expect.any(String) } });
    expect((await s.closed).code).toBe(4401);
  });

  it('closes with 4401 on auth with a bad token', async () => {
    const s = await rawSocket();
    sockets.push(s.ws);
    s.ws.send(JSON.stringify({ type: 'auth', token: 'bogus-token' }));
    expect(await s.frame()).toMatchObject({ type: 'error', error: { code: 'AGENT_AUTH_FAILED' } });
    expect((await s.closed).code).toBe(4401);
  });

  it('closes with 4401 on auth without a token (via the helper)', async () => {
    const { ws, next } = await openAgentSocket(server.url, '');
    sockets.push(ws);
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    expect(await next('error')).toMatchObject({ error: { code: 'AGENT_AUTH_FAILED' } });
    expect(await closed).toBe(4401);
  });

  it('answers garbage frames with error frames, stays open for 9 and closes on the 10th', async () => {
    const s = await rawSocket();
    sockets.push(s.ws);
    s.ws.send(JSON.stringify({ type: 'auth', token: alice.token }));
    expect(await s.frame()).toMatchObject({ type: 'ready' });

    const garbage: Array<string | Buffer> = [
      'not json',
      '{"type":',
      '[1,2,3]',
      '"ping"',
      '{"type":5}',
      '{"notype":"ping"}',
      '{"type":"frobnicate"}',
      Buffer.from([1, 2, 3]),
      '{"type":"sync","chatId":42,"from":1}',
    ];
    for (const g of garbage) {
      s.ws.send(g);
      expect(await s.frame()).toEqual({ type: 'error', error: { code: 'INVALID_PARAMETER', message: expect.any(String) } });
    }
    expect(s.ws.readyState).toBe(WebSocket.OPEN);
    // Still a working socket after 9 bad frames.
    s.ws.send(JSON.stringify({ type: 'ping' }));
    expect(await s.frame()).toEqual({ type: 'pong' });

    s.ws.send('still not json');
    expect(await s.frame()).toMatchObject({ type: 'error', error: { code: 'INVALID_PARAMETER' } });
    expect((await s.closed).code).toBe(4400);
  });
});

describe('a session cannot grow without bound through userData', () => {
  it('refuses an updateData that would take userData past 64 Ki characters (400, code 102), keeping what was stored', async () => {
    const own = await startTestServer();
    try {
      const c = new ChatClient(own.url);
      await c.start();
      const chunk = 'x'.repeat(15_000);
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await c.op('updateData', { [`userData[k${i}]`]: chunk })).status);
      // 4 × 15,002 characters fit in 65,536; the fifth would not.
      expect(statuses).toEqual([200, 200, 200, 200, 400]);
      const refused = await c.op('updateData', { 'userData[k9]': chunk });
      expect(refused.body).toMatchObject({ statusCode: 2, errors: [{ code: 102 }] });
      const stored = (await own.running.app.node.sessions.get(c.chatId)).session.userData;
      expect(Object.keys(stored).filter((k) => k.startsWith('k'))).toEqual(['k0', 'k1', 'k2', 'k3']);
      // Replacing a value keeps the size: accepted.
      expect((await c.op('updateData', { 'userData[k0]': 'short' })).status).toBe(200);
    } finally {
      await own.close();
    }
  });
});
