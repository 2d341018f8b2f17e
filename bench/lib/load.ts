/**
 * The autocannon wrapper: an unrecorded warm-up run, then the measured run, both with the same options,
 * turned into a table `Row`. autocannon runs in this (the parent) process; the server is a child.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { LoadSettings, Row } from './types.ts';

/** The part of autocannon's request object the scenarios touch. */
export interface AutocannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

interface Histogram {
  readonly average: number;
  readonly mean: number;
  readonly stddev: number;
  readonly min: number;
  readonly max: number;
  readonly total: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p99_9: number;
}

interface AutocannonResult {
  readonly requests: Histogram;
  readonly latency: Histogram;
  readonly throughput: Histogram;
  readonly duration: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly mismatches: number;
  readonly statusCodeStats?: Readonly<Record<string, { count: number }>>;
  readonly '1xx': number;
  readonly '2xx': number;
  readonly '3xx': number;
  readonly '4xx': number;
  readonly '5xx': number;
}

interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  timeout?: number;
  requests?: Array<AutocannonRequest & { setupRequest?: (req: AutocannonRequest, context: Record<string, unknown>) => AutocannonRequest }>;
}

interface Instance extends PromiseLike<AutocannonResult> {
  stop(): void;
}

type Autocannon = (opts: AutocannonOptions) => Instance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export interface LoadSpec {
  /** Base URL of the server (http://127.0.0.1:port). */
  readonly url: string;
  /** Path for a fixed request; ignored when `next` sets one. */
  readonly path?: string;
  readonly method?: string;
  readonly headers?: Record<string, string>;
  /** A fixed body, or... */
  readonly body?: string;
  /** ...a function called before every request (rotate over chats, number messages). */
  readonly next?: () => { path: string; body: string };
  /** The server child's pid, to report its CPU use during the measured run (Linux /proc only). */
  readonly serverPid?: number;
}

export interface Measured {
  readonly reqPerSec: number;
  readonly latencyMs: Row['latencyMs'];
  readonly requests: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly statusCodes: Record<string, number>;
  /** Responses (any status) seen during the unrecorded warm-up. */
  readonly warmupRequests: number;
  /** CPU use during the measured run, in % of one core: autocannon (this process) and the server child. */
  readonly cpuPercent: { readonly loadGenerator: number; readonly server: number | null };
  readonly raw: {
    readonly durationSeconds: number;
    readonly requestsPerSecondSamples: { average: number; stddev: number; min: number; max: number };
    readonly latency: { p90: number; p99_9: number; stddev: number; min: number };
    readonly throughputBytesPerSec: number;
  };
}

function options(spec: LoadSpec, settings: LoadSettings, duration: number): AutocannonOptions {
  const target = new URL(spec.url);
  if (target.hostname !== '127.0.0.1') throw new Error(`benchmark traffic goes to 127.0.0.1 only, not ${target.hostname}`);
  const next = spec.next;
  return {
    url: spec.url + (spec.path ?? '/'),
    connections: settings.connections,
    duration,
    timeout: 10,
    method: spec.method ?? 'POST',
    headers: spec.headers ?? {},
    ...(spec.body === undefined ? {} : { body: spec.body }),
    ...(next === undefined
      ? {}
      : {
          requests: [
            {
              setupRequest: (req: AutocannonRequest) => {
                const n = next();
                return { ...req, path: n.path, body: n.body };
              },
            },
          ],
        }),
  };
}

async function runOnce(opts: AutocannonOptions, budgetMs: number): Promise<AutocannonResult> {
  const instance = autocannon(opts);
  // autocannon stops by itself after `duration`; this is only a guard against a stuck run.
  const guard = setTimeout(() => instance.stop(), budgetMs);
  try {
    return await instance;
  } finally {
    clearTimeout(guard);
  }
}

/** utime + stime of a process in ms from /proc/<pid>/stat, or undefined off Linux. */
export function procCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined || pid <= 0) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command name start at field 3 (state); utime and stime are fields 14 and 15.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * 10 : undefined; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

function statusCounts(r: AutocannonResult): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) out[code] = Number(s.count);
  return out;
}

/** Warm-up (unrecorded) then measured run. */
export async function measure(spec: LoadSpec, settings: LoadSettings): Promise<Measured> {
  let warmupRequests = 0;
  if (settings.warmupSeconds > 0) {
    const w = await runOnce(options(spec, settings, settings.warmupSeconds), (settings.warmupSeconds + 30) * 1000);
    warmupRequests = w.requests.total;
  }
  const cpu0 = process.cpuUsage();
  const server0 = procCpuMs(spec.serverPid);
  const wall0 = performance.now();
  const r = await runOnce(options(spec, settings, settings.durationSeconds), (settings.durationSeconds + 30) * 1000);
  const wallMs = performance.now() - wall0;
  const cpu = process.cpuUsage(cpu0);
  const server1 = procCpuMs(spec.serverPid);
  const pct = (ms: number) => Math.round((ms / wallMs) * 1000) / 10;
  const seconds = r.duration > 0 ? r.duration : settings.durationSeconds;
  return {
    reqPerSec: r.requests.total / seconds,
    latencyMs: { p50: r.latency.p50, p99: r.latency.p99, avg: r.latency.average, max: r.latency.max },
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes: statusCounts(r),
    warmupRequests,
    cpuPercent: {
      loadGenerator: pct((cpu.user + cpu.system) / 1000),
      server: server0 === undefined || server1 === undefined ? null : pct(server1 - server0),
    },
    raw: {
      durationSeconds: seconds,
      requestsPerSecondSamples: { average: r.requests.average, stddev: r.requests.stddev, min: r.requests.min, max: r.requests.max },
      latency: { p90: r.latency.p90, p99_9: r.latency.p99_9, stddev: r.latency.stddev, min: r.latency.min },
      throughputBytesPerSec: r.throughput.average,
    },
  };
}

/** A table row from a measurement. */
export function toRow(scenario: string, description: string, m: Measured, extra: Record<string, unknown> = {}, baseline = false): Row {
  return {
    scenario,
    description,
    ...(baseline ? { baseline: true } : {}),
    reqPerSec: m.reqPerSec,
    latencyMs: m.latencyMs,
    requests: m.requests,
    non2xx: m.non2xx,
    errors: m.errors,
    timeouts: m.timeouts,
    statusCodes: m.statusCodes,
    extra: { warmupRequests: m.warmupRequests, cpuPercent: m.cpuPercent, ...m.raw, ...extra },
  };
}
