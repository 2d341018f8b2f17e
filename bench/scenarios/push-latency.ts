/**
 * Push latency: one agent message at a time. For each message the time is taken just before the agent
 * `send` request is issued; the receiver (another process) takes the time when the notification's body
 * has been read. Latency = receive - send start, in wall-clock ms. The next message goes out once both
 * the send reply and the notification are in. Messages rotate over CHATS subscribed chats.
 */
import { procCpuMs } from '../lib/load.ts';
import { agentSend, latencyStats, pushHealth, reportPushRun, round3, setupPush, wallNow } from '../lib/push.ts';
import type { BenchContext, LoadSettings, Row, Scenario } from '../lib/types.ts';
import { envInt } from '../lib/env.ts';

export const CHATS = 250;
/** A notification not received this long after its send started is counted as lost. */
const LOST_AFTER_MS = 5_000;

function messageCount(): number {
  return envInt('BENCH_PUSH_MESSAGES', process.env['BENCH_QUICK'] === '1' ? 300 : 2000);
}

export const pushLatency: Scenario = {
  name: 'push-latency',
  budgetSeconds: (_load: LoadSettings) => 120 + (messageCount() * LOST_AFTER_MS) / 1000 / 50,
  async run(ctx: BenchContext): Promise<Row[]> {
    const total = messageCount();
    const warmup = process.env['BENCH_QUICK'] === '1' ? 100 : CHATS;
    const setup = await setupPush(ctx, 'push-latency', CHATS, 4);
    try {
      const { receiver, server, pool, chats } = setup;
      const clock = await receiver.clockOffset();
      ctx.log(
        `push-latency: Parley ${server.url} (pid ${server.pid}), receiver ${receiver.url} (pid ${receiver.pid}); ${CHATS} chats, ` +
          `${setup.agents.length} agents, set up in ${setup.setupMs} ms; receiver clock offset ${clock.offsetMs} ms (rtt ${clock.rttMs} ms)`,
      );

      let non2xx = 0;
      let errors = 0;
      let lost = 0;
      let replyBytes = 0;
      const statusCodes: Record<string, number> = {};
      const one = async (text: string, i: number) => {
        const chat = chats[i % chats.length];
        if (chat === undefined) throw new Error('no chat');
        const arrived = receiver.waitForText(text, LOST_AFTER_MS);
        const t0 = wallNow();
        let replyAt = Number.NaN;
        try {
          const r = await agentSend(pool, chat, text);
          replyAt = wallNow();
          statusCodes[r.status] = (statusCodes[r.status] ?? 0) + 1;
          replyBytes = r.bytes;
          if (r.status < 200 || r.status > 299) non2xx++;
        } catch {
          errors++;
        }
        const got = await arrived;
        if (got === undefined) lost++;
        return { t0, replyMs: replyAt - t0, pushMs: got === undefined ? undefined : got.t - t0 };
      };

      for (let i = 0; i < warmup; i++) await one(`push-latency warm-up ${i}`, i);
      const warm = { non2xx, errors, lost };
      non2xx = errors = lost = 0;
      for (const k of Object.keys(statusCodes)) delete statusCodes[k];

      const push: number[] = [];
      const reply: number[] = [];
      let pushFirst = 0;
      const cpu0 = process.cpuUsage();
      const server0 = procCpuMs(server.pid);
      const receiver0 = procCpuMs(receiver.pid);
      const started = performance.now();
      for (let i = 0; i < total; i++) {
        const r = await one(`push-latency ${i}`, i);
        if (r.pushMs !== undefined) push.push(r.pushMs);
        if (Number.isFinite(r.replyMs)) reply.push(r.replyMs);
        if (r.pushMs !== undefined && r.pushMs < r.replyMs) pushFirst++;
      }
      const wallMs = performance.now() - started;
      const cpu = process.cpuUsage(cpu0);
      const server1 = procCpuMs(server.pid);
      const receiver1 = procCpuMs(receiver.pid);
      const pct = (ms: number) => Math.round((ms / wallMs) * 1000) / 10;
      const cpuOf = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : pct(b - a));

      const s = latencyStats(push);
      const rs = latencyStats(reply);
      const perSec = total / (wallMs / 1000);
      if (lost > 0) ctx.warn(`!! push latency: ${lost} of ${total} notifications LOST (not received within ${LOST_AFTER_MS / 1000} s of their send)`);
      if (warm.lost + warm.errors + warm.non2xx > 0) ctx.warn(`push latency warm-up: ${warm.lost} lost, ${warm.errors} errors, ${warm.non2xx} non-2xx`);
      const health = await pushHealth(server.url);
      const logLines = reportPushRun(ctx, 'push latency', receiver, server, receiver.duplicates);
      ctx.log(`push-latency: ${total} messages in ${Math.round(wallMs)} ms, p50 ${s.p50} ms, p99 ${s.p99} ms, lost ${lost}`);

      return [
        {
          scenario: 'push latency (1 in flight)',
          description: `agent send -> customhttp POST received by a separate receiver process; one message at a time over ${CHATS} chats; req/s = messages/s`,
          reqPerSec: perSec,
          latencyMs: { p50: s.p50, p90: s.p90, p99: s.p99, avg: s.avg, max: s.max },
          requests: total,
          non2xx,
          errors,
          timeouts: lost,
          statusCodes,
          extra: {
            messages: total,
            warmupMessages: warmup,
            chats: CHATS,
            agents: setup.agents.length,
            setupMs: setup.setupMs,
            lost,
            lostAfterMs: LOST_AFTER_MS,
            durationSeconds: round3(wallMs / 1000),
            pushLatencyMs: s,
            sendReplyLatencyMs: rs,
            pushBeforeSendReply: pushFirst,
            lastSendReplyBytes: replyBytes,
            receiver: { duplicates: receiver.duplicates, malformed: receiver.malformed, otherNotifications: Object.fromEntries(receiver.others) },
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
