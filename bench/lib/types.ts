/** Shared shapes of the benchmark harness: what a scenario gets and what it gives back. */
import type { ServerChild, SpawnOptions } from './child.ts';

/** How every HTTP load run of this invocation is shaped. */
export interface LoadSettings {
  /** Concurrent keep-alive connections. */
  readonly connections: number;
  /** Unrecorded warm-up, seconds. */
  readonly warmupSeconds: number;
  /** Measured run, seconds. */
  readonly durationSeconds: number;
}

/** One line of the results table (and of the JSON file). */
export interface Row {
  readonly scenario: string;
  /** What one request is, in a few words (goes into the JSON and the README). */
  readonly description: string;
  /** The row the other rows' ratio is computed against (exactly one per suite). */
  readonly baseline?: boolean;
  readonly reqPerSec: number;
  readonly latencyMs: {
    readonly p50: number;
    /** Only rows that measure latency themselves (the push suite); autocannon rows keep p90 under extra. */
    readonly p90?: number;
    readonly p99: number;
    readonly avg: number;
    readonly max: number;
  };
  readonly requests: number;
  readonly non2xx: number;
  /** Connection errors and timeouts reported by autocannon. */
  readonly errors: number;
  readonly timeouts: number;
  readonly statusCodes: Readonly<Record<string, number>>;
  /** Anything else a scenario wants to keep in the JSON (setup figures, sanity checks). */
  readonly extra?: Readonly<Record<string, unknown>>;
}

export interface BenchContext {
  readonly load: LoadSettings;
  /** Project root (absolute), for spawning `node --import tsx bench/...`. */
  readonly root: string;
  /** Progress line on stderr (the table goes to stdout). */
  log(message: string): void;
  /** Starts `bench/<script>` as a child that prints `READY <url>`; it is killed when the run ends. */
  spawnServer(script: string, opts?: SpawnOptions): Promise<ServerChild>;
  /** A fresh temporary directory, removed when the run ends. */
  tempDir(prefix: string): string;
  /** Notes worth flagging (non-2xx, server errors, failed checks); printed under the table and kept in the JSON. */
  warn(message: string): void;
}

export interface Scenario {
  readonly name: string;
  /** Watchdog budget in seconds for this scenario; default warm-up + measured + 90 s. */
  budgetSeconds?(load: LoadSettings): number;
  run(ctx: BenchContext): Promise<Row[]>;
}
