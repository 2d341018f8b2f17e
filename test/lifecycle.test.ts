/**
 * The async chat lifecycle over real HTTP on a manual clock: queue and offers, hold into the workbin,
 * wake-up to the last agent then to anyone, async idle alert and close, inactivity control, the flex
 * disconnect timeout, transfer, close, contact history, timers across a restart, and the bad inputs.
 * Timers act only on `app.timers.tick()`, after the test moves the clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ChatClient, postMultipart, type TestServer } from './helpers.ts';
import { startClockedServer } from './support/clocked-server.ts';

const HOUR = 3600_000;
let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

async function setup(env: Record<string, string> = {}) {
  const started = await startClockedServer(env);
  srv = started.srv;
  return started;
}

async function asyncChat(base: string, nickname = 'Ann') {
  const c = new ChatClient(base);
  await c.start({ nickname, subject: 'Async', 'userData[GCTI_Chat_AsyncMode]': 'true' });
  return c;
}

const ids = (list: Array<{ chatId: string }>) => list.map((x) => x.chatId);
const tail = async (c: ChatClient) => (await c.op('refresh', { transcriptPosition: c.nextPosition })).body;

describe('queue, hold and wake-up', () => {
  it('offers waiting chats to every agent until one accepts', async () => {
    const { srv, alice, bob } = await setup();
    const a = await asyncChat(srv.url, 'A');
    const b = await asyncChat(srv.url, 'B');
    expect(ids((await alice.overview()).body.waiting)).toEqual([a.chatId, b.chatId]);
    expect(ids((await bob.overview()).body.waiting)).toEqual([a.chatId, b.chatId]);
    await alice.accept(a.chatId);
    expect(ids((await bob.overview()).body.waiting)).toEqual([b.chatId]);
    expect(ids((await alice.overview()).body.mine)).toEqual([a.chatId]);
  });

  it('hold puts the chat in the workbin; a customer message routes it to the same agent first, then to anyone', async () => {
    const { srv, alice, bob, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.send(c.chatId, 'I will check with the warehouse.');
    const held = await alice.call('POST', `chats/${c.chatId}/hold`, {});
    expect(held.status).toBe(200);
    expect(held.body.chat).toMatchObject({ state: 'dormant', workbinAgentId: 'alice' });
    const ov = (await alice.overview()).body;
    expect(ids(ov.workbin)).toEqual([c.chatId]);
    expect(ids(ov.mine)).toEqual([]);
    expect(ids((await bob.overview()).body.waiting)).toEqual([]);

    // Dormant: the customer sees the agent leave, the chat is not ended.
    c.nextPosition = 2;
    const t = await tail(c);
    expect(t.chatEnded).toBe(false);
    expect(t.messages.at(-1)).toMatchObject({ type: 'ParticipantLeft', from: { participantId: 2 } });

    // A day later the customer writes: the chat wakes up, offered to alice only.
    await tick(20 * HOUR);
    await c.op('send', { message: 'Any news?' });
    expect(ids((await alice.overview()).body.waiting)).toEqual([c.chatId]);
    expect(ids((await bob.overview()).body.waiting)).toEqual([]);
    const early = await bob.accept(c.chatId);
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe('CHAT_ALREADY_TAKEN');

    // After last-agent-timeout (600 s) anyone may take it.
    await tick(599_000);
    expect(ids((await bob.overview()).body.waiting)).toEqual([]);
    await tick(1000);
    expect(ids((await bob.overview()).body.waiting)).toEqual([c.chatId]);
    expect((await bob.accept(c.chatId)).status).toBe(200);
    await bob.send(c.chatId, 'Bob here, it ships today.');
    expect((await tail(c)).messages.map((m: { type: string }) => m.type)).toContain('Message');
  });

  it('resume takes a dormant chat back from the own workbin; others cannot', async () => {
    const { srv, alice, bob } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    const stolen = await bob.call('POST', `chats/${c.chatId}/resume`, {});
    expect(stolen.status).toBe(409);
    const back = await alice.call('POST', `chats/${c.chatId}/resume`, {});
    expect(back.status).toBe(200);
    expect(back.body.chat).toMatchObject({ state: 'active', agents: ['alice'] });
    expect(ids((await alice.overview()).body.workbin)).toEqual([]);
  });

  it('a held chat does not count against max-chats', async () => {
    const { srv, bob } = await setup();
    const first = await asyncChat(srv.url, 'First');
    const second = await asyncChat(srv.url, 'Second');
    await bob.accept(first.chatId);
    expect((await bob.accept(second.chatId)).status).toBe(409);
    await bob.call('POST', `chats/${first.chatId}/hold`, {});
    expect((await bob.accept(second.chatId)).status).toBe(200);
  });
});

describe('idle control', () => {
  it('async: the alert notice after async-idle-alert wakes a dormant chat; the close notice ends it async-idle-close later', async () => {
    const { srv, alice, bob, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await tick(24 * HOUR - 1000);
    expect(ids((await alice.overview()).body.workbin)).toEqual([c.chatId]);
    await tick(1000);
    const alert = await tail(c);
    expect(alert.messages.at(-1)).toMatchObject({
      type: 'Notice',
      messageType: 'IDLE_CONTROL_ALERT',
      text: 'Chat session will be closed soon due to inactivity of chat participants.',
      from: { nickname: 'system', participantId: 0, type: 'External' },
    });
    // Woken: back in the queue, offered to alice first.
    expect(ids((await alice.overview()).body.waiting)).toEqual([c.chatId]);
    expect(ids((await bob.overview()).body.waiting)).toEqual([]);
    await tick(HOUR);
    const closed = await c.op('refresh', { transcriptPosition: c.nextPosition });
    expect(closed.body.chatEnded).toBe(true);
    expect(closed.body.messages.map((m: { type: string; messageType?: string }) => m.messageType ?? m.type)).toEqual(['IDLE_CONTROL_CLOSE', 'ParticipantLeft']);
  });

  it('async: a customer message before the close starts the idle period again', async () => {
    const { srv, alice, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await tick(24 * HOUR);
    await c.op('send', { message: 'still here' });
    await tick(HOUR);
    expect((await c.op('refresh')).body.chatEnded).toBe(false);
  });

  it('regular chats: [inactivity-control] alert, alert2 and close', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_INACTIVITY_CONTROL_ENABLED: 'true', PARLEY_INACTIVITY_CONTROL_TIMEOUT_ALERT2: '30' });
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    await tick(255_000);
    await tick(30_000);
    await tick(45_000);
    const r = await c.op('refresh', { transcriptPosition: 3 });
    expect(r.body.chatEnded).toBe(true);
    expect(r.body.messages.map((m: { text?: string; type: string }) => m.text ?? m.type)).toEqual([
      'Chat session will be closed soon due to inactivity of chat participants.',
      'Chat session will be closed very soon due to inactivity of chat participants.',
      'Chat session closed due to inactivity of chat participants.',
      'ParticipantLeft',
      'ParticipantLeft',
    ]);
  });
});

describe('flex disconnect timeout', () => {
  it('disconnects a client without push that stops sending requests; a polling client stays', async () => {
    const { srv, tick } = await setup({ PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45' });
    const gone = new ChatClient(srv.url);
    await gone.start();
    const polling = new ChatClient(srv.url);
    await polling.start();
    for (let i = 0; i < 6; i++) {
      await tick(10_000);
      await polling.op('refresh');
    }
    expect((await polling.op('refresh')).body.chatEnded).toBe(false);
    const r = await gone.op('refresh');
    expect(r.body.chatEnded).toBe(true);
    expect(r.body.messages.at(-1)).toMatchObject({ type: 'ParticipantLeft', from: { participantId: 1 } });
  });
});

describe('transfer, close and history', () => {
  it('transfers to another agent, back to the queue, closes, and keeps the transcript in the contact history', async () => {
    const { srv, alice, bob } = await setup();
    const c = new ChatClient(srv.url);
    await c.start({ nickname: 'Carl', subject: 'Refund' });
    await alice.accept(c.chatId);
    const t = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' });
    expect(t.body.chat).toMatchObject({ state: 'waiting', routedTo: 'bob' });
    expect(ids((await alice.overview()).body.waiting)).toEqual([]);
    expect(ids((await bob.overview()).body.waiting)).toEqual([c.chatId]);
    await bob.accept(c.chatId);
    await bob.call('POST', `chats/${c.chatId}/transfer`, {});
    expect(ids((await alice.overview()).body.waiting)).toEqual([c.chatId]);
    await alice.accept(c.chatId);
    await alice.send(c.chatId, 'Refund approved.');
    await alice.close(c.chatId);
    const end = await c.op('refresh');
    expect(end.body.chatEnded).toBe(true);

    const history = await bob.call('GET', 'history?limit=10');
    expect(ids(history.body.chats)).toContain(c.chatId);
    const transcript = await bob.call('GET', `chats/${c.chatId}`);
    expect(transcript.status).toBe(200);
    expect(transcript.body.events.some((e: { text?: string }) => e.text === 'Refund approved.')).toBe(true);
    const agents = await alice.call('GET', 'agents');
    expect(agents.body.agents).toEqual([
      expect.objectContaining({ agentId: 'alice', online: true, activeChats: 0 }),
      expect.objectContaining({ agentId: 'bob', online: true }),
    ]);
  });
});

describe('agent file download', () => {
  it('lets an agent in the chat download the customer file, uncounted; others may not', async () => {
    const { srv, alice, bob } = await setup();
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    const bytes = new TextEncoder().encode('receipt 42');
    const up = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, c.ids(), { name: 'receipt.txt', type: 'text/plain', bytes });
    const fileId = up.body.userData['file-id'] as string;
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${srv.url}/agent/api/chats/${c.chatId}/files/${fileId}`, { headers: { authorization: `Bearer ${alice.token}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-disposition')).toContain('receipt.txt');
      expect(await res.text()).toBe('receipt 42');
    }
    const limits = await c.op('file/limits');
    expect(limits.body.userData['used-download-attempts']).toBe('0');
    const other = await fetch(`${srv.url}/agent/api/chats/${c.chatId}/files/${fileId}`, { headers: { authorization: `Bearer ${bob.token}` } });
    expect(other.status).toBe(403);
    const missing = await fetch(`${srv.url}/agent/api/chats/${c.chatId}/files/nope`, { headers: { authorization: `Bearer ${alice.token}` } });
    expect(missing.status).toBe(404);
  });
});

describe('timers across a restart', () => {
  it('fires the async idle alert at the original deadline after a restart in the middle of the timeout', async () => {
    const { srv, alice, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    expect((await tail(c)).messages.map((m: { type: string }) => m.type)).toEqual(['ParticipantJoined', 'ParticipantLeft']);
    await tick(20 * HOUR);
    await srv.restart();
    await tick(4 * HOUR - 1000);
    expect((await tail(c)).messages).toEqual([]);
    await tick(1000);
    expect((await tail(c)).messages).toEqual([expect.objectContaining({ messageType: 'IDLE_CONTROL_ALERT' })]);
  });
});

describe('bad input', () => {
  it('refuses acting on a chat the agent is not in, resuming a closed chat, holding a regular chat, unknown transfer targets', async () => {
    const { srv, alice, bob } = await setup();
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    for (const op of ['send', 'hold', 'transfer', 'leave', 'close']) {
      const r = await bob.call('POST', `chats/${c.chatId}/${op}`, { text: 'x' });
      expect([r.status, r.body.error.code], op).toEqual([403, 'AGENT_NOT_IN_CHAT']);
    }
    const regular = await alice.call('POST', `chats/${c.chatId}/hold`, {});
    expect([regular.status, regular.body.error.code]).toEqual([400, 'INVALID_PARAMETER']);
    const unknown = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'nobody' });
    expect([unknown.status, unknown.body.error.code]).toEqual([400, 'INVALID_PARAMETER']);
    const self = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'alice' });
    expect(self.status).toBe(400);
    await alice.close(c.chatId);
    const resumed = await alice.call('POST', `chats/${c.chatId}/resume`, {});
    expect([resumed.status, resumed.body.error.code]).toEqual([400, 'CHAT_ENDED']);
  });

  it('an agent token expires after 12 hours', async () => {
    const { alice, clock } = await setup();
    clock.advance(12 * HOUR);
    const r = await alice.overview();
    expect([r.status, r.body.error.code]).toEqual([401, 'AGENT_AUTH_FAILED']);
  });
});
