/**
 * What part of the transcript a reply carries.
 * `transcriptPosition` (wire facts §7): 0 = none, 1 = all, n = events with index >= n.
 * When the client gives none, `fallback` decides: refresh and Request Chat return all, other operations none
 * (a real GMS `send` reply without transcriptPosition carries `"messages":[]`, wire facts §1.2).
 */
export type Position = number | 'all' | 'none';

/** The first transcript index a reply at `position` carries; undefined when it carries none. */
export function firstWanted(position: Position): number | undefined {
  if (position === 'none' || position === 0) return undefined;
  if (position === 'all') return 1;
  return Math.max(1, position);
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
