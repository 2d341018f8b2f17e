/**
 * Concurrent Chat API v2 calls on one session and concurrent agent actions, end to end over HTTP on an
 * in-process Parley. These races behave correctly today; the tests pin that down.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient, ChatClient, startTestServer, type TestServer } from './helpers.ts';

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

async function setup() {
  srv = await startTestServer();
  const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
  const bob = new AgentClient(srv.url, 'bob', 'bob-secret-1');
  await alice.login();
  await bob.login();
  const c = new ChatClient(srv.url);
  expect((await c.start()).body.statusCode).toBe(0);
  return { srv, alice, bob, c };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Msg = any;

describe('concurrent client calls on one session', () => {
  it('20 sends racing refreshes: every send stored once, indexes contiguous, no refresh skips an event', async () => {
    const { c } = await setup();
    const sends = Array.from({ length: 20 }, (_, i) => c.op('send', { message: `m${i}` }));
    const refreshes = Array.from({ length: 10 }, () => c.op('refresh', { transcriptPosition: 1 }));
    const results = await Promise.all([...sends, ...refreshes]);
    for (const r of results) expect(r.body.statusCode).toBe(0);
    const all = (await c.op('refresh', { transcriptPosition: 1 })).body.messages as Msg[];
    const idx = all.map((m) => m.index);
    expect(idx).toEqual(Array.from({ length: idx.length }, (_, i) => i + 1));
    const texts = all.filter((m) => m.type === 'Message').map((m) => m.text).sort();
    expect(texts).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`).sort());
    // Every refresh saw a prefix of the final transcript, consistent with its nextPosition.
    for (const r of results.slice(20)) {
      const ms = r.body.messages as Msg[];
      expect(ms.map((m) => m.index)).toEqual(Array.from({ length: r.body.nextPosition - 1 }, (_, i) => i + 1));
    }
  });

  it('disconnect racing sends: each send either stored or refused cleanly (4xx, statusCode 2), never 5xx', async () => {
    const { c } = await setup();
    const sends = Array.from({ length: 10 }, (_, i) => c.op('send', { message: `s${i}` }));
    const bye = c.op('disconnect');
    const more = Array.from({ length: 10 }, (_, i) => c.op('send', { message: `t${i}` }));
    const rs = await Promise.all([...sends, bye, ...more]);
    for (const r of rs) expect(r.status).toBeLessThan(500);
    expect((await bye).body.statusCode).toBe(0);
    const final = await c.op('refresh', { transcriptPosition: 1 });
    expect(final.body.chatEnded).toBe(true);
    const stored = new Set((final.body.messages as Msg[]).filter((m) => m.type === 'Message').map((m) => m.text));
    for (const [i, r] of [...sends, ...more].entries()) {
      const res = await r;
      const text = i < 10 ? `s${i}` : `t${i - 10}`;
      if (res.body.statusCode === 0) expect(stored.has(text)).toBe(true);
      else {
        expect(res.body.statusCode).toBe(2);
        expect(stored.has(text)).toBe(false);
      }
    }
    // The client's ParticipantLeft comes after every stored message.
    const ms = final.body.messages as Msg[];
    const left = ms.findIndex((m) => m.type === 'ParticipantLeft' && m.from.participantId === 1);
    expect(ms.slice(left + 1).filter((m) => m.type === 'Message')).toEqual([]);
  });

  it('readReceipt racing refresh and send: the read position only moves forward', async () => {
    const { c } = await setup();
    await c.op('send', { message: 'a' });
    const rs = await Promise.all([
      c.op('readReceipt', { transcriptPosition: 3 }),
      c.op('refresh', { transcriptPosition: 1 }),
      c.op('readReceipt', { transcriptPosition: 2 }),
      c.op('send', { message: 'b' }),
      c.op('readReceipt', { transcriptPosition: 1 }),
    ]);
    for (const r of rs) expect(r.body.statusCode).toBe(0);
  });
});

describe('concurrent agent actions', () => {
  it('two agents accepting the same chat: exactly one wins, the other gets 409 CHAT_ALREADY_TAKEN', async () => {
    const { alice, bob, c } = await setup();
    const [a, b] = await Promise.all([alice.accept(c.chatId), bob.accept(c.chatId)]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const t = await c.op('refresh', { transcriptPosition: 1 });
    expect((t.body.messages as Msg[]).filter((m) => m.type === 'ParticipantJoined' && m.from.type === 'Agent')).toHaveLength(1);
  });

  it('an agent (max-chats 1) accepting two chats at once gets exactly one', async () => {
    const { bob, c } = await setup();
    const d = new ChatClient(c.base);
    await d.start();
    const [a, b] = await Promise.all([bob.accept(c.chatId), bob.accept(d.chatId)]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    expect(((await bob.overview()).body.mine as unknown[]).length).toBe(1);
  });

  it('accept racing the customer disconnect: either the agent joined before the end, or a clean 4xx', async () => {
    for (let i = 0; i < 5; i++) {
      const { alice, c } = i === 0 ? await setup() : await (async () => {
        const cc = new ChatClient(srv?.url ?? '');
        await cc.start();
        const al = new AgentClient(srv?.url ?? '', 'alice', 'alice-secret');
        await al.login();
        return { alice: al, c: cc };
      })();
      const [acc, bye] = await Promise.all([alice.accept(c.chatId), c.op('disconnect')]);
      expect(bye.body.statusCode).toBe(0);
      expect(acc.status).toBeLessThan(500);
      // Whatever happened, alice is not left in an ended chat.
      expect(((await alice.overview()).body.mine as Array<{ chatId: string }>).some((x) => x.chatId === c.chatId)).toBe(false);
    }
  });

  it('transfer racing close: one of them applies, the other is refused cleanly, never 5xx', async () => {
    const { alice, c } = await setup();
    await alice.accept(c.chatId);
    const [tr, cl] = await Promise.all([alice.call('POST', `chats/${c.chatId}/transfer`, {}), alice.close(c.chatId)]);
    expect(tr.status).toBeLessThan(500);
    expect(cl.status).toBeLessThan(500);
    expect([tr.status, cl.status]).toContain(200);
  });
});
