/**
 * The customer chat page (`/chat/`) in real headless Chromium against an in-process Parley whose pushes
 * reach its own receiver (`[push] customhttp.url = <server>/receiver/push`). The agent side is the agent
 * REST API (AgentClient), so nothing here depends on the desk. Screenshots go to docs/images/customer-*.png with UPDATE_SCREENSHOTS=1.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient, startTestServer, type TestServer } from '../helpers.ts';
import { pushIni } from '../receiver-fixture.ts';
import { js, launchChromium, SCREENSHOTS } from './chromium.ts';
import { freePort } from '../support/ports.ts';

const IMAGES = SCREENSHOTS;

interface Ev {
  readonly index: number;
  readonly type: string;
  readonly text?: string;
  readonly from: { readonly participantId: number; readonly type: string; readonly nickname: string };
  readonly userData?: Record<string, string>;
}

let srv: TestServer;
let browser: Browser;
let alice: AgentClient;
let bob: AgentClient;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  mkdirSync(IMAGES, { recursive: true });
  const port = await freePort();
  // pushIni appends "/push": the receiver's push endpoint is /receiver/push.
  const ini = pushIni(`http://127.0.0.1:${port}/receiver`);
  [srv, browser] = await Promise.all([startTestServer(ini, { PARLEY_HTTP_PORT: String(port) }), launchChromium()]);
  alice = new AgentClient(srv.url, 'alice', 'alice-secret');
  bob = new AgentClient(srv.url, 'bob', 'bob-secret-1');
  await Promise.all([alice.login(), bob.login()]);
}, 600_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await srv?.close();
});

interface Customer {
  readonly context: BrowserContext;
  page: Page;
  readonly errors: string[];
  /** Frames the page sent on its WebSockets. */
  readonly sent: Array<Record<string, unknown>>;
}

function watch(c: { errors: string[]; sent: Array<Record<string, unknown>> }, page: Page): Page {
  page.setDefaultTimeout(8000);
  page.on('pageerror', (e) => c.errors.push(e.message));
  page.on('console', (m) => {
    // A refused upload or download is an HTTP error the page handles; Chromium still logs the status.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) c.errors.push(m.text());
  });
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => {
      if (typeof f.payload === 'string') c.sent.push(JSON.parse(f.payload) as Record<string, unknown>);
    });
  });
  return page;
}

/** A fresh browser (own localStorage) on /chat/. */
async function openCustomer(width = 1100, height = 760): Promise<Customer> {
  const context = await browser.newContext({ viewport: { width, height }, acceptDownloads: true });
  contexts.push(context);
  const c: Customer = { context, page: undefined as unknown as Page, errors: [], sent: [] };
  c.page = watch(c, await context.newPage());
  await c.page.goto(`${srv.url}/chat/`);
  return c;
}

/** Another tab of the same browser (same localStorage): a reopened laptop. */
async function reopen(c: Customer): Promise<Page> {
  c.page = watch(c, await c.context.newPage());
  await c.page.goto(`${srv.url}/chat/`);
  return c.page;
}

async function startChat(page: Page, name: string, subject: string): Promise<string> {
  await page.locator('#name').fill(name);
  await page.locator('#subject').fill(subject);
  await page.locator('#start-submit').click();
  await page.locator('#chat').waitFor();
  await page.locator('#conn.conn-live').waitFor();
  return (await saved(page)).chatId;
}


async function saved(page: Page): Promise<{ token: string; chatId: string; lastIndex: number; ended: boolean }> {
  return JSON.parse((await js<string | null>(page, `localStorage.getItem('parley.chat')`)) ?? 'null');
}

function msg(page: Page, text: string) {
  return page.locator('#transcript li').filter({ hasText: text });
}

async function indexes(page: Page): Promise<number[]> {
  return js(page, `[...document.querySelectorAll('#transcript li[data-index]')].map((e) => Number(e.dataset.index))`);
}

async function shot(page: Page, name: string): Promise<void> {
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(IMAGES, `customer-${name}.png`), animations: 'disabled', caret: 'hide' });
}

async function agentEvents(agent: AgentClient, chatId: string): Promise<Ev[]> {
  const r = await agent.call('GET', `chats/${chatId}`);
  expect(r.status).toBe(200);
  return r.body.events as Ev[];
}

/** Polls the agent's view of the chat until an event matches; returns every event. */
async function agentSees(agent: AgentClient, chatId: string, pred: (e: Ev) => boolean, timeoutMs = 6000): Promise<Ev[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const events = await agentEvents(agent, chatId);
    if (events.some(pred)) return events;
    if (Date.now() > until) throw new Error(`the agent never saw it; saw ${JSON.stringify(events.map((e) => [e.type, e.text]))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const fromCustomer = (e: Ev) => e.from.participantId === 1;

describe('customer chat page in Chromium', () => {
  it('is served with the strict CSP, without inline script or style', async () => {
    const res = await fetch(`${srv.url}/chat/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('content-security-policy')).toContain("style-src 'self'");
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/i);
    expect(html).not.toMatch(/\sstyle=|<style/i);
    expect(html).not.toMatch(/https?:\/\//);
    for (const asset of ['app.js', 'app.css']) expect((await fetch(`${srv.url}/chat/${asset}`)).status).toBe(200);
  });

  it('chats with an agent live, survives a reload and a dropped connection, sends and downloads files, and leaves', async () => {
    const c = await openCustomer();
    const { page } = c;
    await page.locator('#start-form').waitFor();
    await page.locator('#name').fill('Ann');
    await page.locator('#subject').fill('Order 42 never arrived');
    await shot(page, 'start');
    // The name is required; the error is announced and the field marked.
    await page.locator('#name').fill('  ');
    await page.locator('#start-submit').click();
    await page.locator('#start-error').filter({ hasText: 'Please enter your name.' }).waitFor();
    expect(await js(page, 'document.activeElement.id')).toBe('name');
    expect(await page.locator('#name').getAttribute('aria-invalid')).toBe('true');
    expect(c.sent).toEqual([]);
    await page.locator('#name').fill('Ann');
    await page.locator('#subject').press('Enter');
    await page.locator('#chat').waitFor();
    await page.locator('#conn.conn-live').waitFor();
    const { chatId, token } = await saved(page);
    expect(token).not.toBe('');
    expect(c.sent[0]).toEqual({ type: 'start', nickname: 'Ann', subject: 'Order 42 never arrived' });
    await page.locator('#chat-title').filter({ hasText: 'Waiting for an agent…' }).waitFor();
    expect(await js(page, 'document.activeElement.id')).toBe('message');

    // The agent accepts and types; the customer sees it live, and the reply clears the typing line.
    expect((await alice.accept(chatId)).status).toBe(200);
    await page.locator('#chat-title').filter({ hasText: 'Chatting with Alice' }).waitFor();
    await msg(page, 'Alice joined the chat').waitFor();
    await alice.typing(chatId, true, 'Hello A');
    await page.locator('#typing-text').filter({ hasText: 'Alice is typing…' }).waitFor();
    // The agent's draft preview is not shown to the customer.
    expect(await page.locator('#typing').textContent()).not.toContain('Hello A');
    await alice.send(chatId, 'Hello Ann, I am looking into it.');
    await msg(page, 'Hello Ann, I am looking into it.').waitFor();
    await page.locator('#typing-text').filter({ hasText: /^$/ }).waitFor({ state: 'attached' });
    await page.locator('#announcer').filter({ hasText: 'Alice: Hello Ann, I am looking into it.' }).waitFor();
    await alice.typing(chatId, true);
    await page.locator('#typing-text').filter({ hasText: 'Alice is typing…' }).waitFor();
    await alice.typing(chatId, false);
    await page.locator('#typing-text').filter({ hasText: /^$/ }).waitFor({ state: 'attached' });

    // The customer types: typing started once, then the message on Enter; Shift+Enter makes a new line.
    const box = page.locator('#message');
    await box.pressSequentially('It was due on Monday.', { delay: 5 });
    await agentSees(alice, chatId, (e) => fromCustomer(e) && e.type === 'TypingStarted');
    await box.press('Shift+Enter');
    await box.pressSequentially('The tracking says delivered.', { delay: 5 });
    await box.press('Enter');
    expect(await box.inputValue()).toBe('');
    const afterSend = await agentSees(alice, chatId, (e) => e.type === 'Message' && e.text === 'It was due on Monday.\nThe tracking says delivered.');
    expect(afterSend.filter(fromCustomer).map((e) => e.type)).toEqual(['ParticipantJoined', 'TypingStarted', 'TypingStopped', 'Message']);
    await page.locator('#transcript li.msg.mine').filter({ hasText: 'The tracking says delivered.' }).waitFor();
    expect(await page.locator('#outbox li').count()).toBe(0);
    // Typing stops by itself after about 3 s without a keystroke.
    await box.pressSequentially('Also', { delay: 5 });
    const stoppedAt = Date.now();
    const sentIndex = Math.max(...afterSend.map((e) => e.index));
    const idle = await agentSees(alice, chatId, (e) => fromCustomer(e) && e.type === 'TypingStopped' && e.index > sentIndex, 8000);
    expect(Date.now() - stoppedAt).toBeGreaterThan(2000);
    expect(idle.filter(fromCustomer).filter((e) => e.type === 'TypingStarted')).toHaveLength(2);
    await box.fill('');

    await alice.send(chatId, 'The courier says it is at the depot. Shall I have it sent again?');
    await msg(page, 'Shall I have it sent again?').waitFor();
    await box.fill('Yes please, to the same address.');
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await msg(page, 'Yes please, to the same address.').waitFor();
    await alice.typing(chatId, true);
    await page.locator('#typing-text').filter({ hasText: 'Alice is typing…' }).waitFor();
    await shot(page, 'conversation');
    await alice.typing(chatId, false);
    await page.locator('#typing-text').filter({ hasText: /^$/ }).waitFor({ state: 'attached' });

    // Reload: the conversation is all there once, and the page resumed after the last event it had.
    const before = await indexes(page);
    const { lastIndex } = await saved(page);
    c.sent.length = 0;
    await page.reload();
    await page.locator('#conn.conn-live').waitFor();
    expect(c.sent[0]).toEqual({ type: 'resume', token, from: lastIndex + 1 });
    await alice.send(chatId, 'Welcome back.');
    await msg(page, 'Welcome back.').waitFor();
    const after = await indexes(page);
    expect(after.slice(0, before.length)).toEqual(before);
    expect(new Set(after).size).toBe(after.length);
    expect(after).toEqual([...after].sort((a, b) => a - b));
    expect(await msg(page, 'Hello Ann, I am looking into it.').count()).toBe(1);
    expect(await page.locator('#chat-title').textContent()).toBe('Chatting with Alice');

    // A dropped connection: what the agent says meanwhile arrives after the reconnect, and what the
    // customer writes meanwhile is sent then.
    c.sent.length = 0;
    await js(page, 'window.__parleyChat.dropSocket(1500)');
    await page.locator('#conn.conn-offline').waitFor();
    await alice.send(chatId, 'Sent while you were offline.');
    await box.fill('Written while offline.');
    await box.press('Enter');
    await page.locator('#outbox li').filter({ hasText: 'Waiting for the connection…' }).waitFor();
    await page.locator('#conn.conn-live').waitFor();
    await msg(page, 'Sent while you were offline.').waitFor();
    await agentSees(alice, chatId, (e) => e.type === 'Message' && e.text === 'Written while offline.');
    await msg(page, 'Written while offline.').waitFor();
    expect(await page.locator('#outbox li').count()).toBe(0);
    const resumed = c.sent.filter((f) => f['type'] === 'resume');
    expect(resumed).toHaveLength(1);
    const idx = await indexes(page);
    expect(new Set(idx).size).toBe(idx.length);

    // Files: a small .txt within the limits goes through, shows in both transcripts, and downloads back.
    const content = 'Order 42\nReceipt no. 7781\n';
    await page.locator('#file').setInputFiles({ name: 'receipt.txt', mimeType: 'text/plain', buffer: Buffer.from(content) });
    const card = page.locator('#transcript li.file').filter({ hasText: 'receipt.txt' });
    await card.waitFor();
    expect(await card.textContent()).toContain('26 B');
    const agentFile = (await agentSees(alice, chatId, (e) => e.type === 'FileUploaded')).find((e) => e.type === 'FileUploaded');
    expect(agentFile?.userData?.['file-name']).toBe('receipt.txt');
    expect(agentFile?.from.participantId).toBe(1);
    const [download] = await Promise.all([page.waitForEvent('download'), card.getByRole('button', { name: 'Download receipt.txt' }).click()]);
    expect(download.suggestedFilename()).toBe('receipt.txt');
    expect(readFileSync(await download.path(), 'utf8')).toBe(content);
    await shot(page, 'file');

    // Refused before upload: too large, or a forbidden type; the message says why.
    await page.locator('#file').setInputFiles({ name: 'scan.txt', mimeType: 'text/plain', buffer: Buffer.alloc(50_000, 'a') });
    await page.locator('#notice').filter({ hasText: '“scan.txt” is too large (50 KB): files can be at most 40 KB.' }).waitFor();
    await page.locator('#file').setInputFiles({ name: 'setup.exe', mimeType: 'application/octet-stream', buffer: Buffer.from('MZ') });
    await page.locator('#notice').filter({ hasText: '“setup.exe” can’t be sent: only .txt, .png, .pdf files are allowed.' }).waitFor();
    expect((await agentEvents(alice, chatId)).filter((e) => e.type === 'FileUploaded')).toHaveLength(1);
    // Refused by the server (download-attempts = 2): its reason is shown.
    await card.getByRole('button', { name: 'Download receipt.txt' }).click();
    await page.locator('#notice').filter({ hasText: /^$/ }).waitFor({ state: 'attached' });
    await card.getByRole('button', { name: 'Download receipt.txt' }).click();
    await page.locator('#notice').filter({ hasText: '“receipt.txt” has already been downloaded as many times as allowed.' }).waitFor();

    // Leave: asks first; "Keep chatting" keeps it; confirming ends it.
    await page.getByRole('button', { name: 'End chat' }).click();
    await page.locator('#leave-dialog[open]').waitFor();
    expect(await js(page, 'document.activeElement.id')).toBe('leave-cancel');
    await page.keyboard.press('Enter');
    await page.locator('#leave-dialog').waitFor({ state: 'hidden' });
    expect(c.sent.filter((f) => f['type'] === 'leave')).toHaveLength(0);
    await page.getByRole('button', { name: 'End chat' }).click();
    await page.locator('#leave-confirm').click();
    await page.locator('#ended-text').filter({ hasText: 'This chat has ended.' }).waitFor();
    expect(await js(page, 'document.activeElement.id')).toBe('new-chat');
    expect(await page.locator('#composer').isHidden()).toBe(true);
    await agentSees(alice, chatId, (e) => fromCustomer(e) && e.type === 'ParticipantLeft');
    expect((await saved(page)).ended).toBe(true);

    // Reloaded, the ended chat stays ended and readable; a new chat starts from a clean page.
    await page.reload();
    await page.locator('#ended-text').waitFor();
    await msg(page, 'Welcome back.').waitFor();
    await page.getByRole('button', { name: 'Start a new chat' }).click();
    await page.locator('#start-form').waitFor();
    expect(await page.locator('#name').inputValue()).toBe('Ann');
    expect(await js(page, `localStorage.getItem('parley.chat')`)).toBeNull();
    expect(await page.locator('#transcript li').count()).toBe(0);
    expect(c.errors).toEqual([]);
  });

  it('shows what the agent wrote while the page was closed (the laptop lid was shut)', async () => {
    const c = await openCustomer();
    const chatId = await startChat(c.page, 'Bea', 'Invoice copy');
    await bob.accept(chatId);
    await msg(c.page, 'Bob joined the chat').waitFor();
    await c.page.close();
    await bob.send(chatId, 'Here is the invoice you asked for.');
    await bob.typing(chatId, true);
    const page = await reopen(c);
    await msg(page, 'Here is the invoice you asked for.').waitFor();
    await page.locator('#typing-text').filter({ hasText: 'Bob is typing…' }).waitFor();
    await bob.send(chatId, 'Anything else?');
    await page.locator('#typing-text').filter({ hasText: /^$/ }).waitFor({ state: 'attached' });
    const idx = await indexes(page);
    expect(new Set(idx).size).toBe(idx.length);
    // Text is shown as text, never as HTML.
    await bob.send(chatId, '<img src=x onerror="window.__pwned=1"> <b>bold?</b> see https://example.com/track.');
    await msg(page, '<b>bold?</b>').waitFor();
    expect(await page.locator('#transcript img, #transcript b').count()).toBe(0);
    expect(await js(page, 'window.__pwned')).toBeUndefined();
    expect(await msg(page, '<b>bold?</b>').locator('a').getAttribute('href')).toBe('https://example.com/track');

    // Bob closes the chat while Bea watches: the page switches to the ended state.
    await bob.close(chatId);
    await page.locator('#ended-text').filter({ hasText: 'This chat has ended.' }).waitFor();
    await page.locator('#chat-title').filter({ hasText: 'Chat ended' }).waitFor();
    await page.locator('#conn').waitFor({ state: 'hidden' });
    expect(c.errors).toEqual([]);
  });

  // Regression: found by this suite and fixed.
  it('shows the last words of an agent who closed the chat while the page was closed', async () => {
    const c = await openCustomer();
    const chatId = await startChat(c.page, 'Cleo', 'Return label');
    await bob.accept(chatId);
    await msg(c.page, 'Bob joined the chat').waitFor();
    await c.page.close();
    await bob.send(chatId, 'The return label is in your mailbox. Goodbye!');
    await bob.close(chatId);
    const page = await reopen(c);
    await page.locator('#ended-text').filter({ hasText: 'This chat has ended.' }).waitFor();
    await msg(page, 'The return label is in your mailbox.').waitFor({ timeout: 2000 });
  });

  it('fits a phone screen and can be used with the keyboard alone', async () => {
    const c = await openCustomer(375, 720);
    const { page } = c;
    await page.locator('#start-form').waitFor();
    await page.keyboard.press('Tab');
    expect(await js(page, 'document.activeElement.className')).toBe('skip-link');
    await page.keyboard.press('Tab');
    expect(await js(page, 'document.activeElement.id')).toBe('name');
    await page.keyboard.type('Dev');
    await page.keyboard.press('Tab');
    await page.keyboard.type('Phone screen');
    await page.keyboard.press('Enter');
    await page.locator('#conn.conn-live').waitFor();
    const { chatId } = await saved(page);
    await page.keyboard.type('Hello from my phone');
    await page.keyboard.press('Enter');
    await agentSees(alice, chatId, (e) => e.type === 'Message' && e.text === 'Hello from my phone');
    await alice.accept(chatId);
    await alice.send(chatId, 'Hi Dev! A long answer that has to wrap over several lines on a narrow phone screen, without any sideways scrolling.');
    await msg(page, 'without any sideways scrolling').waitFor();
    await page.locator('#file').setInputFiles({ name: 'photo-of-the-broken-parcel-label.png', mimeType: 'image/png', buffer: Buffer.from('not really a png') });
    await page.locator('#transcript li.file').waitFor();
    await alice.typing(chatId, true);
    await page.locator('#typing-text').filter({ hasText: 'Alice is typing…' }).waitFor();
    expect(await js(page, 'document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    await shot(page, 'phone');
    // The focus is visible on the message box (a 3px outline).
    await page.locator('#message').focus();
    expect(await js(page, `getComputedStyle(document.activeElement).outlineStyle`)).toBe('solid');
    await page.getByRole('button', { name: 'End chat' }).click();
    await page.locator('#leave-confirm').press('Enter');
    await page.locator('#ended-text').waitFor();
    expect(c.errors).toEqual([]);
  });
});
