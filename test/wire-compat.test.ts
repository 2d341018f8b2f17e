/**
 * Chat API v2 wire compatibility against shared/reference/genesys-wire-facts.md and docs/chat-api.md.
 * Real HTTP on 127.0.0.1 port 0, real SQLite in a temp dir.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient, ChatClient, SERVICE, postForm, postMultipart, postRaw, startTestServer, type ApiResponse, type TestServer } from './helpers.ts';

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(async () => {
  await srv.close();
});

async function newChat(fields?: Record<string, string>): Promise<ChatClient> {
  const c = new ChatClient(srv.url);
  const r = await c.start(fields);
  expect(r.body.statusCode).toBe(0);
  return c;
}

function expectError(r: ApiResponse, http: number, code: number, statusCode: 1 | 2 = 2): void {
  expect(r.status).toBe(http);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  expect(r.body.statusCode).toBe(statusCode);
  expect(r.body.messages).toEqual([]);
  expect(typeof r.body.chatEnded).toBe('boolean');
  expect(r.body.errors).toHaveLength(1);
  expect(r.body.errors[0].code).toBe(code);
  expect(typeof r.body.errors[0].advice).toBe('string');
  expect(r.body.secureKey).toBeUndefined();
  expect(r.body.userId).toBeUndefined();
  expect(r.body.nextPosition).toBeUndefined();
}

function types(r: ApiResponse): string[] {
  return (r.body.messages as Array<{ type: string }>).map((m) => m.type);
}

describe('Request Chat reply (facts §1.1, §1.4)', () => {
  it('has every field with the documented JSON type, nextPosition and chatEnded:false', async () => {
    const r = await postForm(`${srv.url}/genesys/2/chat/${SERVICE}`, { firstName: 'First', lastName: 'Last', subject: 'Subject to' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    const b = r.body;
    expect(b.statusCode).toBe(0);
    expect(typeof b.alias).toBe('string');
    expect(typeof b.userId).toBe('string');
    expect(typeof b.secureKey).toBe('string');
    expect(typeof b.chatId).toBe('string');
    expect(b.chatEnded).toBe(false);
    expect(b.nextPosition).toBe(2);
    expect(b.messages).toEqual([
      { from: { nickname: 'First Last', participantId: 1, type: 'Client' }, index: 1, type: 'ParticipantJoined', utcTime: expect.any(Number) },
    ]);
    expect(Number.isInteger(b.messages[0].utcTime)).toBe(true);
  });

  it('refuses firstName without lastName (either nickname or both names) with 400 / 101', async () => {
    const r = await postForm(`${srv.url}/genesys/2/chat/${SERVICE}`, { firstName: 'First' });
    expectError(r, 400, 101);
    expect(r.body.chatEnded).toBe(false);
  });

  it('accepts percent-encoded userData[...] keys (userData%5BKey%5D) as GChat / Optum send them, GCTI keys included', async () => {
    const body = 'nickname=Ann&userData%5BGCTI_LanguageCode%5D=en&userData%5B_genesys_source%5D=web&userData%5BTimeZone%5D=-480&userData%5Bempty%5D=';
    const r = await postRaw(`${srv.url}/genesys/2/chat/${SERVICE}`, body, 'application/x-www-form-urlencoded; charset=UTF-8');
    expect(r.status).toBe(200);
    expect(r.body.statusCode).toBe(0);
  });

  it('accepts multipart/form-data with an initial text (GChat) as a Message at index 2', async () => {
    const r = await postMultipart(`${srv.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Multi', text: 'first words', 'userData[k]': 'v' });
    expect(r.status).toBe(200);
    expect(r.body.nextPosition).toBe(3);
    expect(r.body.messages[1]).toMatchObject({ index: 2, type: 'Message', text: 'first words', from: { participantId: 1, type: 'Client' } });
  });

  it('answers an unknown service with 404 / 103, statusCode 2', async () => {
    const r = await postForm(`${srv.url}/genesys/2/chat/no-such-service`, { nickname: 'Ann' });
    expectError(r, 404, 103);
  });
});

describe('transcriptPosition and nextPosition (facts §1.5, §7; chat-api.md)', () => {
  it('refresh: 0 = none, 1 = all, n = index >= n, beyond the end = none; nextPosition is always last index + 1', async () => {
    const c = await newChat();
    await c.op('send', { message: 'one' });
    await c.op('send', { message: 'two' });
    const none = await c.op('refresh', { transcriptPosition: 0 });
    expect(none.body.messages).toEqual([]);
    expect(none.body.nextPosition).toBe(4);
    const all = await c.op('refresh', { transcriptPosition: 1 });
    expect(all.body.messages.map((m: { index: number }) => m.index)).toEqual([1, 2, 3]);
    const absent = await c.op('refresh');
    expect(absent.body.messages.map((m: { index: number }) => m.index)).toEqual([1, 2, 3]);
    const from3 = await c.op('refresh', { transcriptPosition: 3 });
    expect(from3.body.messages).toEqual([expect.objectContaining({ index: 3, type: 'Message', text: 'two' })]);
    const beyond = await c.op('refresh', { transcriptPosition: 99 });
    expect(beyond.body.messages).toEqual([]);
    expect(beyond.body.nextPosition).toBe(4);
  });

  it('refuses a negative or non-numeric transcriptPosition with 400 / 102', async () => {
    const c = await newChat();
    for (const p of ['-1', 'abc', '1.5']) expectError(await c.op('refresh', { transcriptPosition: p }), 400, 102);
  });

  it('send without transcriptPosition carries messages:[] and the new nextPosition (the real GMS capture, §1.2)', async () => {
    const c = await newChat();
    const r = await c.op('send', { message: 'I need help with account' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ statusCode: 0, chatEnded: false, messages: [], nextPosition: 3, alias: '117', chatId: c.chatId, userId: c.userId, secureKey: c.secureKey });
  });

  it('send with transcriptPosition returns the events from there, its own Message with messageType included', async () => {
    const c = await newChat();
    const r = await c.op('send', { message: 'hi', messageType: 'custom-kind', transcriptPosition: 1 });
    expect(types(r)).toEqual(['ParticipantJoined', 'Message']);
    expect(r.body.messages[1]).toEqual({
      from: { nickname: 'Ann', participantId: 1, type: 'Client' },
      index: 2,
      type: 'Message',
      utcTime: expect.any(Number),
      text: 'hi',
      messageType: 'custom-kind',
    });
  });
});

describe('operations and their events (chat-api.md events table)', () => {
  it('startTyping / stopTyping with the optional message become TypingStarted / TypingStopped with text', async () => {
    const c = await newChat();
    const a = await c.op('startTyping', { message: 'I am wri', transcriptPosition: 2 });
    expect(a.body.messages).toEqual([expect.objectContaining({ type: 'TypingStarted', index: 2, text: 'I am wri' })]);
    const b = await c.op('stopTyping', { transcriptPosition: 3 });
    expect(b.body.messages).toEqual([expect.objectContaining({ type: 'TypingStopped', index: 3 })]);
    expect(b.body.nextPosition).toBe(4);
  });

  it('pushUrl becomes PushUrl with the URL as text; a relative URL is 400 / 102', async () => {
    const c = await newChat();
    const r = await c.op('pushUrl', { pushUrl: 'https://example.com/page?a=1&b=2', transcriptPosition: 2 });
    expect(r.body.messages).toEqual([expect.objectContaining({ type: 'PushUrl', text: 'https://example.com/page?a=1&b=2' })]);
    expectError(await c.op('pushUrl', { pushUrl: '/relative' }), 400, 102);
  });

  it('updateNickname becomes NicknameUpdated with text and from.nickname the new name; later events use it', async () => {
    const c = await newChat();
    const r = await c.op('updateNickname', { nickname: 'Bea', transcriptPosition: 2 });
    expect(r.body.messages).toEqual([expect.objectContaining({ type: 'NicknameUpdated', text: 'Bea', from: { nickname: 'Bea', participantId: 1, type: 'Client' } })]);
    const s = await c.op('send', { message: 'x', transcriptPosition: 3 });
    expect(s.body.messages[0].from.nickname).toBe('Bea');
  });

  it('customNotice becomes CustomNotice with text and messageType', async () => {
    const c = await newChat();
    const r = await c.op('customNotice', { message: 'note', messageType: 'cobrowse', transcriptPosition: 2 });
    expect(r.body.messages).toEqual([expect.objectContaining({ type: 'CustomNotice', text: 'note', messageType: 'cobrowse' })]);
  });

  it('updateData (Optum body) and readReceipt add no event and answer statusCode 0 with chatEnded', async () => {
    const c = await newChat();
    const body = `secureKey=${c.secureKey}&alias=${c.alias}&userId=${c.userId}&userData%5BSMS_Service_ID%5D=42`;
    const u = await postRaw(`${c.chatUrl}/${c.chatId}/updateData`, body, 'application/x-www-form-urlencoded');
    expect(u.body).toMatchObject({ statusCode: 0, chatEnded: false, nextPosition: 2 });
    const rr = await c.op('readReceipt', { transcriptPosition: 2 });
    expect(rr.body).toMatchObject({ statusCode: 0, chatEnded: false, nextPosition: 2, messages: [] });
  });

  it('accepts JSON and text/plain bodies as well (documented liberal encodings)', async () => {
    const c = await newChat();
    const j = await postRaw(`${c.chatUrl}/${c.chatId}/send`, JSON.stringify({ secureKey: c.secureKey, message: 'json' }), 'application/json');
    expect(j.body).toMatchObject({ statusCode: 0, nextPosition: 3 });
    const t = await postRaw(`${c.chatUrl}/${c.chatId}/send`, `secureKey=${c.secureKey}&message=plain`, 'text/plain;charset=UTF-8');
    expect(t.body).toMatchObject({ statusCode: 0, nextPosition: 4 });
    const x = await postRaw(`${c.chatUrl}/${c.chatId}/send`, '<a/>', 'application/xml');
    expectError(x, 415, 107);
  });

  it('answers an unknown operation 404 / 117 and GET on an operation 405 / 118', async () => {
    const c = await newChat();
    expectError(await c.op('frobnicate'), 404, 117);
    const g = await fetch(`${c.chatUrl}/${c.chatId}/refresh?secureKey=${c.secureKey}`);
    expect(g.status).toBe(405);
    expect(((await g.json()) as { errors: Array<{ code: number }> }).errors[0]?.code).toBe(118);
  });
});

describe('identity (facts §7; chat-api.md Identity)', () => {
  it('a wrong secureKey is 403 / 105 that echoes chatId and alias but no tokens or events', async () => {
    const c = await newChat();
    const r = await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { secureKey: 'f'.repeat(20), userId: c.userId, alias: '117', transcriptPosition: 1 });
    expectError(r, 403, 105);
    expect(r.body.chatId).toBe(c.chatId);
    expect(r.body.alias).toBe('117');
    expect(r.body.chatEnded).toBe(false);
  });

  it('a wrong userId is 403 / 105; no userId is fine; a stale alias is accepted and the current one returned', async () => {
    const c = await newChat();
    expectError(await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { secureKey: c.secureKey, userId: '0000000000000000' }), 403, 105);
    const ok = await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { secureKey: c.secureKey, alias: '1323' });
    expect(ok.body).toMatchObject({ statusCode: 0, alias: '117', userId: c.userId });
  });

  it('a missing secureKey is 400 / 101; an unknown chat 404 / 104; a chat under another service 404 / 104', async () => {
    const c = await newChat();
    expectError(await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { userId: c.userId, alias: c.alias }), 400, 101);
    expectError(await postForm(`${c.chatUrl}/0000000000000000/refresh`, c.ids()), 404, 104);
    expectError(await postForm(`${srv.url}/genesys/2/chat/other/${c.chatId}/refresh`, c.ids()), 404, 104);
  });
});

describe('ended chats (chat-api.md "Ended chats"; errors.md CHAT_ENDED)', () => {
  it('after disconnect: refresh and a 2nd disconnect are statusCode 0 chatEnded:true; changes are 400 / 106 chatEnded:true', async () => {
    const c = await newChat();
    const d = await c.op('disconnect', { transcriptPosition: 2 });
    expect(d.body).toMatchObject({ statusCode: 0, chatEnded: true, nextPosition: 3 });
    expect(d.body.messages).toEqual([expect.objectContaining({ type: 'ParticipantLeft', index: 2, from: { nickname: 'Ann', participantId: 1, type: 'Client' } })]);
    expect((await c.op('disconnect')).body).toMatchObject({ statusCode: 0, chatEnded: true });
    const r = await c.op('refresh', { transcriptPosition: 1 });
    expect(r.body).toMatchObject({ statusCode: 0, chatEnded: true });
    expect(types(r)).toEqual(['ParticipantJoined', 'ParticipantLeft']);
    for (const [op, f] of [
      ['send', { message: 'late' }],
      ['stopTyping', {}],
      ['customNotice', { message: 'n' }],
    ] as const) {
      const e = await c.op(op, f);
      expectError(e, 400, 106);
      expect(e.body.chatEnded).toBe(true);
    }
  });

  it('after the agent closes: refresh shows the agent leaving with chatEnded:true; disconnect still answers statusCode 0', async () => {
    const c = await newChat();
    const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
    await alice.login();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    await alice.send(c.chatId, 'Hello, Alice here');
    expect((await alice.close(c.chatId)).status).toBe(200);
    const r = await c.op('refresh', { transcriptPosition: 2 });
    expect(r.body.chatEnded).toBe(true);
    expect((r.body.messages as Array<{ type: string; from: { participantId: number; type: string } }>).map((m) => `${m.type}:${m.from.participantId}:${m.from.type}`)).toEqual([
      'ParticipantJoined:2:Agent',
      'Message:2:Agent',
      'ParticipantLeft:2:Agent',
    ]);
    expect((await c.op('disconnect')).body).toMatchObject({ statusCode: 0, chatEnded: true });
  });
});

describe('files (facts §1.3, §7)', () => {
  it('limits Notice without index, upload reply userData["file-id"], FileUploaded / FileDeleted events, download bytes', async () => {
    const c = await newChat();
    const l = await c.op('file/limits');
    expect(l.body).toMatchObject({ statusCode: 0, chatEnded: false, nextPosition: 2 });
    expect(l.body.messages).toHaveLength(1);
    expect(l.body.messages[0]).toMatchObject({ type: 'Notice', text: 'file-client-cfg-get', from: { participantId: 1, type: 'Client' } });
    expect(Object.keys(l.body.messages[0].userData).sort()).toEqual(
      [
        'download-attempts',
        'upload-max-files',
        'delete-file',
        'upload-max-file-size',
        'used-download-attempts',
        'used-upload-max-total-size',
        'upload-need-agent',
        'used-upload-max-files',
        'upload-max-total-size',
        'upload-file-types',
      ].sort(),
    );
    const bytes = new TextEncoder().encode('hello file');
    const up = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, { ...c.ids(), 'userData[file-description]': 'desc' }, { name: 'a.txt', type: 'text/plain', bytes });
    expect(up.status).toBe(200);
    expect(up.body.statusCode).toBe(0);
    const fileId = up.body.userData['file-id'] as string;
    const r = await c.op('refresh', { transcriptPosition: 2 });
    expect(r.body.messages[0]).toMatchObject({
      type: 'FileUploaded',
      index: 2,
      userData: { 'file-id': fileId, 'file-name': 'a.txt', 'file-size': String(bytes.length), 'file-type': 'text/plain', 'file-description': 'desc' },
    });
    const dl = await postForm(`${c.chatUrl}/${c.chatId}/file/${fileId}/download`, c.ids());
    expect(dl.status).toBe(200);
    expect(Buffer.from(dl.body as Buffer).toString()).toBe('hello file');
    const del = await c.op(`file/${fileId}/delete`, { transcriptPosition: 3 });
    expect(del.body.messages).toEqual([expect.objectContaining({ type: 'FileDeleted', userData: { 'file-id': fileId, 'file-name': 'a.txt' } })]);
  });
});
