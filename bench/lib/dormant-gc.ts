/**
 * Preload of the dormant suite's Parley child (`node --expose-gc --import tsx --import bench/lib/dormant-gc.ts ...`):
 * on SIGUSR2 it runs a full garbage collection and prints one line on stdout,
 * `DORMANT-GC {"rss":..,"heapUsed":..,"heapTotal":..,"external":..,"arrayBuffers":..,"gcMs":..}`, so that the
 * harness reads the RSS of what is really held rather than of garbage not yet collected.
 */
const gc = (globalThis as { gc?: () => void }).gc;

process.on('SIGUSR2', () => {
  const t0 = performance.now();
  gc?.();
  const gcMs = Math.round((performance.now() - t0) * 10) / 10;
  const m = process.memoryUsage();
  const line = { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, gcMs, gc: gc !== undefined };
  process.stdout.write(`DORMANT-GC ${JSON.stringify(line)}\n`);
});
