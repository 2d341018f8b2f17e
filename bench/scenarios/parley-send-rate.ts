/**
 * Parley `send` at the issue-8 target rate, open loop: send j is due at t0 + j / RATE (default 10,000/s,
 * BENCH_SEND_RATE), rotating over CHATS chats opened beforehand, over CONNECTIONS keep-alive connections of
 * the light client of bench/lib/open-loop.ts; latency from each send's scheduled time (no coordinated
 * omission). The `parley send` row measures the most the server does with 100 connections in a closed
 * loop; this one measures the target as stated: 10,000 durable sends/s, p99 under 25 ms.
 */
import { encodeRequests, openLoop } from '../lib/open-loop.ts';
import { createChats, identityForm, mapLimit, opPath, reportServerLog, startParley, syncPosition } from '../lib/parley.ts';
import type { BenchContext, Row, Scenario } from '../lib/types.ts';
import { envNumber } from '../lib/env.ts';

const CHATS = 200;
const CONNECTIONS = 100;
const TARGET_RATE = 10_000;
const TARGET_P99_MS = 25;

function sendRate(): number {
  return envNumber('BENCH_SEND_RATE', TARGET_RATE);
}

export const parleySendRate: Scenario = {
  name: 'parley-send-rate',
  async run(ctx: BenchContext): Promise<Row[]> {
    const rate = sendRate();
    const server = await startParley(ctx);
    try {
      const chats = await createChats(server.url, CHATS);
      await mapLimit(chats, 16, (c) => syncPosition(server.url, c));
      const startPositions = chats.map((c) => c.nextPosition);
      const total = Math.ceil(rate * (ctx.load.warmupSeconds + ctx.load.durationSeconds));
      const requests = Array.from({ length: total }, (_, j) => {
        const c = chats[j % chats.length];
        if (c === undefined) throw new Error('no chat');
        return { path: opPath(c, 'send'), body: `${identityForm(c)}&message=open+loop+${j}` };
      });
      const encoded = encodeRequests(server.url, requests);
      const opts = { rate, connections: CONNECTIONS, drainMs: 10_000, serverPid: server.pid };
      const warm = await openLoop(server.url, encoded, { ...opts, seconds: ctx.load.warmupSeconds, start: 0 });
      const r = await openLoop(server.url, encoded, { ...opts, seconds: ctx.load.durationSeconds, start: warm.next });

      await mapLimit(chats, 16, (c) => syncPosition(server.url, c));
      const stored = chats.reduce((sum, c, i) => sum + c.nextPosition - (startPositions[i] ?? 0), 0);
      const answered2xx = [warm, r].reduce((s, x) => s + Object.entries(x.statusCodes).reduce((t, [code, n]) => (code.startsWith('2') ? t + n : t), 0), 0);
      if (stored < answered2xx) ctx.warn(`parley send open loop: ${stored} messages stored but ${answered2xx} 2xx replies`);
      const l = r.latencyFromSchedule;
      const perSec = r.completedInWindow / r.windowSeconds;
      const pass = rate >= TARGET_RATE && perSec >= 0.99 * TARGET_RATE && r.non2xx === 0 && r.errors === 0 && r.unanswered === 0 && l.p99 < TARGET_P99_MS;
      const verdict = `issue-8 target (${TARGET_RATE} durable sends/s, p99 < ${TARGET_P99_MS} ms): ${pass ? 'PASS' : 'FAIL'} at ${rate}/s offered (${Math.round(perSec)} sends/s answered, p99 ${l.p99} ms)`;
      ctx.log(`parley-send-rate: ${verdict}; server CPU ${String(r.cpuPercent.server)} %, client ${r.cpuPercent.loadGenerator} %`);
      const logLines = reportServerLog(ctx, 'parley send open loop', server);
      return [
        {
          scenario: `parley send, open loop (${rate}/s)`,
          description: `Chat API v2 send at a fixed ${rate}/s over ${CONNECTIONS} connections, rotating over ${CHATS} chats; latency from the scheduled time`,
          reqPerSec: perSec,
          latencyMs: { p50: l.p50, p90: l.p90, p99: l.p99, avg: l.avg, max: l.max },
          requests: r.due,
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.unanswered,
          statusCodes: r.statusCodes,
          extra: {
            rate,
            connections: CONNECTIONS,
            chats: CHATS,
            backlogAtEnd: r.backlogAtEnd,
            latencyFromSend: r.latencyFromSend,
            sendLagFromSchedule: r.sendLagFromSchedule,
            cpuPercent: r.cpuPercent,
            messagesStored: stored,
            target: { rate: TARGET_RATE, p99Ms: TARGET_P99_MS, pass },
            summary: [verdict],
            serverLogLines: logLines,
          },
        },
      ];
    } finally {
      await server.stop();
    }
  },
};
