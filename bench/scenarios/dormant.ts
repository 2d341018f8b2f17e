/**
 * Issue 8: "1,000,000 concurrent dormant async sessions held by one chat server node in under 1.5 GB RSS,
 * with their timers, and a wake-up of any of them in under 5 ms."
 *
 * 1. Fill: N dormant async sessions (BENCH_DORMANT_SESSIONS, default 1,000,000; 50,000 with BENCH_QUICK=1)
 *    written into a fresh SQLite file straight through the store, in this process: each one built with the
 *    pure core (openSession async with a first message, agentJoin, the agent's message, hold into alice's
 *    workbin) and `store.createSession` 10,000 per group-committed transaction. Fill time and file size.
 * 2. Baseline: bench/server-parley.ts on an empty file, same flags; RSS after a full GC.
 * 3. Load: bench/server-parley.ts on the filled file (`node --expose-gc`, a preload that runs `gc()` on
 *    SIGUSR2; `[receiver] enabled = false`, limit-for-sessions and limit-for-flex-users 2,000,000,
 *    flex-disconnect-timeout 20 days so no disconnect timer fires). Spawn to READY = load time: the node
 *    reads every open session, tracks its timers and parks it. Then GC, VmRSS from /proc, /health sessions
 *    (must be N dormant). Bytes per session = (RSS - RSS of the empty server) / N.
 * 4. Wake-ups: W random dormant sessions (BENCH_DORMANT_WAKEUPS, default 2000; after 50 unmeasured ones to
 *    warm up) each get one customer `send` over Chat API v2, one at a time on one keep-alive connection;
 *    each request is timed from its write to the last byte of the reply (reload from the store, wake-up,
 *    commit). /health must then count W + 50 fewer dormant sessions, and the agent API must show the woken
 *    chats waiting, routed to alice. As a reference, a second `send` to each (now in memory) is timed too.
 *    RSS after the wake-ups (GC first).
 * 5. Optional (BENCH_DORMANT_PROFILE=1): the filled server is started once more under `--cpu-prof` and
 *    stopped at READY; the heaviest functions of its start-up are listed.
 */
import { readFileSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { procCpuMs } from '../lib/load.ts';
import {
  DORMANT_AGENT,
  DORMANT_SERVICE,
  fillDormant,
  grid,
  healthSessions,
  MB,
  num,
  procMemory,
  startDormantServer,
  summarizeProfile,
  TimedClient,
  type DormantServer,
  type SampledChat,
} from '../lib/dormant.ts';
import { latencyStats, round3 } from '../lib/push.ts';
import type { BenchContext, Row, Scenario } from '../lib/types.ts';
import { envInt } from '../lib/env.ts';

/** Issue 8's figures. */
export const TARGET_SESSIONS = 1_000_000;
/** "1.5 GB", read strictly as 1.5 x 10^9 bytes (1430.5 MiB). */
export const TARGET_RSS_BYTES = 1.5e9;
export const TARGET_WAKE_P99_MS = 5;
const WARMUP_WAKEUPS = 50;


export interface DormantSettings {
  readonly sessions: number;
  readonly wakeups: number;
  readonly profile: boolean;
}

export function dormantSettings(): DormantSettings {
  const quick = process.env['BENCH_QUICK'] === '1';
  return {
    sessions: envInt('BENCH_DORMANT_SESSIONS', quick ? 50_000 : TARGET_SESSIONS),
    wakeups: envInt('BENCH_DORMANT_WAKEUPS', 2000),
    profile: process.env['BENCH_DORMANT_PROFILE'] === '1',
  };
}

export function dormantSettingsLine(): string {
  const s = dormantSettings();
  return (
    `${num(s.sessions)} dormant sessions filled through the store; ${num(s.wakeups)} wake-ups (after ${WARMUP_WAKEUPS} unmeasured) one at a time` +
    (s.profile ? '; start-up profiled (--cpu-prof)' : '')
  );
}

/** Generous: the fill and the load are both about linear in N (about 100 us of CPU per session each). */
function loadTimeoutMs(sessions: number): number {
  return 120_000 + sessions * 2;
}

function loadAverage(): number[] {
  return loadavg().map((v) => Math.round(v * 100) / 100);
}

function mib(bytes: number): number {
  return Math.round((bytes / MB) * 10) / 10;
}

interface CpuPressure {
  /** % of the last 10 s / 60 s in which some runnable task waited for a CPU (Linux PSI). */
  readonly some10: number;
  readonly some60: number;
}

/** CPU pressure of the whole machine (/proc/pressure/cpu), or undefined where PSI is not available. */
function cpuPressure(): CpuPressure | undefined {
  try {
    const line = readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0] ?? '';
    const some10 = Number(/avg10=([\d.]+)/.exec(line)?.[1]);
    const some60 = Number(/avg60=([\d.]+)/.exec(line)?.[1]);
    return Number.isFinite(some10) && Number.isFinite(some60) ? { some10, some60 } : undefined;
  } catch {
    return undefined;
  }
}

/** A request slower than this is put down to one cause in the tail analysis. */
const SLOW_MS = 5;
/** Run-queue wait (server main thread + bench thread) from which a request counts as slowed by other processes. */
const CONTENDED_MS = 1;

export interface TailAnalysis {
  /** Requests during which a WAL checkpoint ran, 1 in `everyNth`, and their median latency. */
  readonly checkpoints: number;
  readonly everyNth: number | null;
  readonly checkpointP50: number;
  /** CPU of the server's main thread per request, ms (the work itself, without waiting). */
  readonly serverCpuMs: { readonly p50: number; readonly p99: number; readonly max: number } | null;
  /** Requests over SLOW_MS: with a checkpoint; else with >= CONTENDED_MS run-queue wait; else neither. */
  readonly slow: { readonly total: number; readonly checkpoint: number; readonly runQueue: number; readonly other: number };
  /** Latency of the requests with neither a checkpoint nor >= CONTENDED_MS run-queue wait. */
  readonly quiet: { readonly count: number; readonly p50: number; readonly p99: number; readonly max: number };
}

/** Splits the tail by cause: WAL checkpoints, CPU taken by other processes, the rest. */
function tailAnalysis(run: SendRun): TailAnalysis {
  const ok = run.records;
  const ck = ok.filter((r) => r.checkpoint);
  const waited = (r: RequestRecord) => r.serverWaitMs !== null && r.clientWaitMs !== null && r.serverWaitMs + r.clientWaitMs >= CONTENDED_MS;
  const slow = ok.filter((r) => r.ms > SLOW_MS);
  const quiet = latencyStats(ok.filter((r) => !r.checkpoint && !waited(r)).map((r) => r.ms));
  const cpu = ok.map((r) => r.serverCpuMs).filter((v): v is number => v !== null);
  const cpuStats = latencyStats(cpu);
  return {
    checkpoints: ck.length,
    everyNth: ck.length === 0 ? null : Math.round(ok.length / ck.length),
    checkpointP50: latencyStats(ck.map((r) => r.ms)).p50,
    serverCpuMs: cpu.length === 0 ? null : { p50: cpuStats.p50, p99: cpuStats.p99, max: cpuStats.max },
    slow: {
      total: slow.length,
      checkpoint: slow.filter((r) => r.checkpoint).length,
      runQueue: slow.filter((r) => !r.checkpoint && waited(r)).length,
      other: slow.filter((r) => !r.checkpoint && !waited(r)).length,
    },
    quiet: { count: quiet.count, p50: quiet.p50, p99: quiet.p99, max: quiet.max },
  };
}

/** CPU time and run-queue wait of one thread (Linux /proc/<pid>/task/<tid>/schedstat), ns; undefined elsewhere. */
function schedstat(pid: number, tid = pid): { cpuNs: number; waitNs: number } | undefined {
  try {
    const [cpu, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return cpu === undefined || wait === undefined || !Number.isFinite(cpu) || !Number.isFinite(wait) ? undefined : { cpuNs: cpu, waitNs: wait };
  } catch {
    return undefined;
  }
}

function sendPath(chat: SampledChat): string {
  return `/genesys/2/chat/${encodeURIComponent(DORMANT_SERVICE)}/${encodeURIComponent(chat.chatId)}/send`;
}

/** One successful request. */
interface RequestRecord {
  readonly ms: number;
  /** The main database file changed during the request: a WAL checkpoint ran in its commit. */
  readonly checkpoint: boolean;
  /** CPU of the server's main thread during the request, ms. */
  readonly serverCpuMs: number | null;
  /** Time the server's main thread / this process's main thread waited for a CPU during the request, ms. */
  readonly serverWaitMs: number | null;
  readonly clientWaitMs: number | null;
}

interface SendRun {
  /** Latency of each successful request, ms. */
  readonly latencies: number[];
  readonly records: RequestRecord[];
  readonly statusCodes: Record<string, number>;
  readonly failures: string[];
  readonly seconds: number;
}

/** mtime of the main database file, ns: it changes only when a WAL checkpoint writes pages back into it. */
function dbMtime(dbPath: string): bigint {
  try {
    return statSync(dbPath, { bigint: true }).mtimeNs;
  } catch {
    return -1n;
  }
}

/**
 * One customer `send` to each chat, one at a time; failures are counted, not thrown. The database file's
 * mtime is read before and after each request (outside the timed window) to see which requests ran a WAL
 * checkpoint: SQLite checkpoints inside the commit that pushed the WAL past its auto-checkpoint size.
 */
async function sendEach(client: TimedClient, chats: readonly SampledChat[], text: (i: number) => string, dbPath: string, serverPid: number): Promise<SendRun> {
  const latencies: number[] = [];
  const records: RequestRecord[] = [];
  const statusCodes: Record<string, number> = {};
  const failures: string[] = [];
  const t0 = performance.now();
  for (let i = 0; i < chats.length; i++) {
    const chat = chats[i] as SampledChat;
    const form = new URLSearchParams({ secureKey: chat.secureKey, userId: chat.userId, message: text(i) }).toString();
    try {
      const before = dbMtime(dbPath);
      const srv0 = schedstat(serverPid);
      const me0 = schedstat(process.pid);
      const r = await client.postForm(sendPath(chat), form);
      const me1 = schedstat(process.pid);
      const srv1 = schedstat(serverPid);
      const changed = dbMtime(dbPath) !== before;
      const delta = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : (b - a) / 1e6);
      statusCodes[String(r.status)] = (statusCodes[String(r.status)] ?? 0) + 1;
      let statusCode = -1;
      try {
        statusCode = (JSON.parse(r.body) as { statusCode?: number }).statusCode ?? -1;
      } catch {
        // not JSON: counted as a failure below
      }
      if (r.status === 200 && statusCode === 0) {
        latencies.push(r.ms);
        records.push({
          ms: r.ms,
          checkpoint: changed,
          serverCpuMs: delta(srv0?.cpuNs, srv1?.cpuNs),
          serverWaitMs: delta(srv0?.waitNs, srv1?.waitNs),
          clientWaitMs: delta(me0?.waitNs, me1?.waitNs),
        });
      }
      else failures.push(`${chat.chatId}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    } catch (err) {
      failures.push(`${chat.chatId}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { latencies, records, statusCodes, failures, seconds: (performance.now() - t0) / 1000 };
}

/** The agent API's view: how many of `chats` wait in the queue routed to alice, and alice's workbin size. */
async function agentView(base: string, chats: readonly SampledChat[]): Promise<{ routedToAgent: number; waiting: number; workbin: number }> {
  const login = await fetch(`${base}/agent/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ agentId: DORMANT_AGENT.agentId, password: DORMANT_AGENT.password }),
  });
  const { token } = (await login.json()) as { token?: string };
  if (token === undefined) throw new Error(`agent login failed: HTTP ${login.status}`);
  const res = await fetch(`${base}/agent/api/chats`, { headers: { authorization: `Bearer ${token}` } });
  const o = (await res.json()) as { waiting?: Array<{ chatId: string; state: string; routedTo?: string }>; workbin?: unknown[] };
  const waiting = o.waiting ?? [];
  const routed = new Set(waiting.filter((c) => c.state === 'waiting' && c.routedTo === DORMANT_AGENT.agentId).map((c) => c.chatId));
  return { routedToAgent: chats.filter((c) => routed.has(c.chatId)).length, waiting: waiting.length, workbin: o.workbin?.length ?? -1 };
}

function tailGrid(rows: ReadonlyArray<readonly [string, TailAnalysis]>): { text: string; markdown: string } {
  const ms = (v: number) => num(v, v < 10 ? 2 : 1);
  return grid(
    ['requests', 'server CPU p50 ms', 'server CPU p99 ms', `> ${SLOW_MS} ms`, 'checkpoint', 'run-queue wait', 'other', 'checkpoints', 'checkpoint p50 ms', 'quiet p50 ms', 'quiet p99 ms', 'quiet max ms'],
    rows.map(([name, t]) => [
      name,
      t.serverCpuMs === null ? '?' : ms(t.serverCpuMs.p50),
      t.serverCpuMs === null ? '?' : ms(t.serverCpuMs.p99),
      num(t.slow.total),
      num(t.slow.checkpoint),
      num(t.slow.runQueue),
      num(t.slow.other),
      t.everyNth === null ? '0' : `${t.checkpoints} (1 in ${t.everyNth})`,
      ms(t.checkpointP50),
      ms(t.quiet.p50),
      ms(t.quiet.p99),
      ms(t.quiet.max),
    ]),
  );
}

export const dormant: Scenario = {
  name: 'dormant',
  budgetSeconds: () => {
    const s = dormantSettings();
    // Fill (about 0.2 ms a session on a busy box), the load's own READY timeout, the wake-ups, the profile.
    return 300 + s.sessions * 0.0005 + loadTimeoutMs(s.sessions) / 1000 + s.wakeups * 0.1 + (s.profile ? (2 * loadTimeoutMs(s.sessions)) / 1000 : 0);
  },
  async run(ctx: BenchContext): Promise<Row[]> {
    const opts = dormantSettings();
    const n = opts.sessions;
    const servers: DormantServer[] = [];
    const loadAtStart = loadAverage();
    try {
      // 1. Fill.
      const dbPath = join(ctx.tempDir('parley-dormant-'), 'parley.db');
      ctx.log(`dormant: filling ${dbPath} with ${num(n)} dormant async sessions (load average ${loadAtStart.join(' ')})`);
      const cpu0 = process.cpuUsage();
      const fill = await fillDormant(dbPath, n, opts.wakeups + WARMUP_WAKEUPS, {
        progress: (done, s) => ctx.log(`dormant: ${num(done)} sessions after ${Math.round(s)} s`),
      });
      const fillCpu = process.cpuUsage(cpu0);
      const fillCpuSeconds = (fillCpu.user + fillCpu.system) / 1e6;
      ctx.log(
        `dormant: filled ${num(n)} sessions in ${fill.seconds.toFixed(1)} s (${num(n / fill.seconds)} sessions/s, CPU ${fillCpuSeconds.toFixed(1)} s); ` +
          `file ${num(mib(fill.dbBytes), 1)} MiB (${num(fill.dbBytes / n)} bytes/session)`,
      );
      const warmup = fill.sample.slice(0, WARMUP_WAKEUPS);
      const measured = fill.sample.slice(WARMUP_WAKEUPS);

      // 2. Baseline: the same server on an empty file.
      const empty = await startDormantServer(ctx, join(ctx.tempDir('parley-dormant-empty-'), 'parley.db'), { readyTimeoutMs: 60_000 });
      servers.push(empty);
      await new Promise((r) => setTimeout(r, 1000));
      const emptyMem = await empty.measure();
      ctx.log(`dormant: empty server READY in ${empty.readySeconds.toFixed(2)} s, RSS ${num(mib(emptyMem.rss), 1)} MiB after GC`);
      await empty.stop();
      servers.length = 0;

      // 3. Load.
      ctx.log(`dormant: starting Parley on the filled file ...`);
      const srv = await startDormantServer(ctx, dbPath, { readyTimeoutMs: loadTimeoutMs(n) });
      servers.push(srv);
      const loadCpuSeconds = (procCpuMs(srv.pid) ?? NaN) / 1000;
      const peakAtReady = procMemory(srv.pid);
      ctx.log(`dormant: READY after ${srv.readySeconds.toFixed(1)} s (child CPU ${loadCpuSeconds.toFixed(1)} s)`);
      await new Promise((r) => setTimeout(r, 1000));
      const loaded = await srv.measure();
      const perSession = (loaded.rss - emptyMem.rss) / n;
      const heapPerSession = (loaded.child.heapUsed - emptyMem.child.heapUsed) / n;
      const health0 = await healthSessions(srv.url);
      ctx.log(
        `dormant: RSS ${num(mib(loaded.rss), 1)} MiB after GC (peak ${num(mib(loaded.peak), 1)} MiB), ${num(perSession)} bytes/session; ` +
          `V8 heap used ${num(mib(loaded.child.heapUsed), 1)} MiB of ${num(mib(loaded.child.heapTotal), 1)} MiB (${num(heapPerSession)} bytes/session); ` +
          `/health sessions ${JSON.stringify(health0)}`,
      );
      if (health0.dormant !== n || health0.total !== n) ctx.warn(`dormant: /health counts ${health0.dormant} dormant of ${health0.total} open sessions after loading ${n}`);

      // 4. Wake-ups.
      const client = new TimedClient(srv.url);
      let warm: SendRun;
      let pressure0: CpuPressure | undefined;
      let pressure1: CpuPressure | undefined;
      let wake: SendRun;
      let live: SendRun;
      try {
        warm = await sendEach(client, warmup, (i) => `Warm-up ${i}: any news about my request?`, dbPath, srv.pid);
        if (warm.failures.length > 0) ctx.warn(`dormant: ${warm.failures.length} warm-up wake-ups failed, first: ${warm.failures[0]}`);
        ctx.log(`dormant: ${warmup.length} warm-up wake-ups done; waking ${num(measured.length)} random dormant sessions one at a time ...`);
        pressure0 = cpuPressure();
        wake = await sendEach(client, measured, (i) => `Hello again (${i}), any news about my request?`, dbPath, srv.pid);
        live = await sendEach(client, measured, (i) => `And one more thing (${i}).`, dbPath, srv.pid);
        pressure1 = cpuPressure();
      } finally {
        client.close();
      }
      const woken = warmup.length + measured.length;
      const loadAtWake = loadAverage();
      const health1 = await healthSessions(srv.url);
      const view = await agentView(srv.url, fill.sample);
      const wakeStats = latencyStats(wake.latencies);
      const liveStats = latencyStats(live.latencies);
      const wakeTail = tailAnalysis(wake);
      const liveTail = tailAnalysis(live);
      ctx.log(
        `dormant: wake-up p50 ${wakeStats.p50} ms, p99 ${wakeStats.p99} ms, max ${wakeStats.max} ms; live send p50 ${liveStats.p50} ms, p99 ${liveStats.p99} ms; ` +
          `/health ${JSON.stringify(health1)}; agent API: ${view.routedToAgent} of ${woken} woken chats waiting routed to ${DORMANT_AGENT.agentId}, workbin shows ${view.workbin}`,
      );
      const okWakes = woken - warm.failures.length - wake.failures.length;
      if (wake.failures.length > 0) ctx.warn(`dormant: ${wake.failures.length} wake-ups failed, first: ${wake.failures[0]}`);
      if (live.failures.length > 0) ctx.warn(`dormant: ${live.failures.length} live sends failed, first: ${live.failures[0]}`);
      if (health1.dormant !== n - okWakes || health1.total !== n) {
        ctx.warn(`dormant: after ${woken} wake-ups /health counts ${health1.dormant} dormant, ${health1.active} active, ${health1.total} open (expected ${n - okWakes} dormant, ${n} open)`);
      }
      if (view.routedToAgent !== okWakes) {
        ctx.warn(`dormant: the agent API shows ${view.routedToAgent} of the ${woken} woken chats waiting routed to ${DORMANT_AGENT.agentId}`);
      }
      const after = await srv.measure();
      ctx.log(`dormant: RSS after the wake-ups ${num(mib(after.rss), 1)} MiB`);
      const serverLog = srv.child.stderrLines();
      if (serverLog.length > 0) ctx.warn(`dormant: server logged ${serverLog.length} line(s) on stderr, first: ${serverLog[0]?.slice(0, 300)}`);
      await srv.stop();
      servers.length = 0;

      // 5. Optional start-up profile.
      let profile: ReturnType<typeof summarizeProfile>;
      if (opts.profile) {
        const dir = ctx.tempDir('parley-dormant-prof-');
        ctx.log(`dormant: profiling a second start-up on the filled file (--cpu-prof) ...`);
        const prof = await startDormantServer(ctx, dbPath, { readyTimeoutMs: loadTimeoutMs(n) * 2, extraNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
        servers.push(prof);
        ctx.log(`dormant: profiled start-up READY after ${prof.readySeconds.toFixed(1)} s`);
        await prof.stop();
        servers.length = 0;
        profile = summarizeProfile(dir, ctx.root);
        if (profile === undefined) ctx.warn('dormant: the profiled child wrote no .cpuprofile');
      }

      // Figures, targets, tables.
      const projected = n >= TARGET_SESSIONS ? loaded.rss : emptyMem.rss + perSession * TARGET_SESSIONS;
      // The target is set at 1M sessions; below that a straight-line projection also multiplies fixed costs
      // (V8's young generation and heap slack grow to their size even at 50K), so it is shown, not judged.
      const rssPass = projected < TARGET_RSS_BYTES;
      const wakePass = wakeStats.p99 < TARGET_WAKE_P99_MS && wake.failures.length === 0;
      const atTarget = n >= TARGET_SESSIONS;
      const rssFlag = atTarget ? (rssPass ? 'pass' : 'FAIL') : `n/a (linear: ${num(mib(projected))} MiB at 1M)`;
      const wakeFlag = wakePass ? 'pass' : 'FAIL';
      if (atTarget && !rssPass) ctx.warn(`dormant: RSS target missed: ${num(mib(loaded.rss))} MiB with ${num(n)} sessions >= 1.5 GB (${num(mib(TARGET_RSS_BYTES))} MiB)`);
      if (!wakePass) ctx.warn(`dormant: wake-up target missed: p99 ${wakeStats.p99} ms (target < ${TARGET_WAKE_P99_MS} ms)${wake.failures.length > 0 ? `, ${wake.failures.length} failed` : ''}`);
      const ms = (v: number) => num(v, v < 10 ? 2 : 1);
      const headers = ['sessions', 'fill s', 'DB MiB', 'load s', 'RSS MiB', 'empty MiB', 'bytes/session', 'RSS woken MiB', 'wake p50 ms', 'wake p99 ms', 'wake max ms', 'RSS < 1.5 GB', 'p99 < 5 ms'];
      const cellsRow = [
        num(n),
        num(fill.seconds, 1),
        num(mib(fill.dbBytes)),
        num(srv.readySeconds, 1),
        num(mib(loaded.rss), 1),
        num(mib(emptyMem.rss), 1),
        num(perSession),
        num(mib(after.rss), 1),
        ms(wakeStats.p50),
        ms(wakeStats.p99),
        ms(wakeStats.max),
        rssFlag,
        wakeFlag,
      ];
      const table = grid(headers, [cellsRow]);
      const profileGrid =
        profile === undefined
          ? undefined
          : grid(
              ['start-up frame (self time)', 'ms', '%'],
              profile.frames.map((f) => [f.frame, num(f.selfMs), num(f.selfPercent, 1)]),
            );
      const summary = [
        'dormant sessions (issue 8 target: 1M dormant sessions in < 1.5 GB RSS, wake-up p99 < 5 ms):',
        '',
        table.text,
        '',
        `fill ${num(n / fill.seconds)} sessions/s (bench process CPU ${num(fillCpuSeconds, 1)} s), ${fill.eventsPerSession} events and ${num(fill.dbBytes / n)} bytes of SQLite file per session; ` +
          `load ${num(n / srv.readySeconds)} sessions/s (child CPU ${num(loadCpuSeconds, 1)} s to READY, peak RSS ${num(mib(loaded.peak), 1)} MiB); ` +
          `V8 heap used ${num(mib(loaded.child.heapUsed), 1)} MiB of ${num(mib(loaded.child.heapTotal), 1)} MiB committed (${num(heapPerSession)} bytes/session over the empty server)`,
        `wake-ups: ${num(wake.latencies.length)} ok of ${num(measured.length)} (avg ${ms(wakeStats.avg)} ms, p90 ${ms(wakeStats.p90)} ms); ` +
          `a second send to the same, now live, sessions: p50 ${ms(liveStats.p50)} ms, p99 ${ms(liveStats.p99)} ms; ` +
          `after: /health ${health1.dormant} dormant, ${health1.active} active; agent API: ${view.routedToAgent} of ${woken} waiting, routed to ${DORMANT_AGENT.agentId}`,
        '',
        'where the tail comes from (per request: database file written = WAL checkpoint; run-queue wait of the server and bench main threads from /proc/*/schedstat):',
        '',
        tailGrid([
          ['wake-up', wakeTail],
          ['live send', liveTail],
        ]).text,
        `machine load during the wake-ups: CPU pressure (PSI some avg10) ${pressure0?.some10 ?? '?'} % -> ${pressure1?.some10 ?? '?'} %, load average ${loadAtWake.join(' ')}`,
        ...(profileGrid === undefined || profile === undefined ? [] : ['', `start-up profile (${profile.file}, ${num(profile.totalMs)} ms profiled):`, '', profileGrid.text]),
        '',
        'Markdown (dormant):',
        '',
        table.markdown,
        '',
        tailGrid([
          ['wake-up', wakeTail],
          ['live send', liveTail],
        ]).markdown,
        ...(profileGrid === undefined ? [] : ['', profileGrid.markdown]),
      ];

      const extra = {
        sessions: n,
        wakeups: measured.length,
        warmupWakeups: warmup.length,
        fillSeconds: round3(fill.seconds),
        fillCpuSeconds: round3(fillCpuSeconds),
        fillSessionsPerSecond: Math.round(n / fill.seconds),
        eventsPerSession: fill.eventsPerSession,
        dbBytes: fill.dbBytes,
        dbBytesPerSession: Math.round(fill.dbBytes / n),
        loadSeconds: round3(srv.readySeconds),
        loadCpuSeconds: round3(loadCpuSeconds),
        emptyServer: { readySeconds: round3(empty.readySeconds), rssBytes: emptyMem.rss, heapUsed: emptyMem.child.heapUsed, heapTotal: emptyMem.child.heapTotal },
        rssBytes: loaded.rss,
        rssMiB: mib(loaded.rss),
        peakRssBytes: loaded.peak,
        peakRssAtReadyBytes: peakAtReady?.peak ?? null,
        rssBytesPerSession: Math.round(perSession),
        heap: loaded.child,
        heapBytesPerSession: Math.round(heapPerSession),
        rssAfterWakeupsBytes: after.rss,
        heapAfterWakeups: after.child,
        projectedRssAt1MBytes: Math.round(projected),
        health: { loaded: health0, afterWakeups: health1 },
        agentView: view,
        wakeLatencyMs: wakeStats,
        liveSendLatencyMs: liveStats,
        tail: { wakeups: wakeTail, liveSends: liveTail, slowMs: SLOW_MS, contendedMs: CONTENDED_MS },
        cpuPressure: { beforeWakeups: pressure0 ?? null, afterLiveSends: pressure1 ?? null },
        targets: {
          rssBytes: TARGET_RSS_BYTES,
          wakeP99Ms: TARGET_WAKE_P99_MS,
          rssPass: atTarget ? rssPass : null,
          rssLinearProjectionPass: rssPass,
          wakePass,
        },
        loadAverage: { start: loadAtStart, end: loadAverage() },
        ...(profile === undefined ? {} : { startupProfile: profile }),
        summary,
      };

      const rows: Row[] = [
        {
          scenario: 'dormant wake-up',
          description: `customer send to a random dormant session of ${num(n)} (reload from SQLite + wake-up + commit), one at a time`,
          reqPerSec: wake.latencies.length / wake.seconds,
          latencyMs: { p50: wakeStats.p50, p90: wakeStats.p90, p99: wakeStats.p99, avg: wakeStats.avg, max: wakeStats.max },
          requests: measured.length,
          non2xx: Object.entries(wake.statusCodes).reduce((s, [code, c]) => (code.startsWith('2') ? s : s + c), 0),
          errors: wake.failures.length - Object.entries(wake.statusCodes).reduce((s, [code, c]) => (code.startsWith('2') ? s : s + c), 0),
          timeouts: 0,
          statusCodes: wake.statusCodes,
          extra,
        },
        {
          scenario: 'live send (reference)',
          description: 'a second customer send to each woken session, now held in memory, one at a time',
          reqPerSec: live.latencies.length / live.seconds,
          latencyMs: { p50: liveStats.p50, p90: liveStats.p90, p99: liveStats.p99, avg: liveStats.avg, max: liveStats.max },
          requests: measured.length,
          non2xx: Object.entries(live.statusCodes).reduce((s, [code, c]) => (code.startsWith('2') ? s : s + c), 0),
          errors: live.failures.length - Object.entries(live.statusCodes).reduce((s, [code, c]) => (code.startsWith('2') ? s : s + c), 0),
          timeouts: 0,
          statusCodes: live.statusCodes,
        },
      ];
      return rows;
    } finally {
      for (const s of servers) await s.stop();
    }
  },
};
