/**
 * Every Chat API v2 operation over real HTTP (port 0), form-urlencoded and multipart, with an agent on
 * the other side through the agent API and its WebSocket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient, ChatClient, SERVICE, openAgentSocket, postForm, postMultipart, startTestServer, type TestServer } from './helpers.ts';

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(async () => {
  await srv.close();
});

function types(messages: Array<{ type: string }>): string[] {
  return messages.map((m) => m.type);
}

describe('Request Chat', () => {
  it('answers with tokens, nextPosition, chatEnded:false and the client ParticipantJoined', async () => {
    const c = new ChatClient(srv.url);
    const r = await c.start({ nickname: 'JohnDoe', subject: 'Help with account', emailAddress: 'jdoe@example.com', 'userData[TimeZone]': '-480' });
    expect(r.status).toBe(200);
    const b = r.body;
    expect(b).toMatchObject({ statusCode: 0, alias: '117', chatEnded: false, nextPosition: 2 });
    expect(b.chatId).toMatch(/^[0-9A-Za-z]{16}$/);
    expect(b.userId).toMatch(/^[0-9A-F]{16}$/);
    expect(b.secureKey).toMatch(/^[0-9a-f]{20}$/);
    expect(b.messages).toEqual([
      { from: { nickname: 'JohnDoe', participantId: 1, type: 'Client' }, index: 1, type: 'ParticipantJoined', utcTime: expect.any(Number) },
    ]);
    expect(Math.abs(b.messages[0].utcTime - Date.now())).toBeLessThan(60_000);
  });

  it('builds the nickname from firstName and lastName, and takes an initial text', async () => {
    const c = new ChatClient(srv.url);
    const r = await c.start({ firstName: 'First', lastName: 'Last', subject: 'Subject to', text: 'Hello there' });
    expect(r.body.messages.map((m: { from: { nickname: string } }) => m.from.nickname)).toEqual(['First Last', 'First Last']);
    expect(r.body.messages[1]).toMatchObject({ index: 2, type: 'Message', text: 'Hello there' });
    expect(r.body.nextPosition).toBe(3);
  });

  it('accepts multipart/form-data as well', async () => {
    const r = await postMultipart(`${srv.url}/genesys/2/chat/${SERVICE}`, { nickname: 'Multi', 'userData[k]': 'v' });
    expect(r.status).toBe(200);
    expect(r.body.statusCode).toBe(0);
    expect(r.body.messages[0].from.nickname).toBe('Multi');
  });
});

describe('a conversation with an agent', () => {
  it('runs send, refresh, typing, nickname, notices, data, read receipt and the agent side end to end', async () => {
    const c = new ChatClient(srv.url);
    await c.start({ nickname: 'Ann', subject: 'Order 42' });
    const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
    await alice.login();
    const desk = await openAgentSocket(srv.url, alice.token);
    const ready = await desk.next('ready');
    expect((ready['overview'] as { waiting: Array<{ chatId: string }> }).waiting.map((w) => w.chatId)).toContain(c.chatId);

    // The customer writes before anyone answers; the reply carries no transcript without transcriptPosition.
    const sent = await c.op('send', { message: 'Where is my parcel?', messageType: 'text' });
    expect(sent.body).toMatchObject({ statusCode: 0, chatEnded: false, messages: [], nextPosition: 3 });

    expect((await alice.accept(c.chatId)).status).toBe(200);
    await alice.typing(c.chatId, true, 'Let me ch');
    await alice.send(c.chatId, 'Let me check that for you.');
    const agentEvents = await desk.next('events');
    expect(agentEvents['chat']).toMatchObject({ chatId: c.chatId });

    // refresh from transcriptPosition returns exactly the new events.
    const r1 = await c.op('refresh', { transcriptPosition: 3 });
    expect(types(r1.body.messages)).toEqual(['ParticipantJoined', 'TypingStarted', 'Message']);
    expect(r1.body.messages[0].from).toEqual({ nickname: 'Alice', participantId: 2, type: 'Agent' });
    expect(r1.body.messages[2]).toMatchObject({ index: 5, text: 'Let me check that for you.' });
    expect(r1.body.nextPosition).toBe(6);

    // transcriptPosition 0 = none, absent = all for refresh.
    expect((await c.op('refresh', { transcriptPosition: 0 })).body.messages).toEqual([]);
    expect((await c.op('refresh')).body.messages).toHaveLength(5);

    await c.op('startTyping', { message: 'Than' });
    await c.op('stopTyping');
    await c.op('updateNickname', { nickname: 'Annie' });
    await c.op('customNotice', { message: 'page=checkout', messageType: 'navigation' });
    await c.op('pushUrl', { pushUrl: 'https://shop.example/orders/42' });
    const data = await c.op('updateData', { 'userData[orderId]': '42', 'userData[tier]': 'gold' });
    expect(data.body.statusCode).toBe(0);
    const rr = await c.op('readReceipt', { transcriptPosition: 5 });
    expect(rr.body.statusCode).toBe(0);

    const r2 = await c.op('refresh', { transcriptPosition: 6 });
    expect(types(r2.body.messages)).toEqual(['TypingStarted', 'TypingStopped', 'NicknameUpdated', 'CustomNotice', 'PushUrl']);
    expect(r2.body.messages[0]).toMatchObject({ text: 'Than', from: { participantId: 1 } });
    expect(r2.body.messages[2]).toMatchObject({ text: 'Annie', from: { nickname: 'Annie', participantId: 1, type: 'Client' } });
    expect(r2.body.messages[3]).toMatchObject({ text: 'page=checkout', messageType: 'navigation' });
    expect(r2.body.messages[4]).toMatchObject({ text: 'https://shop.example/orders/42' });

    // send with transcriptPosition returns from there, including the sent message.
    const s2 = await c.op('send', { message: 'Thanks!', transcriptPosition: 11 });
    expect(types(s2.body.messages)).toEqual(['Message']);
    expect(s2.body.messages[0]).toMatchObject({ index: 11, text: 'Thanks!', from: { nickname: 'Annie' } });

    // The agent saw everything live, including the customer's typing preview.
    const seen: Array<{ type: string; text?: string }> = [];
    while (!seen.some((e) => e.text === 'Thanks!')) seen.push(...((await desk.next('events'))['events'] as typeof seen));
    expect(seen.some((e) => e.type === 'TypingStarted' && e.text === 'Than')).toBe(true);

    // The agent transcript shows the merged userData through the session (via the API's chat summary).
    const transcript = await alice.call('GET', `chats/${c.chatId}?from=1`);
    expect(transcript.body.events).toHaveLength(11);

    // The agent closes: the customer sees ParticipantLeft and chatEnded.
    await alice.close(c.chatId);
    const end = await c.op('refresh', { transcriptPosition: 12 });
    expect(end.body).toMatchObject({ statusCode: 0, chatEnded: true });
    expect(end.body.messages).toEqual([expect.objectContaining({ type: 'ParticipantLeft', from: { nickname: 'Alice', participantId: 2, type: 'Agent' } })]);
    desk.ws.close();
  });

  it('disconnect ends the chat with the client ParticipantLeft; a second disconnect is harmless', async () => {
    const c = new ChatClient(srv.url);
    await c.start();
    const d = await c.op('disconnect', { transcriptPosition: 2 });
    expect(d.body).toMatchObject({ statusCode: 0, chatEnded: true });
    expect(d.body.messages).toEqual([expect.objectContaining({ type: 'ParticipantLeft', index: 2, from: { nickname: 'Ann', participantId: 1, type: 'Client' } })]);
    const again = await c.op('disconnect');
    expect(again.body).toMatchObject({ statusCode: 0, chatEnded: true });
  });

  it('accepts a stale alias and no userId/alias at all (secureKey is the only required identity)', async () => {
    const c = new ChatClient(srv.url);
    await c.start();
    const stale = await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { secureKey: c.secureKey, userId: c.userId, alias: '999' });
    expect(stale.body).toMatchObject({ statusCode: 0, alias: '117' });
    const bare = await postForm(`${c.chatUrl}/${c.chatId}/send`, { secureKey: c.secureKey, message: 'only the key' });
    expect(bare.body).toMatchObject({ statusCode: 0, userId: c.userId, secureKey: c.secureKey, alias: '117' });
  });

  it('the agent leaves and the chat waits for the next agent', async () => {
    const c = new ChatClient(srv.url);
    await c.start();
    const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
    const bob = new AgentClient(srv.url, 'bob', 'bob-secret-1');
    await alice.login();
    await bob.login();
    await alice.accept(c.chatId);
    await alice.leave(c.chatId);
    expect((await bob.overview()).body.waiting.map((w: { chatId: string }) => w.chatId)).toContain(c.chatId);
    expect((await bob.accept(c.chatId)).status).toBe(200);
    await bob.send(c.chatId, 'Bob here');
    const r = await c.op('refresh', { transcriptPosition: 2 });
    expect(r.body.messages.map((m: { type: string; from: { participantId: number } }) => `${m.type}:${m.from.participantId}`)).toEqual([
      'ParticipantJoined:2',
      'ParticipantLeft:2',
      'ParticipantJoined:3',
      'Message:3',
    ]);
    await bob.close(c.chatId);
  });
});

describe('files', () => {
  it('gives limits, uploads, downloads and deletes a file', async () => {
    const c = new ChatClient(srv.url);
    await c.start();
    const limits = await c.op('file/limits');
    expect(limits.status).toBe(200);
    expect(limits.body.messages[0]).toMatchObject({ type: 'Notice', text: 'file-client-cfg-get' });
    expect(limits.body.messages[0].index).toBeUndefined();
    expect(limits.body.messages[0].userData).toEqual({
      'download-attempts': '2',
      'upload-max-files': '3',
      'delete-file': 'own',
      'upload-max-file-size': '40000',
      'used-download-attempts': '0',
      'used-upload-max-total-size': '0',
      'upload-need-agent': 'false',
      'used-upload-max-files': '0',
      'upload-max-total-size': '100000',
      'upload-file-types': 'txt:png:pdf',
    });
    expect(limits.body.userData['upload-max-files']).toBe('3');

    const bytes = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3, 255]);
    const up = await postMultipart(
      `${c.chatUrl}/${c.chatId}/file`,
      { ...c.ids(), 'userData[file-description]': 'a screenshot' },
      { name: 'écran 1.png', type: 'image/png', bytes },
    );
    expect(up.status).toBe(200);
    expect(up.body.statusCode).toBe(0);
    const fileId = up.body.userData['file-id'] as string;
    expect(fileId).toBeTruthy();

    const r = await c.op('refresh', { transcriptPosition: 2 });
    expect(r.body.messages[0]).toMatchObject({
      type: 'FileUploaded',
      from: { participantId: 1 },
      userData: { 'file-id': fileId, 'file-name': 'écran 1.png', 'file-size': '9', 'file-type': 'image/png', 'file-description': 'a screenshot' },
    });

    const dl = await postForm(`${c.chatUrl}/${c.chatId}/file/${fileId}/download`, c.ids());
    expect(dl.status).toBe(200);
    expect(dl.headers.get('content-type')).toBe('image/png');
    expect(dl.headers.get('content-disposition')).toContain("filename*=UTF-8''%C3%A9cran%201.png");
    expect(new Uint8Array(dl.body as Buffer)).toEqual(bytes);

    const used = await c.op('file/limits');
    expect(used.body.userData).toMatchObject({ 'used-upload-max-files': '1', 'used-upload-max-total-size': '9', 'used-download-attempts': '1' });

    const del = await c.op(`file/${fileId}/delete`, { transcriptPosition: 3 });
    expect(del.body.statusCode).toBe(0);
    expect(del.body.messages).toEqual([expect.objectContaining({ type: 'FileDeleted', userData: { 'file-id': fileId, 'file-name': 'écran 1.png' } })]);
    const gone = await postForm(`${c.chatUrl}/${c.chatId}/file/${fileId}/download`, c.ids());
    expect(gone.status).toBe(404);
  });
});
