/**
 * The HA suite's processes: a throwaway PostgreSQL server (test/support/postgres-server.ts), and the real
 * `parley` CLI (`src/cli.ts chat-server | gateway | start --config F`) as children of the harness. The
 * CLI prints no `READY <url>` line: the children are recognised by the URL line the CLI prints once it is
 * listening. A CLI child does not watch its stdin itself; a one-line `--import` preload (NODE_OPTIONS) sends
 * it SIGTERM when its stdin closes, so it still ends when the harness dies. PostgreSQL gets a sentinel
 * process that stops it in that case.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findPostgresBinDir, startPostgres } from '../../test/support/postgres-server.ts';
import type { ServerChild } from './child.ts';
import { procCpuMs } from './load.ts';
import { BENCH_SERVICE } from './parley.ts';
import type { BenchContext } from './types.ts';
import { SERVER_NODE_FLAGS } from '../../src/node-flags.ts';

/** Ends the CLI child (SIGTERM, its ordered shutdown) when the harness's end of its stdin closes. */
const EXIT_WITH_PARENT =
  "--import=data:text/javascript,process.stdin.on('end',()=>process.kill(process.pid,'SIGTERM')).on('error',()=>process.kill(process.pid,'SIGTERM')).resume()";

const CLI = '../src/cli.ts';

/** `parley chat-server`: "  Internal API: http://127.0.0.1:PORT". */
const NODE_READY = /^\s*Internal API:\s+(http:\/\/\S+)\s*$/;
/** `parley gateway` and `parley start`: "  Chat API v2:  http://127.0.0.1:PORT/genesys/2/chat/{serviceName}". */
const API_READY = /^\s*Chat API v2:\s+(http:\/\/[^/\s]+)\/genesys\//;

export interface Pg {
  readonly url: string;
  /** utime + stime of the postmaster and every live backend, plus the reaped ones (cutime + cstime), ms. */
  cpuMs(): number | undefined;
  stop(): Promise<void>;
}

/**
 * The sentinel: a tiny process that stops the server (`pg_ctl stop -m immediate`) and removes its directory
 * when its stdin closes without a `disarm` line first, i.e. when the harness died without stopping it
 * (kill -9). On every other exit path the harness stops the server itself (pg.stop(), or the exit handler
 * of test/support/postgres-server.ts).
 */
const SENTINEL = `
const { execFileSync } = require('node:child_process');
const { rmSync } = require('node:fs');
const [argv, dir] = [JSON.parse(process.argv[1]), process.argv[2]];
let armed = true;
let seen = '';
const stop = () => {
  if (armed) {
    try { execFileSync(argv[0], argv.slice(1), { stdio: 'ignore', timeout: 30000 }); } catch {}
    try { rmSync(dir, { recursive: true, force: true }); } catch {}
  }
  process.exit(0);
};
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { seen += d; if (seen.includes('disarm')) armed = false; });
process.stdin.on('end', stop);
process.stdin.on('error', stop);
`;

function armSentinel(dir: string): () => void {
  const bin = findPostgresBinDir();
  if (bin === undefined) return () => undefined;
  const ctl = [join(bin, 'pg_ctl'), '-D', join(dir, 'data'), '-m', 'immediate', 'stop'];
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p));
  // As root the server runs as the postgres user (see test/support/postgres-server.ts).
  const argv = process.getuid?.() === 0 && runuser !== undefined ? [runuser, '-u', 'postgres', '--', ...ctl] : ctl;
  const child = spawn(process.execPath, ['-e', SENTINEL, JSON.stringify(argv), dir], { stdio: ['pipe', 'ignore', 'ignore'] });
  child.stdin.on('error', () => undefined);
  child.unref();
  return () => {
    child.stdin.end('disarm\n');
  };
}

/** Starts PostgreSQL 15 (initdb in a temp dir, fsync off, 127.0.0.1). Stop it in a `finally`. */
export async function startPg(ctx: BenchContext): Promise<Pg> {
  const t0 = performance.now();
  const server = await startPostgres();
  const disarm = armSentinel(server.dir);
  ctx.log(`PostgreSQL at ${server.url.replace(/\/\/[^@]*@/, '//')} in ${Math.round(performance.now() - t0)} ms`);
  const pidFile = join(server.dir, 'data', 'postmaster.pid');
  return {
    url: server.url,
    cpuMs: () => postgresCpuMs(pidFile),
    async stop() {
      try {
        await server.stop();
      } finally {
        disarm();
      }
    },
  };
}

function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU of a PostgreSQL server (all its processes) from /proc, in ms; undefined off Linux. */
function postgresCpuMs(pidFile: string): number | undefined {
  let master: number;
  try {
    master = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
  const own = statFields(master);
  if (own === undefined) return undefined;
  // Fields after the command name start at field 3 (state): ppid is 4, utime..cstime are 14..17.
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(entry);
    if (f !== undefined && Number(f[1]) === master) ticks += Number(f[11]) + Number(f[12]);
  }
  return Number.isFinite(ticks) ? ticks * 10 : undefined;
}

/** INI of a cluster member on `pgUrl`; `[node] app-dbid` is set per process with PARLEY_NODE_APP_DBID. */
export function clusterIni(opts: { pgUrl: string; deadAfter: number; heartbeatInterval: number; limitForSessions: number }): string {
  return `
[node]
app-dbid = 201
dead-after = ${opts.deadAfter}
heartbeat-interval = ${opts.heartbeatInterval}
[http]
host = 127.0.0.1
port = 0
[store]
type = postgres
url = ${opts.pgUrl}
[settings]
limit-for-sessions = ${opts.limitForSessions}
limit-for-flex-users = ${opts.limitForSessions}
[chat.${BENCH_SERVICE}]
description = benchmark service
`;
}

/** Writes `text` to a fresh temp file and returns its path. */
export function writeIni(ctx: BenchContext, text: string): string {
  const path = join(ctx.tempDir('parley-bench-ha-'), 'parley.ini');
  writeFileSync(path, text);
  return path;
}

export interface CliChild {
  readonly role: string;
  readonly url: string;
  readonly pid: number;
  /** Log lines (warn and above, JSON) the process printed after it was up; the first 200 are kept. */
  logLines(): readonly string[];
  logCount(): number;
  cpuMs(): number | undefined;
  /** SIGKILL (no shutdown at all), resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (ordered shutdown), SIGKILL after 10 s. */
  stop(): Promise<void>;
}

/**
 * `node --import tsx src/cli.ts <command> --config <ini>` with PARLEY_LOG_LEVEL=warn and `env` on top
 * (e.g. PARLEY_NODE_APP_DBID, PARLEY_STORE_TYPE); `nodeArgs` go before the script (e.g. `--cpu-prof`).
 */
export async function startCli(
  ctx: BenchContext,
  command: 'chat-server' | 'gateway' | 'start',
  ini: string,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<CliChild> {
  const lines: string[] = [];
  let count = 0;
  const options = [process.env['NODE_OPTIONS'] ?? '', EXIT_WITH_PARENT].filter((o) => o.trim() !== '').join(' ');
  const child: ServerChild = await ctx.spawnServer(CLI, {
    args: [command, '--config', ini],
    nodeArgs: [...SERVER_NODE_FLAGS, ...nodeArgs],
    env: { PARLEY_LOG_LEVEL: 'warn', NODE_OPTIONS: options, ...env },
    readyPattern: command === 'chat-server' ? NODE_READY : API_READY,
    readyTimeoutMs: 60_000,
    onStdoutLine: (line) => {
      // The CLI prints its banner after the ready line, then logs (JSON lines) on stdout.
      if (!line.startsWith('{')) return;
      count++;
      if (lines.length < 200) lines.push(line);
    },
  });
  const role = command === 'chat-server' ? `chat-server ${env['PARLEY_NODE_APP_DBID'] ?? ''}`.trim() : command;
  return {
    role,
    url: child.url,
    pid: child.pid,
    logLines: () => [...lines, ...child.stderrLines()],
    logCount: () => count + child.stderrLines().length,
    cpuMs: () => procCpuMs(child.pid),
    async kill() {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await child.stop(0);
    },
    stop: () => child.stop(10_000),
  };
}

/** Flags the log lines a process printed (warnings, errors); returns how many. */
export function reportCliLog(ctx: BenchContext, scenario: string, child: CliChild): number {
  const n = child.logCount();
  if (n > 0) ctx.warn(`${scenario}: ${child.role} logged ${n} line(s), first: ${child.logLines()[0]?.slice(0, 300)}`);
  return n;
}

/** Waits until the gateway's /health lists every one of `appDbids` as a live node. */
export async function waitForNodes(gatewayUrl: string, appDbids: readonly string[], timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const res = await fetch(`${gatewayUrl}/health`);
      const body = (await res.json()) as { nodes?: Array<{ app_dbid: string }> };
      const seen = new Set((body.nodes ?? []).map((n) => n.app_dbid));
      last = [...seen].join(', ');
      if (appDbids.every((a) => seen.has(a))) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (performance.now() > deadline) throw new Error(`gateway did not see nodes ${appDbids.join(', ')} within ${timeoutMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
