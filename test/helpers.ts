/**
 * Test fixtures: a real Parley process-in-process on port 0 with a throwaway SQLite file, a Chat API v2
 * client that speaks form-urlencoded or multipart, and an agent client (REST + WebSocket).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/load.ts';
import type { Config } from '../src/config/catalogue.ts';
import { silentLogger, type Logger } from '../src/log.ts';
import { startAll, type Running, type StartOptions } from '../src/roles/start.ts';

export const SERVICE = 'customer-support';

export const BASE_INI = `
[node]
app-dbid = 117
[http]
host = 127.0.0.1
port = 0
cors-allowed-origins = http://allowed.example
[client-file-transfer]
upload-max-total-size = 100000
upload-max-file-size = 40000
upload-max-files = 3
upload-file-types = txt:png:pdf
download-attempts = 2
[chat.${SERVICE}]
description = test service
[chat.other]
[agent.alice]
name = Alice
password = alice-secret
max-chats = 2
[agent.bob]
name = Bob
password = bob-secret-1
max-chats = 1
`;

export interface TestServer {
  readonly url: string;
  readonly dir: string;
  readonly config: Config;
  running: Running;
  /** Stops the server and starts it again on the same database file. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts Parley on port 0 with `BASE_INI` plus `extraIni`; `env` overrides as PARLEY_* would; `opts` injects
 * a clock, jitter randomness or manual push ticking (`autoPush: false`).
 */
export async function startTestServer(
  extraIni = '',
  env: Record<string, string> = {},
  opts: Partial<StartOptions> = {},
): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-test-'));
  const config = parseConfig(BASE_INI + extraIni, 'test.ini', {
    PARLEY_STORE_PATH: join(dir, 'parley.db'),
    PARLEY_RECEIVER_STORE_PATH: join(dir, 'receiver.db'),
    ...env,
  });
  const startOpts: StartOptions = { log: silentLogger, ...opts };
  let running = await startAll(config, startOpts);
  const server: TestServer = {
    get url() {
      return running.url;
    },
    dir,
    config,
    get running() {
      return running;
    },
    set running(r: Running) {
      running = r;
    },
    /** Stops and starts again on the same database file and the same port, like a process restart. */
    async restart() {
      const port = Number(new URL(running.url).port);
      await running.close();
      running = await startAll({ ...config, http: { ...config.http, port } }, startOpts);
    },
    async close() {
      await running.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** A logger that keeps every line, for tests that check what was logged. */
export function memoryLogger(): Logger & { lines: Array<{ level: string; obj: object; msg: string | undefined }> } {
  const lines: Array<{ level: string; obj: object; msg: string | undefined }> = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  const log = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return log;
}

/** GET /health of a server. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function getHealth(base: string): Promise<any> {
  return (await fetch(`${base}/health`)).json();
}

export interface ApiResponse {
  readonly status: number;
  readonly headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
}

/** POSTs a form-urlencoded body (object values may be arrays for repeated fields). */
export async function postForm(url: string, fields: Record<string, string | number>, headers: Record<string, string> = {}): Promise<ApiResponse> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) body.append(k, String(v));
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: body.toString(),
  });
  return { status: res.status, headers: res.headers, body: await parse(res) };
}

/** POSTs multipart/form-data; `file` becomes the part named "file". */
export async function postMultipart(
  url: string,
  fields: Record<string, string | number>,
  file?: { name: string; type: string; bytes: Uint8Array },
): Promise<ApiResponse> {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.append(k, String(v));
  if (file !== undefined) fd.append('file', new Blob([file.bytes], { type: file.type }), file.name);
  const res = await fetch(url, { method: 'POST', body: fd });
  return { status: res.status, headers: res.headers, body: await parse(res) };
}

export async function postRaw(url: string, body: string | Uint8Array, contentType?: string, headers: Record<string, string> = {}): Promise<ApiResponse> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...(contentType === undefined ? {} : { 'content-type': contentType }), ...headers },
    body,
  });
  return { status: res.status, headers: res.headers, body: await parse(res) };
}

async function parse(res: Response): Promise<unknown> {
  const type = res.headers.get('content-type') ?? '';
  if (type.startsWith('application/json')) return res.json();
  return Buffer.from(await res.arrayBuffer());
}

/** A Chat API v2 customer: keeps the tokens and the last nextPosition like a real client. */
export class ChatClient {
  chatId = '';
  userId = '';
  secureKey = '';
  alias = '';
  nextPosition = 1;

  constructor(
    readonly base: string,
    readonly service = SERVICE,
  ) {}

  get chatUrl(): string {
    return `${this.base}/genesys/2/chat/${this.service}`;
  }

  ids(): Record<string, string> {
    return { userId: this.userId, secureKey: this.secureKey, alias: this.alias };
  }

  async start(fields: Record<string, string> = { nickname: 'Ann', subject: 'Order 42' }): Promise<ApiResponse> {
    const r = await postForm(this.chatUrl, fields);
    if (r.body.statusCode === 0) this.take(r.body);
    return r;
  }

  /** Calls `{chatId}/{op}` with the tokens plus `fields`. */
  async op(op: string, fields: Record<string, string | number> = {}): Promise<ApiResponse> {
    const r = await postForm(`${this.chatUrl}/${this.chatId}/${op}`, { ...this.ids(), ...fields });
    if (r.body?.statusCode === 0) this.take(r.body);
    return r;
  }

  async refresh(): Promise<ApiResponse> {
    return this.op('refresh', { transcriptPosition: this.nextPosition });
  }

  private take(b: { chatId: string; userId: string; secureKey: string; alias: string; nextPosition: number }): void {
    this.chatId = b.chatId;
    this.userId = b.userId;
    this.secureKey = b.secureKey;
    this.alias = b.alias;
    this.nextPosition = b.nextPosition;
  }
}

/** An agent over the agent REST API. */
export class AgentClient {
  token = '';
  constructor(
    readonly base: string,
    readonly agentId: string,
    readonly password: string,
  ) {}

  async login(): Promise<void> {
    const r = await this.call('POST', 'login', { agentId: this.agentId, password: this.password });
    if (r.status !== 200) throw new Error(`login failed: ${JSON.stringify(r.body)}`);
    this.token = r.body.token;
  }

  async call(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    const res = await fetch(`${this.base}/agent/api/${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(this.token === '' ? {} : { authorization: `Bearer ${this.token}` }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, headers: res.headers, body: await res.json() };
  }

  accept(chatId: string) {
    return this.call('POST', `chats/${chatId}/accept`, {});
  }
  send(chatId: string, text: string) {
    return this.call('POST', `chats/${chatId}/send`, { text });
  }
  typing(chatId: string, typing: boolean, text?: string) {
    return this.call('POST', `chats/${chatId}/typing`, { typing, text });
  }
  leave(chatId: string) {
    return this.call('POST', `chats/${chatId}/leave`, {});
  }
  close(chatId: string) {
    return this.call('POST', `chats/${chatId}/close`, {});
  }
  overview() {
    return this.call('GET', 'chats');
  }
}

/** Opens the agent WebSocket and collects frames; `next(type)` returns the oldest unconsumed frame of a type. */
export async function openAgentSocket(
  base: string,
  token: string,
): Promise<{ ws: WebSocket; frames: Array<Record<string, unknown>>; next(type: string): Promise<Record<string, unknown>> }> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/agent/api/ws`);
  const frames: Array<Record<string, unknown>> = [];
  const consumed = new Set<Record<string, unknown>>();
  const waiters: Array<{ type: string; resolve: (f: Record<string, unknown>) => void }> = [];
  ws.on('message', (d) => {
    const f = JSON.parse(d.toString()) as Record<string, unknown>;
    frames.push(f);
    const i = waiters.findIndex((w) => w.type === f['type']);
    if (i >= 0) {
      consumed.add(f);
      waiters.splice(i, 1)[0]?.resolve(f);
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'auth', token }));
  const next = (type: string) =>
    new Promise<Record<string, unknown>>((resolve) => {
      const found = frames.find((f) => f['type'] === type && !consumed.has(f));
      if (found !== undefined) {
        consumed.add(found);
        resolve(found);
      } else waiters.push({ type, resolve });
    });
  return { ws, frames, next };
}
