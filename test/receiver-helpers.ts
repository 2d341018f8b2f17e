/**
 * Fixtures for the receiver tests: a free port, a browser tab on the receiver WebSocket, the receiver's
 * token cache read from its SQLite file, a `parley start` with the receiver mounted and pushing to itself,
 * and a real `parley start` child process (the chat server) for the HA cases.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { freePort } from './support/ports.ts';
import Database from 'better-sqlite3';
import { WebSocket } from 'ws';
import type { ChatEvent } from '../src/chat/types.ts';
import { ManualClock } from '../src/clock.ts';
import type { ReceiverRole } from '../src/roles/receiver-role.ts';
import { memoryLogger, startTestServer, type TestServer } from './helpers.ts';
import { pushIni } from './receiver-fixture.ts';

export { freePort };

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitUntil<T>(check: () => T | Promise<T>, what: string, timeoutMs = 5000): Promise<Exclude<T, false | undefined>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v as Exclude<T, false | undefined>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export type Frame = Record<string, unknown> & { type: string };

export interface EventsFrame {
  readonly type: 'events';
  readonly events: ChatEvent[];
  readonly chatEnded: boolean;
  readonly nextPosition: number;
}

/** One browser tab on /receiver/ws: records every frame; `next(type)` takes the oldest unconsumed one. */
export class Browser {
  readonly frames: Frame[] = [];
  private readonly consumed = new Set<Frame>();
  private readonly waiters: Array<{ type: string; resolve: (f: Frame) => void }> = [];
  /** Resolves with the close code when the server closes the socket. */
  readonly closed: Promise<number>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as Frame;
      this.frames.push(f);
      const i = this.waiters.findIndex((w) => w.type === f.type);
      if (i >= 0) {
        this.consumed.add(f);
        this.waiters.splice(i, 1)[0]?.resolve(f);
      }
    });
    this.closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  }

  static async open(base: string): Promise<Browser> {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/receiver/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Browser(ws);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  next(type: string, timeoutMs = 5000): Promise<Frame> {
    const found = this.frames.find((f) => f.type === type && !this.consumed.has(f));
    if (found !== undefined) {
      this.consumed.add(found);
      return Promise.resolve(found);
    }
    return new Promise((resolve, reject) => {
      const w = {
        type,
        resolve: (f: Frame) => {
          clearTimeout(t);
          resolve(f);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no "${type}" frame within ${timeoutMs} ms; frames: ${JSON.stringify(this.frames)}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Every event received so far, in arrival order, across all events frames. */
  events(): ChatEvent[] {
    return this.frames.filter((f) => f.type === 'events').flatMap((f) => (f as unknown as EventsFrame).events);
  }

  /** "index:type[:text]" of every event received, in arrival order. */
  log(): string[] {
    return this.events().map((e) => `${e.index}:${e.type}${e.text === undefined ? '' : `:${e.text}`}`);
  }

  /** Resolves when an event matching `pred` has arrived. */
  waitForEvent(pred: (e: ChatEvent) => boolean, what: string, timeoutMs = 5000): Promise<ChatEvent> {
    return waitUntil(() => this.events().find(pred), what, timeoutMs);
  }

  /** The nextPosition of the last events frame (what a browser would resume from). */
  position(): number {
    const last = this.frames.filter((f) => f.type === 'events').at(-1) as unknown as EventsFrame | undefined;
    return last?.nextPosition ?? 1;
  }

  /** Sends start and returns the token and chatId of the started frame (and consumes its events frame). */
  async start(nickname = 'Ann'): Promise<{ token: string; chatId: string }> {
    this.send({ type: 'start', nickname, subject: 'Order 42' });
    const started = await this.next('started');
    await this.next('events');
    return { token: String(started['token']), chatId: String(started['chatId']) };
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    const timer = setTimeout(() => this.ws.terminate(), 1000);
    await this.closed;
    clearTimeout(timer);
  }
}

/** A receiver_sessions row of the receiver's token cache, read from its SQLite file. */
export interface CachedRow {
  readonly browserToken: string;
  readonly deviceId: string;
  readonly chatId: string;
  readonly alias: string;
  readonly nextPosition: number;
  readonly nextPingAt: number;
  readonly ended: boolean;
}

/** The receiver's cache as stored (the Receiver has no getter for deviceId; its cache is durable). */
export function readCache(path: string): CachedRow[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT doc FROM receiver_sessions').pluck().all() as string[]).map((d) => JSON.parse(d) as CachedRow);
  } finally {
    db.close();
  }
}

export function cachedByToken(path: string, token: string): CachedRow {
  const row = readCache(path).find((r) => r.browserToken === token);
  if (row === undefined) throw new Error(`no cached session for token ${token}`);
  return row;
}

/** POSTs a JSON body to a receiver push endpoint. */
export async function postPush(base: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(`${base}/receiver/push`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: raw });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed };
}

/** Value of a Prometheus counter line, e.g. `parley_push_attempts_total{result="delivered"}`. */
export async function metric(base: string, line: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  for (const l of text.split('\n')) if (l.startsWith(`${line} `)) return Number(l.slice(line.length + 1));
  return 0;
}

/** An agent event in the shape the chat server puts in a push payload. */
export function agentMessage(index: number, text: string): ChatEvent {
  return { index, type: 'Message', text, utcTime: Date.now(), from: { nickname: 'Alice', participantId: 2, type: 'Agent' } };
}

export interface InProcess {
  readonly srv: TestServer;
  readonly url: string;
  readonly clock: ManualClock;
  readonly log: ReturnType<typeof memoryLogger>;
  readonly role: ReceiverRole;
  readonly cachePath: string;
  tickPush(): Promise<void>;
}

/**
 * `parley start` in this process, on a port known before start so that `[push] customhttp.url` is its own
 * `/receiver/push`. Manual clock, nothing ticks by itself.
 */
export async function startInProcess(env: Record<string, string> = {}, opts: { random?: () => number } = {}): Promise<InProcess> {
  const port = await freePort();
  const clock = new ManualClock(Date.now());
  const log = memoryLogger();
  // pushIni appends /push to the URL: customhttp.url = http://127.0.0.1:<port>/receiver/push
  const srv = await startTestServer(pushIni(`http://127.0.0.1:${port}/receiver`), { PARLEY_HTTP_PORT: String(port), ...env }, {
    clock,
    autoPush: false,
    random: opts.random ?? (() => 0.5),
    log,
  });
  const role = srv.running.receiver;
  if (role === undefined) throw new Error('receiver not running');
  return {
    srv,
    url: srv.url,
    clock,
    log,
    role,
    cachePath: srv.config.receiver.storePath,
    tickPush: () => pushEngine(srv.running.app).tick(),
  };
}

/**
 * The push engine of the app's chat server node. src/app.ts is being refactored (the engine moves from
 * `app.push` to `app.node.push`); this accepts both so the receiver tests do not depend on where it lives.
 */
export function pushEngine(app: unknown): { tick(): Promise<void> } {
  const a = app as { push?: { tick(): Promise<void> }; node?: { push?: { tick(): Promise<void> } } };
  const engine = a.node?.push ?? a.push;
  if (engine === undefined) throw new Error('no push engine on the app');
  return engine;
}

/** A `parley start` child process; resolves with its base URL once it printed it. */
export async function startChild(configPath: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--config', configPath], {
    env: { ...process.env, PARLEY_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`parley did not start: ${out}${err}`)), 15_000);
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Chat API v2:\s+(http:\/\/[^/\s]+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`parley exited ${code}: ${out}${err}`));
    });
  });
  return { proc, url };
}

export async function killChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
}

/** An HTTP server that mounts a receiver role at /receiver/*; `gate` may answer a request itself first. */
export async function mountReceiver(
  role: ReceiverRole,
  port: number,
  gate?: (req: IncomingMessage, res: ServerResponse) => boolean,
): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = createHttpServer((req, res) => {
    if (gate?.(req, res) === true) return;
    const u = new URL(req.url ?? '/', 'http://localhost');
    if (u.pathname.startsWith('/receiver/')) return role.http.handle(req, res, u.pathname, u.searchParams);
    req.resume();
    res.writeHead(404).end();
  });
  server.on('upgrade', (req, socket, head) => {
    if (!role.http.upgrade(req, socket, head)) socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
