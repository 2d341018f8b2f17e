/**
 * What the agent desk offers for a customer's file. The desk's event
 * rendering (web/desk/render.ts) runs here against a tiny stand-in DOM (no browser needed): `h()` only
 * calls document.createElement, setAttribute, addEventListener and append.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatEvent } from '../src/chat/types.ts';

class FakeElement {
  readonly attrs = new Map<string, string>();
  readonly children: Array<FakeElement | string> = [];
  readonly listeners = new Map<string, Array<(ev: unknown) => void>>();
  constructor(readonly tagName: string) {}
  setAttribute(k: string, v: string): void {
    this.attrs.set(k, v);
  }
  getAttribute(k: string): string | null {
    return this.attrs.get(k) ?? null;
  }
  addEventListener(type: string, fn: (ev: unknown) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }
  append(...nodes: Array<FakeElement | string>): void {
    this.children.push(...nodes);
  }
  get textContent(): string {
    return this.children.map((c) => (typeof c === 'string' ? c : c.textContent)).join('');
  }
  /** Every element below this one, depth first. */
  descendants(): FakeElement[] {
    return this.children.flatMap((c) => (typeof c === 'string' ? [] : [c, ...c.descendants()]));
  }
}

const g = globalThis as { document?: unknown };
let saved: unknown;
beforeAll(() => {
  saved = g.document;
  g.document = { createElement: (tag: string) => new FakeElement(tag) };
});
afterAll(() => {
  g.document = saved;
});

/**
 * web/desk/render.ts, loaded by a path this (node-typed) project does not resolve: the page code is
 * type-checked by web/tsconfig.json with the DOM library, which this one does not have.
 */
type Opener = (fileId: string, name: string, button: unknown) => void;
async function deskRender(): Promise<{ renderEvent: (e: ChatEvent, myName: string, open?: Opener) => unknown }> {
  const path = '../web/desk/render.ts';
  return (await import(/* @vite-ignore */ path)) as never;
}

const fileEvent: ChatEvent = {
  index: 3,
  type: 'FileUploaded',
  utcTime: 1_700_000_000_000,
  from: { nickname: 'Ann', participantId: 1, type: 'Client' },
  userData: { 'file-id': 'AbCdEf123456', 'file-name': 'invoice.pdf', 'file-size': '2048', 'file-type': 'application/pdf', 'file-description': 'my invoice' },
} as unknown as ChatEvent;

describe('the agent desk and a customer file', () => {
  it('(checked, right) the desk shows the name, size and description of the file', async () => {
    const { renderEvent } = await deskRender();
    const li = renderEvent(fileEvent, 'Alice') as unknown as FakeElement;
    expect(li.textContent).toContain('invoice.pdf');
    expect(li.textContent).toContain('2.0 KB');
    expect(li.textContent).toContain('my invoice');
  });

  // Regression test (this was a bug, now fixed). Was: web/desk/render.ts:76-87 renders a FileUploaded event as plain text (name, size, description) with
  // no link or button, and nothing in web/desk/*.ts calls `GET /agent/api/chats/{chatId}/files/{fileId}`
  // (grep "files/" in web/desk finds nothing). docs/agent-api.md:18 offers that endpoint "for a chat whose
  // transcript the agent may read", and the customer page has a Download button (web/customer/render.ts:58);
  // on the desk an agent sees "Ann sent a file: invoice.pdf" and has no way to open it. Right: the desk
  // offers a control that fetches the file with the agent's bearer token and hands it to the browser.
  it('the desk offers a way to open the file (a button wired to the opener the desk passes)', async () => {
    const { renderEvent } = await deskRender();
    const opened: string[] = [];
    const li = renderEvent(fileEvent, 'Alice', (fileId, name) => opened.push(`${fileId} ${name}`)) as unknown as FakeElement;
    const controls = li.descendants().filter((el) => el.tagName === 'button' && el.listeners.has('click'));
    expect(controls).toHaveLength(1);
    for (const f of controls[0]?.listeners.get("click") ?? []) f(undefined);
    expect(opened).toEqual(['AbCdEf123456 invoice.pdf']);
  });
});
