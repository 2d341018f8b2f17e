/**
 * HA: how fast the sessions of a killed chat server node are restored on another node, on PostgreSQL.
 *
 * 1. PostgreSQL (throwaway, fsync off), chat server node 201 (`parley chat-server`, `[node] dead-after = 3`,
 *    `heartbeat-interval = 1`, `[settings] limit-for-sessions = 200000`) and a gateway (`parley gateway`),
 *    each the real CLI in its own process, all on 127.0.0.1.
 * 2. N sessions (BENCH_HA_SESSIONS, default 10,000) through the gateway while 201 is the only node, so
 *    all of them live on 201: Request Chat, then one `send` with a unique text.
 * 3. Node 202 starts (same INI, PARLEY_NODE_APP_DBID=202); the harness waits until the gateway lists it.
 * 4. SIGKILL node 201 (t0). At once, like the receiver's restoreNode() after a node loss, every session is
 *    pinged through the gateway with BENCH_HA_CONCURRENCY (64) in flight: `refresh` with the session's
 *    secureKey, userId, the old alias 201 and transcriptPosition = its nextPosition. statusCode 1 answers
 *    are retried (50 ms, doubling to 1 s); done = statusCode 0 with alias 202.
 * 5. Every transcript is read back through the gateway (alias 202, transcriptPosition=1): the message must be
 *    there. The store must show every session owned by 202.
 *
 * Row: req/s = sessions restored per second (N / time from the kill to the last restore); latency = the
 * per-session time from its first ping to its statusCode-0 answer (retries included). A session that was
 * not restored within the deadline, a statusCode 2 answer, or a lost message fails the row.
 */
import { cpus, loadavg } from 'node:os';
import { BENCH_SERVICE, identityForm, mapLimit, opPath, type BenchChat } from '../lib/parley.ts';
import { clusterIni, reportCliLog, startCli, startPg, waitForNodes, writeIni, type CliChild, type Pg } from '../lib/cluster.ts';
import { FormClient, haSettings, machineBusyMs, num, othersPercent, pct, percentile, queryOnce, sleep, TARGET_SECONDS, TARGET_SESSIONS, textGrid } from '../lib/ha.ts';
import { procCpuMs } from '../lib/load.ts';
import { latencyStats } from '../lib/push.ts';
import type { BenchContext, Row, Scenario } from '../lib/types.ts';

const DEAD = '201';
const SURVIVOR = '202';

interface HaChat extends BenchChat {
  readonly text: string;
}

interface Outcome {
  /** ms from the first ping to the statusCode-0 answer; undefined if never restored. */
  took?: number;
  /** ms from the kill to that answer. */
  sinceKill?: number;
  attempts: number;
  failure?: string;
}

function restoreDeadlineMs(sessions: number): number {
  return 60_000 + sessions * 10;
}

export const haRestore: Scenario = {
  name: 'ha-restore',
  budgetSeconds: () => {
    const s = haSettings();
    // Start-up, creation (2 requests per session), the restore deadline, the transcript check.
    return 180 + s.sessions * 0.03 + restoreDeadlineMs(s.sessions) / 1000;
  },
  async run(ctx: BenchContext): Promise<Row[]> {
    const opts = haSettings();
    const children: CliChild[] = [];
    const clients: FormClient[] = [];
    let pg: Pg | undefined;
    try {
      pg = await startPg(ctx);
      const ini = writeIni(ctx, clusterIni({ pgUrl: pg.url, deadAfter: 3, heartbeatInterval: 1, limitForSessions: 200_000 }));
      // Optional: `node --cpu-prof` of the gateway and of node 202 (written when they stop), one directory each.
      const prof = (name: string) => (opts.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}/${name}`]);

      // 1. Node 201 alone, and the gateway.
      const n201 = await startCli(ctx, 'chat-server', ini, { PARLEY_NODE_APP_DBID: DEAD });
      children.push(n201);
      const gw = await startCli(ctx, 'gateway', ini, {}, prof('gateway'));
      children.push(gw);
      await waitForNodes(gw.url, [DEAD]);
      ctx.log(`ha-restore: node ${DEAD} at ${n201.url} (pid ${n201.pid}), gateway at ${gw.url} (pid ${gw.pid})`);

      // 2. N sessions on 201, one message each.
      const client = new FormClient(gw.url, Math.max(opts.concurrency, opts.createConcurrency));
      clients.push(client);
      const base = `/genesys/2/chat/${BENCH_SERVICE}`;
      const createT0 = performance.now();
      let created = 0;
      const chats = await mapLimit(
        Array.from({ length: opts.sessions }, (_, i) => i),
        opts.createConcurrency,
        async (i): Promise<HaChat> => {
          const r = await client.post(base, new URLSearchParams({ nickname: `HA ${i}`, subject: `HA bench ${i}` }).toString());
          if (r.status !== 200 || r.body.statusCode !== 0) throw new Error(`Request Chat ${i}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
          const b = r.body;
          const text = `ha message ${i} ${(b.chatId ?? '').slice(-8)}`;
          const chat: HaChat = { chatId: b.chatId ?? '', userId: b.userId ?? '', secureKey: b.secureKey ?? '', alias: b.alias ?? '', nextPosition: b.nextPosition ?? 1, text };
          const s = await client.post(opPath(chat, 'send'), `${identityForm(chat)}&${new URLSearchParams({ message: text })}`);
          if (s.status !== 200 || s.body.statusCode !== 0) throw new Error(`send ${i}: HTTP ${s.status} ${JSON.stringify(s.body).slice(0, 300)}`);
          chat.nextPosition = s.body.nextPosition ?? chat.nextPosition;
          if (++created % Math.max(1, Math.round(opts.sessions / 5)) === 0) ctx.log(`ha-restore: ${num(created)} / ${num(opts.sessions)} sessions created`);
          return chat;
        },
      );
      const createMs = performance.now() - createT0;
      const onDead = chats.filter((c) => c.alias === DEAD).length;
      if (onDead !== chats.length) throw new Error(`only ${onDead} of ${chats.length} sessions were created on node ${DEAD}`);
      ctx.log(`ha-restore: ${num(chats.length)} sessions (one message each) on node ${DEAD} in ${num(createMs / 1000, 1)} s (${num(chats.length / (createMs / 1000))} sessions/s)`);

      // 3. The survivor.
      const n202 = await startCli(ctx, 'chat-server', ini, { PARLEY_NODE_APP_DBID: SURVIVOR }, prof('node202'));
      children.push(n202);
      await waitForNodes(gw.url, [DEAD, SURVIVOR]);
      ctx.log(`ha-restore: node ${SURVIVOR} at ${n202.url} (pid ${n202.pid}); killing node ${DEAD} (SIGKILL) and pinging every session`);

      // 4. Kill 201, ping everything through the gateway.
      const cpu0 = { node: procCpuMs(n202.pid), gw: procCpuMs(gw.pid), pg: pg.cpuMs(), runner: process.cpuUsage(), machine: machineBusyMs() };
      const loadAtKill = loadavg().map((v) => Math.round(v * 100) / 100);
      const deadline = performance.now() + restoreDeadlineMs(chats.length);
      const t0 = performance.now();
      await n201.kill();
      const killMs = performance.now() - t0;
      const retried: Record<string, number> = {};
      let transportErrors = 0;
      let lastTransportError = '';
      let done = 0;
      const outcomes = await mapLimit(chats, opts.concurrency, async (chat): Promise<Outcome> => {
        const path = opPath(chat, 'refresh');
        const form = `${identityForm(chat)}&transcriptPosition=${chat.nextPosition}`;
        const start = performance.now();
        let backoff = 50;
        for (let attempts = 1; ; attempts++) {
          try {
            const r = await client.post(path, form);
            if (r.body.statusCode === 0) {
              const now = performance.now();
              if (r.body.alias !== SURVIVOR) return { attempts, failure: `statusCode 0 with alias ${r.body.alias}` };
              if (++done % Math.max(1, Math.round(chats.length / 5)) === 0) ctx.log(`ha-restore: ${num(done)} restored at ${num((now - t0) / 1000, 1)} s`);
              return { attempts, took: now - start, sinceKill: now - t0 };
            }
            if (r.body.statusCode !== 1) return { attempts, failure: `HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 200)}` };
            const key = `${r.status} ${r.body.errors?.[0]?.code ?? ''}`.trim();
            retried[key] = (retried[key] ?? 0) + 1;
          } catch (err) {
            transportErrors++;
            lastTransportError = (err as Error).message;
          }
          if (performance.now() > deadline) return { attempts, failure: 'not restored before the deadline' };
          await sleep(backoff);
          backoff = Math.min(1000, backoff * 2);
        }
      });
      const restored = outcomes.filter((o) => o.took !== undefined);
      const lastMs = Math.max(0, ...restored.map((o) => o.sinceKill ?? 0));
      const wallMs = performance.now() - t0;
      const cpu = {
        node202: pct(diff(procCpuMs(n202.pid), cpu0.node), wallMs),
        gateway: pct(diff(procCpuMs(gw.pid), cpu0.gw), wallMs),
        postgres: pct(diff(pg.cpuMs(), cpu0.pg), wallMs),
        runner: pct(runnerMs(cpu0.runner), wallMs),
        machine: pct(diff(machineBusyMs(), cpu0.machine), wallMs),
        cores: cpus().length,
      };
      // Everything else on the machine (other users' processes compete on a shared box).
      const others = othersPercent(cpu.machine, [cpu.node202, cpu.gateway, cpu.postgres, cpu.runner]);
      // CPU per restored session (ms), which other load on the machine changes much less than the rate.
      const perSession = (p: number | null) => (p === null || chats.length === 0 ? null : Math.round(((p / 100) * wallMs * 1000) / chats.length) / 1000);
      const cpuPerSession = { node202: perSession(cpu.node202), gateway: perSession(cpu.gateway), postgres: perSession(cpu.postgres), runner: perSession(cpu.runner) };
      const cpuPerSessionTotal = Object.values(cpuPerSession).some((v) => v === null)
        ? null
        : Math.round(Object.values(cpuPerSession).reduce<number>((a, v) => a + (v ?? 0), 0) * 1000) / 1000;
      const ceiling = cpuPerSessionTotal === null || cpuPerSessionTotal === 0 ? null : (cpu.cores * 1000) / cpuPerSessionTotal;
      const failures = outcomes.filter((o) => o.failure !== undefined);
      const unrestored = failures.filter((o) => o.failure === 'not restored before the deadline').length;
      for (const f of failures.slice(0, 3)) ctx.warn(`ha-restore: a session failed: ${f.failure}`);
      if (transportErrors > 0) ctx.warn(`ha-restore: ${transportErrors} transport error(s) on the gateway connection, last: ${lastTransportError}`);
      const rate = lastMs > 0 ? restored.length / (lastMs / 1000) : 0;
      ctx.log(`ha-restore: ${num(restored.length)} of ${num(chats.length)} restored, the last ${num(lastMs / 1000, 2)} s after the kill (${num(rate)} sessions/s)`);

      // Per-second timeline of restores since the kill.
      const timeline: number[] = [];
      for (const o of restored) {
        const sec = Math.floor((o.sinceKill ?? 0) / 1000);
        while (timeline.length <= sec) timeline.push(0);
        timeline[sec] = (timeline[sec] ?? 0) + 1;
      }

      // 5. No loss: every transcript through the gateway, now with the new alias; the store's owners.
      const checkT0 = performance.now();
      const lost: string[] = [];
      await mapLimit(chats, opts.concurrency, async (chat) => {
        const r = await client.post(opPath(chat, 'refresh'), `${identityForm({ ...chat, alias: SURVIVOR })}&transcriptPosition=1`);
        const found = r.body.statusCode === 0 && (r.body.messages ?? []).some((m) => (m as { type?: string; text?: string }).type === 'Message' && (m as { text?: string }).text === chat.text);
        if (!found) lost.push(chat.chatId);
      });
      const owners = await queryOnce<{ owner: string; n: string }>(pg.url, 'SELECT owner, count(*) AS n FROM sessions GROUP BY owner ORDER BY owner');
      const ownedBySurvivor = Number(owners.find((o) => o.owner === SURVIVOR)?.n ?? 0);
      ctx.log(`ha-restore: transcripts checked in ${num((performance.now() - checkT0) / 1000, 1)} s: ${lost.length} lost; owners ${owners.map((o) => `${o.owner}=${o.n}`).join(', ')}`);
      if (lost.length > 0) ctx.warn(`ha-restore: ${lost.length} transcript(s) without their message, first ${lost[0]}`);
      if (ownedBySurvivor !== chats.length) ctx.warn(`ha-restore: the store shows ${ownedBySurvivor} of ${chats.length} sessions owned by ${SURVIVOR}`);

      const took = latencyStats(restored.map((o) => o.took ?? 0));
      const since = latencyStats(restored.map((o) => o.sinceKill ?? 0));
      const attempts = latencyStats(outcomes.map((o) => o.attempts));
      const extrapolated = rate > 0 ? TARGET_SESSIONS / rate : Number.POSITIVE_INFINITY;
      // The rate between the 10th and the 90th percentile of restore times: without the cold start of the
      // failover (first requests to the dead node, a survivor's cold JIT) and without the tail.
      const sinceKill = restored.map((o) => o.sinceKill ?? 0);
      const [p10, p90] = [percentile(sinceKill, 10), percentile(sinceKill, 90)];
      const steadyRate = p90 > p10 ? (0.8 * restored.length) / ((p90 - p10) / 1000) : rate;
      const steadyExtrapolated = steadyRate > 0 ? TARGET_SESSIONS / steadyRate : Number.POSITIVE_INFINITY;
      const logLines = [gw, n202].reduce((n, c) => n + reportCliLog(ctx, 'ha-restore', c), 0);
      const retriedTotal = Object.values(retried).reduce((a, b) => a + b, 0);
      const summary = [
        `HA restore on PostgreSQL: ${num(chats.length)} sessions on node ${DEAD}, SIGKILL, each pinged through the gateway (${opts.concurrency} in flight)`,
        ...textGrid(
          ['sessions', 'all restored after kill s', 'sessions/s', 'per-session p50 ms', 'p99 ms', 'since kill p50 s', 'p99 s', 'retried answers', 'lost'],
          [[num(restored.length), num(lastMs / 1000, 2), num(rate), num(took.p50, 1), num(took.p99, 1), num(since.p50 / 1000, 2), num(since.p99 / 1000, 2), num(retriedTotal), num(lost.length)]],
        ).map((l) => `  ${l}`),
        `  CPU during the restore (% of one core): node ${SURVIVOR} ${cpu.node202 ?? '?'} %, gateway ${cpu.gateway ?? '?'} %, PostgreSQL ${cpu.postgres ?? '?'} %, harness ${cpu.runner ?? '?'} %, other processes ${others ?? '?'} %; whole machine ${cpu.machine ?? '?'} % of ${cpu.cores * 100} %`,
        `  CPU per restored session: node ${SURVIVOR} ${cpuPerSession.node202 ?? '?'} ms, gateway ${cpuPerSession.gateway ?? '?'} ms, PostgreSQL ${cpuPerSession.postgres ?? '?'} ms, ` +
          `harness ${cpuPerSession.runner ?? '?'} ms = ${cpuPerSessionTotal ?? '?'} ms: ${cpu.cores} idle cores would restore at most ${ceiling === null ? '?' : num(ceiling)}/s ` +
          `(${ceiling === null ? '?' : num(TARGET_SESSIONS / ceiling, 1)} s for ${num(TARGET_SESSIONS)})`,
        `  extrapolation: ${num(TARGET_SESSIONS)} sessions at ${num(rate)}/s = ${num(extrapolated, 1)} s (issue 8 target: under ${TARGET_SECONDS} s): ${extrapolated < TARGET_SECONDS ? 'meets it' : 'MISSES it'}; ` +
          `at the steady rate (10th to 90th percentile of the restores) ${num(steadyRate)}/s: ${num(steadyExtrapolated, 1)} s`,
      ];
      return [
        {
          scenario: 'ha restore (postgres)',
          description: `SIGKILL of the node holding ${chats.length} sessions; refresh with the old alias through the gateway, ${opts.concurrency} in flight, until statusCode 0 with alias ${SURVIVOR}`,
          reqPerSec: rate,
          latencyMs: { p50: took.p50, p99: took.p99, avg: took.avg, max: took.max },
          requests: restored.length,
          non2xx: failures.length - unrestored,
          errors: transportErrors,
          timeouts: unrestored + lost.length,
          statusCodes: { '200': restored.length },
          extra: {
            sessions: chats.length,
            concurrency: opts.concurrency,
            createSeconds: round(createMs / 1000),
            createSessionsPerSec: round(chats.length / (createMs / 1000)),
            killMs: round(killMs),
            allRestoredSeconds: round(lastMs / 1000),
            firstRestoredMs: round(since.min),
            perSessionMs: took,
            sinceKillMs: since,
            attemptsPerSession: attempts,
            retriedAnswers: retried,
            transportErrors,
            restoredPerSecondTimeline: timeline,
            transcriptsChecked: chats.length,
            messagesLost: lost.length,
            storeOwners: Object.fromEntries(owners.map((o) => [o.owner, Number(o.n)])),
            cpuPercent: { ...cpu, others },
            cpuMsPerSession: { ...cpuPerSession, total: cpuPerSessionTotal },
            cpuBoundCeilingPerSec: ceiling === null ? null : Math.round(ceiling),
            loadAverageAtKill: loadAtKill,
            steadyRestoredPerSec: round(steadyRate),
            extrapolation: {
              sessions: TARGET_SESSIONS,
              seconds: round(extrapolated),
              atSteadyRateSeconds: round(steadyExtrapolated),
              targetSeconds: TARGET_SECONDS,
              meetsTarget: extrapolated < TARGET_SECONDS,
            },
            cpuProfDir: opts.cpuProfDir ?? null,
            serverLogLines: logLines,
            summary,
          },
        },
      ];
    } finally {
      await Promise.allSettled(clients.map((c) => c.close()));
      await Promise.allSettled(children.reverse().map((c) => c.stop()));
      await pg?.stop();
    }
  },
};

function diff(after: number | undefined, before: number | undefined): number | undefined {
  return after === undefined || before === undefined ? undefined : after - before;
}

function runnerMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
