/**
 * What the receiver's rare pings cost compared with short polling, on one Parley server, in one run.
 *
 * 1. Sessions: a Parley child (`[receiver] enabled = false`; `[settings] flex-push-on-join = true`, so a
 *    refresh never has a subscription to activate and stays read-only; limit-for-sessions and
 *    limit-for-flex-users raised to 1,000,000 from their defaults of 1000 and 1001) and a
 *    Receiver in this process (src/receiver/receiver.ts) on a temp TokenCache file, a ManualClock and a
 *    counting GatewayClient to the child. N sessions (default 100,000) are created with the receiver's own
 *    `start()`: a Request Chat form POST with the push subscription userData (64 in flight, the client's
 *    pool size), the tokens put in the cache, and the first ping at a random point of `ping-interval`
 *    drawn by start() itself (seeded random). Creation stops early at a time cap; then N is what was made.
 * 2. The cache is closed and reopened and a new Receiver is built on it, as after a restart: its
 *    constructor loads the ping schedule of every cached session.
 * 3. Pings, simulated time: the ManualClock moves through a window (default 120 s) in 1 s steps, with
 *    `await receiver.tick()` after each; the refreshes the receiver sends are counted in the gateway client.
 *    req/s = refreshes / simulated seconds (expected N / ping-interval, about 55.6 at 100K and 1800 s).
 * 4. Pings, real time: for BENCH_DURATION seconds the clock follows the wall clock and tick() runs every
 *    250 ms, as `Receiver.run()` does: real req/s, round-trip latency and the server's CPU at that load.
 * 5. Short polling of the same sessions, every 5 s each: N / 5 req/s demanded (20,000 at 100K), issued
 *    open loop over 100 keep-alive connections (bench/lib/open-loop.ts): refresh with
 *    transcriptPosition = the session's nextPosition, like bench/scenarios/parley-refresh.ts. Warm-up, then
 *    the measured window; achieved req/s, latency from the scheduled time, server CPU.
 */
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/clock.ts';
import { parseConfig } from '../../src/config/load.ts';
import { Receiver, type ReceiverSettings } from '../../src/receiver/receiver.ts';
import { TokenCache } from '../../src/receiver/token-cache.ts';
import { BENCH_SERVICE, identityForm, opPath, postForm, reportServerLog, startParley, type ParleyUnderTest } from '../lib/parley.ts';
import { encodeRequests, openLoop, type OpenLoopResult, type PollRequest } from '../lib/open-loop.ts';
import { CollectingLogger, CountingGateway, CpuWindow, interval, kilo, seededRandom, sleep } from '../lib/pings.ts';
import { latencyStats, round3 } from '../lib/push.ts';
import type { BenchContext, LoadSettings, Row, Scenario } from '../lib/types.ts';
import { envInt } from '../lib/env.ts';

/** The seed's figure: 100K sessions. */
export const REFERENCE_SESSIONS = 100_000;
/** Short polling: each session refreshes this often. */
export const POLL_EVERY_SECONDS = 5;
/** Issue 8: push + rare pings must cost at least this many times less than 5 s short polling. */
export const TARGET_RATIO = 300;
const CREATE_CONCURRENCY = 64;
const POLL_DRAIN_MS = 15_000;
const TICK_MS = 250;

/** The INI the Parley child gets on top of bench/server-parley.ts's built-in config. */
export const PINGS_INI = `
[receiver]
enabled = false
[settings]
flex-push-on-join = true
limit-for-sessions = 1000000
limit-for-flex-users = 1000000
`;


export interface PingsSettings {
  readonly sessions: number;
  readonly createCapSeconds: number;
  readonly windowSeconds: number;
  readonly seed: number;
}

export function pingsSettings(): PingsSettings {
  const quick = process.env['BENCH_QUICK'] === '1';
  return {
    sessions: envInt('BENCH_PINGS_SESSIONS', quick ? 10_000 : REFERENCE_SESSIONS),
    createCapSeconds: envInt('BENCH_PINGS_CREATE_SECONDS', 90),
    windowSeconds: envInt('BENCH_PINGS_WINDOW', quick ? 60 : 120),
    seed: envInt('BENCH_PINGS_SEED', 8),
  };
}

interface ServerHealth {
  readonly sessions?: { readonly total?: number };
  readonly flex_users?: number;
}

/** The server's own count of open and push-subscribed sessions (GET /health). */
async function serverSessions(base: string): Promise<{ open: number | null; flex: number | null }> {
  const res = await fetch(`${base}/health`);
  const body = (await res.json()) as ServerHealth;
  return { open: body.sessions?.total ?? null, flex: body.flex_users ?? null };
}

function loadAverage(): number[] {
  return loadavg().map((v) => Math.round(v * 100) / 100);
}

function num(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export const pings: Scenario = {
  name: 'pings',
  budgetSeconds: (load: LoadSettings) => {
    const s = pingsSettings();
    return 120 + s.createCapSeconds + s.windowSeconds / 4 + 2 * load.durationSeconds + load.warmupSeconds + POLL_DRAIN_MS / 1000;
  },
  async run(ctx: BenchContext): Promise<Row[]> {
    const opts = pingsSettings();
    const config = parseConfig(`[chat.${BENCH_SERVICE}]\n${PINGS_INI}`, 'bench/scenarios/pings.ts', process.env);
    const pingIntervalMs = config.receiver.pingIntervalMs;
    const log = new CollectingLogger();
    const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
    const settings: ReceiverSettings = {
      nodeGroup: config.receiver.nodeGroup,
      pingIntervalMs,
      endedRetentionMs: config.receiver.endedRetentionMs,
      restoreConcurrency: config.receiver.restoreConcurrency,
      random: seededRandom(opts.seed),
      newToken: () => randomBytes(24).toString('base64url'),
      newDeviceId: () => `bench-ping-${randomBytes(12).toString('base64url')}`,
    };
    const cachePath = join(ctx.tempDir('parley-pings-'), 'receiver.db');
    const closers: Array<() => Promise<void> | void> = [];
    let server: ParleyUnderTest | undefined;
    try {
      const loadAtStart = loadAverage();
      server = await startParley(ctx, { BENCH_PARLEY_INI: PINGS_INI });
      const srv = server;
      ctx.log(
        `pings: Parley at ${srv.url} (pid ${srv.pid}); ping-interval ${pingIntervalMs / 1000} s; creating ${num(opts.sessions)} sessions ` +
          `(cap ${opts.createCapSeconds} s); load average ${loadAtStart.join(' ')}`,
      );

      // 1. Sessions, through the receiver's own start().
      const createCache = new TokenCache(cachePath);
      const createGateway = new CountingGateway(srv.url, BENCH_SERVICE, { timeoutMs: 10_000 });
      closers.push(() => createGateway.close(), () => createCache.close());
      const creator = new Receiver(createCache, createGateway, clock, settings, log);
      const createT0 = performance.now();
      const createCpuWindow = new CpuWindow(srv.pid);
      const deadline = createT0 + opts.createCapSeconds * 1000;
      let next = 0;
      let created = 0;
      let lastProgress = createT0;
      let failed = false;
      const worker = async () => {
        while (!failed && next < opts.sessions && performance.now() < deadline) {
          const i = next++;
          try {
            await creator.start({ nickname: `Ping ${i}`, subject: `Ping benchmark session ${i}` });
          } catch (err) {
            failed = true;
            throw err;
          }
          created++;
          if (performance.now() - lastProgress > 10_000) {
            lastProgress = performance.now();
            ctx.log(`pings: ${num(created)} sessions after ${Math.round((lastProgress - createT0) / 1000)} s`);
          }
        }
      };
      await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
      const createMs = performance.now() - createT0;
      const createCpu = createCpuWindow.read();
      const n = created;
      const capped = n < opts.sessions;
      ctx.log(`pings: ${num(n)} sessions in ${round3(createMs / 1000)} s (${Math.round(n / (createMs / 1000))} Request Chat/s)${capped ? ` -- stopped at the ${opts.createCapSeconds} s cap` : ''}`);
      if (capped) ctx.warn(`pings: only ${n} of ${opts.sessions} sessions were created within ${opts.createCapSeconds} s; figures are at N = ${n} and scaled to ${REFERENCE_SESSIONS}`);
      await createGateway.close();
      createCache.close();
      closers.length = 0;
      const atServer = await serverSessions(srv.url);
      if (atServer.open !== n || atServer.flex !== n) {
        ctx.warn(`pings: the server's /health counts ${atServer.open} open and ${atServer.flex} push-subscribed sessions after creating ${n}`);
      }

      // 2. A receiver on the reopened cache, as after a restart.
      const loadT0 = performance.now();
      const cache = new TokenCache(cachePath);
      const gateway = new CountingGateway(srv.url, BENCH_SERVICE, { timeoutMs: 10_000 });
      closers.push(() => gateway.close(), () => cache.close());
      const receiver = new Receiver(cache, gateway, clock, settings, log);
      const loadMs = performance.now() - loadT0;
      if (receiver.sessions !== n) throw new Error(`the reopened token cache holds ${receiver.sessions} sessions, expected ${n}`);
      const t0 = clock.now();
      const schedule = [...cache.all()].map((s) => s.nextPingAt - t0);
      const dueInWindow = schedule.filter((d) => d > 0 && d <= opts.windowSeconds * 1000).length;
      const firstPing = latencyStats(schedule.map((d) => d / 1000));
      ctx.log(`pings: token cache reopened in ${Math.round(loadMs)} ms, ${num(n)} sessions; first pings from ${firstPing.min} s to ${firstPing.max} s, ${dueInWindow} due in the first ${opts.windowSeconds} s`);

      // 3. Pings over simulated time.
      gateway.recording = true;
      const perStep: number[] = [];
      const ffT0 = performance.now();
      const ffCpuWindow = new CpuWindow(srv.pid);
      for (let s = 0; s < opts.windowSeconds; s++) {
        const before = gateway.count('refresh');
        clock.advance(1000);
        await receiver.tick();
        perStep.push(gateway.count('refresh') - before);
      }
      const ffMs = performance.now() - ffT0;
      const ffCpu = ffCpuWindow.read();
      const ffPings = perStep.reduce((a, b) => a + b, 0);
      const ffLatency = latencyStats(gateway.latencies);
      const ffFailures = { failedReplies: gateway.failedReplies, errors: gateway.errors };
      const pingsPerSimSecond = ffPings / opts.windowSeconds;
      const expected = n / (pingIntervalMs / 1000);
      const mean = pingsPerSimSecond;
      const stddev = Math.sqrt(perStep.reduce((a, v) => a + (v - mean) ** 2, 0) / Math.max(1, perStep.length));
      ctx.log(
        `pings: ${ffPings} refreshes over ${opts.windowSeconds} simulated s = ${round3(pingsPerSimSecond)}/s (expected ${round3(expected)}/s); ` +
          `per simulated second min ${Math.min(...perStep)} max ${Math.max(...perStep)}; wall ${Math.round(ffMs)} ms = ${Math.round(ffPings / (ffMs / 1000))} real req/s`,
      );
      if (ffPings !== dueInWindow) ctx.warn(`pings: ${ffPings} refreshes sent in the window, but ${dueInWindow} sessions were due in it`);

      // 4. Pings in real time (the clock follows the wall clock, a tick every 250 ms as Receiver.run() does).
      gateway.resetRecording();
      const rtBefore = gateway.count('refresh');
      const simBase = clock.now();
      const rtCpuWindow = new CpuWindow(srv.pid);
      const rtT0 = performance.now();
      const rtEnd = rtT0 + ctx.load.durationSeconds * 1000;
      for (let k = 1; rtT0 + k * TICK_MS <= rtEnd; k++) {
        await sleep(Math.max(0, rtT0 + k * TICK_MS - performance.now()));
        clock.set(simBase + Math.round(performance.now() - rtT0));
        await receiver.tick();
      }
      const rtMs = performance.now() - rtT0;
      const rtCpu = rtCpuWindow.read();
      const rtServerCpu = rtCpu.server;
      const rtPings = gateway.count('refresh') - rtBefore;
      const rtLatency = latencyStats(gateway.latencies);
      const rtPerSec = rtPings / (rtMs / 1000);
      const rtFailures = { failedReplies: gateway.failedReplies, errors: gateway.errors };
      gateway.recording = false;
      ctx.log(`pings: real time ${round3(rtMs / 1000)} s: ${rtPings} refreshes = ${round3(rtPerSec)}/s, p50 ${rtLatency.p50} ms, p99 ${rtLatency.p99} ms, server CPU ${rtServerCpu ?? '?'} %`);

      // 5. Short polling of the same sessions.
      const requests: PollRequest[] = [];
      for (const s of cache.all()) {
        const chat = { chatId: s.chatId, userId: s.userId, secureKey: s.secureKey, alias: s.alias, nextPosition: s.nextPosition };
        requests.push({ path: opPath(chat, 'refresh'), body: `${identityForm(chat)}&transcriptPosition=${chat.nextPosition}` });
      }
      let probeMessages = 0;
      const probeCount = Math.min(100, requests.length);
      for (let k = 0; k < probeCount; k++) {
        const req = requests[Math.floor((k * requests.length) / probeCount)] as PollRequest;
        const r = await postForm(srv.url + req.path, req.body);
        if (r.status !== 200 || r.body.statusCode !== 0) throw new Error(`probe refresh failed: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
        probeMessages += r.body.messages?.length ?? 0;
      }
      if (probeMessages > 0) ctx.warn(`pings: ${probeCount} probe refreshes at nextPosition returned ${probeMessages} messages, expected none`);
      const demanded = n / POLL_EVERY_SECONDS;
      const encoded = encodeRequests(srv.url, requests);
      const pollOpts = { rate: demanded, connections: ctx.load.connections, drainMs: POLL_DRAIN_MS, serverPid: srv.pid };
      ctx.log(
        `pings: short polling ${num(n)} sessions every ${POLL_EVERY_SECONDS} s = ${num(demanded)} req/s demanded, ${ctx.load.connections} connections, ` +
          `${ctx.load.warmupSeconds} s warm-up + ${ctx.load.durationSeconds} s; load average ${loadAverage().join(' ')}`,
      );
      let start = 0;
      let warmup: OpenLoopResult | undefined;
      if (ctx.load.warmupSeconds > 0) {
        warmup = await openLoop(srv.url, encoded, { ...pollOpts, seconds: ctx.load.warmupSeconds, start });
        start = warmup.next;
      }
      const pollCpuWindow = new CpuWindow(srv.pid);
      let pollCpu: ReturnType<CpuWindow['read']> | undefined;
      const poll = await openLoop(srv.url, encoded, { ...pollOpts, seconds: ctx.load.durationSeconds, start, onWindowEnd: () => (pollCpu = pollCpuWindow.read()) });
      const pollCpuRead = pollCpu ?? pollCpuWindow.read();
      const achieved = poll.completedInWindow / poll.windowSeconds;
      const loadAfter = loadAverage();
      ctx.log(
        `pings: short polling achieved ${num(achieved)} req/s of ${num(demanded)} demanded (backlog at the end ${poll.backlogAtEnd}); latency from schedule ` +
          `p50 ${poll.latencyFromSchedule.p50} ms, p99 ${poll.latencyFromSchedule.p99} ms; CPU server ${pollCpuRead.server ?? '?'} %, ` +
          `load generator ${pollCpuRead.bench} %, other processes ${pollCpuRead.others ?? '?'} %`,
      );
      const busyOthers = [createCpu.others, ffCpu.others, rtCpu.others, pollCpuRead.others].filter((v): v is number => v !== null);
      const noisy = Math.max(0, ...busyOthers);
      if (noisy > 25) {
        ctx.warn(
          `pings: other processes on this machine used up to ${noisy} % of a core during the run (creation ${createCpu.others ?? '?'} %, ` +
            `short polling ${pollCpuRead.others ?? '?'} %; ${cpus().length} CPUs); the figures that depend on CPU are affected`,
        );
      }

      const atServerEnd = await serverSessions(srv.url);
      if (atServerEnd.open !== n) ctx.warn(`pings: the server's /health counts ${atServerEnd.open} open sessions at the end, expected ${n}`);
      const logLines = reportServerLog(ctx, 'pings', srv);
      if (log.collected.length > 0) ctx.warn(`pings: the receiver logged ${log.collected.length} line(s), first: ${log.collected[0]?.slice(0, 300)}`);

      const ratioDemanded = demanded / pingsPerSimSecond;
      const ratioAchieved = achieved / pingsPerSimSecond;
      const scale = REFERENCE_SESSIONS / n;
      const met = ratioDemanded >= TARGET_RATIO;
      if (!met) ctx.warn(`pings: issue-8 target NOT met: 5 s short polling demands ${round3(ratioDemanded)} x the ping load, target >= ${TARGET_RATIO} x`);
      const summary = [
        `short polling demands ${num(demanded)} req/s, pings cost ${num(pingsPerSimSecond, 1)} req/s: ${num(ratioDemanded, 0)} x lower with push + ${interval(pingIntervalMs / 1000)} pings ` +
          `(issue-8 target >= ${TARGET_RATIO} x: ${met ? 'met' : 'NOT MET'}); achieved polling / pings = ${num(ratioAchieved, 0)} x`,
        `short polling: ${num(achieved)} req/s achieved of ${num(demanded)} demanded, server CPU ${pollCpuRead.server ?? '?'} %, load generator ${pollCpuRead.bench} %, ` +
          `other processes ${pollCpuRead.others ?? '?'} % (of one core; ${cpus().length} CPUs)`,
        `pings in real time: ${num(rtPerSec, 1)} req/s for ${round3(rtMs / 1000)} s, server CPU ${rtServerCpu ?? '?'} %; ` +
          `simulated window: ${ffPings} pings in ${opts.windowSeconds} simulated s, sent in ${round3(ffMs / 1000)} s of wall time (${num(ffPings / (ffMs / 1000))} real req/s)`,
        `sessions: ${num(n)} created with Receiver.start() in ${round3(createMs / 1000)} s (${num(n / (createMs / 1000))} Request Chat/s, ${CREATE_CONCURRENCY} in flight)`,
        ...(capped
          ? [`scaled to ${num(REFERENCE_SESSIONS)} sessions: pings ${num(pingsPerSimSecond * scale, 1)} req/s, short polling ${num(demanded * scale)} req/s demanded (the ratio does not depend on N)`]
          : []),
      ];

      const sessionsExtra = {
        sessions: n,
        sessionsRequested: opts.sessions,
        createdWithinCap: !capped,
        createSeconds: round3(createMs / 1000),
        createPerSecond: Math.round(n / (createMs / 1000)),
        createConcurrency: CREATE_CONCURRENCY,
        createCapSeconds: opts.createCapSeconds,
        createCpuPercent: { benchProcess: createCpu.bench, server: createCpu.server, otherProcesses: createCpu.others },
        tokenCacheReopenMs: Math.round(loadMs),
        serverHealthAfterCreation: atServer,
        serverHealthAtEnd: atServerEnd,
      };
      const pingRow: Row = {
        scenario: `pings (${kilo(n)}, ${interval(pingIntervalMs / 1000)})`,
        description:
          `Receiver pings of ${n} cached sessions, ping-interval ${pingIntervalMs / 1000} s: req/s = refreshes the receiver sent over ${opts.windowSeconds} simulated s ` +
          `(ManualClock, 1 s steps, tick() each); latency and server CPU from ${ctx.load.durationSeconds} s in real time (tick every ${TICK_MS} ms)`,
        reqPerSec: pingsPerSimSecond,
        latencyMs: { p50: rtLatency.p50, p99: rtLatency.p99, avg: rtLatency.avg, max: rtLatency.max },
        requests: ffPings,
        non2xx: ffFailures.failedReplies + rtFailures.failedReplies,
        errors: ffFailures.errors + rtFailures.errors,
        timeouts: 0,
        statusCodes: {},
        extra: {
          everySeconds: pingIntervalMs / 1000,
          demandedReqPerSec: expected,
          serverCpuPercent: rtServerCpu,
          timesPings: 1,
          ...sessionsExtra,
          seed: opts.seed,
          simulated: {
            windowSeconds: opts.windowSeconds,
            stepSeconds: 1,
            refreshes: ffPings,
            sessionsDueInWindow: dueInWindow,
            reqPerSimulatedSecond: round3(pingsPerSimSecond),
            perSimulatedSecond: { min: Math.min(...perStep), max: Math.max(...perStep), stddev: round3(stddev) },
            wallSeconds: round3(ffMs / 1000),
            realReqPerSec: Math.round(ffPings / (ffMs / 1000)),
            cpuPercent: { benchProcess: ffCpu.bench, server: ffCpu.server, otherProcesses: ffCpu.others },
            latencyMs: ffLatency,
            ...ffFailures,
          },
          realTime: {
            seconds: round3(rtMs / 1000),
            tickMs: TICK_MS,
            refreshes: rtPings,
            reqPerSec: round3(rtPerSec),
            latencyMs: rtLatency,
            cpuPercent: { benchProcess: rtCpu.bench, server: rtCpu.server, otherProcesses: rtCpu.others },
            ...rtFailures,
          },
          firstPingSeconds: firstPing,
          ...(capped ? { scaledTo100K: { reqPerSec: round3(pingsPerSimSecond * scale) } } : {}),
          receiverLogLines: log.collected.length,
          loadAverageAtStart: loadAtStart,
        },
      };
      const pollRow: Row = {
        scenario: `short polling (${kilo(n)}, ${interval(POLL_EVERY_SECONDS)})`,
        description:
          `The same ${n} sessions each refreshing every ${POLL_EVERY_SECONDS} s (refresh at nextPosition), ${num(demanded)} req/s due open loop over ` +
          `${ctx.load.connections} keep-alive connections; req/s = responses received in the ${ctx.load.durationSeconds} s window; latency from each request's scheduled time`,
        reqPerSec: achieved,
        latencyMs: {
          p50: poll.latencyFromSchedule.p50,
          p99: poll.latencyFromSchedule.p99,
          avg: poll.latencyFromSchedule.avg,
          max: poll.latencyFromSchedule.max,
        },
        requests: poll.completedInWindow,
        non2xx: poll.non2xx,
        errors: poll.errors,
        timeouts: poll.unanswered,
        statusCodes: poll.statusCodes,
        extra: {
          sessions: n,
          everySeconds: POLL_EVERY_SECONDS,
          demandedReqPerSec: demanded,
          serverCpuPercent: pollCpuRead.server,
          timesPings: ratioDemanded,
          achievedTimesPings: ratioAchieved,
          issueEightTarget: { ratio: TARGET_RATIO, met },
          connections: ctx.load.connections,
          warmupSeconds: ctx.load.warmupSeconds,
          warmup: warmup === undefined ? undefined : { due: warmup.due, answered: warmup.completedInWindow + warmup.completedLate, unanswered: warmup.unanswered, errors: warmup.errors },
          durationSeconds: poll.windowSeconds,
          due: poll.due,
          sentInWindow: poll.sentInWindow,
          backlogAtEnd: poll.backlogAtEnd,
          completedLate: poll.completedLate,
          unanswered: poll.unanswered,
          drainSeconds: poll.drainSeconds,
          perSecond: poll.perSecond,
          latencyFromScheduleMs: poll.latencyFromSchedule,
          latencyFromSendMs: poll.latencyFromSend,
          cpuPercent: { loadGenerator: pollCpuRead.bench, server: pollCpuRead.server, otherProcesses: pollCpuRead.others },
          loadAverageAfter: loadAfter,
          replyBytes: poll.replyBytes,
          probe: { refreshes: probeCount, messages: probeMessages },
          ...(capped ? { scaledTo100K: { demandedReqPerSec: demanded * scale } } : {}),
          serverLogLines: logLines,
          summary,
        },
      };
      return [pingRow, pollRow];
    } finally {
      for (const close of closers.splice(0)) {
        try {
          await close();
        } catch {
          // already closed
        }
      }
      await server?.stop();
    }
  },
};
