/** Small DOM helpers. Text always goes in through textContent / text nodes, never as HTML. */

export function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`#${id} is missing from index.html`);
  return el as T;
}

type Child = Node | string | undefined | false;

/** Creates an element with attributes (set as attributes, never as HTML) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, v);
  for (const c of children) if (c !== undefined && c !== false) el.append(c);
  return el;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;

/** Text with its http(s) URLs as links (opened in a new tab, without referrer). */
export function linkified(text: string): DocumentFragment {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let url = m[0];
    const trail = /[.,;:!?)\]]+$/.exec(url);
    if (trail !== null) url = url.slice(0, -trail[0].length);
    const at = m.index;
    let href: string | undefined;
    try {
      const u = new URL(url);
      if (u.protocol === 'http:' || u.protocol === 'https:') href = u.href;
    } catch {
      href = undefined;
    }
    if (href === undefined) continue;
    frag.append(text.slice(last, at));
    frag.append(h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, url));
    last = at + url.length;
  }
  frag.append(text.slice(last));
  return frag;
}

function sameDay(a: Date, b: Date): boolean {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** A <time> for an event: the time of day, with the date when it is not today. */
export function timeOf(utc: number, now = new Date()): HTMLTimeElement {
  const d = new Date(utc);
  const label = sameDay(d, now)
    ? d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });
  return h('time', { datetime: Number.isFinite(utc) ? d.toISOString() : undefined }, Number.isFinite(utc) ? label : '');
}
