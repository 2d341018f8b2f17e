/**
 * The customer chat page (`/chat/`) in real headless Chromium against an in-process Parley whose
 * pushes reach its own receiver: two tabs of one chat, text shown as text, a server restart, and what the
 * page allows once the chat ended.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient, startTestServer, type TestServer } from '../helpers.ts';
import { pushIni } from '../receiver-fixture.ts';
import { msg, openCustomerPage, startChat, watch } from './customer-page.ts';
import { launchChromium } from './chromium.ts';
import { freePort } from '../support/ports.ts';

let srv: TestServer;
let browser: Browser;
let alice: AgentClient;
let contexts: BrowserContext[] = [];

beforeAll(async () => {
  const port = await freePort();
  [srv, browser] = await Promise.all([startTestServer(pushIni(`http://127.0.0.1:${port}/receiver`), { PARLEY_HTTP_PORT: String(port) }), launchChromium()]);
  alice = new AgentClient(srv.url, 'alice', 'alice-secret');
  await alice.login();
}, 600_000);

afterEach(async () => {
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
  return page.evaluate(`[...document.querySelectorAll('#transcript li[data-index]')].map((e) => Number(e.dataset.index))`) as Promise<number[]>;
}

async function agentSees(chatId: string, text: string): Promise<void> {
  const until = Date.now() + 6000;
  for (;;) {
    const r = await alice.call('GET', `chats/${chatId}`);
    if ((r.body.events as Array<{ type: string; text?: string }>).some((e) => e.type === 'Message' && e.text === text)) return;
    if (Date.now() > until) throw new Error(`the agent never saw ${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('customer chat page review', () => {
  it('shows one chat in two tabs: every message once and in order in both, HTML-looking text as text, and the end in both', async () => {
    const errors: string[] = [];
    const { context, page: a } = await openCustomer(errors);
    const chatId = await startChat(a, 'Tess', 'Two tabs');
    const b = watch(errors, await context.newPage());
    await b.goto(`${srv.url}/chat/`);
    await b.locator('#conn.conn-live').waitFor();
    expect((await alice.accept(chatId)).status).toBe(200);
    await msg(a, 'Alice joined the chat').waitFor();
    await msg(b, 'Alice joined the chat').waitFor();

    const text = '<script>window.__pwned=1</script> <b>bold</b> Grüße 👋🏽 日本語\nzweite Zeile';
    await a.locator('#message').fill(text);
    await a.locator('#message').press('Enter');
    await agentSees(chatId, text);
    for (const p of [a, b]) {
      const mine = p.locator('#transcript li.msg.mine').filter({ hasText: 'Grüße 👋🏽' });
      await mine.waitFor();
      expect(await mine.count()).toBe(1);
      expect(await mine.locator('.bubble').textContent()).toBe(text);
      expect(await mine.locator('.bubble').innerText()).toContain('\nzweite Zeile');
      expect(await p.locator('#transcript script, #transcript b').count()).toBe(0);
      expect(await p.evaluate('window.__pwned')).toBeUndefined();
    }
    await alice.send(chatId, 'Answer seen in both tabs');
    for (const p of [a, b]) {
      await msg(p, 'Answer seen in both tabs').waitFor();
      expect(await p.locator('#outbox li').count()).toBe(0);
      const idx = await indexes(p);
      expect(new Set(idx).size).toBe(idx.length);
      expect(idx).toEqual([...idx].sort((x, y) => x - y));
    }
    expect(await indexes(a)).toEqual(await indexes(b));

    // The customer ends it in one tab: the other tab shows the end too.
    await b.getByRole('button', { name: 'End chat' }).click();
    await b.locator('#leave-confirm').click();
    await b.locator('#ended-text').filter({ hasText: 'This chat has ended.' }).waitFor();
    await a.locator('#ended-text').filter({ hasText: 'This chat has ended.' }).waitFor();
    expect(await a.locator('#composer').isHidden()).toBe(true);
    expect(errors).toEqual([]);
  });

  it('resumes after the server restarts: the agent\'s next message shows once, and the customer can still write', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Rita', 'Restart');
    expect((await alice.accept(chatId)).status).toBe(200);
    await alice.send(chatId, 'Before the restart');
    await msg(page, 'Before the restart').waitFor();
    await srv.restart();
    await alice.login(); // agent tokens do not survive a restart
    await page.locator('#conn.conn-live').waitFor({ timeout: 12_000 });
    await alice.send(chatId, 'After the restart');
    await msg(page, 'After the restart').waitFor();
    await page.locator('#message').fill('Still here');
    await page.locator('#message').press('Enter');
    await agentSees(chatId, 'Still here');
    await page.locator('#transcript li.msg.mine').filter({ hasText: 'Still here' }).waitFor();
    expect(await msg(page, 'Before the restart').count()).toBe(1);
    const idx = await indexes(page);
    expect(new Set(idx).size).toBe(idx.length);
    expect(idx).toEqual([...idx].sort((x, y) => x - y));
    await alice.close(chatId);
    await page.locator('#ended-text').waitFor();
    expect(errors).toEqual([]);
  }, 30_000);

  it('after the agent closed the chat, a file in the transcript can still be downloaded', async () => {
    const errors: string[] = [];
    const { page } = await openCustomer(errors);
    const chatId = await startChat(page, 'Finn', 'File after end');
    expect((await alice.accept(chatId)).status).toBe(200);
    await msg(page, 'Alice joined the chat').waitFor();
    await page.locator('#file').setInputFiles({ name: 'note.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
    const card = page.locator('#transcript li.file').filter({ hasText: 'note.txt' });
    await card.waitFor();
    await alice.close(chatId);
    await page.locator('#ended-text').filter({ hasText: 'This chat has ended.' }).waitFor();
    const button = card.getByRole('button', { name: 'Download note.txt' });
    expect(await button.isVisible()).toBe(true);
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 4000 }), button.click()]);
    expect(download.suggestedFilename()).toBe('note.txt');
    expect(errors).toEqual([]);
  });
});
