/** How transcript events look on the desk. */
import { h } from './dom.ts';
import { fileSize } from './model.ts';
import type { ChatEvent } from './types.ts';

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function clock(ms: number): string {
  return timeFmt.format(new Date(ms));
}

export function dateTime(ms: number): string {
  return dateTimeFmt.format(new Date(ms));
}

function isSystem(e: ChatEvent): boolean {
  return e.from.participantId === 0 || e.from.type === 'External';
}

function time(e: ChatEvent): HTMLTimeElement {
  return h('time', { datetime: new Date(e.utcTime).toISOString(), title: dateTime(e.utcTime) }, clock(e.utcTime));
}

function side(e: ChatEvent): string {
  if (isSystem(e)) return 'system';
  return e.from.type === 'Client' ? 'customer' : 'agent';
}

function note(e: ChatEvent, cls: string, ...content: Array<Node | string>): HTMLLIElement {
  return h('li', { class: `event ${cls}`, 'data-index': e.index, 'data-type': e.type }, h('span', { class: 'event-text' }, ...content), ' ', time(e));
}

function safeUrl(s: string): string | undefined {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : undefined;
  } catch {
    return undefined;
  }
}

/** Opens a file of the chat (fetched with the agent's token); the button shows what is going on. */
export type FileOpener = (fileId: string, name: string, button: HTMLButtonElement) => void;

/** The list item of one event, or undefined for events shown elsewhere (typing). */
export function renderEvent(e: ChatEvent, myName: string, openFile?: FileOpener): HTMLLIElement | undefined {
  const who = e.from.nickname;
  switch (e.type) {
    case 'Message': {
      if (isSystem(e)) return note(e, 'system', e.text ?? '');
      const s = side(e);
      const mine = s === 'agent' && who === myName;
      return h(
        'li',
        { class: `msg ${s}${mine ? ' mine' : ''}`, 'data-index': e.index, 'data-type': e.type },
        h('div', { class: 'meta' }, h('span', { class: 'who' }, mine ? `${who} (you)` : who), ' ', time(e)),
        h('div', { class: 'bubble' }, e.text ?? ''),
      );
    }
    case 'ParticipantJoined':
      return note(e, 'presence', `${who} joined`);
    case 'ParticipantLeft':
      return note(e, 'presence', `${who} left`);
    case 'Notice':
      if (isSystem(e)) {
        const label = e.messageType === 'IDLE_CONTROL_CLOSE' ? 'Closed for inactivity' : e.messageType === 'IDLE_CONTROL_ALERT' ? 'Inactivity alert' : 'System';
        return note(e, 'system', h('strong', {}, `${label}: `), e.text ?? '');
      }
      return note(e, 'notice', `${who}: ${e.text ?? 'notice'}`);
    case 'CustomNotice':
      return note(e, 'notice', `${who} · ${e.messageType ?? 'notice'}: ${e.text ?? ''}`);
    case 'PushUrl': {
      const href = safeUrl(e.text ?? '');
      return note(e, 'notice', `${who} shared a link: `, href === undefined ? (e.text ?? '') : h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, href));
    }
    case 'NicknameUpdated':
      return note(e, 'presence', `The customer is now called ${e.text ?? who}`);
    case 'FileUploaded': {
      const d = e.userData ?? {};
      const size = fileSize(Number(d['file-size'] ?? NaN));
      const name = d['file-name'] ?? 'unnamed';
      const fileId = d['file-id'];
      let open: HTMLButtonElement | string = '';
      if (openFile !== undefined && fileId !== undefined) {
        const button = h('button', { type: 'button', class: 'open-file', 'aria-label': `Open ${name}` }, 'Open');
        button.addEventListener('click', () => openFile(fileId, name, button));
        open = button;
      }
      return note(
        e,
        'file',
        `${who} sent a file: `,
        h('span', { class: 'file-name' }, name),
        size === '' ? '' : ` (${size})`,
        d['file-description'] === undefined ? '' : ` — ${d['file-description']}`,
        open === '' ? '' : ' ',
        open,
      );
    }
    case 'FileDeleted':
      return note(e, 'file', `${who} deleted the file `, h('span', { class: 'file-name' }, e.userData?.['file-name'] ?? ''));
    case 'TypingStarted':
    case 'TypingStopped':
      return undefined;
    default:
      return note(e, 'notice', `${who}: ${e.type}${e.text === undefined ? '' : ` ${e.text}`}`);
  }
}

/** What a screen reader hears of a new event in a chat that is not on screen. */
export function speak(e: ChatEvent): string | undefined {
  if (e.type === 'Message' && e.from.type === 'Client') return `${e.from.nickname}: ${e.text ?? ''}`;
  if (e.type === 'FileUploaded' && e.from.type === 'Client') return `${e.from.nickname} sent a file`;
  return undefined;
}
