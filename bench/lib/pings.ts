/**
 * Shared parts of the pings suite: a GatewayClient that counts and times what the receiver sends, a
 * logger that keeps the receiver's warnings, a seeded random source, CPU accounting per phase (this
 * process, the server, the rest of the machine), and the comparison table. The short-polling load is
 * bench/lib/open-loop.ts.
 */
import { readFileSync } from 'node:fs';
import { GatewayClient, type ChatReply, type Tokens } from '../../src/receiver/gateway-client.ts';
import type { Logger } from '../../src/log.ts';
import { procCpuMs } from './load.ts';
import type { Row } from './types.ts';

/** GatewayClient that counts every operation and times it while `recording` is on. */
export class CountingGateway extends GatewayClient {
  /** Operation name -> calls (every call, recorded or not). */
  readonly calls = new Map<string, number>();
  recording = false;
  /** Round trips (ms) of recorded operations. */
  readonly latencies: number[] = [];
  /** Recorded operations answered with a Chat API v2 statusCode other than 0. */
  failedReplies = 0;
  /** Recorded operations that threw (transport error, 5xx, statusCode 1). */
  errors = 0;
  requestChats = 0;

  override async requestChat(fields: Record<string, string>): Promise<ChatReply> {
    this.requestChats++;
    return super.requestChat(fields);
  }

  override async operate(t: Tokens, operation: string, fields: Record<string, string | number> = {}): Promise<ChatReply> {
    this.calls.set(operation, (this.calls.get(operation) ?? 0) + 1);
    if (!this.recording) return super.operate(t, operation, fields);
    const t0 = performance.now();
    try {
      const reply = await super.operate(t, operation, fields);
      this.latencies.push(performance.now() - t0);
      if (reply.statusCode !== 0) this.failedReplies++;
      return reply;
    } catch (err) {
      this.errors++;
      throw err;
    }
  }

  count(operation: string): number {
    return this.calls.get(operation) ?? 0;
  }

  /** Clears the recorded latencies and failure counts (the call counts stay cumulative). */
  resetRecording(): void {
    this.latencies.length = 0;
    this.failedReplies = 0;
    this.errors = 0;
  }
}

/** A Logger that keeps warn/error lines (the receiver logs a failed refresh as a warning). */
export class CollectingLogger implements Logger {
  constructor(private readonly lines: string[] = [], private readonly bindings: Record<string, unknown> = {}) {}
  get collected(): readonly string[] {
    return this.lines;
  }
  debug(): void {}
  info(): void {}
  warn(obj: object, msg?: string): void {
    this.keep('warn', obj, msg);
  }
  error(obj: object, msg?: string): void {
    this.keep('error', obj, msg);
  }
  child(bindings: Record<string, unknown>): Logger {
    return new CollectingLogger(this.lines, { ...this.bindings, ...bindings });
  }
  private keep(level: string, obj: object, msg?: string): void {
    if (this.lines.length < 1000) this.lines.push(`${level} ${msg ?? ''} ${JSON.stringify({ ...this.bindings, ...obj })}`);
  }
}

/** mulberry32: a small seeded PRNG in [0,1), so a run's ping schedule can be reproduced. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** "100K" for 100000, "12.5K" for 12500, "800" for 800. */
export function kilo(n: number): string {
  if (n < 1000) return String(n);
  const k = n / 1000;
  return `${Number.isInteger(k) ? k : Math.round(k * 10) / 10}K`;
}

/** "30 min" for 1800 s, "5 s" for 5 s. */
export function interval(seconds: number): string {
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** Busy time of the whole machine (all CPUs, every process) in ms from /proc/stat, or undefined off Linux. */
export function machineBusyMs(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return Number.isFinite(busy) ? busy * 10 : undefined; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/**
 * CPU use over a phase, in % of one core: this process, the server child, and everything else on the
 * machine (other processes compete with the benchmark on a shared box).
 */
export class CpuWindow {
  private readonly wall0 = performance.now();
  private readonly self0 = process.cpuUsage();
  private readonly server0: number | undefined;
  private readonly machine0 = machineBusyMs();
  constructor(private readonly serverPid: number) {
    this.server0 = procCpuMs(serverPid);
  }
  read(): { wallMs: number; bench: number; server: number | null; others: number | null } {
    const wallMs = performance.now() - this.wall0;
    const self = process.cpuUsage(this.self0);
    const server1 = procCpuMs(this.serverPid);
    const machine1 = machineBusyMs();
    const p = (ms: number) => Math.round((ms / wallMs) * 1000) / 10;
    const selfMs = (self.user + self.system) / 1000;
    const serverMs = this.server0 === undefined || server1 === undefined ? undefined : server1 - this.server0;
    const othersMs = this.machine0 === undefined || machine1 === undefined || serverMs === undefined ? undefined : machine1 - this.machine0 - selfMs - serverMs;
    return { wallMs, bench: p(selfMs), server: serverMs === undefined ? null : p(serverMs), others: othersMs === undefined ? null : Math.max(0, p(othersMs)) };
  }
}

/** The comparison of the pings suite: rows that carry `extra.demandedReqPerSec`. */
export const COMPARISON_HEADERS = ['load', 'sessions', 'each session', 'demanded req/s', 'achieved req/s', 'p50 ms', 'p99 ms', 'server CPU', 'x pings'] as const;

interface ComparisonExtra {
  readonly sessions: number;
  readonly everySeconds: number;
  readonly demandedReqPerSec: number;
  readonly serverCpuPercent: number | null;
  readonly timesPings: number;
}

function comparison(row: Row): ComparisonExtra | undefined {
  const e = row.extra as Partial<ComparisonExtra> | undefined;
  if (e?.demandedReqPerSec === undefined) return undefined;
  return e as ComparisonExtra;
}

function fmt(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function comparisonCells(row: Row, e: ComparisonExtra): string[] {
  const small = (v: number) => fmt(v, v < 1000 ? 1 : 0);
  return [
    row.scenario,
    fmt(e.sessions, 0),
    interval(e.everySeconds),
    small(e.demandedReqPerSec),
    small(row.reqPerSec),
    fmt(row.latencyMs.p50, 2),
    fmt(row.latencyMs.p99, 2),
    e.serverCpuPercent === null ? '' : `${fmt(e.serverCpuPercent, 1)} %`,
    e.timesPings === 1 ? '1' : fmt(e.timesPings, 0),
  ];
}

export function hasComparison(rows: readonly Row[]): boolean {
  return rows.some((r) => comparison(r) !== undefined);
}

export function comparisonTextTable(rows: readonly Row[]): string {
  const body = rows.flatMap((r) => {
    const e = comparison(r);
    return e === undefined ? [] : [comparisonCells(r, e)];
  });
  const all = [[...COMPARISON_HEADERS], ...body];
  const widths = COMPARISON_HEADERS.map((_, c) => Math.max(...all.map((line) => (line[c] ?? '').length)));
  const line = (cs: string[]) => cs.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  ');
  return [line([...COMPARISON_HEADERS]), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

export function comparisonMarkdownTable(rows: readonly Row[]): string {
  const line = (cs: readonly string[]) => `| ${cs.join(' | ')} |`;
  const body = rows.flatMap((r) => {
    const e = comparison(r);
    return e === undefined ? [] : [line(comparisonCells(r, e))];
  });
  return [line(COMPARISON_HEADERS), line(COMPARISON_HEADERS.map((_, c) => (c <= 2 ? '---' : '---:'))), ...body].join('\n');
}
