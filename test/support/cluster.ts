/**
 * A real Parley cluster for tests: one PostgreSQL server per test file, N `parley chat-server` processes
 * (app dbids 201..20N) and M `parley gateway` processes, all on port 0, plus a fake push receiver. Nodes
 * can be killed (SIGKILL), stopped (SIGTERM) and restarted with the same app dbid. Every child process is
 * killed in afterAll, and at the latest when the test worker exits, whatever happened.
 *
 * Also a Chat API v2 customer for a cluster (`ClusterChat`): it goes through any gateway, remembers every
 * event it was told about and complains when the same index comes back with other content.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { pushUserData, startFakeReceiver, type FakeReceiver, type ReceivedPush } from '../receiver-fixture.ts';
import { startPostgres, type PostgresServer } from './postgres-server.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SERVICE = 'customer-support';
const START_TIMEOUT_MS = 20_000;
/**
 * How long after a node died the others may still take its restarted successor for dead: a failed probe
 * makes a node suspect the owner for 10 s (src/cluster/owner-probe.ts), and probes happen up to
 * `dead-after` (3 s) after the death.
 */
export const PROBE_SUSPICION_MS = 13_500;
const OUTPUT_KEEP = 20_000;

export type Role = 'chat-server' | 'gateway';

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** One spawned `parley` process. */
export interface ParleyProcess {
  readonly role: Role;
  /** The app dbid (alias) of a chat server; '' for a gateway. */
  readonly appDbid: string;
  readonly pid: number;
  /** Base URL (the chat server's internal API and agent API; the gateway's Chat API v2). */
  readonly url: string;
  readonly child: ChildProcess;
  /** Settles when the process has exited. */
  readonly exited: Promise<ExitInfo>;
  /** The exit, once it happened. */
  exit: ExitInfo | undefined;
  /** The last stdout and stderr (for failure messages). */
  output(): string;
}

export interface ClusterOptions {
  readonly chatServers: number;
  readonly gateways: number;
  /** INI text appended to the cluster INI (sections may repeat keys of the base; later wins). */
  readonly extraIni?: string;
}

export interface GatewayHealth {
  readonly nodes: ReadonlyArray<{ app_dbid: string; pid: number; url: string }>;
  readonly notification_links: number;
}

export interface Cluster {
  readonly pg: PostgresServer;
  readonly receiver: FakeReceiver;
  readonly iniPath: string;
  /** Chat server processes by app dbid (the latest process of that dbid, alive or not). */
  readonly nodes: Map<string, ParleyProcess>;
  readonly gateways: ParleyProcess[];
  /** URL of gateway i (round robin over the gateways). */
  gateway(i: number): string;
  /** App dbids of the chat servers that run now. */
  liveDbids(): string[];
  startNode(appDbid: string, env?: Record<string, string>): Promise<ParleyProcess>;
  startGateway(env?: Record<string, string>): Promise<ParleyProcess>;
  /** SIGKILL, resolves when the process is gone. */
  kill(appDbid: string): Promise<ExitInfo>;
  /** SIGTERM (planned shutdown), resolves with the exit. */
  terminate(appDbid: string, timeoutMs?: number): Promise<ExitInfo>;
  /** SIGKILL when it runs, then a new process with the same app dbid. */
  restart(appDbid: string): Promise<ParleyProcess>;
  /** The URL of a chat server as the gateways know it (their /health), else from the harness. */
  nodeUrl(appDbid: string): Promise<string>;
  /** Waits until every gateway lists exactly these nodes and has a notification link to each. */
  waitForGateways(dbids?: readonly string[], timeoutMs?: number): Promise<void>;
  /** Waits until every live chat server has a notification link from every gateway. */
  waitForLinks(timeoutMs?: number): Promise<void>;
  /**
   * Brings the cluster back to N running chat servers: a node that is not running is replaced by a new
   * one with a fresh app dbid (204, 205, ...), then waits until every gateway sees exactly the running
   * nodes and every node has a link from every gateway. When a node was restarted under its own app dbid
   * shortly after it died, it first waits until the other nodes' memory of its failed health probe has
   * expired (see `PROBE_SUSPICION_MS`), so that the next test starts from a cluster that agrees who lives.
   */
  heal(): Promise<void>;
  /** A new connection to the cluster's database (the caller ends it). */
  pgClient(): Promise<pg.Client>;
  /** One statement on the cluster's database. */
  sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<R[]>;
  /** Kills every process (SIGKILL). */
  stopAll(): Promise<void>;
}

/** Every child of this worker, so that none survives it. */
const children = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns a value other than undefined/false; throws with `what` on timeout. */
export async function waitUntil<T>(check: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr === undefined ? '' : ` (last error: ${(lastErr as Error).message})`}`);
    }
    await sleep(everyMs);
  }
}

function clusterIni(pgUrl: string, receiverUrl: string, extra: string): string {
  return `
[node]
app-dbid = 201
dead-after = 3
heartbeat-interval = 1
[http]
host = 127.0.0.1
port = 0
[store]
type = postgres
url = ${pgUrl}
[receiver]
enabled = false
[chat.${SERVICE}]
description = cluster test service
[agent.alice]
name = Alice
password = alice-secret
max-chats = 100
[agent.bob]
name = Bob
password = bob-secret-1
max-chats = 100
[settings]
flex-push-on-join = true
flex-push-content = session-id, user-id, secure-key, app-dbid
[chat]
enable_notification_mode = true
push_notification_include_payload = true
[push]
pushEnabled = customhttp
customhttp.url = ${receiverUrl}/push
allowed-networks = loopback
${extra}
`;
}

function spawnParley(role: Role, iniPath: string, appDbid: string, env: Record<string, string>): Promise<ParleyProcess> {
  installExitHook();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', role, '--config', iniPath], {
    cwd: ROOT,
    env: { ...process.env, PARLEY_LOG_LEVEL: 'warn', PARLEY_HTTP_PORT: '0', ...(role === 'chat-server' ? { PARLEY_NODE_APP_DBID: appDbid } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  const keep = (d: Buffer): void => {
    out += d.toString();
    if (out.length > OUTPUT_KEEP * 2) out = out.slice(-OUTPUT_KEEP);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<ExitInfo>((res) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      res({ code, signal });
    });
  });
  const pattern = role === 'chat-server' ? /Internal API:\s+(http:\/\/\S+)/ : /Chat API v2:\s+(http:\/\/[^/\s]+)/;
  return new Promise<ParleyProcess>((resolveStart, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`parley ${role} ${appDbid} did not start within ${START_TIMEOUT_MS} ms:\n${out}`));
    }, START_TIMEOUT_MS);
    const onData = (): void => {
      const m = pattern.exec(out);
      if (m?.[1] === undefined) return;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      const p: ParleyProcess = {
        role,
        appDbid,
        pid: child.pid ?? -1,
        url: m[1],
        child,
        exited,
        exit: undefined,
        output: () => out.slice(-OUTPUT_KEEP),
      };
      void exited.then((e) => (p.exit = e));
      resolveStart(p);
    };
    child.stdout?.on('data', onData);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`parley ${role} ${appDbid} exited (${e.code ?? e.signal}) before it started:\n${out}`));
    });
  });
}

async function getJson(url: string, timeoutMs = 2000): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return res.json();
}

export async function gatewayHealth(url: string): Promise<GatewayHealth> {
  return (await getJson(`${url}/health`)) as GatewayHealth;
}

/**
 * Starts PostgreSQL, the fake receiver and the cluster in beforeAll; kills everything in afterAll. Use the
 * returned getter inside tests and hooks.
 */
export function useCluster(opts: ClusterOptions): () => Cluster {
  let cluster: Cluster | undefined;
  let pg: PostgresServer | undefined;
  let receiver: FakeReceiver | undefined;
  let dir = '';
  const all: ParleyProcess[] = [];

  beforeAll(async () => {
    [pg, receiver] = await Promise.all([startPostgres(), startFakeReceiver()]);
    dir = mkdtempSync(join(tmpdir(), 'parley-cluster-'));
    const iniPath = join(dir, 'cluster.ini');
    writeFileSync(iniPath, clusterIni(pg.url, receiver.url, opts.extraIni ?? ''));
    cluster = makeCluster(pg, receiver, iniPath, all);
    const c = cluster;
    // All in parallel: the migration's advisory lock lets one node create the schema while the others wait.
    const dbids = Array.from({ length: opts.chatServers }, (_, i) => String(201 + i));
    await Promise.all([...dbids.map((d) => c.startNode(d)), ...Array.from({ length: opts.gateways }, () => c.startGateway())]);
    await c.waitForGateways(dbids);
    await c.waitForLinks();
  }, 180_000);

  afterAll(async () => {
    await cluster?.stopAll();
    // Also those still starting when something failed.
    for (const ch of children) ch.kill('SIGKILL');
    await receiver?.close().catch(() => undefined);
    await pg?.stop();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  return () => {
    if (cluster === undefined) throw new Error('the cluster is not running (use it inside tests and hooks)');
    return cluster;
  };
}

function makeCluster(pg_: PostgresServer, receiver: FakeReceiver, iniPath: string, all: ParleyProcess[]): Cluster {
  const nodes = new Map<string, ParleyProcess>();
  const gateways: ParleyProcess[] = [];
  /** App dbids that should be running (a replaced node's dbid leaves it). */
  const wanted = new Set<string>();
  /** When a node was restarted under its own app dbid: when its predecessor died. */
  const reborn = new Map<string, number>();
  const diedAt = new Map<string, number>();
  let nextDbid = 201;

  const c: Cluster = {
    pg: pg_,
    receiver,
    iniPath,
    nodes,
    gateways,
    gateway: (i) => {
      const g = gateways[((i % gateways.length) + gateways.length) % gateways.length];
      if (g === undefined) throw new Error('no gateway');
      return g.url;
    },
    liveDbids: () => [...nodes.values()].filter((n) => n.exit === undefined).map((n) => n.appDbid).sort(),
    async startNode(appDbid, env = {}) {
      const p = await spawnParley('chat-server', iniPath, appDbid, env);
      all.push(p);
      const before = diedAt.get(appDbid);
      if (before !== undefined) reborn.set(appDbid, before);
      nodes.set(appDbid, p);
      wanted.add(appDbid);
      nextDbid = Math.max(nextDbid, Number(appDbid) + 1);
      void p.exited.then(() => diedAt.set(appDbid, Date.now()));
      return p;
    },
    async startGateway(env = {}) {
      const p = await spawnParley('gateway', iniPath, '', env);
      all.push(p);
      gateways.push(p);
      return p;
    },
    async kill(appDbid) {
      const p = nodes.get(appDbid);
      if (p === undefined) throw new Error(`no node ${appDbid}`);
      if (p.exit !== undefined) return p.exit;
      p.child.kill('SIGKILL');
      return p.exited;
    },
    async terminate(appDbid, timeoutMs = 15_000) {
      const p = nodes.get(appDbid);
      if (p === undefined) throw new Error(`no node ${appDbid}`);
      if (p.exit !== undefined) return p.exit;
      p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
      try {
        return await p.exited;
      } finally {
        clearTimeout(timer);
      }
    },
    async restart(appDbid) {
      if (nodes.get(appDbid)?.exit === undefined && nodes.has(appDbid)) await c.kill(appDbid);
      return c.startNode(appDbid);
    },
    async nodeUrl(appDbid) {
      for (const g of gateways) {
        if (g.exit !== undefined) continue;
        try {
          const h = await gatewayHealth(g.url);
          const n = h.nodes.find((x) => x.app_dbid === appDbid);
          if (n !== undefined) return n.url;
        } catch {
          // try the next gateway
        }
      }
      const p = nodes.get(appDbid);
      if (p === undefined || p.exit !== undefined) throw new Error(`no live node ${appDbid}`);
      return p.url;
    },
    async waitForGateways(dbids = c.liveDbids(), timeoutMs = 15_000) {
      const want = [...dbids].sort().join(',');
      await waitUntil(
        async () => {
          for (const g of gateways) {
            if (g.exit !== undefined) continue;
            const h = await gatewayHealth(g.url);
            const have = h.nodes.map((n) => n.app_dbid).sort().join(',');
            if (have !== want || h.notification_links < dbids.length) return false;
          }
          return true;
        },
        `gateways to see nodes [${want}]`,
        timeoutMs,
      );
    },
    async waitForLinks(timeoutMs = 15_000) {
      const liveGateways = gateways.filter((g) => g.exit === undefined).length;
      await waitUntil(
        async () => {
          for (const n of nodes.values()) {
            if (n.exit !== undefined) continue;
            const h = (await getJson(`${n.url}/health`)) as { gateway_nodes?: number };
            if ((h.gateway_nodes ?? 0) < liveGateways) return false;
          }
          return true;
        },
        'every chat server to have a notification link from every gateway',
        timeoutMs,
      );
    },
    async heal() {
      const settleUntil = Math.max(0, ...[...reborn.values()].map((t) => t + PROBE_SUSPICION_MS));
      reborn.clear();
      if (settleUntil > Date.now()) await sleep(settleUntil - Date.now());
      const dead = [...wanted].filter((d) => nodes.get(d)?.exit !== undefined);
      for (const d of dead) wanted.delete(d);
      await Promise.all(dead.map(() => c.startNode(String(nextDbid++))));
      await c.waitForGateways([...wanted]);
      await c.waitForLinks();
    },
    async pgClient() {
      const client = new pg.Client({ connectionString: pg_.url, connectionTimeoutMillis: 10_000 });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    },
    async sql(text, params = []) {
      const client = await c.pgClient();
      try {
        return (await client.query(text, params)).rows;
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    async stopAll() {
      for (const p of all) if (p.exit === undefined) p.child.kill('SIGKILL');
      await Promise.all(all.map((p) => Promise.race([p.exited, sleep(5000)])));
    },
  };
  return c;
}

// ---------------------------------------------------------------------------------------------------------
// A Chat API v2 customer of the cluster.

export interface Reply {
  readonly status: number;
  readonly contentType: string;
  readonly raw: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
}

export interface WireEvent {
  readonly index: number;
  readonly type: string;
  readonly text?: string;
  readonly from: { readonly participantId: number; readonly type: string; readonly nickname?: string };
  readonly utcTime?: number;
  readonly userData?: Record<string, string>;
}

/** POSTs a form; never throws for an HTTP answer, only for a transport failure or the timeout. */
export async function post(url: string, fields: Record<string, string | number>, timeoutMs = 20_000): Promise<Reply> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) body.append(k, String(v));
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: body.toString(),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const raw = await res.text();
  const contentType = res.headers.get('content-type') ?? '';
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, contentType, raw, body: parsed };
}

/** JSON with sorted keys: the same event read back from anywhere compares equal. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Is the reply a Chat API v2 envelope (statusCode 0/1/2, messages array, errors when not 0)? */
export function isEnvelope(r: Reply): boolean {
  const b = r.body as { statusCode?: unknown; messages?: unknown; errors?: unknown } | undefined;
  if (b === undefined || b === null || typeof b !== 'object' || !r.contentType.startsWith('application/json')) return false;
  if (b.statusCode !== 0 && b.statusCode !== 1 && b.statusCode !== 2) return false;
  if (!Array.isArray(b.messages)) return false;
  return b.statusCode === 0 || (Array.isArray(b.errors) && b.errors.length > 0);
}

let deviceSeq = 0;

export class ClusterChat {
  chatId = '';
  userId = '';
  secureKey = '';
  alias = '';
  nextPosition = 1;
  /** Every event the customer was told about, by index. */
  readonly events = new Map<number, WireEvent>();
  /** Reasons the replies contradicted each other (same index, other content; repeated index in a reply). */
  readonly conflicts: string[] = [];
  /** Texts of customer messages answered with statusCode 0. */
  readonly acked: string[] = [];
  readonly deviceId: string;

  constructor(
    private readonly cluster: () => Cluster,
    label: string,
  ) {
    this.deviceId = `${label}-${process.pid}-${++deviceSeq}`;
  }

  get url(): string {
    return `/genesys/2/chat/${SERVICE}`;
  }

  /** Request Chat through gateway `gw`, push-subscribed with resend. */
  async start(gw: number, fields: Record<string, string> = {}): Promise<Reply> {
    const r = await post(`${this.cluster().gateway(gw)}${this.url}`, {
      nickname: `Customer ${this.deviceId}`,
      subject: 'cluster test',
      ...pushUserData(this.deviceId, { GCTI_GMS_PushResend: 'true' }),
      ...fields,
    });
    this.take(r);
    return r;
  }

  /**
   * `{chatId}/{op}` through gateway `gw`. `alias` defaults to the latest one; transcriptPosition to the
   * next position (pass 'omit' to leave it out).
   */
  async op(gw: number, op: string, fields: Record<string, string | number> = {}, o: { alias?: string; position?: number | 'omit' } = {}): Promise<Reply> {
    const pos = o.position ?? this.nextPosition;
    const r = await post(`${this.cluster().gateway(gw)}${this.url}/${encodeURIComponent(this.chatId)}/${op}`, {
      userId: this.userId,
      secureKey: this.secureKey,
      alias: o.alias ?? this.alias,
      ...(pos === 'omit' ? {} : { transcriptPosition: pos }),
      ...fields,
    });
    this.take(r);
    if (op === 'send' && r.body?.statusCode === 0 && typeof fields['message'] === 'string') this.acked.push(fields['message']);
    return r;
  }

  /** Repeats `op` while the answer is statusCode 1 (retryable) or the transport fails, up to `withinMs`. */
  async retry(gw: number, op: string, fields: Record<string, string | number> = {}, o: { alias?: string; position?: number | 'omit'; withinMs?: number } = {}): Promise<Reply> {
    const deadline = Date.now() + (o.withinMs ?? 15_000);
    let attempt = 0;
    for (;;) {
      let r: Reply | undefined;
      try {
        r = await this.op(gw + attempt, op, fields, o);
        if (r.body?.statusCode !== 1) return r;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      if (Date.now() > deadline) {
        if (r !== undefined) return r;
        throw new Error(`${op} of ${this.chatId} did not succeed within ${o.withinMs ?? 15_000} ms`);
      }
      attempt++;
      await sleep(100);
    }
  }

  /** Records a reply: tokens, alias, next position and events. */
  take(r: Reply): void {
    const b = r.body as
      | { statusCode?: number; chatId?: string; userId?: string; secureKey?: string; alias?: string; nextPosition?: number; messages?: WireEvent[] }
      | undefined;
    if (b?.statusCode !== 0) return;
    if (b.chatId !== undefined) this.chatId = b.chatId;
    if (b.userId !== undefined) this.userId = b.userId;
    if (b.secureKey !== undefined) this.secureKey = b.secureKey;
    if (b.alias !== undefined) this.alias = b.alias;
    if (typeof b.nextPosition === 'number') this.nextPosition = Math.max(this.nextPosition, b.nextPosition);
    const seen = new Set<number>();
    for (const m of b.messages ?? []) {
      if (typeof m.index !== 'number') continue;
      if (seen.has(m.index)) this.conflicts.push(`index ${m.index} twice in one reply`);
      seen.add(m.index);
      const before = this.events.get(m.index);
      if (before === undefined) this.events.set(m.index, m);
      else if (canonical(before) !== canonical(m)) this.conflicts.push(`index ${m.index}: ${canonical(before)} then ${canonical(m)}`);
    }
  }

  /** Pushes to this customer's device that the receiver got. */
  pushes(): ReceivedPush[] {
    return this.cluster().receiver.received.filter((p) => (p.body as { deviceId?: string } | undefined)?.deviceId === this.deviceId);
  }
}

/** Problems of a full transcript: indices must be 1..n, each once. */
export function indexProblems(messages: readonly WireEvent[]): string[] {
  const problems: string[] = [];
  messages.forEach((m, i) => {
    if (m.index !== i + 1) problems.push(`position ${i} has index ${m.index}, expected ${i + 1}`);
  });
  return problems;
}

/** Counts of each text among the Message events. */
export function messageCounts(messages: readonly WireEvent[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of messages) if (m.type === 'Message' && m.text !== undefined) counts.set(m.text, (counts.get(m.text) ?? 0) + 1);
  return counts;
}

/** An agent on one chat server node (the agent API lives on the node that owns the chat). */
export class NodeAgent {
  private token = '';
  constructor(
    readonly nodeUrl: string,
    readonly agentId = 'alice',
    readonly password = 'alice-secret',
  ) {}

  async login(): Promise<void> {
    const r = await this.call('POST', 'login', { agentId: this.agentId, password: this.password });
    if (r.status !== 200) throw new Error(`agent login at ${this.nodeUrl} failed: ${r.status} ${JSON.stringify(r.body)}`);
    this.token = (r.body as { token: string }).token;
  }

  async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.nodeUrl}/agent/api/${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(this.token === '' ? {} : { authorization: `Bearer ${this.token}` }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed };
  }

  accept(chatId: string) {
    return this.call('POST', `chats/${encodeURIComponent(chatId)}/accept`, {});
  }

  send(chatId: string, text: string) {
    return this.call('POST', `chats/${encodeURIComponent(chatId)}/send`, { text });
  }
}

/** Agents per node URL, logged in once. */
export class AgentPool {
  private readonly agents = new Map<string, Promise<NodeAgent>>();

  at(nodeUrl: string): Promise<NodeAgent> {
    let a = this.agents.get(nodeUrl);
    if (a === undefined) {
      const agent = new NodeAgent(nodeUrl);
      a = agent.login().then(() => agent);
      a.catch(() => this.agents.delete(nodeUrl));
      this.agents.set(nodeUrl, a);
    }
    return a;
  }
}
