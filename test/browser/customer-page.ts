/**
 * The customer chat page (`/chat/`) for the browser tests: a fresh browser context on it (page errors and
 * console errors collected, failed resource loads aside), starting a chat, and the transcript locator.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';

/** Collects the page's errors in `errors` (a failed resource load is an answer the page handles). */
export function watch(errors: string[], page: Page): Page {
  page.setDefaultTimeout(8000);
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  return page;
}

/** A new context (closed by the caller, see `contexts`) with the customer page of `base` loaded. */
export async function openCustomerPage(browser: Browser, base: string, contexts: BrowserContext[], errors: string[]): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 760 }, acceptDownloads: true });
  contexts.push(context);
  const page = watch(errors, await context.newPage());
  await page.goto(`${base}/chat/`);
  return { context, page };
}

/** Starts a chat from the start form; answers its chat id (as the page saved it). */
export async function startChat(page: Page, name: string, subject: string): Promise<string> {
  await page.locator('#name').fill(name);
  await page.locator('#subject').fill(subject);
  await page.locator('#start-submit').click();
  await page.locator('#conn.conn-live').waitFor();
  const saved = JSON.parse((await page.evaluate(`localStorage.getItem('parley.chat')`)) as string) as { chatId: string };
  return saved.chatId;
}

/** A transcript line with this text. */
export function msg(page: Page, text: string) {
  return page.locator('#transcript li').filter({ hasText: text });
}
