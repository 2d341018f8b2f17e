/**
 * Push at a fixed rate (open loop): agent sends are issued on a schedule, message j due at
 * t0 + j / RATE, rotating over CHATS subscribed chats, each issued at (the first scheduler tick after)
 * its due time whatever the earlier sends' replies; the sends go over CONNECTIONS keep-alive connections
 * of the light open-loop client (bench/lib/open-loop.ts), and a send due while every connection is busy
 * waits in the client, in order.
 * Latency = receive time in the receiver process - scheduled send time, so any queueing in this
 * process, the server or the push path counts (no coordinated omission, as in bench/lib/open-loop.ts).
 * Counted over the measured window (after an unrecorded warm-up at the same rate):
 *   - sends/s: sends issued in the window / window; pushes/s: their notifications received in the window;
 *   - lost: sends answered 2xx whose notification was not received within 5 s after the end;
 *   - pass: p99 < 10 ms with RATE >= 5,000/s reached (sends and pushes/s >= 99 % of 5,000) and nothing lost.
 */
import { procCpuMs } from '../lib/load.ts';
import { join } from 'node:path';
import { openLoop } from '../lib/open-loop.ts';
import { explainTail } from '../lib/stalls.ts';
import { latencyStats, pushHealth, reportPushRun, round3, setupPush, type LatencyStats, type PushSetup } from '../lib/push.ts';
import type { BenchContext, LoadSettings, Row, Scenario } from '../lib/types.ts';
import { envNumber } from '../lib/env.ts';

export const CHATS = 1000;
export const CONNECTIONS = 128;
/** The issue-8 target. */
export const TARGET_RATE = 5000;
export const TARGET_P99_MS = 10;
/** Measured messages not received this long after the end of the sends are lost. */
const LOST_AFTER_MS = 5_000;

export function pushRate(): number {
  return envNumber('BENCH_PUSH_RATE', 5000);
}

interface Phase {
  /** Text -> scheduled send time (wall ms), every send issued. */
  readonly scheduled: Map<string, number>;
  /** Texts of the sends answered 2xx. */
  readonly ok: Set<string>;
  /** Write of the send to its connection -> its reply. */
  readonly replyLatency: LatencyStats;
  /** Write time - scheduled time: how late the client itself was (or waited for a free connection). */
  readonly issueLag: LatencyStats;
  readonly statusCodes: Record<string, number>;
  readonly non2xx: number;
  readonly errors: number;
  readonly due: number;
  readonly issuedInWindow: number;
  readonly startWall: number;
  readonly endWall: number;
  readonly lastReplyBytes: number;
}

/** Every send of a phase as the bytes of one HTTP/1.1 agent `send` (JSON body, bearer token), message j to chat (start + j). */
function encodeSends(base: string, setup: PushSetup, prefix: string, count: number, start: number): { encoded: Buffer[]; texts: string[] } {
  const u = new URL(base);
  if (u.hostname !== '127.0.0.1') throw new Error(`benchmark traffic goes to 127.0.0.1 only, not ${u.hostname}`);
  const encoded: Buffer[] = [];
  const texts: string[] = [];
  for (let j = 0; j < count; j++) {
    const chat = setup.chats[(start + j) % setup.chats.length];
    if (chat === undefined) throw new Error('no chat');
    const text = `${prefix} ${j}`;
    const body = JSON.stringify({ text });
    texts.push(text);
    encoded.push(
      Buffer.from(
        `POST /agent/api/chats/${encodeURIComponent(chat.chatId)}/send HTTP/1.1\r\nhost: ${u.host}\r\n` +
          `authorization: Bearer ${chat.agent.token}\r\ncontent-type: application/json\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      ),
    );
  }
  return { encoded, texts };
}

/**
 * Issues `rate * seconds` sends on schedule with the light open-loop client of bench/lib/open-loop.ts (raw
 * keep-alive sockets, requests encoded up front): on a 2-core machine shared with the server, an undici
 * client took a third of a core at 5,000/s and its own event-loop lateness showed as push latency.
 * Resolves once every send has its reply (or error).
 */
async function drive(setup: PushSetup, prefix: string, rate: number, seconds: number, start: number): Promise<Phase> {
  const total = Math.floor(rate * seconds);
  const { encoded, texts } = encodeSends(setup.server.url, setup, prefix, total, start);
  const status = new Int16Array(total);
  const r = await openLoop(setup.server.url, encoded, {
    rate,
    seconds,
    connections: CONNECTIONS,
    start: 0,
    drainMs: 10_000,
    onReply: (j, code) => {
      status[j] = code;
    },
  });
  const scheduled = new Map<string, number>();
  const ok = new Set<string>();
  texts.forEach((text, j) => {
    scheduled.set(text, r.startWall + (j * 1000) / rate);
    const code = status[j] ?? 0;
    if (code >= 200 && code <= 299) ok.add(text);
  });
  return {
    scheduled,
    ok,
    replyLatency: r.latencyFromSend,
    issueLag: r.sendLagFromSchedule,
    statusCodes: r.statusCodes,
    non2xx: r.non2xx,
    errors: r.errors + r.unanswered,
    due: total,
    issuedInWindow: r.sentInWindow,
    startWall: r.startWall,
    endWall: r.startWall + seconds * 1000,
    lastReplyBytes: r.replyBytes,
  };
}

/** Waits until every 2xx-answered message of `phase` arrived, at most `ms` after the phase's end. */
async function drain(setup: PushSetup, phase: Phase, ms: number): Promise<void> {
  await setup.receiver.waitForAll(phase.ok, phase.endWall + ms);
}

export const pushRateScenario = pushRateOn(false);
/** The same with the gateway in its own process (a split deployment: chat server + gateway, as GMS is run). */
export const pushRateSplitScenario = pushRateOn(true);

function pushRateOn(split: boolean): Scenario {
  const tag = split ? 'push-split' : 'push-rate';
  return {
  name: tag,
  budgetSeconds: (load: LoadSettings) => 150 + load.warmupSeconds + load.durationSeconds + 2 * LOST_AFTER_MS / 1000,
  async run(ctx: BenchContext): Promise<Row[]> {
    const rate = pushRate();
    // BENCH_PUSH_TAIL=1: the server logs its event-loop stalls and GC pauses (bench/lib/stalls.ts), and the
    // slow slices of the window are printed with what the server logged meanwhile.
    const stallFile = process.env['BENCH_PUSH_TAIL'] === '1' ? join(ctx.tempDir('parley-stalls-'), 'stalls.log') : undefined;
    const setup = await setupPush(ctx, tag, CHATS, CONNECTIONS, stallFile === undefined ? {} : { BENCH_SERVER_STALLS: stallFile }, { split });
    try {
      const { receiver, server } = setup;
      const clock = await receiver.clockOffset();
      ctx.log(
        `push-rate: Parley ${server.url} (pid ${server.pid}), receiver ${receiver.url} (pid ${receiver.pid}); ${CHATS} chats, ` +
          `${setup.agents.length} agents, set up in ${setup.setupMs} ms; ${rate} sends/s open loop over ${CONNECTIONS} connections; ` +
          `receiver clock offset ${clock.offsetMs} ms (rtt ${clock.rttMs} ms)`,
      );

      let warmLost = 0;
      let warmupMessages = 0;
      if (ctx.load.warmupSeconds > 0) {
        const w = await drive(setup, 'push-rate warm-up', rate, ctx.load.warmupSeconds, 0);
        warmupMessages = w.scheduled.size;
        await drain(setup, w, 10_000);
        for (const t of w.ok) if (!receiver.messages.has(t)) warmLost++;
        if (warmLost + w.errors + w.non2xx > 0) ctx.warn(`push rate warm-up: ${warmLost} lost, ${w.errors} errors, ${w.non2xx} non-2xx`);
      }
      const duplicatesBefore = receiver.duplicates;

      const cpu0 = process.cpuUsage();
      const server0 = procCpuMs(server.pid);
      const receiver0 = procCpuMs(receiver.pid);
      const gateway0 = setup.gateway === undefined ? undefined : procCpuMs(setup.gateway.pid);
      const mono0 = performance.now();
      const phase = await drive(setup, 'push-rate', rate, ctx.load.durationSeconds, warmupMessages);
      const wallMs = performance.now() - mono0;
      const cpu = process.cpuUsage(cpu0);
      const server1 = procCpuMs(server.pid);
      const receiver1 = procCpuMs(receiver.pid);
      const gateway1 = setup.gateway === undefined ? undefined : procCpuMs(setup.gateway.pid);
      const pct = (ms: number) => Math.round((ms / wallMs) * 1000) / 10;
      const cpuOf = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : pct(b - a));

      await drain(setup, phase, LOST_AFTER_MS);
      const health = await pushHealth(server.url);
      const latencies: number[] = [];
      const samples: Array<{ due: number; latency: number }> = [];
      let inWindow = 0;
      let lost = 0;
      let lastReceive = phase.endWall;
      for (const [text, due] of phase.scheduled) {
        const r = receiver.messages.get(text);
        if (r === undefined || r.t > phase.endWall + LOST_AFTER_MS) {
          if (phase.ok.has(text)) lost++;
          continue;
        }
        latencies.push(r.t - due);
        samples.push({ due, latency: r.t - due });
        if (r.t <= phase.endWall) inWindow++;
        if (r.t > lastReceive) lastReceive = r.t;
      }
      const windowS = (phase.endWall - phase.startWall) / 1000;
      const s = latencyStats(latencies);
      const tail = explainTail(samples, phase.startWall, TARGET_P99_MS, stallFile);
      const slow = tail.slices.filter((x) => x.over > 0).sort((a, b) => b.over - a.over);
      ctx.log(
        `push-rate: ${tail.overTotal} messages over ${TARGET_P99_MS} ms, in ${slow.length} of ${tail.slices.length} 100-ms slices; worst: ` +
          slow
            .slice(0, 8)
            .map((x) => `${x.atS} s ${x.over} over (max ${Math.round(x.maxMs)} ms)${x.server.length > 0 ? ` [${x.server.join(', ')}]` : ''}`)
            .join('; '),
      );
      const rs = phase.replyLatency;
      const lag = phase.issueLag;
      const sendsPerSec = phase.issuedInWindow / windowS;
      const pushesPerSec = inWindow / windowS;
      const rateMet = rate >= TARGET_RATE && sendsPerSec >= 0.99 * TARGET_RATE && pushesPerSec >= 0.99 * TARGET_RATE;
      const pass = rateMet && lost === 0 && phase.errors === 0 && phase.non2xx === 0 && s.count > 0 && s.p99 < TARGET_P99_MS;
      const verdict =
        `issue-8 target (p99 < ${TARGET_P99_MS} ms at >= ${TARGET_RATE} pushes/s): ${pass ? 'PASS' : 'FAIL'} at ${rate}/s offered ` +
        `(${Math.round(sendsPerSec)} sends/s, ${Math.round(pushesPerSec)} pushes/s, p99 ${s.p99} ms, lost ${lost}` +
        `${rate < TARGET_RATE ? `; offered rate below the target, p99 ${s.p99 < TARGET_P99_MS ? 'under' : 'over'} ${TARGET_P99_MS} ms` : ''})`;

      if (lost > 0) {
        ctx.warn(
          `!! push rate: ${lost} of ${phase.ok.size} notifications LOST (not received within ${LOST_AFTER_MS / 1000} s after the end of the sends); ` +
            `server outbox depth at that moment: ${String(health['outbox_depth'])}, push counters ${JSON.stringify(health)}`,
        );
      }
      const duplicates = receiver.duplicates - duplicatesBefore;
      const logLines = reportPushRun(ctx, 'push rate', receiver, server, duplicates);
      ctx.log(
        `push-rate: ${phase.scheduled.size} sends at ${rate}/s in ${round3(windowS)} s, ${Math.round(pushesPerSec)} pushes/s received in the window, ` +
          `p50 ${s.p50} ms, p99 ${s.p99} ms, scheduler lag p99 ${lag.p99} ms, lost ${lost}`,
      );
      ctx.log(`${tag}: ${verdict}`);

      return [
        {
          scenario: split ? `push open loop, chat server + gateway (${rate}/s)` : `push open loop (${rate}/s)`,
          description:
            `agent sends issued on schedule at ${rate}/s over ${CHATS} chats and ${CONNECTIONS} connections (open loop); ` +
            `req/s = notifications received per second while sending; latency = receive - scheduled send time`,
          reqPerSec: pushesPerSec,
          latencyMs: { p50: s.p50, p90: s.p90, p99: s.p99, avg: s.avg, max: s.max },
          requests: phase.scheduled.size,
          non2xx: phase.non2xx,
          errors: phase.errors,
          timeouts: lost,
          statusCodes: phase.statusCodes,
          extra: {
            rate,
            connections: CONNECTIONS,
            chats: CHATS,
            agents: setup.agents.length,
            setupMs: setup.setupMs,
            warmupMessages,
            warmupLost: warmLost,
            durationSeconds: round3(windowS),
            due: phase.due,
            sendsIssuedInWindow: phase.issuedInWindow,
            sends2xx: phase.ok.size,
            sendsPerSec: Math.round(sendsPerSec * 10) / 10,
            pushesReceivedInWindow: inWindow,
            pushesReceivedTotal: latencies.length,
            pushesPerSec: Math.round(pushesPerSec * 10) / 10,
            lastReceiveMsAfterEnd: Math.max(0, Math.round(lastReceive - phase.endWall)),
            lost,
            lostAfterMs: LOST_AFTER_MS,
            duplicates,
            pushLatencyMs: s,
            sendReplyLatencyMs: rs,
            schedulerLagMs: lag,
            target: { rate: TARGET_RATE, p99Ms: TARGET_P99_MS, rateMet, pass },
            summary: [verdict],
            lastSendReplyBytes: phase.lastReplyBytes,
            clockCheck: clock,
            cpuPercent: {
              loadGenerator: pct((cpu.user + cpu.system) / 1000),
              server: cpuOf(server0, server1),
              receiver: cpuOf(receiver0, receiver1),
              ...(setup.gateway === undefined ? {} : { gateway: cpuOf(gateway0, gateway1) }),
            },
            deployment: split ? 'split: chat server + gateway processes on one SQLite file' : 'one process (every role)',
            serverPush: health,
            serverLogLines: logLines,
            overTarget: tail.overTotal,
            latencyBySlice: tail.slices,
          },
        },
      ];
    } finally {
      await setup.stop();
    }
  },
  };
}
