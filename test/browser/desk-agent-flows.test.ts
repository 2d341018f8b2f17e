/**
 * The agent desk (`/desk/`) in real headless Chromium against an in-process Parley: what an
 * agent sees of a waiting chat, two desks of one agent, text shown as text, and the keyboard focus after
 * the chat actions.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ChatClient, postForm, postMultipart, startTestServer, type TestServer } from '../helpers.ts';
import { item, js, message, openDeskPage, signIn, type Desk } from './desk-page.ts';
import { launchChromium } from './chromium.ts';

const ASYNC = 'async-support';

let srv: TestServer;
let browser: Browser;
let contexts: BrowserContext[] = [];
const customers: ChatClient[] = [];

beforeAll(async () => {
  [srv, browser] = await Promise.all([startTestServer(`[chat.${ASYNC}]\nasync-mode = true\n`), launchChromium()]);
}, 600_000);

afterEach(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  contexts = [];
  // End the test's chats so that the next test starts with an empty queue and free agents.
  for (const c of customers.splice(0)) await c.op('disconnect').catch(() => undefined);
});

afterAll(async () => {
  await browser?.close();
  await srv?.close();
});

async function customer(nickname: string, subject: string, service?: string): Promise<ChatClient> {
  const c = new ChatClient(srv.url, service);
  await c.start({ nickname, subject });
  customers.push(c);
  return c;
}

async function openDesk(): Promise<Desk> {
  return openDeskPage(browser, srv.url, contexts);
}

async function indexes(page: Page): Promise<number[]> {
  return js(page, `[...document.querySelectorAll('.transcript li[data-index]')].map((e) => Number(e.dataset.index))`);
}

async function accept(page: Page, chatId: string): Promise<void> {
  await item(page, 'queue', chatId).click();
  await page.getByRole('button', { name: 'Accept', exact: true }).click();
  await item(page, 'mine', chatId).waitFor();
  await page.locator('#reply').waitFor();
}

describe('agent desk review', () => {
  it("opens a customer's file from the transcript: a download with the file's name and bytes; a deleted one says so", async () => {
    const c = await customer('Fay', 'Invoice');
    const { page, errors } = await openDesk();
    await signIn(page, 'alice', 'alice-secret');
    await accept(page, c.chatId);
    const bytes = new Uint8Array([37, 80, 68, 70, 0, 1, 2, 255]);
    const up = await postMultipart(`${c.chatUrl}/${c.chatId}/file`, c.ids(), { name: 'invoice (1).pdf', type: 'application/pdf', bytes });
    expect(up.body.statusCode).toBe(0);
    const open = page.locator('.transcript .event.file').filter({ hasText: 'invoice (1).pdf' }).getByRole('button', { name: 'Open invoice (1).pdf' });
    const [download] = await Promise.all([page.waitForEvent('download'), open.click()]);
    expect(download.suggestedFilename()).toBe('invoice (1).pdf');
    const path = await download.path();
    expect(new Uint8Array(readFileSync(path))).toEqual(bytes);
    // Deleted by the customer meanwhile: the desk says so instead of saving an error page as the file.
    const fileId = up.body.userData['file-id'] as string;
    expect((await postForm(`${c.chatUrl}/${c.chatId}/file/${fileId}/delete`, c.ids())).body.statusCode).toBe(0);
    await open.click();
    await page.locator('.chat').getByText('“invoice (1).pdf” is no longer available.').first().waitFor();
    expect(errors.filter((e) => !e.includes('404'))).toEqual([]);
  });

  it('shows customer text with HTML-looking content, unicode and new lines as plain text', async () => {
    const c = await customer('Zoë <b>', 'Ünïcödé & <i>subject</i>');
    const { page, errors } = await openDesk();
    await signIn(page, 'alice', 'alice-secret');
    await item(page, 'queue', c.chatId).waitFor();
    expect(await item(page, 'queue', c.chatId).textContent()).toContain('Zoë <b>');
    await accept(page, c.chatId);
    const text = '<img src=x onerror="window.__pwned=1"> 你好 👋🏽\nsecond line';
    await c.op('send', { message: text });
    const li = message(page, '你好 👋🏽');
    await li.waitFor();
    expect(await li.locator('.bubble').textContent()).toBe(text);
    expect(await li.locator('.bubble').innerText()).toContain('\nsecond line');
    expect(await page.locator('.transcript img, .transcript b, .transcript i').count()).toBe(0);
    expect(await js(page, 'window.__pwned')).toBeUndefined();
    expect(await page.locator('#chat-title').textContent()).toBe('Zoë <b>');
    expect(errors).toEqual([]);
  });

  it('keeps two desks of one agent in step: a chat accepted on one is in "My chats" on the other, and replies show on both once', async () => {
    const c = await customer('Pia', 'Two desks');
    const a = await openDesk();
    const b = await openDesk();
    await Promise.all([signIn(a.page, 'alice', 'alice-secret'), signIn(b.page, 'alice', 'alice-secret')]);
    await item(b.page, 'queue', c.chatId).waitFor();
    await accept(a.page, c.chatId);
    await item(b.page, 'mine', c.chatId).waitFor();
    expect(await item(b.page, 'queue', c.chatId).count()).toBe(0);
    await item(b.page, 'mine', c.chatId).click();
    await b.page.locator('#reply').fill('Sent from the second desk');
    await b.page.locator('#reply').press('Enter');
    await message(a.page, 'Sent from the second desk').waitFor();
    await c.op('send', { message: 'Customer answers both' });
    await message(a.page, 'Customer answers both').waitFor();
    await message(b.page, 'Customer answers both').waitFor();
    for (const p of [a.page, b.page]) {
      const idx = await indexes(p);
      expect(new Set(idx).size).toBe(idx.length);
      expect(idx).toEqual([...idx].sort((x, y) => x - y));
      expect(await message(p, 'Sent from the second desk').count()).toBe(1);
    }
    // Closing on one desk ends it on the other.
    await a.page.getByRole('button', { name: 'Close chat', exact: true }).click();
    await b.page.locator('.chat .banner').filter({ hasText: 'This chat has ended' }).waitFor();
    expect(await b.page.locator('#reply').count()).toBe(0);
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it('never shows another agent\'s chat, and the customer leaving ends the open chat on the desk', async () => {
    const c = await customer('Ola', 'Bob only');
    const bob = await openDesk();
    const alice = await openDesk();
    await Promise.all([signIn(bob.page, 'bob', 'bob-secret-1'), signIn(alice.page, 'alice', 'alice-secret')]);
    await item(alice.page, 'queue', c.chatId).waitFor();
    await accept(bob.page, c.chatId);
    await item(alice.page, 'queue', c.chatId).waitFor({ state: 'detached' });
    await c.op('send', { message: 'Private to Bob' });
    await message(bob.page, 'Private to Bob').waitFor();
    expect(await alice.page.locator(`[data-chat-id="${c.chatId}"]`).count()).toBe(0);
    await bob.page.locator('#reply').fill('draft in progress');
    await c.op('disconnect');
    await bob.page.locator('.chat .banner').filter({ hasText: 'This chat has ended' }).waitFor();
    await item(bob.page, 'mine', c.chatId).waitFor({ state: 'detached' });
    expect(await bob.page.locator('#reply').count()).toBe(0);
    expect(await alice.page.locator(`[data-chat-id="${c.chatId}"]`).count()).toBe(0);
  });

  // Regression test (this was a bug, now fixed). Was: a waiting chat opened on the desk never shows what the customer writes after it was first
  // opened, not even when the agent opens it again from the queue. The server sends an agent only
  // `chat` frames (no `events`) for a chat that is merely offered (src/chat-server/agent-stream.ts:128-135),
  // and the desk neither merges those nor reloads: web/desk/app.ts:319-326 only re-places the summary,
  // and select() (web/desk/app.ts:512) loads the transcript only when it has none yet. The agent decides
  // whether to accept on a stale transcript ("Never mind, solved" is never seen). Right: the open
  // waiting chat shows the customer's new messages (catch up when the summary's lastIndex moves, or
  // reload on opening).
  it('shows the customer\'s new messages in a waiting chat the agent has open', async () => {
    const c = await customer('Wes', 'Still waiting');
    const { page } = await openDesk();
    await signIn(page, 'alice', 'alice-secret');
    await item(page, 'queue', c.chatId).click();
    await page.locator('.chat .banner').filter({ hasText: 'Accept to join' }).waitFor();
    await page.locator('.transcript [data-index="1"]').waitFor();
    await c.op('send', { message: 'Never mind, it is solved now.' });
    // Looking at another chat and coming back to it from the queue does not help either.
    await page.locator('#history-open').click();
    await page.locator('.history-view').waitFor();
    await item(page, 'queue', c.chatId).click();
    await page.locator('.chat .banner').filter({ hasText: 'Accept to join' }).waitFor();
    await message(page, 'Never mind, it is solved now.').waitFor({ timeout: 3000 });
  });

  // Regression test (this was a bug, now fixed). Was: after the agent puts a chat on hold (or closes it) with the keyboard, the focus is lost to
  // <body>: act() sets busy, updateChatHead() rebuilds the action buttons disabled and only refocuses an
  // enabled one (web/desk/app.ts:674-678), and after the action only a reply box or the main pane of a
  // left/transferred chat gets the focus (web/desk/app.ts:797-798). A keyboard or screen-reader user has to
  // start again from the top of the page. Right: the focus goes to the next thing to do (Resume for a
  // held chat, the main pane / transcript for a closed one).
  it('keeps the keyboard focus in the chat after Hold with the keyboard', async () => {
    const c = await customer('Kai', 'Hold with the keyboard', ASYNC);
    const { page } = await openDesk();
    await signIn(page, 'alice', 'alice-secret');
    await accept(page, c.chatId);
    await page.getByRole('button', { name: 'Hold', exact: true }).focus();
    await page.keyboard.press('Enter');
    await item(page, 'workbin', c.chatId).waitFor();
    await page.locator('.chat .banner').filter({ hasText: 'On hold in your workbin' }).waitFor();
    expect(await js<string>(page, 'document.activeElement.tagName')).not.toBe('BODY');
  });
});
