/**
 * A minimal Chat API v2 client for benchmark setup (not for the measured traffic, which autocannon sends):
 * Request Chat, send, refresh over form-urlencoded POSTs with the global fetch.
 */
import { appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BenchContext } from './types.ts';
import { SERVER_NODE_FLAGS } from '../../src/node-flags.ts';

/** The chat service configured by `bench/server-parley.ts`. */
export const BENCH_SERVICE = 'bench';

export interface BenchChat {
  readonly chatId: string;
  readonly userId: string;
  readonly secureKey: string;
  readonly alias: string;
  nextPosition: number;
}

export interface Envelope {
  readonly statusCode: number;
  readonly chatId?: string;
  readonly userId?: string;
  readonly secureKey?: string;
  readonly alias?: string;
  readonly nextPosition?: number;
  readonly messages?: readonly unknown[];
  readonly errors?: ReadonlyArray<{ code: number; advice: string }>;
}

export function chatUrl(base: string, service = BENCH_SERVICE): string {
  return `${base}/genesys/2/chat/${encodeURIComponent(service)}`;
}

export function opPath(chat: BenchChat, op: string, service = BENCH_SERVICE): string {
  return `/genesys/2/chat/${encodeURIComponent(service)}/${encodeURIComponent(chat.chatId)}/${op}`;
}

/** `secureKey=..&userId=..&alias=..` for `chat`, ready to be followed by `&field=value`. */
export function identityForm(chat: BenchChat): string {
  return new URLSearchParams({ secureKey: chat.secureKey, userId: chat.userId, alias: chat.alias }).toString();
}

export async function postForm(url: string, form: string): Promise<{ status: number; body: Envelope; bytes: number }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form });
  const text = await res.text();
  let body: Envelope;
  try {
    body = JSON.parse(text) as Envelope;
  } catch {
    throw new Error(`POST ${url}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body, bytes: Buffer.byteLength(text) };
}

function expectOk(what: string, r: { status: number; body: Envelope }): void {
  if (r.status !== 200 || r.body.statusCode !== 0) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Creates `count` chats (Request Chat) with `concurrency` requests in flight. */
export async function createChats(base: string, count: number, concurrency = 16): Promise<BenchChat[]> {
  const url = chatUrl(base);
  return mapLimit(Array.from({ length: count }, (_, i) => i), concurrency, async (i) => {
    const form = new URLSearchParams({ nickname: `Bench ${i}`, subject: `Benchmark chat ${i}` }).toString();
    const r = await postForm(url, form);
    expectOk('Request Chat', r);
    const b = r.body;
    return { chatId: b.chatId ?? '', userId: b.userId ?? '', secureKey: b.secureKey ?? '', alias: b.alias ?? '', nextPosition: b.nextPosition ?? 1 };
  });
}

export async function send(base: string, chat: BenchChat, message: string): Promise<Envelope> {
  const r = await postForm(base + opPath(chat, 'send'), `${identityForm(chat)}&${new URLSearchParams({ message })}`);
  expectOk('send', r);
  return r.body;
}

/** Refreshes without transcript (`transcriptPosition=0`) and stores the chat's current nextPosition. */
export async function syncPosition(base: string, chat: BenchChat): Promise<BenchChat> {
  const r = await postForm(base + opPath(chat, 'refresh'), `${identityForm(chat)}&transcriptPosition=0`);
  expectOk('refresh', r);
  chat.nextPosition = r.body.nextPosition ?? chat.nextPosition;
  return chat;
}

export interface ParleyUnderTest {
  readonly url: string;
  readonly pid: number;
  readonly dbPath: string;
  /** Server log lines (warn and above) seen so far. */
  logLines(): readonly string[];
  stop(): Promise<void>;
}

/**
 * The store settings of a Parley child: `dbPath`, `[store] synchronous = normal`, and the receiver role's
 * token cache beside the store file (not in the working tree's ./data, which `npm start` uses).
 */
export function storeEnv(dbPath: string): Record<string, string> {
  return { PARLEY_STORE_PATH: dbPath, PARLEY_STORE_SYNCHRONOUS: 'normal', PARLEY_RECEIVER_STORE_PATH: join(dirname(dbPath), 'receiver.db') };
}

/**
 * Starts `bench/server-parley.ts` in its own process on a fresh SQLite file in a temp dir, or on `dbPath`
 * (PARLEY_STORE_PATH), `[store] synchronous = normal`.
 */
export async function startParley(ctx: BenchContext, env: Record<string, string> = {}, dbPath = join(ctx.tempDir('parley-bench-'), 'parley.db')): Promise<ParleyUnderTest> {
  // BENCH_SERVER_CPU_PROF=<dir>: profile the server with node --cpu-prof (the profile is written when it stops).
  const prof = process.env['BENCH_SERVER_CPU_PROF'];
  // BENCH_SERVER_NODE_ARGS: more node/V8 options for the server (space-separated), e.g. GC flags.
  const extra = (process.env['BENCH_SERVER_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  // The options every Parley server starts with (src/node-flags.ts), then the profiler's and the extra ones.
  const nodeArgs = [...SERVER_NODE_FLAGS, ...(prof === undefined || prof === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${prof}`]), ...extra];
  // BENCH_SERVER_STDOUT=<file>: the server's stdout after READY goes there (e.g. the lines of --trace-gc).
  const out = process.env['BENCH_SERVER_STDOUT'];
  const child = await ctx.spawnServer('server-parley.ts', {
    env: { ...storeEnv(dbPath), ...env },
    nodeArgs,
    ...(out === undefined || out === '' ? {} : { onStdoutLine: (line: string) => appendFileSync(out, `${line}\n`) }),
  });
  return { url: child.url, pid: child.pid, dbPath, logLines: () => child.stderrLines(), stop: () => child.stop() };
}

/** Flags server-side log lines (warnings, errors) a scenario produced. */
export function reportServerLog(ctx: BenchContext, scenario: string, server: ParleyUnderTest): number {
  const lines = server.logLines();
  if (lines.length > 0) ctx.warn(`${scenario}: server logged ${lines.length} line(s) on stderr, first: ${lines[0]?.slice(0, 300)}`);
  return lines.length;
}
