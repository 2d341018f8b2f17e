/**
 * Benchmark runner: `npm run bench [suite]` (default: every suite in order, `core`, `push`, `pings`, then `ha`).
 *   BENCH_DURATION=<s>   measured seconds per scenario (default 10; 2 with BENCH_QUICK=1)
 *   BENCH_QUICK=1        smoke variant: 1 s warm-up, 2 s measured, results saved as `<suite>-quick`
 *   BENCH_CONNECTIONS=n  concurrent connections (default 100)
 *   BENCH_PUSH_MESSAGES=n  push latency: measured messages (default 2000; 300 with BENCH_QUICK=1)
 *   BENCH_PUSH_SENDERS=n   push throughput: concurrent agent senders (default 64)
 *   BENCH_PUSH_RATE=n      push open loop: agent sends issued per second on schedule (default 5000)
 *   BENCH_PINGS_SESSIONS=n pings: cached sessions (default 100000; 10000 with BENCH_QUICK=1)
 *   BENCH_HA_SESSIONS=n    ha: sessions restored after the node kill (default 10000; 1000 with BENCH_QUICK=1)
 *   BENCH_DORMANT_SESSIONS=n dormant: dormant sessions filled and loaded (default 1000000; 50000 with BENCH_QUICK=1)
 * autocannon runs in this process; every server runs in its own child process on 127.0.0.1. Prints a
 * table, writes bench/results/<ISO-date>-<suite>.json and latest-<suite>.json, and exits 1 if any
 * scenario failed or any request did not get a 2xx. Children and temp dirs are removed on every exit path,
 * and a watchdog ends a run that overstays its time budget.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAllChildren, spawnServer } from './lib/child.ts';
import { machine, machineLine, writeResults } from './lib/results.ts';
import { flagged, latencyMarkdownTable, latencyTextTable, markdownTable, textTable } from './lib/table.ts';
import type { BenchContext, LoadSettings, Row, Scenario } from './lib/types.ts';
import { bare } from './scenarios/bare.ts';
import { parleyRefresh } from './scenarios/parley-refresh.ts';
import { parleySend } from './scenarios/parley-send.ts';
import { parleySendRate } from './scenarios/parley-send-rate.ts';
import { pushLatency } from './scenarios/push-latency.ts';
import { pushThroughput } from './scenarios/push-throughput.ts';
import { pushRate, pushRateScenario, pushRateSplitScenario } from './scenarios/push-rate.ts';
import { pings, pingsSettings } from './scenarios/pings.ts';
import { comparisonMarkdownTable, comparisonTextTable, hasComparison } from './lib/pings.ts';
import { haRestore } from './scenarios/ha-restore.ts';
import { haSends } from './scenarios/ha-sends.ts';
import { haSettings } from './lib/ha.ts';
import { dormant, dormantSettings, dormantSettingsLine } from './scenarios/dormant.ts';
import { envNumber } from './lib/env.ts';

/** Suites: name -> scenarios, run in order. Add a scenario module and list it here. */
const SUITES: Readonly<Record<string, readonly Scenario[]>> = {
  core: [bare, parleySend, parleyRefresh, parleySendRate],
  push: [pushLatency, pushThroughput, pushRateScenario],
  'push-rate': [pushRateScenario],
  'push-split': [pushRateSplitScenario],
  'send-rate': [parleySendRate],
  pings: [pings],
  ha: [haRestore, haSends],
  dormant: [dormant],
};

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_DIR = join(ROOT, 'bench', 'results');


const tempDirs: string[] = [];
function removeTempDirs(): void {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

function cleanupSync(): void {
  killAllChildren();
  removeTempDirs();
}

process.on('exit', cleanupSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping children\n`);
    cleanupSync();
    process.exit(130);
  });
}

function scenarioBudget(s: Scenario, load: LoadSettings): number {
  return s.budgetSeconds?.(load) ?? load.warmupSeconds + load.durationSeconds + 90;
}

/** Settings a suite records besides the load settings. */
function suiteSettings(suiteName: string, quick: boolean): Record<string, unknown> {
  if (suiteName === 'dormant') {
    const d = dormantSettings();
    return { dormantSessions: d.sessions, dormantWakeups: d.wakeups, dormantProfile: d.profile };
  }
  if (suiteName === 'ha') {
    const h = haSettings();
    return { haSessions: h.sessions, haConcurrency: h.concurrency, haCreateConcurrency: h.createConcurrency };
  }
  if (suiteName === 'pings') {
    const p = pingsSettings();
    return { pingsSessions: p.sessions, pingsCreateCapSeconds: p.createCapSeconds, pingsWindowSeconds: p.windowSeconds, pingsSeed: p.seed };
  }
  if (suiteName !== 'push' && suiteName !== 'push-rate') return {};
  return {
    pushMessages: Number(process.env['BENCH_PUSH_MESSAGES'] ?? (quick ? 300 : 2000)),
    pushSenders: Number(process.env['BENCH_PUSH_SENDERS'] ?? 64),
    pushRate: pushRate(),
  };
}

async function main(): Promise<number> {
  const requested = process.argv[2];
  // push-rate and send-rate are single scenarios of push and core: not run twice by a plain `npm run bench`.
  const suiteNames = requested === undefined ? Object.keys(SUITES).filter((n) => n !== 'push-rate' && n !== 'send-rate') : [requested];
  for (const name of suiteNames) {
    if (SUITES[name] === undefined) {
      process.stderr.write(`bench: unknown suite "${name}" (known: ${Object.keys(SUITES).join(', ')})\n`);
      return 2;
    }
  }
  const quick = process.env['BENCH_QUICK'] === '1';
  const load: LoadSettings = {
    connections: Math.round(envNumber('BENCH_CONNECTIONS', 100)),
    warmupSeconds: quick ? 1 : 2,
    durationSeconds: envNumber('BENCH_DURATION', quick ? 2 : 10),
  };

  // Watchdog: generous per-scenario budget; a stuck run is killed, not left hanging.
  const budgetSeconds = Math.ceil(
    60 + suiteNames.reduce((sum, name) => sum + (SUITES[name] ?? []).reduce((s, sc) => s + scenarioBudget(sc, load), 0), 0),
  );
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: watchdog: run exceeded ${budgetSeconds} s, killing children and exiting\n`);
    cleanupSync();
    process.exit(124);
  }, budgetSeconds * 1000);

  let code = 0;
  try {
    for (const name of suiteNames) {
      const ok = await runSuite(name, SUITES[name] ?? [], load, quick);
      if (!ok) code = 1;
    }
  } finally {
    clearTimeout(watchdog);
  }
  return code;
}

async function runSuite(suiteName: string, scenarios: readonly Scenario[], load: LoadSettings, quick: boolean): Promise<boolean> {
  const started = performance.now();
  const warnings: string[] = [];
  const ctx: BenchContext = {
    load,
    root: ROOT,
    log: (message) => process.stderr.write(`bench: ${message}\n`),
    spawnServer: (script, opts) => spawnServer(ROOT, script, opts ?? {}),
    tempDir: (prefix) => {
      const d = mkdtempSync(join(tmpdir(), prefix));
      tempDirs.push(d);
      return d;
    },
    warn: (message) => {
      warnings.push(message);
      process.stderr.write(`bench: WARNING ${message}\n`);
    },
  };

  const m = machine();
  const extraSettings = suiteSettings(suiteName, quick);
  const settingsLine =
    suiteName === 'dormant' ? dormantSettingsLine() : suiteName === 'push'
      ? `push latency ${String(extraSettings['pushMessages'])} messages one at a time; push throughput ${String(extraSettings['pushSenders'])} senders; push open loop ${String(extraSettings['pushRate'])} sends/s; ${load.warmupSeconds} s warm-up (unrecorded) + ${load.durationSeconds} s measured`
      : suiteName === 'pings'
        ? `${String(extraSettings['pingsSessions'])} sessions; pings over ${String(extraSettings['pingsWindowSeconds'])} simulated s + ${load.durationSeconds} s real time; ` +
          `short polling ${load.connections} connections, ${load.warmupSeconds} s warm-up (unrecorded) + ${load.durationSeconds} s measured`
        : `${load.connections} connections, ${load.warmupSeconds} s warm-up (unrecorded) + ${load.durationSeconds} s measured per scenario`;
  ctx.log(`suite ${suiteName}${quick ? ' (quick)' : ''}: ${scenarios.map((s) => s.name).join(', ')}`);
  ctx.log(settingsLine);
  ctx.log(`machine: ${machineLine(m)}`);

  const rows: Row[] = [];
  let failed = 0;
  for (const scenario of scenarios) {
    ctx.log(`scenario ${scenario.name} ...`);
    try {
      rows.push(...(await scenario.run(ctx)));
    } catch (e) {
      failed++;
      ctx.warn(`scenario ${scenario.name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
    killAllChildren(); // a scenario must stop its servers; this catches the ones it did not
  }
  removeTempDirs();

  for (const r of rows) if (flagged(r)) warnings.push(`${r.scenario}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts/lost (status codes ${JSON.stringify(r.statusCodes)})`);
  const ok = failed === 0 && !rows.some(flagged);
  const wallSeconds = Math.round((performance.now() - started) / 100) / 10;
  const paths = writeResults(RESULTS_DIR, {
    suite: quick ? `${suiteName}-quick` : suiteName,
    date: new Date().toISOString(),
    machine: m,
    settings: { ...load, quick, ...extraSettings },
    wallSeconds,
    rows,
    warnings,
    ok,
  });

  const detailed = rows.filter((r) => r.latencyMs.p90 !== undefined);
  const compared = hasComparison(rows);
  const summary = rows.flatMap((r) => {
    const lines = r.extra?.['summary'];
    return Array.isArray(lines) ? lines.map(String) : [];
  });
  const out: string[] = ['', `suite ${suiteName}${quick ? ' (quick)' : ''}`, '', textTable(rows)];
  if (detailed.length > 0) out.push('', latencyTextTable(detailed));
  if (compared) out.push('', comparisonTextTable(rows));
  if (summary.length > 0) out.push('', ...summary);
  out.push('', `machine: ${machineLine(m)}`, `${settingsLine}; wall time ${wallSeconds} s`);
  if (warnings.length > 0) out.push('', 'WARNINGS:', ...warnings.map((w) => `  - ${w}`));
  out.push('', 'Markdown:', '', markdownTable(rows));
  if (detailed.length > 0) out.push('', latencyMarkdownTable(detailed));
  if (compared) out.push('', comparisonMarkdownTable(rows));
  out.push('', `results: ${paths.map((p) => relative(ROOT, p)).join(', ')}`, '');
  process.stdout.write(out.join('\n'));
  return ok;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
