/**
 * Where a latency tail comes from. In a server child, `watchStalls(file)` appends one line per event-loop
 * stall (a 1 ms interval timer that fired more than 4 ms late) and per GC pause over 1 ms (every major
 * GC, whatever its length), with wall-clock times:
 *   <t> LAG <ms>            the loop was busy or blocked for <ms>
 *   <t> GC<kind> <ms>       kind as in perf_hooks: 1 minor (scavenge), 2 major, 4 incremental, 8 weak callbacks
 * In the runner, `explainTail()` lines these up with the measured latencies, per 100 ms of the window.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { round3 } from './push.ts';

const wall = (ms: number): string => (performance.timeOrigin + ms).toFixed(1);

export function watchStalls(file: string): void {
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    if (now - last > 4) appendFileSync(file, `${wall(last)} LAG ${(now - last).toFixed(1)}\n`);
    last = now;
  }, 1);
  timer.unref();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
      if (e.duration > 1 || kind !== 1) appendFileSync(file, `${wall(e.startTime)} GC${kind} ${e.duration.toFixed(1)}\n`);
    }
  }).observe({ entryTypes: ['gc'] });
}

export interface TailSlice {
  /** Start of the 100 ms slice, seconds from the window's start. */
  readonly atS: number;
  readonly messages: number;
  readonly maxMs: number;
  /** Messages of the slice over the target. */
  readonly over: number;
  /** Server stalls and GC pauses logged in the slice (and the 50 ms before it), e.g. "LAG 12.4", "GC4 4.4". */
  readonly server: readonly string[];
}

/**
 * Latency per 100 ms slice of the window (by scheduled send time), and for the slices with messages over
 * `overMs`, what the server logged meanwhile (when a stall file was written).
 */
export function explainTail(samples: ReadonlyArray<{ due: number; latency: number }>, startWall: number, overMs: number, stallFile?: string): {
  slices: TailSlice[];
  overTotal: number;
} {
  const events: Array<{ t: number; what: string }> = [];
  if (stallFile !== undefined && existsSync(stallFile)) {
    for (const line of readFileSync(stallFile, 'utf8').split('\n')) {
      const [t, what, ms] = line.split(' ');
      if (t !== undefined && what !== undefined && ms !== undefined && (what !== 'LAG' || Number(ms) > 6) && (what !== 'GC1' || Number(ms) > 3)) {
        events.push({ t: Number(t), what: `${what} ${ms}` });
      }
    }
  }
  const bySlice = new Map<number, number[]>();
  for (const s of samples) {
    const k = Math.floor((s.due - startWall) / 100);
    const list = bySlice.get(k);
    if (list === undefined) bySlice.set(k, [s.latency]);
    else list.push(s.latency);
  }
  let overTotal = 0;
  const slices: TailSlice[] = [];
  for (const [k, list] of [...bySlice].sort((a, b) => a[0] - b[0])) {
    const over = list.filter((l) => l > overMs).length;
    overTotal += over;
    const from = startWall + k * 100;
    slices.push({
      atS: round3(k / 10),
      messages: list.length,
      maxMs: round3(Math.max(...list)),
      over,
      server: over === 0 ? [] : events.filter((e) => e.t >= from - 50 && e.t < from + 100).map((e) => e.what),
    });
  }
  return { slices, overTotal };
}
