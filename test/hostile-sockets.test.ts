/**
 * Misbehaving clients on the agent desk WebSocket (/agent/api/ws) and the receiver's browser WebSocket
 * (/receiver/ws): revoked tokens, slow consumers, floods of small frames that ask for big answers, and
 * bad-frame accounting.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AgentClient, ChatClient, openAgentSocket, startTestServer, type TestServer } from './helpers.ts';
import { Browser, sleep } from './receiver-helpers.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

const sockets: WebSocket[] = [];
afterEach(() => {
  for (const ws of sockets.splice(0)) ws.terminate();
});

/**
 * The most bytes any server-side WebSocket had queued (not yet handed to the kernel) when it was asked to
 * send more. The server and the test share the `ws` module, so wrapping its send sees the server's sockets.
 */
function watchServerBuffering(): { max(): number; stop(): void } {
  const proto = WebSocket.prototype as unknown as { send: (...a: unknown[]) => void };
  const orig = proto.send;
  let max = 0;
  proto.send = function (this: WebSocket & { _isServer?: boolean }, ...args: unknown[]) {
    if (this._isServer === true) max = Math.max(max, this.bufferedAmount);
    return orig.apply(this, args);
  };
  return { max: () => max, stop: () => void (proto.send = orig) };
}

/** Stops reading a client socket, like a frozen browser tab or a desk on a dead network. */
function stopReading(ws: WebSocket): void {
  (ws as unknown as { _socket: { pause(): void } })._socket.pause();
}

const MB = 1024 * 1024;

describe('agent desk WebSocket', () => {
  // Regression test (this was a bug, now fixed): src/chat-server/agent-stream.ts:46-50 (and deliver() at :112) — the token is re-checked on every
  // frame the desk sends (:79), but pushes go to every desk whose `agent` was once set, without checking the
  // token. After logout (or token expiry) an open socket keeps receiving `chat` frames (nickname, subject of
  // every new chat) and `events` frames (the transcript of the agent's chats) indefinitely. docs/agent-api.md
  // says an expired token stops working on an open socket. Required: verify desk.token before delivering and
  // close the socket with 4401 once it fails.
  it('stops pushing to a desk whose token was signed out', async () => {
    const carol = new AgentClient(server.url, 'alice', 'alice-secret');
    await carol.login();
    const desk = await openAgentSocket(server.url, carol.token);
    sockets.push(desk.ws);
    await desk.next('ready');
    expect((await carol.call('POST', 'logout', {})).status).toBe(200);
    const c = new ChatClient(server.url);
    await c.start({ nickname: 'Private Person', subject: 'my account number is 1234' });
    await sleep(300);
    const after = desk.frames.filter((f) => f['type'] === 'chat' || f['type'] === 'events');
    expect(JSON.stringify(after)).not.toContain('my account number is 1234');
    expect(after).toEqual([]);
  });

  it('still refuses frames from a signed-out desk with AGENT_AUTH_FAILED and 4401', async () => {
    const carol = new AgentClient(server.url, 'alice', 'alice-secret');
    await carol.login();
    const desk = await openAgentSocket(server.url, carol.token);
    sockets.push(desk.ws);
    await desk.next('ready');
    await carol.call('POST', 'logout', {});
    const closed = new Promise<number>((resolve) => desk.ws.on('close', (code) => resolve(code)));
    desk.ws.send(JSON.stringify({ type: 'ping' }));
    expect(await desk.next('error')).toMatchObject({ error: { code: 'AGENT_AUTH_FAILED' } });
    expect(await closed).toBe(4401);
  });

  it('closes with 1009 on a frame over 64 KiB, and the server keeps serving', async () => {
    const alice = new AgentClient(server.url, 'alice', 'alice-secret');
    await alice.login();
    const desk = await openAgentSocket(server.url, alice.token);
    sockets.push(desk.ws);
    await desk.next('ready');
    const closed = new Promise<number>((resolve) => desk.ws.on('close', (code) => resolve(code)));
    desk.ws.send('x'.repeat(70_000));
    expect(await closed).toBe(1009);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it("answers sync of another agent's live chat, of an unknown chat and of odd ids with error frames, no transcript", async () => {
    const alice = new AgentClient(server.url, 'alice', 'alice-secret');
    const bob = new AgentClient(server.url, 'bob', 'bob-secret-1');
    await alice.login();
    await bob.login();
    const c = new ChatClient(server.url);
    await c.start({ nickname: 'Ann', subject: 'secret-subject' });
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expect((await alice.send(c.chatId, 'alice-private-words')).status).toBe(200);
    const desk = await openAgentSocket(server.url, bob.token);
    sockets.push(desk.ws);
    await desk.next('ready');
    for (const [chatId, code] of [
      [c.chatId, 'AGENT_NOT_IN_CHAT'],
      ['AAAAAAAAAAAAAAAA', 'UNKNOWN_CHAT'],
      [`../${c.chatId}`, 'UNKNOWN_CHAT'],
      ['__proto__', 'UNKNOWN_CHAT'],
    ]) {
      desk.ws.send(JSON.stringify({ type: 'sync', chatId, from: 1 }));
      expect(await desk.next('error')).toMatchObject({ error: { code } });
    }
    expect(JSON.stringify(desk.frames)).not.toContain('alice-private-words');
    await alice.close(c.chatId);
  });

  // Regression test (this was a bug, now fixed): src/chat-server/agent-stream.ts:128 — send() writes every frame without looking at
  // ws.bufferedAmount, and frames are handled concurrently with no limit. A desk that stops reading keeps
  // every frame queued in the server's memory: each small `sync` frame (~60 bytes) asks for the whole
  // transcript (up to 64 KiB per event), so a handful of frames make the server buffer tens of MB for one
  // connection. Required: bound the per-connection queue (e.g. stop answering / close 1008 or 1013 once
  // bufferedAmount passes a limit such as a few MB).
  it(
    'keeps the bytes queued for a desk that stops reading bounded (sync flood)',
    async () => {
      const alice = new AgentClient(server.url, 'alice', 'alice-secret');
      await alice.login();
      const c = new ChatClient(server.url);
      await c.start();
      expect((await alice.accept(c.chatId)).status).toBe(200);
      const text = 'x'.repeat(60_000);
      for (let i = 0; i < 40; i++) expect((await alice.send(c.chatId, text)).status).toBe(200);
      const desk = await openAgentSocket(server.url, alice.token);
      sockets.push(desk.ws);
      await desk.next('ready');
      stopReading(desk.ws);
      const watch = watchServerBuffering();
      try {
        // About 2 KB from the client.
        for (let i = 0; i < 30; i++) desk.ws.send(JSON.stringify({ type: 'sync', chatId: c.chatId, from: 1 }));
        await sleep(1500);
        expect(watch.max()).toBeLessThan(16 * MB);
      } finally {
        watch.stop();
        desk.ws.terminate();
        await alice.close(c.chatId);
      }
    },
    15_000,
  );
});

describe('receiver browser WebSocket', () => {
  // A missing nickname or a blank message (MISSING_PARAMETER) is a user's slip, refused without counting
  // towards the ten malformed frames that close the socket (docs/receiver.md); what the replies can queue
  // up is bounded by the per-socket queue limit (tested below).
  it('refuses every start frame without a nickname, without closing: a user slip, not a malformed frame', async () => {
    const b = await Browser.open(server.url);
    sockets.push(b.ws);
    for (let i = 0; i < 12; i++) b.send({ type: 'start' });
    const code = await Promise.race([b.closed, sleep(1500).then(() => 'still open')]);
    expect(b.frames.filter((f) => f.type === 'error')).toHaveLength(12);
    expect(code).toBe('still open');
  });

  it('handles the frames of a tab one at a time, and cuts a tab with more than 64 waiting (4429)', async () => {
    const b = await Browser.open(server.url);
    sockets.push(b.ws);
    // One write: the frames all arrive before the first is handled.
    const burst = Array.from({ length: 100 }, () => JSON.stringify({ type: 'ping' }));
    for (const f of burst) b.ws.send(f);
    expect(await b.closed).toBe(4429);
    const c = await Browser.open(server.url);
    sockets.push(c.ws);
    for (let i = 0; i < 20; i++) c.send({ type: 'ping' });
    await sleep(200);
    expect(c.frames.filter((f) => f.type === 'pong')).toHaveLength(20);
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('counts wrong-shape frames and closes with 4400 on the tenth', async () => {
    const b = await Browser.open(server.url);
    sockets.push(b.ws);
    const bad: unknown[] = [
      'not json',
      '[1]',
      { type: 7 },
      { type: 'resume', token: {}, from: 1 },
      { type: 'resume', token: 'nope', from: 1 },
      { type: 'resume', token: 'nope', from: '1' },
      { type: 'send', text: 'before any start' },
      { type: 'typing', typing: 'yes' },
      { type: 'frobnicate' },
    ];
    for (const f of bad) b.send(f);
    await sleep(200);
    expect(b.ws.readyState).toBe(WebSocket.OPEN);
    b.send({ type: 'ping' });
    await b.next('pong');
    b.send({ type: 'start', nickname: 'x'.repeat(300) });
    expect(await b.closed).toBe(4400);
  });

  it('refuses resume with a token of the right shape that the receiver never issued (ACCESS_DENIED), no events', async () => {
    const owner = await Browser.open(server.url);
    sockets.push(owner.ws);
    const { token } = await owner.start('Owner');
    const intruder = await Browser.open(server.url);
    sockets.push(intruder.ws);
    const forged = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    intruder.send({ type: 'resume', token: forged, from: 1 });
    expect(await intruder.next('error')).toMatchObject({ error: { code: 'ACCESS_DENIED' } });
    intruder.send({ type: 'send', text: 'as someone else' });
    expect(await intruder.next('error')).toMatchObject({ error: { code: 'ACCESS_DENIED' } });
    expect(intruder.frames.some((f) => f.type === 'events' || f.type === 'started')).toBe(false);
  });

  // Regression test (this was a bug, now fixed): src/receiver/receiver-http.ts:114 (send) with :148-156 (resume) — the same unbounded buffering on the
  // customer side: each `resume` frame from=1 re-reads the whole transcript from the gateway and queues it
  // for the browser without looking at bufferedAmount, concurrently. A tab that stops reading and sends 30
  // small resume frames makes the receiver queue ~70 MB for that one connection. Required: bound the
  // per-connection queue and/or refuse overlapping resumes.
  it(
    'keeps the bytes queued for a browser that stops reading bounded (resume flood)',
    async () => {
      const b = await Browser.open(server.url);
      sockets.push(b.ws);
      const { token, chatId } = await b.start('Slow');
      const alice = new AgentClient(server.url, 'alice', 'alice-secret');
      await alice.login();
      expect((await alice.accept(chatId)).status).toBe(200);
      const text = 'x'.repeat(60_000);
      for (let i = 0; i < 40; i++) expect((await alice.send(chatId, text)).status).toBe(200);
      await sleep(100);
      stopReading(b.ws);
      const watch = watchServerBuffering();
      try {
        for (let i = 0; i < 30; i++) b.send({ type: 'resume', token, from: 1 });
        await sleep(1500);
        expect(watch.max()).toBeLessThan(16 * MB);
      } finally {
        watch.stop();
        b.ws.terminate();
        await alice.close(chatId);
      }
    },
    15_000,
  );
});
