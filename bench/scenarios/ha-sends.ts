/**
 * HA: what PostgreSQL and the gateway hop cost a `send`, beside SQLite, in one run. The load is the core
 * suite's `parley send` (bench/scenarios/parley-send.ts): autocannon, BENCH_CONNECTIONS (100) keep-alive
 * connections, every request a Chat API v2 send rotating over 200 chats opened beforehand, each message
 * numbered; warm-up (unrecorded), then the measured run. Three targets, one after the other:
 *
 * 1. `parley start` on SQLite: bench/server-parley.ts (startAll, every role in one process) on a fresh
 *    SQLite file, `synchronous = normal`, exactly as in the core suite.
 * 2. The split path on PostgreSQL: `parley gateway` + one `parley chat-server` (the real CLI, two
 *    processes); the load goes to the gateway, which forwards each send to the node over its internal API.
 * 3. `parley start` on PostgreSQL: bench/server-parley.ts with PARLEY_STORE_TYPE=postgres, one process, so
 *    the store's cost and the gateway hop can be told apart.
 *
 * One throwaway PostgreSQL server (fsync off, synchronous_commit off), a fresh database per target. After
 * each run the chats' nextPosition must have grown by at least the number of 2xx replies (no lost write).
 */
import { createChats, identityForm, mapLimit, opPath, postForm, startParley, syncPosition } from '../lib/parley.ts';
import { clusterIni, reportCliLog, startCli, startPg, waitForNodes, writeIni, type Pg } from '../lib/cluster.ts';
import { createDatabase, machineBusyMs, num, othersPercent, pct, textGrid } from '../lib/ha.ts';
import { measure, procCpuMs, toRow, type Measured } from '../lib/load.ts';
import type { BenchContext, LoadSettings, Row, Scenario } from '../lib/types.ts';
import { CHATS } from './parley-send.ts';

interface Target {
  readonly scenario: string;
  readonly description: string;
  readonly url: string;
  /** The process autocannon talks to first, then the others (their CPU is reported). */
  readonly processes: ReadonlyArray<{ readonly name: string; readonly pid: number }>;
  readonly pg: Pg | undefined;
  /** Log lines the processes printed (warnings); flagged. */
  logLines(): number;
  stop(): Promise<void>;
}

interface Result {
  readonly target: string;
  readonly description: string;
  readonly m?: Measured;
  readonly extra: Record<string, unknown>;
  readonly error?: string;
}

async function sendLoad(ctx: BenchContext, t: Target): Promise<Result> {
  const t0 = performance.now();
  const chats = await createChats(t.url, CHATS);
  const setupMs = Math.round(performance.now() - t0);
  ctx.log(`ha-sends: ${t.scenario}: ${t.processes.map((p) => `${p.name} pid ${p.pid}`).join(', ')}; ${CHATS} chats in ${setupMs} ms`);
  const paths = chats.map((c) => opPath(c, 'send'));
  const forms = chats.map((c) => `${identityForm(c)}&message=hello+from+the+bench+`);
  const probe = await postForm(t.url + (paths[0] as string), `${forms[0]}probe`);
  if (probe.status !== 200 || probe.body.statusCode !== 0) throw new Error(`probe send failed: HTTP ${probe.status} ${JSON.stringify(probe.body)}`);
  await mapLimit(chats, 16, (c) => syncPosition(t.url, c));
  const startPositions = chats.map((c) => c.nextPosition);

  let seq = 0;
  const main = t.processes[0];
  const spec = {
    url: t.url,
    ...(main === undefined ? {} : { serverPid: main.pid }),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    next: () => {
      const i = seq++ % chats.length;
      return { path: paths[i] as string, body: `${forms[i]}${seq}` };
    },
  };
  // The warm-up is a run of its own, so that the CPU of every process (not only the first) and of
  // PostgreSQL can be read around the measured run alone.
  const load = ctx.load;
  const warm: LoadSettings = { connections: load.connections, warmupSeconds: 0, durationSeconds: load.warmupSeconds };
  const w = await measure(spec, warm);
  const before = { procs: t.processes.map((p) => procCpuMs(p.pid)), pg: t.pg?.cpuMs(), machine: machineBusyMs(), wall: performance.now() };
  const m = await measure(spec, { ...load, warmupSeconds: 0 });
  const wallMs = performance.now() - before.wall;
  const procs = Object.fromEntries(t.processes.map((p, i) => [p.name, pct(minus(procCpuMs(p.pid), before.procs[i]), wallMs)]));
  const cpuPercent = {
    loadGenerator: m.cpuPercent.loadGenerator,
    ...procs,
    postgres: t.pg === undefined ? null : pct(minus(t.pg.cpuMs(), before.pg), wallMs),
    machine: pct(minus(machineBusyMs(), before.machine), wallMs),
  };
  // CPU of every process of the target (autocannon included) per measured request, µs.
  const ours = [cpuPercent.loadGenerator, ...Object.values(procs), cpuPercent.postgres ?? 0];
  const cpuUsPerRequest = ours.some((v) => v === null) || m.requests === 0 ? null : Math.round((ours.reduce<number>((a, v) => a + (v ?? 0), 0) / 100) * wallMs * 1000 / m.requests);
  const others = othersPercent(cpuPercent.machine, [cpuPercent.loadGenerator, ...Object.values(procs), cpuPercent.postgres ?? 0]);

  await mapLimit(chats, 16, (c) => syncPosition(t.url, c));
  const stored = chats.reduce((sum, c, i) => sum + c.nextPosition - (startPositions[i] ?? 0), 0);
  const answered2xx = [w, m].reduce((s, r) => s + Object.entries(r.statusCodes).reduce((a, [code, n]) => (code.startsWith('2') ? a + n : a), 0), 0);
  if (stored < answered2xx) ctx.warn(`${t.scenario}: ${stored} messages stored but ${answered2xx} 2xx replies`);
  ctx.log(`ha-sends: ${t.scenario}: ${num(m.reqPerSec)} req/s, p50 ${m.latencyMs.p50} ms, p99 ${m.latencyMs.p99} ms; CPU ${JSON.stringify(cpuPercent)}`);
  return {
    target: t.scenario,
    description: t.description,
    m,
    extra: {
      chats: CHATS,
      chatSetupMs: setupMs,
      replyBytes: probe.bytes,
      warmupRequests: w.requests,
      messagesStored: stored,
      answered2xx,
      cpuPercent: { ...cpuPercent, others },
      cpuUsPerRequest,
      serverLogLines: t.logLines(),
    },
  };
}

function minus(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : a - b;
}

export const haSends: Scenario = {
  name: 'ha-sends',
  budgetSeconds: (load: LoadSettings) => 90 + 3 * (load.warmupSeconds + load.durationSeconds + 60),
  async run(ctx: BenchContext): Promise<Row[]> {
    const results: Result[] = [];
    let pg: Pg | undefined;
    const attempt = async (scenario: string, description: string, start: () => Promise<Target>): Promise<void> => {
      let target: Target | undefined;
      try {
        target = await start();
        results.push(await sendLoad(ctx, target));
      } catch (err) {
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
        ctx.warn(`${scenario} failed: ${message}`);
        results.push({ target: scenario, description, extra: {}, error: message });
      } finally {
        await target?.stop();
      }
    };
    try {
      await attempt('send: start, SQLite', `parley start (bench/server-parley.ts) on SQLite, synchronous = normal; as the core suite's parley send`, async () => {
        const s = await startParley(ctx);
        return {
          scenario: 'send: start, SQLite',
          description: `parley start (bench/server-parley.ts) on SQLite, synchronous = normal; as the core suite's parley send`,
          url: s.url,
          processes: [{ name: 'parley', pid: s.pid }],
          pg: undefined,
          logLines: () => reportLines(ctx, 'send: start, SQLite', s.logLines()),
          stop: () => s.stop(),
        };
      });

      pg = await startPg(ctx);
      const server = pg;
      await attempt('send: gateway + node, PostgreSQL', 'parley gateway + 1 parley chat-server (CLI, 2 processes) on PostgreSQL; load on the gateway', async () => {
        const url = await createDatabase(server.url, 'parley_cluster');
        const ini = writeIni(ctx, clusterIni({ pgUrl: url, deadAfter: 3, heartbeatInterval: 1, limitForSessions: 200_000 }));
        const node = await startCli(ctx, 'chat-server', ini, { PARLEY_NODE_APP_DBID: '201' });
        try {
          const gw = await startCli(ctx, 'gateway', ini);
          await waitForNodes(gw.url, ['201']).catch(async (err: unknown) => {
            await gw.stop();
            throw err;
          });
          return {
            scenario: 'send: gateway + node, PostgreSQL',
            description: 'parley gateway + 1 parley chat-server (CLI, 2 processes) on PostgreSQL; load on the gateway',
            url: gw.url,
            processes: [
              { name: 'gateway', pid: gw.pid },
              { name: 'node', pid: node.pid },
            ],
            pg: server,
            logLines: () => reportCliLog(ctx, 'send: gateway + node, PostgreSQL', gw) + reportCliLog(ctx, 'send: gateway + node, PostgreSQL', node),
            async stop() {
              await gw.stop();
              await node.stop();
            },
          };
        } catch (err) {
          await node.stop();
          throw err;
        }
      });

      await attempt('send: start, PostgreSQL', 'parley start (bench/server-parley.ts, 1 process) with PARLEY_STORE_TYPE=postgres', async () => {
        const url = await createDatabase(server.url, 'parley_single');
        const s = await startParley(ctx, { PARLEY_STORE_TYPE: 'postgres', PARLEY_STORE_URL: url });
        return {
          scenario: 'send: start, PostgreSQL',
          description: 'parley start (bench/server-parley.ts, 1 process) with PARLEY_STORE_TYPE=postgres',
          url: s.url,
          processes: [{ name: 'parley', pid: s.pid }],
          pg: server,
          logLines: () => reportLines(ctx, 'send: start, PostgreSQL', s.logLines()),
          stop: () => s.stop(),
        };
      });
    } finally {
      await pg?.stop();
    }
    return rows(results);
  },
};

function reportLines(ctx: BenchContext, scenario: string, lines: readonly string[]): number {
  if (lines.length > 0) ctx.warn(`${scenario}: server logged ${lines.length} line(s), first: ${lines[0]?.slice(0, 300)}`);
  return lines.length;
}

/** Rows with the ratio to SQLite, and the suite's comparison table as summary lines on the last row. */
function rows(results: readonly Result[]): Row[] {
  const sqlite = results.find((r) => r.target === 'send: start, SQLite')?.m?.reqPerSec;
  const ratio = (r: Result) => (sqlite === undefined || sqlite === 0 || r.m === undefined ? null : Math.round((r.m.reqPerSec / sqlite) * 1000) / 10);
  const cpuCell = (r: Result) => {
    const c = r.extra['cpuPercent'] as Record<string, number | null> | undefined;
    if (c === undefined) return '';
    return Object.entries(c)
      .filter(([k, v]) => k !== 'machine' && k !== 'others' && v !== null)
      .map(([k, v]) => `${k === 'loadGenerator' ? 'autocannon' : k} ${v ?? '?'}`)
      .join(', ');
  };
  const table = textGrid(
    ['target', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'vs SQLite', 'CPU % of one core', 'CPU µs per send', 'other processes %'],
    results.map((r) =>
      r.m === undefined
        ? [r.target, 'failed', '', '', '', '', '', '', '']
        : [
            r.target,
            num(r.m.reqPerSec),
            String(r.m.latencyMs.p50),
            String(r.m.latencyMs.p99),
            num(r.m.non2xx),
            `${ratio(r) ?? '?'} %`,
            cpuCell(r),
            num(Number(r.extra['cpuUsPerRequest'] ?? Number.NaN)),
            String((r.extra['cpuPercent'] as Record<string, number | null>)['others'] ?? '?'),
          ],
    ),
  );
  const summary = ['sends/s on PostgreSQL beside SQLite (the core send load):', ...table.map((l) => `  ${l}`)];
  return results.map((r, i) => {
    const extra = { ...r.extra, vsSqlitePercent: ratio(r), ...(i === results.length - 1 ? { summary } : {}) };
    if (r.m === undefined) {
      return {
        scenario: r.target,
        description: r.description,
        reqPerSec: 0,
        latencyMs: { p50: 0, p99: 0, avg: 0, max: 0 },
        requests: 0,
        non2xx: 0,
        errors: 1,
        timeouts: 0,
        statusCodes: {},
        extra: { ...extra, error: r.error },
      };
    }
    return toRow(r.target, r.description, r.m, extra);
  });
}
