/**
 * The agent side: the agent API, its WebSocket stream and routing (queue order, transfer and
 * last-agent deadlines, hold/resume/wake, capacity), over real HTTP and WebSocket on a manual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ChatClient, type TestServer } from './helpers.ts';
import { startClockedServer } from './support/clocked-server.ts';

let srv: TestServer | undefined;
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await srv?.close();
  srv = undefined;
});

async function setup() {
  const started = await startClockedServer();
  srv = started.srv;
  return started;
}

async function chat(base: string, nickname: string, asyncMode = false): Promise<ChatClient> {
  const c = new ChatClient(base);
  const r = await c.start({ nickname, subject: 'S', ...(asyncMode ? { 'userData[GCTI_Chat_AsyncMode]': 'true' } : {}) });
  expect(r.body.statusCode).toBe(0);
  return c;
}

const ids = (list: Array<{ chatId: string }>) => list.map((x) => x.chatId);

type Frame = Record<string, unknown>;

/** An agent desk socket: collects frames, waits for one matching a predicate (with a timeout). */
async function desk(base: string, token: string) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/agent/api/ws`);
  sockets.push(ws);
  const frames: Frame[] = [];
  let closeCode: number | undefined;
  const listeners = new Set<() => void>();
  ws.on('message', (d) => {
    frames.push(JSON.parse(d.toString()) as Frame);
    for (const l of listeners) l();
  });
  ws.on('close', (code) => {
    closeCode = code;
    for (const l of listeners) l();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const waitFor = (pred: () => boolean, what: string, ms = 3000) =>
    new Promise<void>((resolve, reject) => {
      if (pred()) return resolve();
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(frames.map((f) => f['type']))}`));
      }, ms);
      const check = () => {
        if (!pred()) return;
        clearTimeout(timer);
        listeners.delete(check);
        resolve();
      };
      listeners.add(check);
    });
  const find = (pred: (f: Frame) => boolean) => frames.find(pred);
  const frame = async (pred: (f: Frame) => boolean, what: string) => {
    await waitFor(() => find(pred) !== undefined, what);
    return find(pred) as Frame;
  };
  ws.send(JSON.stringify({ type: 'auth', token }));
  await frame((f) => f['type'] === 'ready', 'ready');
  return { ws, frames, frame, waitFor, closed: () => closeCode };
}

const chatOf = (f: Frame) => f['chat'] as { chatId: string; state: string };

describe('queue order', () => {
  // Regression test (this was a bug, now fixed). Was: the queue is sorted by `updatedAt` (src/chat-server/agent-ops.ts:76), which every customer event
  // moves (a message, typing, a read receipt): a customer who writes "hello?" while waiting drops behind
  // everyone who came later, so the most impatient customer waits longest. docs/agent-api.md promises the
  // waiting chats "longest waiting first": the order must follow when the chat entered the queue, not the
  // customer's last activity. (The desk repeats it: web/desk/app.ts:241 uses summary.updatedAt as waitingSince.)
  it('a customer who writes while waiting keeps the place in the queue (longest waiting first)', async () => {
    const { srv, alice, clock } = await setup();
    const first = await chat(srv.url, 'First');
    clock.advance(60_000);
    const second = await chat(srv.url, 'Second');
    expect(ids((await alice.overview()).body.waiting)).toEqual([first.chatId, second.chatId]);
    clock.advance(60_000);
    expect((await first.op('send', { message: 'hello? anyone there?' })).body.statusCode).toBe(0);
    // First has waited 2 minutes, Second 1 minute.
    expect(ids((await alice.overview()).body.waiting)).toEqual([first.chatId, second.chatId]);
  });
});

describe('the desk stream', () => {
  // Regression test (this was a bug, now fixed). Was: when the customer leaves (disconnect request or the flex-disconnect timeout), clientDisconnect marks
  // every participant left, so in src/chat-server/agent-stream.ts:129-132 the agent who was in the chat is no
  // longer `responsible` (isIn is false) and `justLeft` only looks for the agent's own ParticipantLeft: the
  // customer's ParticipantLeft (the last event of the chat) is pushed to nobody. The desk gets only a `chat`
  // frame (state ended) and its open transcript never shows that the customer left. docs/agent-api.md:
  // `events` carry the new events of a chat the agent is in; the agent who was in the chat until this change
  // must get the events that ended it, as it does when it closes the chat itself.
  it('the agent in a chat gets the customer\u2019s leaving as an events frame', async () => {
    const { srv, alice } = await setup();
    const c = await chat(srv.url, 'Ann');
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const d = await desk(srv.url, alice.token);
    expect((await c.op('disconnect')).body.statusCode).toBe(0);
    // The chat frame is sent after any events frame of the same change.
    await d.frame((f) => f['type'] === 'chat' && chatOf(f).chatId === c.chatId && chatOf(f).state === 'ended', 'ended chat frame');
    const ev = d.frames.find((f) => f['type'] === 'events' && chatOf(f).chatId === c.chatId && chatOf(f).state === 'ended');
    expect(ev).toBeDefined();
    expect(ev?.['events']).toEqual([expect.objectContaining({ type: 'ParticipantLeft', from: expect.objectContaining({ participantId: 1 }) })]);
  });

  it('the agent who closes the chat gets its own leaving as an events frame', async () => {
    const { srv, alice } = await setup();
    const c = await chat(srv.url, 'Ann');
    await alice.accept(c.chatId);
    const d = await desk(srv.url, alice.token);
    expect((await alice.close(c.chatId)).status).toBe(200);
    const ev = await d.frame((f) => f['type'] === 'events' && chatOf(f).chatId === c.chatId, 'events frame');
    expect(chatOf(ev).state).toBe('ended');
  });

  it("nothing of another agent's live chat reaches a desk: no events frames, sync refused", async () => {
    const { srv, alice, bob } = await setup();
    const c = await chat(srv.url, 'Ann');
    await alice.accept(c.chatId);
    const b = await desk(srv.url, bob.token);
    await c.op('send', { message: 'my card number is 4111' });
    await alice.send(c.chatId, 'thanks');
    b.ws.send(JSON.stringify({ type: 'sync', chatId: c.chatId, from: 1 }));
    const err = await b.frame((f) => f['type'] === 'error', 'sync error');
    expect((err['error'] as { code: string }).code).toBe('AGENT_NOT_IN_CHAT');
    expect(b.frames.filter((f) => f['type'] === 'events' || f['type'] === 'sync')).toEqual([]);
    expect(JSON.stringify(b.frames)).not.toContain('4111');
  });

  it('a transfer: the sender gets its own leaving then nothing more; the target gets the chat as offered', async () => {
    const { srv, alice, bob } = await setup();
    const c = await chat(srv.url, 'Ann');
    await alice.accept(c.chatId);
    const a = await desk(srv.url, alice.token);
    const b = await desk(srv.url, bob.token);
    expect((await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' })).status).toBe(200);
    await b.frame((f) => f['type'] === 'chat' && chatOf(f).chatId === c.chatId && f['offered'] === true, 'offered to bob');
    const left = await a.frame((f) => f['type'] === 'events' && chatOf(f).chatId === c.chatId, 'alice leaving');
    expect((left['events'] as Array<{ type: string }>).map((e) => e.type)).toEqual(['ParticipantLeft']);
    await a.frame((f) => f['type'] === 'chat' && chatOf(f).chatId === c.chatId && f['offered'] === false, 'not offered to alice');
    const before = a.frames.length;
    await c.op('send', { message: 'after transfer' });
    await b.frame((f) => f['type'] === 'events' && (f['events'] as Array<{ text?: string }>).some((e) => e.text === 'after transfer'), 'bob gets message');
    expect(a.frames.slice(before).filter((f) => f['type'] === 'events')).toEqual([]);
  });

  it('a signed-out token stops working on HTTP and closes the open desk at the next change', async () => {
    const { srv, alice, bob } = await setup();
    const d = await desk(srv.url, alice.token);
    const old = alice.token;
    expect((await alice.call('POST', 'logout')).status).toBe(200);
    expect((await alice.overview()).status).toBe(401);
    const agents = (await bob.call('GET', 'agents')).body.agents as Array<{ agentId: string; online: boolean }>;
    expect(agents.find((x) => x.agentId === 'alice')?.online).toBe(false);
    await chat(srv.url, 'Ann');
    await d.waitFor(() => d.closed() !== undefined, 'close');
    expect(d.closed()).toBe(4401);
    expect(d.frames.filter((f) => f['type'] === 'chat')).toEqual([]);
    // The old token cannot open a new desk either.
    const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/agent/api/ws`);
    sockets.push(ws);
    await new Promise<void>((r) => ws.once('open', () => r()));
    const code = new Promise<number>((r) => ws.once('close', (c) => r(c)));
    ws.send(JSON.stringify({ type: 'auth', token: old }));
    expect(await code).toBe(4401);
  });
});

describe('token expiry on an open desk', () => {
  it('a token that expires while the desk is open stops working at the next frame (4401)', async () => {
    const { srv, alice, clock } = await setup();
    const d = await desk(srv.url, alice.token);
    d.ws.send(JSON.stringify({ type: 'ping' }));
    await d.frame((f) => f['type'] === 'pong', 'pong');
    clock.advance(12 * 3600_000);
    d.ws.send(JSON.stringify({ type: 'ping' }));
    await d.waitFor(() => d.closed() !== undefined, 'close');
    expect(d.closed()).toBe(4401);
    expect(d.frames.filter((f) => f['type'] === 'pong')).toHaveLength(1);
    expect((await alice.overview()).status).toBe(401);
  });
});

describe('transfer and last-agent deadlines', () => {
  // A transfer to an agent who is not online is refused (agent-api-transfers.test.ts); one who is online but
  // does not take the chat holds it only until the deadline.
  it('a transfer to an agent who does not take it: only that agent until routedUntil, then anyone, announced on the stream', async () => {
    const { srv, alice, tick } = await setup();
    const c = await chat(srv.url, 'Ann');
    await alice.accept(c.chatId);
    const t = await alice.call('POST', `chats/${c.chatId}/transfer`, { toAgentId: 'bob' });
    expect(t.status).toBe(200);
    expect(t.body.chat).toMatchObject({ state: 'waiting', routedTo: 'bob' });
    const a = await desk(srv.url, alice.token);
    expect(ids((await alice.overview()).body.waiting)).toEqual([]);
    expect((await alice.accept(c.chatId)).status).toBe(409);
    expect((await alice.call('GET', `chats/${c.chatId}`)).status).toBe(403);
    await tick(599_999);
    expect(ids((await alice.overview()).body.waiting)).toEqual([]);
    await tick(1);
    await a.frame((f) => f['type'] === 'chat' && chatOf(f).chatId === c.chatId && f['offered'] === true, 'announced');
    expect(ids((await alice.overview()).body.waiting)).toEqual([c.chatId]);
    expect((await alice.accept(c.chatId)).status).toBe(200);
  });

  it('a chat woken twice keeps the later deadline (the earlier timer does not release it early)', async () => {
    const { srv, alice, bob, tick, clock } = await setup();
    const c = await chat(srv.url, 'Ann', true);
    await alice.accept(c.chatId);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await c.op('send', { message: 'one' });
    await tick(100_000);
    expect((await alice.call('POST', `chats/${c.chatId}/resume`, {})).status).toBe(200);
    await alice.call('POST', `chats/${c.chatId}/hold`, {});
    await c.op('send', { message: 'two' });
    const routedUntil = (await alice.overview()).body.waiting[0].routedUntil as number;
    expect(routedUntil).toBe(clock.now() + 600_000);
    await tick(500_000); // the first deadline passes
    expect(ids((await bob.overview()).body.waiting)).toEqual([]);
    expect((await bob.accept(c.chatId)).status).toBe(409);
    await tick(100_000);
    expect(ids((await bob.overview()).body.waiting)).toEqual([c.chatId]);
  });
});

describe('races and capacity', () => {
  it('a customer message waking the chat races the agent resuming it: the agent ends up in it, unrouted, message kept', async () => {
    const { srv, alice } = await setup();
    for (let i = 0; i < 5; i++) {
      const c = await chat(srv.url, `Ann${i}`, true);
      await alice.accept(c.chatId);
      await alice.call('POST', `chats/${c.chatId}/hold`, {});
      const [msg, res] = await Promise.all([c.op('send', { message: `wake ${i}` }), alice.call('POST', `chats/${c.chatId}/resume`, {})]);
      expect(msg.body.statusCode).toBe(0);
      expect(res.status).toBe(200);
      const v = await alice.call('GET', `chats/${c.chatId}`);
      expect(v.body.chat).toMatchObject({ state: 'active', agents: ['alice'] });
      expect(v.body.chat.routedTo).toBeUndefined();
      expect(v.body.events.some((e: { text?: string }) => e.text === `wake ${i}`)).toBe(true);
      expect(ids((await alice.overview()).body.workbin)).not.toContain(c.chatId);
      await alice.close(c.chatId);
    }
  });

  it('capacity: an accept and a resume racing at max-chats 1 give exactly one; counts match the chats held', async () => {
    const { srv, bob } = await setup();
    const held = await chat(srv.url, 'Held', true);
    await bob.accept(held.chatId);
    await bob.call('POST', `chats/${held.chatId}/hold`, {});
    const fresh = await chat(srv.url, 'Fresh');
    const [a, r] = await Promise.all([bob.accept(fresh.chatId), bob.call('POST', `chats/${held.chatId}/resume`, {})]);
    expect([a.status, r.status].sort()).toEqual([200, 409]);
    expect([a, r].find((x) => x.status === 409)?.body.error.code).toBe('AGENT_CAPACITY');
    const mine = (await bob.overview()).body.mine as unknown[];
    expect(mine).toHaveLength(1);
    const agents = (await bob.call('GET', 'agents')).body.agents as Array<{ agentId: string; activeChats: number }>;
    expect(agents.find((x) => x.agentId === 'bob')?.activeChats).toBe(1);
  });

  it('capacity is released by a transfer, a hold, a leave and the customer leaving', async () => {
    const { srv, bob } = await setup();
    const count = async () => ((await bob.call('GET', 'agents')).body.agents as Array<{ agentId: string; activeChats: number }>).find((x) => x.agentId === 'bob')?.activeChats;
    for (const how of ['transfer', 'hold', 'leave', 'disconnect'] as const) {
      const c = await chat(srv.url, how, true);
      expect((await bob.accept(c.chatId)).status, how).toBe(200);
      expect(await count()).toBe(1);
      const other = await chat(srv.url, `${how}-next`);
      expect((await bob.accept(other.chatId)).status).toBe(409);
      if (how === 'disconnect') await c.op('disconnect');
      else expect((await bob.call('POST', `chats/${c.chatId}/${how}`, how === 'transfer' ? { toAgentId: 'alice' } : {})).status, how).toBe(200);
      expect(await count(), how).toBe(0);
      expect((await bob.accept(other.chatId)).status, how).toBe(200);
      await bob.close(other.chatId);
    }
  });
});
