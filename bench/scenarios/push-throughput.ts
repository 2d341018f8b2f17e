/**
 * Sustained push throughput: SENDERS agent senders, each a loop `send, await reply, next` over its own
 * chats (sender k owns chats k, k+SENDERS, ...), so SENDERS sends are in flight at all times, for the
 * measured duration after an unrecorded warm-up. Notifications are asynchronous to the send replies, so
 * a backlog in the push path shows as growing latency, not as slower sends. Counted:
 *   - pushes/s: notifications of the measured messages received by the receiver while the senders ran;
 *   - latency p50/p99: receive - send start, for every measured message;
 *   - lost: measured messages answered 2xx whose notification was not received within 5 s after the end.
 */
import { procCpuMs } from '../lib/load.ts';
import { agentSend, latencyStats, pushHealth, reportPushRun, round3, setupPush, wallNow, type PushSetup } from '../lib/push.ts';
import type { BenchContext, LoadSettings, Row, Scenario } from '../lib/types.ts';

export const CHATS = 1000;
/** Measured messages not received this long after the end of the sends are lost. */
const LOST_AFTER_MS = 5_000;

function senderCount(): number {
  const raw = process.env['BENCH_PUSH_SENDERS'];
  if (raw === undefined || raw.trim() === '') return 64;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0 || n > CHATS) throw new Error(`BENCH_PUSH_SENDERS must be an integer 1..${CHATS}, got "${raw}"`);
  return n;
}

interface Phase {
  readonly sent: Map<string, number>;
  readonly replyMs: number[];
  readonly statusCodes: Record<string, number>;
  readonly non2xx: number;
  readonly errors: number;
  readonly startWall: number;
  readonly endWall: number;
  readonly lastReplyBytes: number;
}

/** SENDERS loops for `seconds`; returns send start times of the 2xx-answered messages by text. */
async function drive(setup: PushSetup, prefix: string, senders: number, seconds: number): Promise<Phase> {
  const { pool, chats } = setup;
  const sent = new Map<string, number>();
  const replyMs: number[] = [];
  const statusCodes: Record<string, number> = {};
  let non2xx = 0;
  let errors = 0;
  let lastReplyBytes = 0;
  const startWall = wallNow();
  const stopAt = performance.now() + seconds * 1000;
  const sender = async (k: number) => {
    const mine = chats.filter((_, i) => i % senders === k);
    for (let j = 0; performance.now() < stopAt; j++) {
      const chat = mine[j % mine.length];
      if (chat === undefined) return;
      const text = `${prefix} ${k}-${j}`;
      const t0 = wallNow();
      try {
        const r = await agentSend(pool, chat, text);
        statusCodes[r.status] = (statusCodes[r.status] ?? 0) + 1;
        lastReplyBytes = r.bytes;
        if (r.status >= 200 && r.status <= 299) {
          sent.set(text, t0);
          replyMs.push(wallNow() - t0);
        } else non2xx++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: senders }, (_, k) => sender(k)));
  return { sent, replyMs, statusCodes, non2xx, errors, startWall, endWall: wallNow(), lastReplyBytes };
}

/** Waits until every message of `phase` arrived, at most `ms` after the phase's end (polls every 5 ms). */
async function drain(setup: PushSetup, phase: Phase, ms: number): Promise<boolean> {
  return setup.receiver.waitForAll(phase.sent.keys(), phase.endWall + ms);
}

export const pushThroughput: Scenario = {
  name: 'push-throughput',
  budgetSeconds: (load: LoadSettings) => 150 + load.warmupSeconds + load.durationSeconds,
  async run(ctx: BenchContext): Promise<Row[]> {
    const senders = senderCount();
    const setup = await setupPush(ctx, 'push-throughput', CHATS, senders);
    try {
      const { receiver, server } = setup;
      const clock = await receiver.clockOffset();
      ctx.log(
        `push-throughput: Parley ${server.url} (pid ${server.pid}), receiver ${receiver.url} (pid ${receiver.pid}); ${CHATS} chats, ` +
          `${setup.agents.length} agents, set up in ${setup.setupMs} ms; ${senders} senders; receiver clock offset ${clock.offsetMs} ms (rtt ${clock.rttMs} ms)`,
      );

      let warmLost = 0;
      let warmupMessages = 0;
      if (ctx.load.warmupSeconds > 0) {
        const w = await drive(setup, 'push-throughput warm-up', senders, ctx.load.warmupSeconds);
        warmupMessages = w.sent.size;
        await drain(setup, w, 10_000);
        for (const t of w.sent.keys()) if (!receiver.messages.has(t)) warmLost++;
        if (warmLost + w.errors + w.non2xx > 0) ctx.warn(`push throughput warm-up: ${warmLost} lost, ${w.errors} errors, ${w.non2xx} non-2xx`);
      }
      const duplicatesBefore = receiver.duplicates;

      const cpu0 = process.cpuUsage();
      const server0 = procCpuMs(server.pid);
      const receiver0 = procCpuMs(receiver.pid);
      const mono0 = performance.now();
      const phase = await drive(setup, 'push-throughput', senders, ctx.load.durationSeconds);
      const wallMs = performance.now() - mono0;
      const cpu = process.cpuUsage(cpu0);
      const server1 = procCpuMs(server.pid);
      const receiver1 = procCpuMs(receiver.pid);
      const pct = (ms: number) => Math.round((ms / wallMs) * 1000) / 10;
      const cpuOf = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : pct(b - a));

      await drain(setup, phase, LOST_AFTER_MS);
      // Taken right at the loss deadline: a notification still in the outbox is late, not dropped.
      const health = await pushHealth(server.url);
      const latencies: number[] = [];
      let inWindow = 0;
      let lastReceive = phase.endWall;
      let lost = 0;
      for (const [text, t0] of phase.sent) {
        const r = receiver.messages.get(text);
        if (r === undefined || r.t > phase.endWall + LOST_AFTER_MS) {
          lost++;
          continue;
        }
        latencies.push(r.t - t0);
        if (r.t <= phase.endWall) inWindow++;
        if (r.t > lastReceive) lastReceive = r.t;
      }
      const windowS = (phase.endWall - phase.startWall) / 1000;
      const s = latencyStats(latencies);
      const rs = latencyStats(phase.replyMs);
      const pushesPerSec = inWindow / windowS;
      const sendsPerSec = phase.sent.size / windowS;
      if (lost > 0) {
        ctx.warn(
          `!! push throughput: ${lost} of ${phase.sent.size} notifications LOST (not received within ${LOST_AFTER_MS / 1000} s after the end of the sends); ` +
            `server outbox depth at that moment: ${String(health['outbox_depth'])}, push counters ${JSON.stringify(health)}`,
        );
      }
      const duplicates = receiver.duplicates - duplicatesBefore;
      const logLines = reportPushRun(ctx, 'push throughput', receiver, server, duplicates);
      ctx.log(
        `push-throughput: ${phase.sent.size} sends in ${round3(windowS)} s, ${Math.round(pushesPerSec)} pushes/s received in the window, ` +
          `p50 ${s.p50} ms, p99 ${s.p99} ms, last push received ${Math.round(lastReceive - phase.endWall)} ms after the end, lost ${lost}`,
      );

      return [
        {
          scenario: `push throughput (${senders} senders)`,
          description: `${senders} concurrent agent senders over ${CHATS} chats; req/s = notifications received per second while sending; latency = receive - send start`,
          reqPerSec: pushesPerSec,
          latencyMs: { p50: s.p50, p90: s.p90, p99: s.p99, avg: s.avg, max: s.max },
          requests: phase.sent.size,
          non2xx: phase.non2xx,
          errors: phase.errors,
          timeouts: lost,
          statusCodes: phase.statusCodes,
          extra: {
            senders,
            chats: CHATS,
            agents: setup.agents.length,
            setupMs: setup.setupMs,
            warmupMessages,
            warmupLost: warmLost,
            durationSeconds: round3(windowS),
            sends2xx: phase.sent.size,
            sendsPerSec: Math.round(sendsPerSec * 10) / 10,
            pushesReceivedInWindow: inWindow,
            pushesReceivedTotal: latencies.length,
            lastReceiveMsAfterEnd: Math.max(0, Math.round(lastReceive - phase.endWall)),
            lost,
            lostAfterMs: LOST_AFTER_MS,
            duplicates,
            pushLatencyMs: s,
            sendReplyLatencyMs: rs,
            lastSendReplyBytes: phase.lastReplyBytes,
            clockCheck: clock,
            cpuPercent: { loadGenerator: pct((cpu.user + cpu.system) / 1000), server: cpuOf(server0, server1), receiver: cpuOf(receiver0, receiver1) },
            serverPush: health,
            serverLogLines: logLines,
          },
        },
      ];
    } finally {
      await setup.stop();
    }
  },
};
