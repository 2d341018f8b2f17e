/**
 * Customer chat page (`/chat/`): text direction, avatars, failures, two tabs, reloads, frozen tabs, in real headless Chromium against an in-process
 * Parley whose pushes reach its own receiver. `[http] max-field-length` is small here (2000) so that the
 * chat server refuses a long message deterministically (a failed send).
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient, startTestServer, type TestServer } from '../helpers.ts';
import { pushIni } from '../receiver-fixture.ts';
import { msg, openCustomerPage, startChat, watch } from './customer-page.ts';
import { js, launchChromium } from './chromium.ts';
import { freePort } from '../support/ports.ts';

let srv: TestServer;
let browser: Browser;
let alice: AgentClient;
let emma: AgentClient;
let contexts: BrowserContext[] = [];

const MAX_FIELD = 2000;

beforeAll(async () => {
  const port = await freePort();
  const ini = `${pushIni(`http://127.0.0.1:${port}/receiver`)}\n[agent.emma]\nname = 😀 Emma\npassword = emma-secret-1\nmax-chats = 5\n`;
  [srv, browser] = await Promise.all([
    startTestServer(ini, { PARLEY_HTTP_PORT: String(port), PARLEY_HTTP_MAX_FIELD_LENGTH: String(MAX_FIELD) }),
    launchChromium(),
  ]);
  alice = new AgentClient(srv.url, 'alice', 'alice-secret');
  emma = new AgentClient(srv.url, 'emma', 'emma-secret-1');
  await Promise.all([alice.login(), emma.login()]);
}, 600_000);

/** Chats an agent accepted: closed after each test (alice takes at most 2 at once). */
let accepted: Array<[AgentClient, string]> = [];

async function take(agent: AgentClient, chatId: string): Promise<number> {
  const r = await agent.accept(chatId);
  if (r.status === 200) accepted.push([agent, chatId]);
  return r.status;
}

afterEach(async () => {
  for (const [agent, chatId] of accepted) await agent.close(chatId).catch(() => undefined);
  accepted = [];
  for (const c of contexts) await c.close().catch(() => undefined);
  contexts = [];
});

afterAll(async () => {
  await browser?.close();
  await srv?.close();
});

async function openCustomer(errors: string[]): Promise<{ context: BrowserContext; page: Page }> {
  return openCustomerPage(browser, srv.url, contexts, errors);
}


async function indexes(page: Page): Promise<number[]> {
  return js(page, `[...document.querySelectorAll('#transcript li[data-index]')].map((e) => Number(e.dataset.index))`);
}

async function agentTexts(agent: AgentClient, chatId: string): Promise<string[]> {
  const r = await agent.call('GET', `chats/${chatId}`);
  return (r.body.events as Array<{ type: string; text?: string }>).filter((e) => e.type === 'Message').map((e) => e.text ?? '');
}

async function agentSees(agent: AgentClient, chatId: string, text: string): Promise<void> {
  const until = Date.now() + 6000;
  for (;;) {
    if ((await agentTexts(agent, chatId)).includes(text)) return;
    if (Date.now() > until) throw new Error(`the agent never saw ${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('customer chat page: edges', () => {
  it('a very long unbroken message, emoji and combining text are sent exactly and wrap inside the bubble', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Lena', 'Long text');
    expect(await take(alice, chatId)).toBe(200);
    await msg(page, 'Alice joined the chat').waitFor();
    const long = `${'x'.repeat(1500)} 👨‍👩‍👧‍👦 e\u0301 🇩🇪`;
    await page.locator('#message').fill(long);
    await page.locator('#message').press('Enter');
    await agentSees(alice, chatId, long);
    const mine = page.locator('#transcript li.msg.mine .bubble').last();
    await mine.waitFor();
    expect(await mine.textContent()).toBe(long);
    // Nothing overflows sideways: the unbroken run wraps.
    const overflow = await js<number>(page, `(() => { const s = document.getElementById('scroller'); return s.scrollWidth - s.clientWidth; })()`);
    expect(overflow).toBeLessThanOrEqual(0);
    const bubble = await mine.boundingBox();
    expect(bubble!.width).toBeLessThanOrEqual(1000);
    // Focus stays in the composer after a send, for the next message.
    expect(await js<string>(page, 'document.activeElement.id')).toBe('message');
    expect(errors).toEqual([]);
  });

  // Regression test (this was a bug, now fixed). Was: web/customer/render.ts:48 (and :33 line()) — message bubbles are rendered without dir="auto" (and
  // the #message textarea in web/customer/index.html has none either), so an Arabic/Hebrew message is laid
  // out left-to-right: its trailing punctuation lands on the wrong side and the text is left-aligned. Any
  // chat UI taking free text in any language should isolate each message's direction (dir="auto");
  // the right behaviour is that an RTL message's bubble has direction rtl.
  it('shows a right-to-left (Arabic) message of the agent right-to-left', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Omar', 'RTL');
    expect(await take(alice, chatId)).toBe(200);
    const arabic = 'مرحبا، كيف يمكنني مساعدتك؟';
    await alice.send(chatId, arabic);
    const bubble = page.locator('#transcript li.msg.theirs .bubble').filter({ hasText: 'مرحبا' });
    await bubble.waitFor();
    expect(await bubble.textContent()).toBe(arabic);
    const direction = await js<string>(page, `getComputedStyle([...document.querySelectorAll('#transcript li.msg.theirs .bubble')].find((b) => b.textContent.startsWith('مرحبا'))).direction`);
    expect(direction).toBe('rtl');
    expect(errors).toEqual([]);
  });

  // Regression test (this was a bug, now fixed). Was: web/customer/app.ts:148 — the header avatar takes `name.charAt(0)`, a UTF-16 code unit: for an
  // agent whose name starts with an emoji (or any astral character) the avatar shows a lone surrogate (a
  // replacement box). The right behaviour is to show the first whole character (code point / grapheme).
  it('the header avatar of an agent whose name starts with an emoji shows that emoji, not half of it', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Pia', 'Emoji agent');
    expect(await take(emma, chatId)).toBe(200);
    await msg(page, 'Emma joined the chat').waitFor();
    await page.locator('#chat-title').filter({ hasText: 'Chatting with 😀 Emma' }).waitFor();
    const avatar = await page.locator('#avatar').textContent();
    // No lone surrogate in the avatar.
    expect(avatar).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    expect(avatar).toBe('😀');
    await emma.close(chatId);
    expect(errors).toEqual([]);
  });

  it('a message the chat server refuses (too long) is shown as failed with a reason, and the socket stays up', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Tom', 'Too long');
    expect(await take(alice, chatId)).toBe(200);
    await msg(page, 'Alice joined the chat').waitFor();
    await page.locator('#message').fill('y'.repeat(MAX_FIELD + 100));
    await page.locator('#message').press('Enter');
    const failed = page.locator('#outbox li.failed');
    await failed.waitFor();
    expect(await failed.locator('.status').textContent()).toContain('Not sent');
    await page.locator('#message').fill('short one');
    await page.locator('#message').press('Enter');
    await agentSees(alice, chatId, 'short one');
    await page.locator('#transcript li.msg.mine').filter({ hasText: 'short one' }).waitFor();
    // The failed one stays, with its Discard.
    expect(await page.locator('#outbox li.failed').count()).toBe(1);
    expect(errors).toEqual([]);
  });

  // Regression test (this was a bug, now fixed). Was: web/customer/app.ts:285-295 (fail) — a message that could not be sent only changes its status
  // text inside #outbox, which is not a live region; nothing is written to #announcer or a role=alert
  // element, so a screen-reader user never learns their message was not sent (agent messages and the
  // chat's end are announced through #announcer). Right behaviour: the failure ("Not sent: …") is
  // announced (live region / alert).
  it('announces to screen readers that a message could not be sent', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Una', 'A11y failure');
    expect(await take(alice, chatId)).toBe(200);
    await msg(page, 'Alice joined the chat').waitFor();
    await page.locator('#message').fill('z'.repeat(MAX_FIELD + 100));
    await page.locator('#message').press('Enter');
    await page.locator('#outbox li.failed').waitFor();
    const live = await js<string>(
      page,
      `[...document.querySelectorAll('[aria-live]:not([aria-live="off"]), [role="alert"], [role="status"], [role="log"]')].map((e) => e.textContent).join(' | ')`,
    );
    expect(live).toContain('Not sent');
    expect(errors).toEqual([]);
  });

  // Regression test (this was a bug, now fixed). Was: web/customer/app.ts:310 (confirmOwn: `?? sent[0]`) — when the customer's own Message arrives and no
  // pending bubble has its text, the first pending one that is not queued is removed anyway, even a
  // *failed* one with a different text. With two tabs of one chat, a message sent from tab A silently
  // deletes tab B's failed message (and its Retry/Discard): the customer loses what they wrote. Right
  // behaviour: only a pending message with the same text (or one actually in flight) is confirmed; a
  // failed message stays until retried or discarded.
  it('with two tabs, a message sent in one tab does not wipe out a failed message of the other', async () => {
    const errors: string[] = [];
    const { context, page: a } = await openCustomer(errors);
    const chatId = await startChat(a, 'Vera', 'Two tabs failure');
    const b = watch(errors, await context.newPage());
    await b.goto(`${srv.url}/chat/`);
    await b.locator('#conn.conn-live').waitFor();
    expect(await take(alice, chatId)).toBe(200);
    await msg(a, 'Alice joined the chat').waitFor();
    await msg(b, 'Alice joined the chat').waitFor();

    const draft = `My long complaint ${'w'.repeat(MAX_FIELD)}`;
    await b.locator('#message').fill(draft);
    await b.locator('#message').press('Enter');
    await b.locator('#outbox li.failed').waitFor();

    await a.locator('#message').fill('Hello from tab A');
    await a.locator('#message').press('Enter');
    await agentSees(alice, chatId, 'Hello from tab A');
    await b.locator('#transcript li.msg.mine').filter({ hasText: 'Hello from tab A' }).waitFor();
    await sleep(200);
    // Tab B still shows its failed message, with a way to retry or discard it.
    expect(await b.locator('#outbox li.failed').count()).toBe(1);
    expect(errors).toEqual([]);
  });

  // Regression test (this was a bug, now fixed). Was: web/customer/app.ts:183 (persist: outbox keeps only state 'queued') — a message that the page
  // handed to a socket which turned out to be dead (state 'sending', no answer yet) is not saved; a reload
  // (what a customer does when "Sending…" hangs) drops it: it is neither in the chat nor in the outbox.
  // docs/receiver.md: "messages typed offline are sent after the resume" and the store keeps "messages
  // typed while offline". Right behaviour: an unconfirmed message survives a reload (re-sent, or shown as
  // not sent with Retry, after checking the resumed transcript for it).
  it('a message sent on a dead connection is not lost when the customer reloads the page', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    // The page's socket goes through Playwright: while `blackhole` is set, frames from the page are
    // swallowed (a connection that died without the browser noticing).
    let blackhole = false;
    await page.routeWebSocket(/\/receiver\/ws$/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        if (!blackhole) server.send(m);
      });
      server.onMessage((m) => ws.send(m));
    });
    const chatId = await startChat(page, 'Walt', 'Dead socket');
    expect(await take(alice, chatId)).toBe(200);
    await msg(page, 'Alice joined the chat').waitFor();
    blackhole = true;
    await page.locator('#message').fill('Please call me back at 555-0100');
    await page.locator('#message').press('Enter');
    await page.locator('#outbox li').filter({ hasText: 'Sending' }).waitFor();
    blackhole = false;
    await page.reload();
    await page.locator('#conn.conn-live').waitFor();
    await sleep(1500);
    const inTranscript = await msg(page, 'Please call me back').count();
    const inOutbox = await page.locator('#outbox li').filter({ hasText: 'Please call me back' }).count();
    const atAgent = (await agentTexts(alice, chatId)).includes('Please call me back at 555-0100');
    expect(inTranscript + inOutbox > 0 || atAgent).toBe(true);
    expect(errors).toEqual([]);
  });

  it('a frozen background tab shows the end of a chat closed meanwhile when it is resumed', async () => {
    const errors: string[] = [];
    const { context, page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Xena', 'Frozen tab');
    expect(await take(alice, chatId)).toBe(200);
    await msg(page, 'Alice joined the chat').waitFor();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Page.setWebLifecycleState', { state: 'frozen' });
    await alice.send(chatId, 'Closing words while you were away');
    await alice.close(chatId);
    await sleep(500);
    await cdp.send('Page.setWebLifecycleState', { state: 'active' });
    await msg(page, 'Closing words while you were away').waitFor();
    await page.locator('#ended-text').filter({ hasText: 'This chat has ended.' }).waitFor();
    const idx = await indexes(page);
    expect(new Set(idx).size).toBe(idx.length);
    expect(await page.locator('#composer').isHidden()).toBe(true);
    expect(errors).toEqual([]);
  });

  it('back/forward: leaving the page and coming back resumes the chat, without repeating messages', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Yann', 'bfcache');
    expect(await take(alice, chatId)).toBe(200);
    await alice.send(chatId, 'First answer');
    await msg(page, 'First answer').waitFor();
    await page.goto(`${srv.url}/chat/app.css`);
    await alice.send(chatId, 'Written while you were on another page');
    await page.goBack();
    await page.locator('#conn.conn-live').waitFor();
    await msg(page, 'Written while you were on another page').waitFor();
    await alice.send(chatId, 'After coming back');
    await msg(page, 'After coming back').waitFor();
    expect(await msg(page, 'First answer').count()).toBe(1);
    const idx = await indexes(page);
    expect(new Set(idx).size).toBe(idx.length);
    expect(idx).toEqual([...idx].sort((x, y) => x - y));
    await page.locator('#message').fill('Still works');
    await page.locator('#message').press('Enter');
    await agentSees(alice, chatId, 'Still works');
    expect(errors).toEqual([]);
  });

  it('the agent\'s messages are announced in the live region; the composer is labelled and keyboard only works', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    await page.keyboard.press('Tab'); // skip link
    await page.locator('#name').focus();
    await page.keyboard.type('Zoe');
    await page.keyboard.press('Enter');
    await page.locator('#conn.conn-live').waitFor();
    expect(await js<string>(page, 'document.activeElement.id')).toBe('message');
    const label = await js<string>(page, `document.querySelector('label[for="message"]').textContent`);
    expect(label).toBe('Message');
    const chatId = JSON.parse((await js<string>(page, `localStorage.getItem('parley.chat')`)) ?? '{}').chatId as string;
    expect(await take(alice, chatId)).toBe(200);
    await alice.send(chatId, 'שלום, how can I help? 🙂');
    await page.locator('#announcer').filter({ hasText: 'Alice: שלום, how can I help? 🙂' }).waitFor();
    await page.keyboard.type('Line one');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('Line two');
    await page.keyboard.press('Enter');
    await agentSees(alice, chatId, 'Line one\nLine two');
    expect(await js<string>(page, 'document.activeElement.id')).toBe('message');
    expect(errors).toEqual([]);
  });
});
