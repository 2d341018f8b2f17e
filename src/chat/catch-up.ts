/**
 * A stored session document may lag its transcript. Most changes of a chat only append events (a
 * message, typing): the session then moves only in what those events imply, its `lastIndex`, `updatedAt`
 * and `activity`. Rewriting the whole document for that on every message is most of a store's write, so a
 * store may skip it (`ChangeRecord.onlyEventFields`); whoever loads the session folds the later events back
 * in with `catchUp`. Pure.
 */
import { withEvents } from './session.ts';
import type { ActivityTimes, ChatEvent, Session } from './types.ts';

/** The session with the events after its `lastIndex` folded in: the very fold `append` in session.ts applies. */
export const catchUp: (s: Session, events: readonly ChatEvent[]) => Session = withEvents;

const DERIVED = new Set<string>(['lastIndex', 'updatedAt', 'activity']);

function sameActivity(a: ActivityTimes, b: ActivityTimes): boolean {
  return a.base === b.base && a.major === b.major && a.custom === b.custom && a.typing === b.typing && a.other === b.other;
}

/**
 * Is `after` exactly `catchUp(before, events)`, for a waiting or active session? Then a store that holds
 * `before` (or a document `before` was caught up from) and the events can leave the document as it is.
 * Dormant and ended sessions are always written whole: they are listed and parked from the document alone.
 */
export function onlyEventFieldsChanged(before: Session, after: Session, events: readonly ChatEvent[]): boolean {
  if (events.length === 0 || (after.state !== 'active' && after.state !== 'waiting')) return false;
  const a = after as unknown as Record<string, unknown>;
  const b = before as unknown as Record<string, unknown>;
  for (const k in after) if (!DERIVED.has(k) && a[k] !== b[k]) return false;
  for (const k in before) if (!(k in a)) return false;
  const expected = catchUp(before, events);
  return after.lastIndex === expected.lastIndex && after.updatedAt === expected.updatedAt && sameActivity(after.activity, expected.activity);
}
