/**
 * DOM-free desk state helpers: a transcript that merges events by index (so live frames, catch-up
 * syncs and REST answers can overlap without duplicates), the customer's typing state, and who is
 * offered a waiting chat.
 */
import type { ChatEvent, ChatSummary } from './types.ts';

export interface MergeResult {
  /** Events not seen before, in index order. */
  readonly added: readonly ChatEvent[];
  /** True when every added event went after all events held before (the view can just append). */
  readonly appended: boolean;
}

export class Transcript {
  private readonly list: ChatEvent[] = [];
  private readonly seen = new Set<number>();
  private contiguousUpTo = 0;

  get events(): readonly ChatEvent[] {
    return this.list;
  }

  /** The highest n such that events 1..n are all here: catch up from n + 1. */
  get contiguous(): number {
    return this.contiguousUpTo;
  }

  get lastIndex(): number {
    return this.list.at(-1)?.index ?? 0;
  }

  merge(events: readonly ChatEvent[]): MergeResult {
    const added: ChatEvent[] = [];
    const before = this.lastIndex;
    for (const e of events) {
      if (!Number.isInteger(e.index) || e.index < 1 || this.seen.has(e.index)) continue;
      this.seen.add(e.index);
      added.push(e);
    }
    if (added.length === 0) return { added, appended: true };
    added.sort((a, b) => a.index - b.index);
    const appended = (added[0]?.index ?? 0) > before;
    if (appended) this.list.push(...added);
    else {
      this.list.push(...added);
      this.list.sort((a, b) => a.index - b.index);
    }
    while (this.seen.has(this.contiguousUpTo + 1)) this.contiguousUpTo++;
    return { added, appended };
  }

  /** Is something missing below `index` (a live frame arrived after a gap)? */
  hasGapBefore(index: number): boolean {
    return index > this.contiguousUpTo + 1;
  }
}

export interface Typing {
  readonly participantId: number;
  readonly nickname: string;
  readonly text: string;
}

/** The customer's typing state after an event: TypingStarted sets it, TypingStopped, a message or leaving clear it. */
export function typingAfter(cur: Typing | undefined, e: ChatEvent): Typing | undefined {
  if (e.from.type !== 'Client') return cur;
  switch (e.type) {
    case 'TypingStarted':
      return { participantId: e.from.participantId, nickname: e.from.nickname, text: e.text ?? '' };
    case 'TypingStopped':
    case 'Message':
    case 'ParticipantLeft':
    case 'FileUploaded':
      return undefined;
    case 'NicknameUpdated':
      return cur === undefined ? undefined : { ...cur, nickname: e.from.nickname };
    default:
      return cur;
  }
}

/** The server's rule (routing.offeredTo): a routed waiting chat goes only to its agent until routedUntil. */
export function offeredTo(s: ChatSummary, agentId: string, now: number): boolean {
  if (s.state !== 'waiting') return false;
  return s.routedTo === undefined || s.routedTo === agentId || s.routedUntil === undefined || now >= s.routedUntil;
}

/** "just now", "4 min", "1 h 5 min", "2 d". */
export function since(ms: number): string {
  const min = Math.floor(Math.max(0, ms) / 60_000);
  if (min < 1) return 'just now';
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 24) return min % 60 === 0 ? `${h} h` : `${h} h ${min % 60} min`;
  return `${Math.floor(h / 24)} d`;
}

export function fileSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10 * 1024 ? 1 : 0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
