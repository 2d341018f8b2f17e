/**
 * The agent desk page (`/desk/`) for the browser tests: a fresh browser context on it (console and page
 * errors collected), signing in, and the locators the tests share.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
export { js } from './chromium.ts';

export interface Desk {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Page errors and console errors seen so far. */
  readonly errors: string[];
}

/** A new context (closed by the caller, see `contexts`) with the desk of `base` loaded. */
export async function openDeskPage(browser: Browser, base: string, contexts: BrowserContext[], width = 1280, height = 800): Promise<Desk> {
  const context = await browser.newContext({ viewport: { width, height } });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.goto(`${base}/desk/`);
  return { context, page, errors };
}

export async function signIn(page: Page, agentId: string, password: string): Promise<void> {
  await page.locator('#agent-id').fill(agentId);
  await page.locator('#password').fill(password);
  await page.locator('#signin-submit').click();
  await page.locator('#desk').waitFor();
  await page.locator('#conn.conn-live').waitFor();
}

export function item(page: Page, list: 'queue' | 'mine' | 'workbin', chatId: string) {
  return page.locator(`#${list}-list [data-chat-id="${chatId}"]`);
}

export function message(page: Page, text: string) {
  return page.locator('.transcript .msg').filter({ hasText: text });
}

