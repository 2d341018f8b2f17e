/**
 * Shared parts of the push suite: the receiver child (bench/receiver-process.ts) seen from the parent,
 * the push config for bench/server-parley.ts, subscribed chats, agents over undici, and the statistics.
 * Times are wall-clock ms with sub-ms precision (`performance.timeOrigin + performance.now()`) in every
 * process, so a receive time in the receiver and a send time here can be subtracted.
 */
import { Pool } from 'undici';
import { chatUrl, mapLimit, postForm, reportServerLog, startParley, type BenchChat, type ParleyUnderTest } from './parley.ts';
import type { ServerChild } from './child.ts';
import type { BenchContext } from './types.ts';

export const wallNow = (): number => performance.timeOrigin + performance.now();

/** Agents of the push config: push1..pushN, 100 chats each (the highest max-chats). */
export const CHATS_PER_AGENT = 100;
export const AGENT_PASSWORD = 'bench-agent-secret';

/** A notification line from the receiver. */
export interface Received {
  readonly t: number;
  readonly attempt: number;
}

/** The receiver child, fed by its stdout lines. */
export class ReceiverHandle {
  /** Message text -> first receive. */
  readonly messages = new Map<string, Received>();
  /** Notifications without a Message event, by type. */
  readonly others = new Map<string, number>();
  /** Message notifications received again (attempt > 1 or the same text twice). */
  duplicates = 0;
  /** POSTs that were not push JSON. */
  malformed = 0;
  private child: ServerChild | undefined;
  private readonly textWaiters = new Map<string, (r: Received) => void>();
  private readonly clockWaiters = new Map<string, (t: number) => void>();
  private readonly changeWaiters = new Set<() => void>();

  get url(): string {
    return this.child?.url ?? '';
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  static async start(ctx: BenchContext): Promise<ReceiverHandle> {
    const h = new ReceiverHandle();
    h.child = await ctx.spawnServer('receiver-process.ts', { onStdoutLine: (line) => h.onLine(line) });
    return h;
  }

  othersCount(): number {
    let n = 0;
    for (const v of this.others.values()) n += v;
    return n;
  }

  private onLine(line: string): void {
    const f = line.split('\t');
    if (f[0] === 'M') {
      const text = f.slice(3).join('\t');
      const r: Received = { t: Number(f[1]), attempt: Number(f[2]) };
      if (this.messages.has(text) || r.attempt > 1) this.duplicates++;
      if (!this.messages.has(text)) this.messages.set(text, r);
      const w = this.textWaiters.get(text);
      if (w !== undefined) {
        this.textWaiters.delete(text);
        w(r);
      }
    } else if (f[0] === 'N') {
      const type = f[2] ?? '?';
      this.others.set(type, (this.others.get(type) ?? 0) + 1);
    } else if (f[0] === 'X') {
      this.malformed++;
    } else if (f[0]?.startsWith('CLOCK ') === true) {
      const [, id, t] = f[0].split(' ');
      const w = this.clockWaiters.get(id ?? '');
      if (w !== undefined) {
        this.clockWaiters.delete(id ?? '');
        w(Number(t));
      }
    }
    for (const w of [...this.changeWaiters]) w();
  }

  /** Resolves with the receive of `text`, or undefined after `timeoutMs`. */
  waitForText(text: string, timeoutMs: number): Promise<Received | undefined> {
    const have = this.messages.get(text);
    if (have !== undefined) return Promise.resolve(have);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.textWaiters.delete(text);
        resolve(undefined);
      }, timeoutMs);
      this.textWaiters.set(text, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  /** Resolves true once every text of `texts` was received, false at `deadlineWall` (wall-clock ms). */
  async waitForAll(texts: Iterable<string>, deadlineWall: number): Promise<boolean> {
    const missing = new Set(texts);
    for (;;) {
      for (const t of missing) if (this.messages.has(t)) missing.delete(t);
      if (missing.size === 0) return true;
      if (wallNow() >= deadlineWall) return false;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Resolves true once `pred()` holds (checked at every receiver line), false after `timeoutMs`. */
  waitUntil(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    if (pred()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!pred()) return;
        done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.changeWaiters.delete(check);
        resolve(v);
      };
      this.changeWaiters.add(check);
    });
  }

  /**
   * Clock check: the receiver's clock minus ours, estimated from the exchange with the shortest round
   * trip (|error| <= rtt / 2). Same machine, so it should be a few µs; it is reported, not corrected.
   */
  async clockOffset(samples = 20): Promise<{ offsetMs: number; rttMs: number }> {
    let best = { offsetMs: 0, rttMs: Number.POSITIVE_INFINITY };
    for (let i = 0; i < samples; i++) {
      const id = `c${i}`;
      const got = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('receiver did not answer CLOCK')), 2_000);
        this.clockWaiters.set(id, (t) => {
          clearTimeout(timer);
          resolve(t);
        });
      });
      const t0 = wallNow();
      this.child?.writeLine(`CLOCK ${id}`);
      const tr = await got;
      const t1 = wallNow();
      if (t1 - t0 < best.rttMs) best = { offsetMs: tr - (t0 + t1) / 2, rttMs: t1 - t0 };
    }
    return { offsetMs: round3(best.offsetMs), rttMs: round3(best.rttMs) };
  }

  logLines(): readonly string[] {
    return this.child?.stderrLines() ?? [];
  }

  async stop(): Promise<void> {
    await this.child?.stop();
  }
}

/** The INI appended to bench/server-parley.ts's config: customhttp push to `receiverUrl`, `agents` agents. */
export function pushIni(receiverUrl: string, agents: number): string {
  const lines = [
    '[settings]',
    'flex-push-on-join = true',
    'flex-push-content = session-id, user-id, secure-key, app-dbid',
    '[chat]',
    'enable_notification_mode = true',
    '[push]',
    'pushEnabled = customhttp',
    `customhttp.url = ${receiverUrl}/push`,
    'customhttp.message = bench push',
    'allowed-networks = loopback',
  ];
  for (let i = 1; i <= agents; i++) {
    lines.push(`[agent.push${i}]`, `name = Push Agent ${i}`, `password = ${AGENT_PASSWORD}`, `max-chats = ${CHATS_PER_AGENT}`);
  }
  return `\n${lines.join('\n')}\n`;
}

export interface PushSetup {
  readonly receiver: ReceiverHandle;
  /** The chat server (every role in one process, unless split). Agents and customers talk to it. */
  readonly server: ParleyUnderTest;
  /** Split deployment: the gateway process that delivers the pushes (customhttp), beside the chat server. */
  readonly gateway?: ParleyUnderTest;
  readonly pool: Pool;
  readonly agents: readonly AgentSession[];
  readonly chats: readonly PushChat[];
  readonly setupMs: number;
  /** Closes the pool and stops both children; safe to call twice. */
  stop(): Promise<void>;
}

export interface AgentSession {
  readonly agentId: string;
  readonly token: string;
}

export interface PushChat extends BenchChat {
  readonly agent: AgentSession;
  readonly deviceId: string;
}

/**
 * Receiver child + Parley child (push to the receiver), `chatCount` chats subscribed with
 * customhttp push and the payload included, each accepted by an agent; waits for the ParticipantJoined
 * notifications so that the measured traffic starts from a quiet state.
 */
export async function setupPush(
  ctx: BenchContext,
  name: string,
  chatCount: number,
  connections: number,
  serverEnv: Record<string, string> = {},
  opts: { split?: boolean } = {},
): Promise<PushSetup> {
  const t0 = performance.now();
  const agentCount = Math.ceil(chatCount / CHATS_PER_AGENT);
  let receiver: ReceiverHandle | undefined;
  let server: ParleyUnderTest | undefined;
  let gateway: ParleyUnderTest | undefined;
  let pool: Pool | undefined;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await pool?.destroy().catch(() => undefined);
    await Promise.allSettled([gateway?.stop(), server?.stop(), receiver?.stop()]);
  };
  try {
    receiver = await ReceiverHandle.start(ctx);
    const ini = pushIni(receiver.url, agentCount);
    if (opts.split === true) {
      // A split deployment on one SQLite file: the chat server node, and a gateway that keeps a
      // notification socket to it and POSTs its pushes.
      server = await startParley(ctx, { ...serverEnv, BENCH_PARLEY_INI: ini, BENCH_PARLEY_ROLE: 'chat-server' });
      gateway = await startParley(ctx, { BENCH_PARLEY_INI: ini, BENCH_PARLEY_ROLE: 'gateway' }, server.dbPath);
      const s = server;
      const linked = await waitFor(async () => ((await (await fetch(`${s.url}/health`)).json()) as { gateway_nodes?: number }).gateway_nodes === 1, 15_000);
      if (!linked) throw new Error(`${name}: the gateway did not open its notification socket to the chat server within 15 s`);
    } else {
      server = await startParley(ctx, { ...serverEnv, BENCH_PARLEY_INI: ini });
    }
    const target = new URL(server.url);
    if (target.hostname !== '127.0.0.1') throw new Error(`benchmark traffic goes to 127.0.0.1 only, not ${target.hostname}`);
    pool = new Pool(server.url, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
    const p = pool;
    const base = server.url;

    const agents = await Promise.all(
      Array.from({ length: agentCount }, async (_, i): Promise<AgentSession> => {
        const agentId = `push${i + 1}`;
        const r = await agentCall(p, undefined, 'POST', '/agent/api/login', { agentId, password: AGENT_PASSWORD });
        const token = (r.json as { token?: unknown } | undefined)?.token;
        if (r.status !== 200 || typeof token !== 'string') throw new Error(`login ${agentId}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
        return { agentId, token };
      }),
    );

    const url = chatUrl(base);
    const chats = await mapLimit(Array.from({ length: chatCount }, (_, i) => i), 16, async (i): Promise<PushChat> => {
      const deviceId = `bench-${name}-${i}`;
      const form = new URLSearchParams({
        nickname: `Push ${i}`,
        subject: `Push benchmark chat ${i}`,
        'userData[GCTI_Chat_PushSubscribe]': 'true',
        'userData[GCTI_GMS_NodeGroup]': 'gms-cluster',
        'userData[GCTI_GMS_PushDeviceId]': deviceId,
        'userData[GCTI_GMS_PushDeviceType]': 'customhttp',
        'userData[GCTI_GMS_PushIncludePayload]': 'true',
      }).toString();
      const r = await postForm(url, form);
      if (r.status !== 200 || r.body.statusCode !== 0) throw new Error(`Request Chat: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
      const b = r.body;
      const agent = agents[Math.floor(i / CHATS_PER_AGENT)] as AgentSession;
      return { chatId: b.chatId ?? '', userId: b.userId ?? '', secureKey: b.secureKey ?? '', alias: b.alias ?? '', nextPosition: b.nextPosition ?? 1, agent, deviceId };
    });

    await mapLimit(chats, 16, async (c) => {
      const r = await agentCall(p, c.agent.token, 'POST', `/agent/api/chats/${encodeURIComponent(c.chatId)}/accept`, {});
      if (r.status !== 200) throw new Error(`accept ${c.chatId} by ${c.agent.agentId}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
    });
    const r = receiver;
    const joined = await r.waitUntil(() => r.othersCount() >= chatCount, 15_000);
    if (!joined) ctx.warn(`${name}: only ${r.othersCount()} of ${chatCount} ParticipantJoined notifications arrived within 15 s of the accepts`);
    return { receiver: r, server, ...(gateway === undefined ? {} : { gateway }), pool: p, agents, chats, setupMs: Math.round(performance.now() - t0), stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export interface CallResult {
  readonly status: number;
  readonly text: string;
  readonly json: unknown;
}

/** One JSON call of the agent API over the pool. */
export async function agentCall(pool: Pool, token: string | undefined, method: 'GET' | 'POST', path: string, body?: unknown): Promise<CallResult> {
  const res = await pool.request({
    method,
    path,
    headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, text, json };
}

/** The agent `send` of the measured traffic: status and reply size only (no JSON parse). */
export async function agentSend(pool: Pool, chat: PushChat, text: string): Promise<{ status: number; bytes: number }> {
  const res = await pool.request({
    method: 'POST',
    path: `/agent/api/chats/${encodeURIComponent(chat.chatId)}/send`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${chat.agent.token}` },
    body: JSON.stringify({ text }),
  });
  const buf = await res.body.arrayBuffer();
  return { status: res.statusCode, bytes: buf.byteLength };
}

export function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

export interface LatencyStats {
  readonly count: number;
  readonly min: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p99_9: number;
  readonly max: number;
  readonly avg: number;
}

/** Nearest-rank percentiles, rounded to µs. */
export function latencyStats(values: readonly number[]): LatencyStats {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  const at = (p: number) => (n === 0 ? 0 : round3(s[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] as number));
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    count: n,
    min: n === 0 ? 0 : round3(s[0] as number),
    p50: at(50),
    p90: at(90),
    p99: at(99),
    p99_9: at(99.9),
    max: n === 0 ? 0 : round3(s[n - 1] as number),
    avg: n === 0 ? 0 : round3(sum / n),
  };
}

/**
 * The warnings every push scenario gives after its run: resends received (`duplicates`), POSTs that were
 * not push JSON, and what the server and the receiver logged. Returns the server's log line count.
 */
export function reportPushRun(ctx: BenchContext, label: string, receiver: ReceiverHandle, server: ParleyUnderTest, duplicates: number): number {
  if (duplicates > 0) ctx.warn(`${label}: ${duplicates} duplicate notifications (resends) received`);
  if (receiver.malformed > 0) ctx.warn(`${label}: ${receiver.malformed} POSTs to the receiver were not push JSON`);
  const logLines = reportServerLog(ctx, label, server);
  const receiverLog = receiver.logLines();
  if (receiverLog.length > 0) ctx.warn(`${label}: receiver logged ${receiverLog.length} line(s), first: ${receiverLog[0]?.slice(0, 300)}`);
  return logLines;
}

/** Server and receiver health after a scenario: push counters from /health, log lines. */
export async function pushHealth(base: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}/health`);
  const body = (await res.json()) as { push?: Record<string, unknown> };
  return body.push ?? {};
}

/** Polls `check` every 50 ms until it is true (true) or `ms` passed (false). */
async function waitFor(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
