/**
 * The same failure over and over (a store down, a push receiver down, a node out of reach) is logged the
 * first time, then at most once per interval per key, with how many like it were left out meanwhile: a
 * failing dependency under load must not write thousands of lines a second.
 */
export class LogThrottle {
  private readonly last = new Map<string, { until: number; suppressed: number }>();

  constructor(
    private readonly everyMs = 10_000,
    private readonly now: () => number = Date.now,
    /** Keys remembered at most (a key per push URL or node is a handful; this only guards memory). */
    private readonly maxKeys = 1000,
  ) {}

  /**
   * Runs `write` when a line for `key` is due now, with the fields to add to it: `{ suppressed }`, the number
   * of lines left out since the last one, when there were any.
   */
  log(key: string, write: (extra: { suppressed?: number }) => void): void {
    const t = this.now();
    const s = this.last.get(key);
    if (s !== undefined && t < s.until) {
      s.suppressed++;
      return;
    }
    if (s === undefined && this.last.size >= this.maxKeys) this.last.clear();
    this.last.set(key, { until: t + this.everyMs, suppressed: 0 });
    const suppressed = s?.suppressed ?? 0;
    write(suppressed > 0 ? { suppressed } : {});
  }
}
