/**
 * The chat lifecycle over real HTTP on a manual clock: the option table of docs/lifecycle.md at
 * its boundaries, what counts as activity, dormant chats, restarts, and ended chats.
 * Timers act only on `app.timers.tick()`, after the test moves the clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ChatClient, postForm, postMultipart, type TestServer } from './helpers.ts';
import { startClockedServer } from './support/clocked-server.ts';

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

async function setup(env: Record<string, string> = {}) {
  const started = await startClockedServer(env, 1_700_000_000_000);
  srv = started.srv;
  return started;
}

async function asyncChat(base: string, nickname = 'Ann') {
  const c = new ChatClient(base);
  await c.start({ nickname, subject: 'Async', 'userData[GCTI_Chat_AsyncMode]': 'true' });
  return c;
}

const PUSH_FIELDS = {
  'userData[GCTI_Chat_PushSubscribe]': 'true',
  'userData[GCTI_GMS_NodeGroup]': 'gms-cluster',
  'userData[GCTI_GMS_PushDeviceId]': 'http://127.0.0.1:9/push',
  'userData[GCTI_GMS_PushDeviceType]': 'customhttp',
};

const ids = (list: Array<{ chatId: string }>) => list.map((x) => x.chatId);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const tail = async (c: ChatClient): Promise<any> => (await c.op('refresh', { transcriptPosition: c.nextPosition })).body;
const idle = (msgs: Array<{ messageType?: string }>) => msgs.map((m) => m.messageType).filter((t) => t?.startsWith('IDLE_CONTROL') === true);

describe('flex-disconnect-timeout and flex-push-timeout at the boundary (checked, right)', () => {
  it('a client without push is disconnected exactly 45 s after its last request, not 1 ms before', async () => {
    const { srv, tick } = await setup({ PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45' });
    const c = new ChatClient(srv.url);
    await c.start();
    await tick(30 * SEC);
    await c.op('readReceipt', { transcriptPosition: 1 }); // any Chat API request counts
    await tick(45 * SEC - 1);
    expect(srv.running.app.sessions.counts().open).toBe(1);
    await tick(1);
    expect(srv.running.app.sessions.counts().open).toBe(0);
    const r = await c.refresh();
    expect(r.body.chatEnded).toBe(true);
    expect(r.body.messages.at(-1)).toMatchObject({ type: 'ParticipantLeft', from: { participantId: 1 } });
  });

  it('a push-subscribed client (flex-push-on-join) gets flex-push-timeout, not flex-disconnect-timeout', async () => {
    const { srv, tick } = await setup({
      PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45',
      PARLEY_SETTINGS_FLEX_PUSH_TIMEOUT: '600',
      PARLEY_SETTINGS_FLEX_PUSH_ON_JOIN: 'true',
    });
    const c = new ChatClient(srv.url);
    expect((await c.start({ nickname: 'Pia', ...PUSH_FIELDS })).body.statusCode).toBe(0);
    await tick(45 * SEC);
    expect(srv.running.app.sessions.counts().open).toBe(1);
    await tick(600 * SEC - 45 * SEC - 1);
    expect(srv.running.app.sessions.counts().open).toBe(1);
    await tick(1);
    expect((await c.refresh()).body.chatEnded).toBe(true);
  });
});

describe('file download and the disconnect timeout', () => {
  // Regression test (this was a bug, now fixed). Was: a file download is a Chat API request of the client (POST .../file/{fileId}/download), but
  // ClientOps.download (src/chat-server/client-ops.ts:294-304) never calls touch(), so it neither resets the
  // client's flex-disconnect-timeout (docs/lifecycle.md: "runs from the client's last Chat API request";
  // the option text: "Inactivity is defined as the absence of protocol requests") nor acknowledges a pending
  // push subscription. A client busy downloading is disconnected 45 s after its previous request.
  it('a download resets the disconnect timeout like every other request', async () => {
    const { srv, tick } = await setup({ PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45' });
    const c = new ChatClient(srv.url);
    await c.start();
    const up = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, c.ids(), { name: 'r.txt', type: 'text/plain', bytes: new TextEncoder().encode('receipt') });
    const fileId = up.body.userData['file-id'] as string;
    await tick(30 * SEC);
    const dl = await postForm(`${c.chatUrl}/${c.chatId}/file/${fileId}/download`, c.ids());
    expect(dl.status).toBe(200);
    await tick(15 * SEC); // 45 s after the upload, 15 s after the download
    expect(srv.running.app.sessions.counts().open).toBe(1);
  });
});

describe('what counts as activity (checked, right)', () => {
  const REGULAR = { PARLEY_INACTIVITY_CONTROL_ENABLED: 'true', PARLEY_INACTIVITY_CONTROL_TIMEOUT_ALERT: '100' };

  async function regular(env: Record<string, string>) {
    const ctx = await setup({ ...REGULAR, ...env });
    const c = new ChatClient(ctx.srv.url);
    await c.start();
    await ctx.alice.accept(c.chatId);
    return { ...ctx, c };
  }

  const cases: Array<[string, string, Record<string, string>, boolean]> = [
    ['major', 'customNotice', { message: 'x' }, false],
    ['major2', 'customNotice', { message: 'x' }, true],
    ['major', 'startTyping', {}, false],
    ['typing', 'startTyping', {}, true],
    ['typing', 'stopTyping', {}, false],
    ['all', 'stopTyping', {}, true],
    ['all', 'updateNickname', { nickname: 'Anne' }, true],
    ['major', 'updateNickname', { nickname: 'Anne' }, false],
    ['major', 'pushUrl', { pushUrl: 'https://example.com/p' }, true],
    ['none', 'pushUrl', { pushUrl: 'https://example.com/p' }, false],
    ['all', 'readReceipt', { transcriptPosition: '1' }, false],
    ['all', 'file/limits', {}, false],
  ];
  for (const [filter, op, fields, counts] of cases) {
    it(`include-notices=${filter}: ${op} ${counts ? 'postpones' : 'does not postpone'} the inactivity alert`, async () => {
      const { c, tick } = await regular({ PARLEY_INACTIVITY_CONTROL_INCLUDE_NOTICES: filter });
      await tick(50 * SEC);
      expect((await c.op(op, fields)).body.statusCode).toBe(0);
      await tick(50 * SEC); // 100 s after the agent joined
      expect(idle((await tail(c)).messages)).toEqual(counts ? [] : ['IDLE_CONTROL_ALERT']);
      if (counts) {
        await tick(50 * SEC - 1);
        expect(idle((await tail(c)).messages)).toEqual([]);
        await tick(1);
        expect(idle((await tail(c)).messages)).toEqual(['IDLE_CONTROL_ALERT']);
      }
    });
  }

  it('the chat server\u2019s own alert is not activity: the close comes timeout-close after it, once', async () => {
    const { c, tick } = await regular({});
    await tick(100 * SEC);
    await tick(45 * SEC - 1);
    expect((await tail(c)).chatEnded).toBe(false);
    await tick(1);
    await tick(45 * SEC);
    const r = await c.op('refresh', { transcriptPosition: 1 });
    expect(r.body.chatEnded).toBe(true);
    expect(idle(r.body.messages)).toEqual(['IDLE_CONTROL_ALERT', 'IDLE_CONTROL_CLOSE']);
  });

  it('async-idle-notices=none: an agent message still counts; a file upload does not', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_SETTINGS_ASYNC_IDLE_ALERT: '100', PARLEY_SETTINGS_ASYNC_IDLE_NOTICES: 'none' });
    const a = await asyncChat(srv.url, 'A');
    const b = await asyncChat(srv.url, 'B');
    await alice.accept(a.chatId);
    await alice.accept(b.chatId);
    await tick(50 * SEC);
    await alice.send(a.chatId, 'still checking');
    await postMultipart(`${b.chatUrl}/${b.chatId}/file`, b.ids(), { name: 'r.txt', type: 'text/plain', bytes: new TextEncoder().encode('x') });
    await tick(50 * SEC);
    expect(idle((await tail(a)).messages)).toEqual([]);
    expect(idle((await tail(b)).messages)).toEqual(['IDLE_CONTROL_ALERT']);
  });
});

describe('dormant chats and restarts (checked, right)', () => {
  it('a chat woken by a customer message keeps its last-agent routing across a restart, then goes to anyone', async () => {
    const { srv, alice, bob, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await tick(HOUR);
    await c.op('send', { message: 'any news?' });
    await tick(5 * MIN);
    await srv.restart();
    await alice.login();
    await bob.login();
    expect(ids((await bob.overview()).body.waiting)).toEqual([]);
    expect(ids((await alice.overview()).body.waiting)).toEqual([c.chatId]);
    await tick(5 * MIN - 1);
    expect((await bob.accept(c.chatId)).status).toBe(409);
    await tick(1);
    expect((await bob.accept(c.chatId)).status).toBe(200);
  });

  it('woken by the idle alert, taken and held again: no close at alert + async-idle-close; the next alert a full period after the new hold', async () => {
    const { srv, alice, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await tick(24 * HOUR);
    expect(ids((await alice.overview()).body.waiting)).toEqual([c.chatId]);
    await tick(MIN);
    expect((await alice.accept(c.chatId)).status).toBe(200);
    await tick(MIN);
    expect((await alice.call('POST', `chats/${c.chatId}/hold`, {})).status).toBe(200);
    await tick(HOUR); // past the first alert's close
    expect((await tail(c)).chatEnded).toBe(false);
    await tick(23 * HOUR - 1);
    expect(idle((await c.op('refresh', { transcriptPosition: 1 })).body.messages)).toEqual(['IDLE_CONTROL_ALERT']);
    await tick(1);
    expect(idle((await c.op('refresh', { transcriptPosition: 1 })).body.messages)).toEqual(['IDLE_CONTROL_ALERT', 'IDLE_CONTROL_ALERT']);
  });

  it('a customer file wakes a dormant chat; customer typing does not', async () => {
    const { srv, alice } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await c.op('startTyping');
    expect(ids((await alice.overview()).body.workbin)).toEqual([c.chatId]);
    await postMultipart(`${c.chatUrl}/${c.chatId}/file`, c.ids(), { name: 'r.txt', type: 'text/plain', bytes: new TextEncoder().encode('x') });
    const ov = (await alice.overview()).body;
    expect([ids(ov.workbin), ids(ov.waiting)]).toEqual([[], [c.chatId]]);
  });

  it('a regular chat alerted before a restart closes timeout-close after the alert, not after the restart', async () => {
    const { srv, alice, tick } = await setup({ PARLEY_INACTIVITY_CONTROL_ENABLED: 'true' });
    const c = new ChatClient(srv.url);
    await c.start();
    await alice.accept(c.chatId);
    await tick(255 * SEC);
    await tick(20 * SEC);
    await srv.restart();
    await tick(25 * SEC - 1);
    expect(srv.running.app.sessions.counts().open).toBe(1);
    await tick(1);
    const r = await c.op('refresh', { transcriptPosition: 1 });
    expect(r.body.chatEnded).toBe(true);
    expect(idle(r.body.messages)).toEqual(['IDLE_CONTROL_ALERT', 'IDLE_CONTROL_CLOSE']);
  });

  it('the idle alert of a parked dormant chat sets GCTI_Chat_AsyncStatus=3 and GCTI_Chat_AsyncCheckAt (close time, ISO UTC)', async () => {
    const { srv, alice, clock, tick } = await setup();
    const c = await asyncChat(srv.url);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    const heldAt = clock.now();
    expect(srv.running.app.sessions.size).toBe(0);
    await tick(24 * HOUR);
    const s = (await srv.running.app.sessions.get(c.chatId)).session;
    expect(s.state).toBe('waiting');
    expect(s.userData).toMatchObject({ GCTI_Chat_AsyncStatus: '3', GCTI_Chat_AsyncCheckAt: new Date(heldAt + 25 * HOUR).toISOString() });
  });
});

describe('ended chats stay out of memory', () => {
  // Regression test (this was a bug, now fixed). Was: "An ended session leaves memory; a late refresh reads it from the store" (src/chat-server/live-sessions.ts:322), but
  // the late refresh goes through LiveSessions.get -> load (src/chat-server/live-sessions.ts:273 `this.live.set`),
  // which puts the ended session (whole transcript) back into memory for good, and ClientOps.touch
  // (src/chat-server/client-ops.ts:241) calls SessionTimers.requested (src/chat-server/session-timers.ts:85-87)
  // for it, which adds a lastRequest entry that nothing removes (changed() deleted it at the end). Every ended
  // chat a client (or the receiver) refreshes once more stays in the node's memory forever. An ended chat must
  // be answered from the store without being kept, and must not get a timer entry.
  it('a refresh after the chat ended brings neither the session nor a timer entry back into memory', async () => {
    const { srv } = await setup();
    const app = srv.running.app;
    const clients: ChatClient[] = [];
    for (let i = 0; i < 10; i++) {
      const c = new ChatClient(srv.url);
      await c.start({ nickname: `C${i}` });
      await c.op('disconnect');
      clients.push(c);
    }
    expect(app.sessions.size).toBe(0);
    for (const c of clients) expect((await c.refresh()).body.chatEnded).toBe(true);
    const lastRequest = (app.timers as unknown as { lastRequest: Map<string, number> }).lastRequest;
    expect({ inMemory: app.sessions.size, lastRequest: lastRequest.size }).toEqual({ inMemory: 0, lastRequest: 0 });
  });
});
