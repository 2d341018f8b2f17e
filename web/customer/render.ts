/** One transcript event as a list item of the conversation (or nothing for typing notifications). */
import { h, linkified, timeOf } from './dom.ts';
import { formatSize, isAgent, isMine, isSystem } from './model.ts';
import type { ChatEvent } from './types.ts';

export interface RenderContext {
  /** The download button of a file was pressed. */
  download(fileId: string, name: string, button: HTMLButtonElement): void;
}

/** Who wrote it, as shown above a message: "You", the agent's name, or "Parley". */
function author(e: ChatEvent): string {
  if (isMine(e)) return 'You';
  if (isSystem(e)) return 'Automatic message';
  return e.from.nickname || (isAgent(e) ? 'Agent' : 'Participant');
}

function side(e: ChatEvent): string {
  if (isMine(e)) return 'mine';
  if (isSystem(e)) return 'system';
  return 'theirs';
}

function item(e: ChatEvent, cls: string, ...children: Array<Node | string | undefined>): HTMLLIElement {
  const li = h('li', { class: cls, 'data-index': String(e.index), 'data-from': String(e.from.participantId), 'data-time': String(e.utcTime) }, ...children);
  return li;
}

/** A line in the middle: "Alice joined the chat · 10:02". */
function line(e: ChatEvent, text: string | Node, cls = ''): HTMLLIElement {
  return item(e, `event ${cls}`.trim(), h('p', {}, text, ' ', timeOf(e.utcTime)));
}

function message(e: ChatEvent): HTMLLIElement {
  if (isSystem(e)) {
    const warn = e.messageType?.startsWith('IDLE_CONTROL') === true;
    return item(
      e,
      `notice ${warn ? 'warn' : ''}`.trim(),
      h('p', { class: 'notice-text', dir: 'auto' }, linkified(e.text ?? '')),
      h('p', { class: 'meta' }, `${author(e)} · `, timeOf(e.utcTime)),
    );
  }
  return item(
    e,
    `msg ${side(e)}`,
    h('p', { class: 'meta' }, h('span', { class: 'who' }, author(e)), ' ', timeOf(e.utcTime)),
    // dir=auto: each message takes the direction of its own text (Arabic, Hebrew right to left).
    h('div', { class: 'bubble', dir: 'auto' }, linkified(e.text ?? '')),
  );
}

function file(e: ChatEvent, ctx: RenderContext): HTMLLIElement {
  const u = e.userData ?? {};
  const id = u['file-id'] ?? '';
  const name = u['file-name'] ?? 'file';
  const size = formatSize(Number(u['file-size']));
  const ext = (/\.([a-z0-9]{1,5})$/i.exec(name)?.[1] ?? 'file').toUpperCase();
  const button = h('button', { type: 'button', class: 'download', 'aria-label': `Download ${name}` }, 'Download');
  button.addEventListener('click', () => ctx.download(id, name, button));
  const card = h(
    'div',
    { class: 'bubble file-card' },
    h('span', { class: 'file-icon', 'aria-hidden': 'true' }, ext),
    h('span', { class: 'file-info' }, h('span', { class: 'file-name' }, name), h('span', { class: 'file-size' }, size === '' ? 'File' : size)),
    button,
  );
  const li = item(
    e,
    `msg file ${side(e)}`,
    h('p', { class: 'meta' }, h('span', { class: 'who' }, author(e)), ` ${isMine(e) ? 'sent a file' : 'sent you a file'} · `, timeOf(e.utcTime)),
    card,
  );
  li.dataset['fileId'] = id;
  return li;
}

export function renderEvent(e: ChatEvent, ctx: RenderContext): HTMLLIElement | undefined {
  const who = e.from.nickname || 'The agent';
  switch (e.type) {
    case 'Message':
      return message(e);
    case 'Notice':
    case 'CustomNotice':
      if (e.text === undefined || e.text === '') return undefined;
      return isSystem(e) ? message(e) : line(e, linkified(e.text));
    case 'ParticipantJoined':
      if (isMine(e)) return line(e, 'You started the chat');
      return line(e, `${who} joined the chat`, isAgent(e) ? 'join' : '');
    case 'ParticipantLeft':
      if (isMine(e)) return line(e, 'You left the chat');
      return line(e, `${who} left the chat`);
    case 'FileUploaded':
      return file(e, ctx);
    case 'FileDeleted':
      return line(e, `“${e.userData?.['file-name'] ?? 'A file'}” was removed`);
    case 'NicknameUpdated':
      return line(e, isMine(e) ? `Your name is now ${e.text ?? e.from.nickname}` : `An agent is now called ${e.text ?? e.from.nickname}`);
    case 'PushUrl': {
      const frag = document.createDocumentFragment();
      frag.append(`${isMine(e) ? 'You' : who} shared a link: `, linkified(e.text ?? ''));
      return line(e, frag);
    }
    default:
      return undefined;
  }
}

/** What a screen reader hears when the event arrives live, or undefined to stay quiet. */
export function announcement(e: ChatEvent): string | undefined {
  if (isMine(e)) return undefined;
  const who = e.from.nickname || 'The agent';
  switch (e.type) {
    case 'Message':
      return isSystem(e) ? e.text : `${who}: ${e.text ?? ''}`;
    case 'Notice':
    case 'CustomNotice':
      return e.text === undefined || e.text === '' ? undefined : e.text;
    case 'ParticipantJoined':
      return `${who} joined the chat`;
    case 'ParticipantLeft':
      return `${who} left the chat`;
    case 'FileUploaded':
      return `${who} sent you a file: ${e.userData?.['file-name'] ?? ''}`;
    default:
      return undefined;
  }
}

/**
 * Consecutive messages of one author within a few minutes form a group: only the first shows the name
 * and time. Call for an item after it is placed (and for the one after it).
 */
export function group(li: Element | null): void {
  if (!(li instanceof HTMLLIElement) || !li.classList.contains('msg')) return;
  const prev = li.previousElementSibling;
  const joined =
    !li.classList.contains('file') &&
    prev instanceof HTMLLIElement &&
    prev.classList.contains('msg') &&
    !prev.classList.contains('file') &&
    prev.dataset['from'] === li.dataset['from'] &&
    Math.abs(Number(li.dataset['time']) - Number(prev.dataset['time'])) < 3 * 60_000;
  li.classList.toggle('cont', joined);
}
