/**
 * Hostile input on the agent REST API (/agent/api) beyond test/bad-input.test.ts: odd paths and
 * percent-encoding in chatId and fileId, files of other chats, prototype-ish ids, oversized fields and bodies,
 * ended chats, and the 405 answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS, type ErrorCode } from '../src/errors.ts';
import { AgentClient, ChatClient, postForm, postMultipart, startTestServer, type ApiResponse, type TestServer } from './helpers.ts';

let server: TestServer;
let alice: AgentClient;
let bob: AgentClient;
beforeAll(async () => {
  server = await startTestServer();
  alice = new AgentClient(server.url, 'alice', 'alice-secret');
  bob = new AgentClient(server.url, 'bob', 'bob-secret-1');
  await alice.login();
  await bob.login();
});
afterAll(async () => {
  await server?.close();
});

function expectAgentError(r: ApiResponse, code: ErrorCode): void {
  expect(r.status, JSON.stringify(r.body)).toBe(ERRORS[code].http);
  expect(r.body).toEqual({ error: { code, message: expect.any(String) } });
}

async function newChat(): Promise<ChatClient> {
  const c = new ChatClient(server.url);
  const r = await c.start();
  expect(r.status).toBe(200);
  return c;
}

async function transcript(c: ChatClient): Promise<unknown> {
  const r = await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { ...c.ids(), transcriptPosition: 1 });
  return r.body.messages;
}

/** A customer upload; answers the new file's id. */
async function uploadFile(c: ChatClient, content: string): Promise<string> {
  const r = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, c.ids(), { name: 'note.txt', type: 'text/plain', bytes: Buffer.from(content) });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  const id = r.body.userData?.['file-id'] as string | undefined;
  expect(id).toBeTypeOf('string');
  return id as string;
}

async function rawGet(path: string, token: string): Promise<{ status: number; text: string }> {
  const r = await fetch(`${server.url}/agent/api/${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, text: await r.text() };
}

describe('files through the agent API', () => {
  it("refuses a file of another chat, a file of another agent's live chat, and encoded/dotted file ids", async () => {
    const a = await newChat();
    expect((await alice.accept(a.chatId)).status).toBe(200);
    const fileId = await uploadFile(a, 'TOP-SECRET-FILE');
    expect((await rawGet(`chats/${a.chatId}/files/${fileId}`, alice.token)).text).toBe('TOP-SECRET-FILE');

    const b = await newChat();
    for (const [path, token, code] of [
      // Bob may read the waiting chat b, but the file belongs to a.
      [`chats/${b.chatId}/files/${fileId}`, bob.token, 'UNKNOWN_FILE'],
      // Alice's live chat is private to her.
      [`chats/${a.chatId}/files/${fileId}`, bob.token, 'AGENT_NOT_IN_CHAT'],
      [`chats/${a.chatId}/files/${encodeURIComponent(`../${fileId}`)}`, alice.token, 'UNKNOWN_FILE'],
      [`chats/${a.chatId}/files/${fileId}%00`, alice.token, 'UNKNOWN_FILE'],
      [`chats/${a.chatId}/files/%E0%A4%A`, alice.token, 'NOT_FOUND'],
      [`chats/${a.chatId}/files/`, alice.token, 'UNKNOWN_FILE'],
      [`chats/${encodeURIComponent(`${b.chatId}/files/${fileId}`)}`, alice.token, 'UNKNOWN_CHAT'],
    ] as const) {
      const r = await rawGet(path, token);
      expect(r.text, path).not.toContain('TOP-SECRET-FILE');
      expect(r.status, path).toBe(ERRORS[code].http);
      expect(JSON.parse(r.text), path).toMatchObject({ error: { code } });
    }
    await alice.close(a.chatId);
  });
});

describe('paths and ids', () => {
  it.each([
    ['GET', 'chats/'],
    ['POST', 'chats//accept'],
    ['GET', 'chats/__proto__'],
    ['POST', 'chats/constructor/accept'],
    ['POST', 'chats/%2e%2e/accept'],
    ['GET', 'chats/%E0%A4%A'],
    ['POST', 'chats/%E0%A4%A/send'],
    ['GET', 'me/'],
    ['GET', 'chats/x/y/z/w'],
    ['DELETE', 'chats'],
    ['PUT', 'login'],
  ])('answers %s /agent/api/%s with a 4xx in the JSON error format', async (method, path) => {
    const r = await alice.call(method, path, method === 'GET' || method === 'DELETE' ? undefined : {});
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(r.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
  });

  it('refuses login for prototype-ish agent ids and a non-object agentId (no token issued)', async () => {
    for (const body of [
      { agentId: '__proto__', password: 'x' },
      { agentId: 'hasOwnProperty', password: 'x' },
      { agentId: { toString: 'alice' }, password: 'alice-secret' },
      { agentId: 'alice', password: ['alice-secret'] },
    ]) {
      const r = await new AgentClient(server.url, '', '').call('POST', 'login', body);
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.body.token).toBeUndefined();
    }
  });

  it('refuses an oversized body (413 BODY_TOO_LARGE) and an oversized field (413 MESSAGE_TOO_LONG) without changing the chat', async () => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const before = await transcript(c);
    expectAgentError(await alice.send(c.chatId, 'x'.repeat(300 * 1024)), 'BODY_TOO_LARGE');
    expectAgentError(await alice.send(c.chatId, 'x'.repeat(65_537)), 'MESSAGE_TOO_LONG');
    expectAgentError(await alice.call('POST', `chats/${c.chatId}/typing`, { typing: true, text: 'y'.repeat(65_537) }), 'MESSAGE_TOO_LONG');
    expect(await transcript(c)).toEqual(before);
    await alice.close(c.chatId);
  });

  it('refuses every action on an ended chat with CHAT_ENDED and leaves it unchanged; the transcript stays readable', async () => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expect((await alice.close(c.chatId)).status).toBe(200);
    const before = await transcript(c);
    for (const [action, body] of [
      ['accept', {}],
      ['resume', {}],
      ['send', { text: 'late' }],
      ['typing', { typing: true }],
      ['leave', {}],
      ['close', {}],
      ['hold', {}],
      ['transfer', { toAgentId: 'bob' }],
    ] as const) {
      expectAgentError(await alice.call('POST', `chats/${c.chatId}/${action}`, body), 'CHAT_ENDED');
    }
    expectAgentError(await bob.accept(c.chatId), 'CHAT_ENDED');
    expect(await transcript(c)).toEqual(before);
    expect((await bob.call('GET', `chats/${c.chatId}`)).status).toBe(200);
  });

  it('refuses a transfer to an unknown or prototype-ish agent and to oneself, without changing the chat', async () => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const before = await transcript(c);
    for (const to of ['__proto__', 'constructor', 'mallory', 'alice', 'x'.repeat(10_000)]) {
      expectAgentError(await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: to }), 'INVALID_PARAMETER');
    }
    expectAgentError(await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 42 }), 'INVALID_PARAMETER');
    expect(await transcript(c)).toEqual(before);
    await alice.close(c.chatId);
  });

  it('answers accept twice with the same view (no second join)', async () => {
    const c = await newChat();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const before = await transcript(c);
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expect(await transcript(c)).toEqual(before);
    await alice.close(c.chatId);
  });

  // Regression test (this was a bug, now fixed): src/chat-server/agent-api.ts:88 (and :77, :94) with src/errors.ts:83 — the agent API answers a wrong
  // method with METHOD_NOT_ALLOWED whose message is the Chat API's advice "Chat API v2 operations use POST.",
  // also for GET-only resources: `POST /agent/api/chats/{id}` is told to use POST. The 405 also carries no
  // `allow` header. Required: a message naming the allowed method(s) and an `allow` header.
  it('answers 405 on a GET-only agent resource with advice that does not tell the client to use POST', async () => {
    const c = await newChat();
    const r = await alice.call('POST', `chats/${c.chatId}`, {});
    expect(r.status).toBe(405);
    expect(r.body.error.message).not.toMatch(/use POST/);
    expect(r.headers.get('allow')).toBe('GET');
  });
});

describe('password guessing', () => {
  it('after 10 wrong passwords from one address, sign-ins from it are refused with 429 for a while, right ones too', async () => {
    const own = await startTestServer();
    try {
      const login = (password: string) =>
        fetch(`${own.url}/agent/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agentId: 'alice', password }) });
      // A right password resets nothing, and a malformed request is not a guess.
      expect((await login('alice-secret')).status).toBe(200);
      expect((await fetch(`${own.url}/agent/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(400);
      const wrong: number[] = [];
      for (let i = 0; i < 11; i++) wrong.push((await login(`guess-${i}`)).status);
      expect(wrong.slice(0, 10).every((s) => s === 401 || s === 403)).toBe(true);
      expect(wrong[10]).toBe(429);
      expect((await login('alice-secret')).status).toBe(429);
    } finally {
      await own.close();
    }
  });
});
