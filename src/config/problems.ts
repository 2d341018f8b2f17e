/** Configuration problems: their one-line form, the one error that carries them all, and "did you mean". */
import { ParleyError } from '../errors.ts';
import type { ConfigProblem } from './types.ts';

/** `file [section] key: message`, with ` (line N)` when the line is known; empty parts are left out. */
export function formatProblem(p: ConfigProblem): string {
  const section = p.section === '' ? '' : ` [${p.section}]`;
  const key = p.key === '' ? '' : ` ${p.key}`;
  const line = p.line === undefined ? '' : ` (line ${p.line})`;
  return `${p.file}${section}${key}: ${p.message}${line}`;
}

/** The one CONFIG_INVALID error for a non-empty list of problems; `details.problems` holds them. */
export function configInvalid(problems: readonly ConfigProblem[]): ParleyError {
  const n = problems.length;
  const message = [`Invalid configuration (${n} problem${n === 1 ? '' : 's'}):`, ...problems.map(formatProblem)].join('\n');
  return new ParleyError('CONFIG_INVALID', message, { details: { problems: problems.map((p) => ({ ...p })) } });
}

/** Optimal string alignment distance: edits, with a swap of neighbours counting as one. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] as number[];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      row[j] = v;
    }
  }
  return at(a.length, b.length);
}

/** The candidate nearest to `word` (case-insensitive) within `maxDistance` edits; the first wins ties. */
export function closest(word: string, candidates: Iterable<string>, maxDistance = 3): string | undefined {
  let best: string | undefined;
  let bestDistance = maxDistance + 1;
  for (const c of candidates) {
    const dist = editDistance(word.toLowerCase(), c.toLowerCase());
    if (dist < bestDistance) {
      best = c;
      bestDistance = dist;
    }
  }
  return best;
}

/** `unknown key; did you mean "port"?` or just the first part. */
export function unknownWithHint(what: string, suggestion: string | undefined): string {
  return suggestion === undefined ? what : `${what}; did you mean ${suggestion}?`;
}
