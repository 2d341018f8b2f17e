/**
 * What survives a reload (or a laptop closed for a day): the chat's browser token, the index of the last
 * event seen, the transcript shown so far, and messages typed while offline. Kept in localStorage, so a
 * new tab of the same browser also finds the chat.
 */
import type { ChatEvent } from './types.ts';

export const STORAGE_KEY = 'parley.chat';
/** The most events kept for the reload; older ones are dropped first. */
const MAX_EVENTS = 500;

export interface SavedChat {
  readonly token: string;
  readonly chatId: string;
  readonly nickname: string;
  readonly subject: string;
  /** The highest event index seen; a resume asks for `lastIndex + 1` on. */
  readonly lastIndex: number;
  readonly ended: boolean;
  readonly events: readonly ChatEvent[];
  /** Messages written while offline, sent when the connection is back. */
  readonly outbox: readonly string[];
  /**
   * Messages handed to a connection without an answer yet, or that failed: after a reload they are shown
   * as not sent (with Retry), never sent again by themselves (the first try may have arrived: the chat's
   * events then confirm them).
   */
  readonly unsent: readonly string[];
}

function isEvent(e: unknown): e is ChatEvent {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as { index?: unknown; type?: unknown; from?: { participantId?: unknown } };
  return typeof x.index === 'number' && typeof x.type === 'string' && typeof x.from?.participantId === 'number';
}

export function loadChat(storage: Storage = localStorage): SavedChat | undefined {
  let raw: string | null;
  try {
    raw = storage.getItem(STORAGE_KEY);
  } catch {
    return undefined;
  }
  if (raw === null) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<SavedChat>;
    if (typeof v.token !== 'string' || v.token === '' || typeof v.lastIndex !== 'number') return undefined;
    return {
      token: v.token,
      chatId: typeof v.chatId === 'string' ? v.chatId : '',
      nickname: typeof v.nickname === 'string' ? v.nickname : '',
      subject: typeof v.subject === 'string' ? v.subject : '',
      lastIndex: v.lastIndex,
      ended: v.ended === true,
      events: Array.isArray(v.events) ? v.events.filter(isEvent) : [],
      outbox: Array.isArray(v.outbox) ? v.outbox.filter((t): t is string => typeof t === 'string') : [],
      unsent: Array.isArray(v.unsent) ? v.unsent.filter((t): t is string => typeof t === 'string') : [],
    };
  } catch {
    return undefined;
  }
}

export function saveChat(chat: SavedChat, storage: Storage = localStorage): void {
  const events = chat.events.length > MAX_EVENTS ? chat.events.slice(-MAX_EVENTS) : chat.events;
  try {
    storage.setItem(STORAGE_KEY, JSON.stringify({ ...chat, events }));
  } catch {
    // Storage full or disabled: keep at least the token and position, which a resume needs.
    try {
      storage.setItem(STORAGE_KEY, JSON.stringify({ ...chat, events: [], outbox: [], unsent: [] }));
    } catch {
      /* private mode without storage: the chat lives as long as the tab */
    }
  }
}

export function clearChat(storage: Storage = localStorage): void {
  try {
    storage.removeItem(STORAGE_KEY);
  } catch {
    /* nothing stored */
  }
}
