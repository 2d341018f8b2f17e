import type { ChatEvent } from './types.ts';

/**
 * What part of the transcript a reply carries.
 * `transcriptPosition` (wire facts §7): 0 = none, 1 = all, n = events with index >= n.
 * When the client gives none, `fallback` decides: refresh and Request Chat return all, other operations none
 * (a real GMS `send` reply without transcriptPosition carries `"messages":[]`, wire facts §1.2).
 */
export type Position = number | 'all' | 'none';

export function eventsFrom(events: readonly ChatEvent[], position: Position): ChatEvent[] {
  if (position === 'none' || position === 0) return [];
  if (position === 'all' || position <= 1) return events.slice();
  const first = events[0];
  if (first === undefined) return [];
  // Events are contiguous by index, so the slice start is computed, not searched.
  const start = position - first.index;
  return start <= 0 ? events.slice() : events.slice(start);
}

/**
 * Parses a transcriptPosition field. Absent or empty gives the fallback; anything but a non-negative
 * integer is reported as `invalid`.
 */
export function parsePosition(raw: string | undefined, fallback: 'all' | 'none'): Position | 'invalid' {
  if (raw === undefined || raw.trim() === '') return fallback;
  const t = raw.trim();
  if (!/^\d{1,15}$/.test(t)) return 'invalid';
  return Number(t);
}
