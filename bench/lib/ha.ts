/**
 * HA suite helpers: settings, a keep-alive Chat API v2 client on an undici Pool (setup and the restore
 * pings; the send load itself is autocannon), a separate database per target, and small text tables.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { Pool } from 'undici';
import type { Envelope } from './parley.ts';
import { envInt } from './env.ts';

/** Issue 8: this many sessions restored after a node loss... */
export const TARGET_SESSIONS = 100_000;
/** ...in under this many seconds, on PostgreSQL. */
export const TARGET_SECONDS = 60;

export interface HaSettings {
  /** Sessions created on node 201 and restored on 202. */
  readonly sessions: number;
  /** Restore pings in flight at once (like the receiver's restore-concurrency). */
  readonly concurrency: number;
  /** Request Chat + send pairs in flight while creating the sessions. */
  readonly createConcurrency: number;
  /** A directory for `node --cpu-prof` profiles of node 202 and the gateway during the restore, or undefined. */
  readonly cpuProfDir: string | undefined;
}


export function haSettings(): HaSettings {
  const quick = process.env['BENCH_QUICK'] === '1';
  const prof = process.env['BENCH_HA_CPU_PROF'];
  return {
    sessions: envInt('BENCH_HA_SESSIONS', quick ? 1_000 : 10_000),
    concurrency: envInt('BENCH_HA_CONCURRENCY', 64),
    createConcurrency: envInt('BENCH_HA_CREATE_CONCURRENCY', 64),
    cpuProfDir: prof === undefined || prof.trim() === '' ? undefined : prof,
  };
}

export interface Reply {
  readonly status: number;
  readonly body: Envelope;
}

/** Form POSTs to one base URL over `connections` keep-alive connections. */
export class FormClient {
  private readonly pool: Pool;

  constructor(base: string, connections: number) {
    if (new URL(base).hostname !== '127.0.0.1') throw new Error(`benchmark traffic goes to 127.0.0.1 only, not ${base}`);
    this.pool = new Pool(base, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
  }

  async post(path: string, form: string): Promise<Reply> {
    const res = await this.pool.request({
      method: 'POST',
      path,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const text = await res.body.text();
    try {
      return { status: res.statusCode, body: JSON.parse(text) as Envelope };
    } catch {
      throw new Error(`POST ${path}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 200)}`);
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Creates database `name` on the server of `url` and answers the URL of the new database. */
export async function createDatabase(url: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** One query on a short-lived connection (checks after a run). */
export async function queryOnce<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function num(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** `cpu ms / wall ms` in % of one core, one decimal; null when unknown. */
export function pct(cpuMs: number | undefined, wallMs: number): number | null {
  return cpuMs === undefined || wallMs <= 0 ? null : Math.round((cpuMs / wallMs) * 1000) / 10;
}

/** A fixed-width text table: first column left-aligned, the others right-aligned. */
export function textGrid(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const all = [headers, ...rows];
  const widths = headers.map((_, c) => Math.max(...all.map((line) => (line[c] ?? '').length)));
  const fmt = (line: readonly string[]) => line.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  ');
  return [fmt(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)];
}

/** The same table in Markdown. */
export function markdownGrid(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const line = (cs: readonly string[]) => `| ${cs.join(' | ')} |`;
  return [line(headers), line(headers.map((_, c) => (c === 0 ? '---' : '---:'))), ...rows.map(line)];
}

/** Busy time of the whole machine (all CPUs, every process, steal included) in ms from /proc/stat; undefined off Linux. */
export function machineBusyMs(): number | undefined {
  try {
    const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return Number.isFinite(busy) ? busy * 10 : undefined; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/** The machine's busy % minus the listed processes' % (never below 0); null when any is unknown. */
export function othersPercent(machine: number | null, ours: readonly (number | null)[]): number | null {
  if (machine === null || ours.some((v) => v === null)) return null;
  const sum = ours.reduce<number>((a, v) => a + (v ?? 0), 0);
  return Math.max(0, Math.round((machine - sum) * 10) / 10);
}

/** Nearest-rank percentile `p` (0..100) of `values`; 0 for none. */
export function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return 0;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}
