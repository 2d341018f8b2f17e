/**
 * Parts of the dormant suite: filling a SQLite file with dormant async sessions straight through the store
 * (the pure core builds each session), the Parley child with a GC hook and its RSS, a one-connection HTTP
 * client that times each request, a summary of a `--cpu-prof` profile, and the suite's own table.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { hold } from '../../src/chat/routing.ts';
import { agentJoin, agentParticipant, openSession, say } from '../../src/chat/session.ts';
import type { ChatEvent } from '../../src/chat/types.ts';
import { createRandomIds } from '../../src/ids.ts';
import { SERVER_NODE_FLAGS } from '../../src/node-flags.ts';
import { openSqliteStore } from '../../src/store/sqlite.ts';
import type { ServerChild } from './child.ts';
import { storeEnv } from './parley.ts';
import type { BenchContext } from './types.ts';

/** The async chat service of the suite (`[chat.customer-support] async-mode = true`). */
export const DORMANT_SERVICE = 'customer-support';
/** The agent whose workbin holds every dormant session (bench/server-parley.ts configures alice). */
export const DORMANT_AGENT = { agentId: 'alice', nickname: 'Alice', password: 'alice-secret' } as const;
/** `[node] app-dbid` of bench/server-parley.ts: the sessions are filled as owned by that node. */
export const DORMANT_ALIAS = '117';

/** Settings the Parley child gets on top of bench/server-parley.ts's built-in config. */
export const DORMANT_INI = `
[receiver]
enabled = false
[settings]
limit-for-sessions = 2000000
limit-for-flex-users = 2000000
flex-disconnect-timeout = 1728000
[chat.${DORMANT_SERVICE}]
description = async customer support (dormant benchmark)
async-mode = true
`;

/** A filled session the wake-up phase will write to. */
export interface SampledChat {
  readonly chatId: string;
  readonly secureKey: string;
  readonly userId: string;
}

export interface FillResult {
  readonly sessions: number;
  readonly seconds: number;
  /** The sessions picked for the wake-ups, in the (random) order they are to be woken. */
  readonly sample: readonly SampledChat[];
  /** Database file size after the store was closed (WAL checkpointed), bytes. */
  readonly dbBytes: number;
  /** Events stored per session. */
  readonly eventsPerSession: number;
}

/** mulberry32: seeded [0,1), so the wake-up sample is the same from run to run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` distinct indices of [0, n) in random order. */
function pickIndices(n: number, count: number, random: () => number): number[] {
  const picked = new Set<number>();
  const order: number[] = [];
  while (order.length < Math.min(count, n)) {
    const i = Math.floor(random() * n);
    if (picked.has(i)) continue;
    picked.add(i);
    order.push(i);
  }
  return order;
}

const SUBJECTS = ['Order status', 'Refund request', 'Delivery address change', 'Invoice question', 'Account access'];
const FIRST = [
  'Hello, my parcel has not arrived yet and the tracking page has not changed for three days.',
  'Hi, I would like to return the shoes I bought last week, they are one size too small.',
  'Good morning, can you change the delivery address of my order to my office please?',
  'Hello, the invoice I received shows the wrong VAT number, could you send a corrected one?',
  'Hi there, I cannot log in to my account since yesterday, the reset e-mail never comes.',
];
const AGENT_REPLY = 'Thank you, I have passed this on to the team concerned. I will come back to you here as soon as I hear from them.';

/**
 * Creates `n` dormant async sessions in a fresh SQLite file, through the store's own `createSession`,
 * `batch` sessions per group-committed transaction. Each session is built with the pure core as a real one
 * would be: Request Chat with a first message (async mode), the agent joins and answers, then puts the chat
 * on hold into its workbin: 5 transcript events, state dormant. Times are spread over the 12 hours before
 * the fill (every async idle alert, 24 h after the hold, stays in the future during the run).
 */
export async function fillDormant(
  path: string,
  n: number,
  wakeups: number,
  opts: { batch?: number; seed?: number; progress?: (done: number, seconds: number) => void } = {},
): Promise<FillResult> {
  const batch = opts.batch ?? 10_000;
  const order = pickIndices(n, wakeups, seeded(opts.seed ?? 8));
  const slot = new Map<number, number>(order.map((i, k) => [i, k]));
  const sample = new Array<SampledChat>(order.length);
  const ids = createRandomIds();
  const store = openSqliteStore({ path, synchronous: 'normal' });
  const start = Date.now() - 12 * 3600_000;
  const span = 11 * 3600_000;
  const t0 = performance.now();
  let lastProgress = t0;
  let eventsPerSession = 0;
  try {
    for (let from = 0; from < n; from += batch) {
      const writes: Promise<void>[] = [];
      for (let i = from; i < Math.min(n, from + batch); i++) {
        const t = start + Math.floor((i / n) * span);
        const chatId = ids.chatId();
        const secureKey = ids.secureKey();
        const userId = ids.userId();
        const k = slot.get(i);
        if (k !== undefined) sample[k] = { chatId, secureKey, userId };
        const opened = openSession(
          {
            chatId,
            serviceName: DORMANT_SERVICE,
            secureKey,
            userId,
            alias: DORMANT_ALIAS,
            nickname: `Customer ${i}`,
            subject: SUBJECTS[i % SUBJECTS.length] ?? '',
            emailAddress: `customer${i}@example.com`,
            text: FIRST[i % FIRST.length] ?? 'Hello',
            asyncMode: true,
          },
          t,
        );
        const joined = agentJoin(opened.session, { agentId: DORMANT_AGENT.agentId, nickname: DORMANT_AGENT.nickname }, t + 30_000);
        const me = agentParticipant(joined.session, DORMANT_AGENT.agentId).participantId;
        const said = say(joined.session, me, 'Message', { text: AGENT_REPLY }, t + 60_000);
        const held = hold(said.session, DORMANT_AGENT.agentId, t + 90_000);
        const events: ChatEvent[] = [...opened.events, ...joined.events, ...said.events, ...held.events];
        eventsPerSession = events.length;
        writes.push(store.createSession({ session: held.session, events }));
      }
      await Promise.all(writes);
      const now = performance.now();
      if (now - lastProgress > 10_000) {
        lastProgress = now;
        opts.progress?.(Math.min(n, from + batch), (now - t0) / 1000);
      }
    }
  } finally {
    await store.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { sessions: n, seconds, sample, dbBytes: dbFileBytes(path), eventsPerSession };
}

/** The database file plus any -wal / -shm file next to it. */
export function dbFileBytes(path: string): number {
  let total = 0;
  for (const suffix of ['', '-wal', '-shm']) {
    try {
      total += statSync(path + suffix).size;
    } catch {
      // absent
    }
  }
  return total;
}

/** VmRSS and VmHWM (peak) of a process from /proc, bytes; undefined off Linux. */
export function procMemory(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const rss = kb('VmRSS');
    const peak = kb('VmHWM');
    return Number.isFinite(rss) ? { rss, peak: Number.isFinite(peak) ? peak : rss } : undefined;
  } catch {
    return undefined;
  }
}

export interface GcReport {
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
  readonly gcMs: number;
  readonly gc: boolean;
}

/** A Parley child started with `--expose-gc` and the dormant-gc preload. */
export interface DormantServer {
  readonly child: ServerChild;
  readonly url: string;
  readonly pid: number;
  /** Spawn to READY, seconds. */
  readonly readySeconds: number;
  /** Full GC in the child, then its memory (VmRSS from /proc and the child's own figures). */
  measure(): Promise<{ rss: number; peak: number; child: GcReport }>;
  stop(): Promise<void>;
}

export async function startDormantServer(
  ctx: BenchContext,
  dbPath: string,
  opts: { readyTimeoutMs: number; extraNodeArgs?: string[] },
): Promise<DormantServer> {
  const waiters: Array<(r: GcReport) => void> = [];
  const preload = pathToFileURL(join(ctx.root, 'bench', 'lib', 'dormant-gc.ts')).href;
  const t0 = performance.now();
  const child = await ctx.spawnServer('server-parley.ts', {
    nodeArgs: [...SERVER_NODE_FLAGS, '--expose-gc', ...(opts.extraNodeArgs ?? []), '--import', 'tsx', '--import', preload],
    env: { ...storeEnv(dbPath), BENCH_PARLEY_INI: DORMANT_INI },
    readyTimeoutMs: opts.readyTimeoutMs,
    onStdoutLine: (line) => {
      if (!line.startsWith('DORMANT-GC ')) return;
      const report = JSON.parse(line.slice('DORMANT-GC '.length)) as GcReport;
      for (const w of waiters.splice(0)) w(report);
    },
  });
  const readySeconds = (performance.now() - t0) / 1000;
  return {
    child,
    url: child.url,
    pid: child.pid,
    readySeconds,
    async measure() {
      const report = new Promise<GcReport>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the Parley child did not answer the GC signal within 60 s')), 60_000);
        waiters.push((r) => {
          clearTimeout(timer);
          resolve(r);
        });
      });
      process.kill(child.pid, 'SIGUSR2');
      const r = await report;
      const mem = procMemory(child.pid);
      return { rss: mem?.rss ?? r.rss, peak: mem?.peak ?? r.rss, child: r };
    },
    stop: () => child.stop(30_000),
  };
}

export interface HealthSessions {
  readonly active: number;
  readonly dormant: number;
  readonly total: number;
}

export async function healthSessions(base: string): Promise<HealthSessions> {
  const res = await fetch(`${base}/health`);
  const body = (await res.json()) as { sessions?: Partial<HealthSessions> };
  return { active: body.sessions?.active ?? -1, dormant: body.sessions?.dormant ?? -1, total: body.sessions?.total ?? -1 };
}

/** One keep-alive connection; each POST is timed from the write to the last byte of the reply. */
export class TimedClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private readonly host: string;
  private readonly port: number;

  constructor(base: string) {
    const u = new URL(base);
    this.host = u.hostname;
    this.port = Number(u.port);
  }

  postForm(path: string, form: string): Promise<{ status: number; body: string; ms: number }> {
    const payload = Buffer.from(form);
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const req = request(
        {
          host: this.host,
          port: this.port,
          path,
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': payload.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms: performance.now() - t0 }));
          res.on('error', reject);
        },
      );
      req.setTimeout(30_000, () => req.destroy(new Error(`POST ${path}: no reply within 30 s`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * The functions that took the most CPU in a `--cpu-prof` profile (self time), heaviest first. Time spent in
 * native code (SQLite inside better-sqlite3, JSON.parse) is counted to the JS function that called it.
 */
export interface ProfileFrame {
  readonly frame: string;
  readonly selfMs: number;
  readonly selfPercent: number;
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<{ id: number; callFrame: { functionName: string; url: string } }>;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export function summarizeProfile(dir: string, root: string, top = 15): { file: string; totalMs: number; frames: ProfileFrame[] } | undefined {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) return undefined;
  const p = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  const nameOf = new Map<number, string>();
  for (const node of p.nodes) {
    const cf = node.callFrame;
    // No line numbers: tsx compiles the .ts files, so the profile's lines are those of the compiled code.
    const where = cf.url === '' ? '' : ` ${cf.url.replace(/^file:\/\//, '').replace(`${root}/`, '')}`;
    nameOf.set(node.id, `${cf.functionName === '' ? '(anonymous)' : cf.functionName}${where}`);
  }
  const self = new Map<string, number>();
  p.samples.forEach((id, k) => {
    const name = nameOf.get(id) ?? '?';
    self.set(name, (self.get(name) ?? 0) + (p.timeDeltas[k] ?? 0) / 1000);
  });
  const totalMs = (p.endTime - p.startTime) / 1000;
  const frames = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([frame, ms]) => ({ frame, selfMs: Math.round(ms), selfPercent: Math.round((ms / totalMs) * 1000) / 10 }));
  return { file, totalMs: Math.round(totalMs), frames };
}

/** Plain text and Markdown renderings of a small grid (first column left-aligned, the others right). */
export function grid(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): { text: string; markdown: string } {
  const all = [headers, ...rows];
  const widths = headers.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const fmt = (r: readonly string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  ');
  const text = [fmt(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
  const line = (r: readonly string[]) => `| ${r.join(' | ')} |`;
  const markdown = [line(headers), line(headers.map((_, c) => (c === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
  return { text, markdown };
}

export function num(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export const MB = 1024 * 1024;
