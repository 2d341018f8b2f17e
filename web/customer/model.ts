/**
 * The conversation as the page knows it: events deduplicated by index and kept in index order, and what
 * follows from them (who is typing, which agents are in the chat). No DOM here.
 */
import { CUSTOMER_ID, type ChatEvent } from './types.ts';

export function isAgent(e: ChatEvent): boolean {
  return e.from.type === 'Agent' || e.from.type === 'Supervisor';
}

export function isMine(e: ChatEvent): boolean {
  return e.from.participantId === CUSTOMER_ID;
}

/** A notice of the chat server itself (idle control and the like): participant 0. */
export function isSystem(e: ChatEvent): boolean {
  return e.from.participantId === 0 || e.messageType?.startsWith('IDLE_CONTROL') === true;
}

export class Conversation {
  private readonly list: ChatEvent[] = [];
  private readonly seen = new Set<number>();

  constructor(events: readonly ChatEvent[] = []) {
    this.add(events);
  }

  get events(): readonly ChatEvent[] {
    return this.list;
  }

  /** The highest index seen (0 before any). */
  get lastIndex(): number {
    return this.list[this.list.length - 1]?.index ?? 0;
  }

  /** Adds what is new; returns the new events in index order (duplicates and repeats are dropped). */
  add(events: readonly ChatEvent[]): ChatEvent[] {
    const fresh: ChatEvent[] = [];
    for (const e of events) {
      if (!Number.isInteger(e.index) || this.seen.has(e.index)) continue;
      this.seen.add(e.index);
      fresh.push(e);
    }
    if (fresh.length === 0) return fresh;
    fresh.sort((a, b) => a.index - b.index);
    const first = fresh[0] as ChatEvent;
    if (first.index > this.lastIndex) this.list.push(...fresh);
    else {
      this.list.push(...fresh);
      this.list.sort((a, b) => a.index - b.index);
    }
    return fresh;
  }

  /** Agents typing now (participantId → nickname): started and not yet stopped, sent or gone. */
  typing(): Map<number, string> {
    const on = new Map<number, string>();
    for (const e of this.list) {
      if (isMine(e) || isSystem(e)) continue;
      const id = e.from.participantId;
      if (e.type === 'TypingStarted') on.set(id, e.from.nickname);
      else if (e.type === 'TypingStopped' || e.type === 'Message' || e.type === 'ParticipantLeft' || e.type === 'FileUploaded') on.delete(id);
      else if (e.type === 'NicknameUpdated' && on.has(id)) on.set(id, e.text ?? e.from.nickname);
    }
    return on;
  }

  /** Agents in the chat now (participantId → nickname), and whether any agent ever joined. */
  agents(): { present: Map<number, string>; everJoined: boolean } {
    const present = new Map<number, string>();
    let everJoined = false;
    for (const e of this.list) {
      if (!isAgent(e)) continue;
      if (e.type === 'ParticipantJoined') {
        present.set(e.from.participantId, e.from.nickname);
        everJoined = true;
      } else if (e.type === 'ParticipantLeft') present.delete(e.from.participantId);
      else if (e.type === 'NicknameUpdated' && present.has(e.from.participantId)) present.set(e.from.participantId, e.text ?? e.from.nickname);
      else if (!present.has(e.from.participantId) && e.type !== 'FileDeleted') {
        // An agent who joined before the oldest event kept (the stored transcript is capped).
        present.set(e.from.participantId, e.from.nickname);
        everJoined = true;
      }
    }
    return { present, everJoined };
  }
}

/** "Alice is typing…", "Alice and Bob are typing…", or '' when nobody is. */
export function typingLine(names: readonly string[]): string {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`;
}

/** "2.5 KB", "40 KB", "1.2 MB". */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${trim(bytes / 1000)} KB`;
  return `${trim(bytes / 1_000_000)} MB`;
}

function trim(n: number): string {
  return n >= 10 ? String(Math.round(n)) : String(Math.round(n * 10) / 10);
}
