/** The machine line and the JSON results files in bench/results/. */
import { cpus, platform, release, totalmem } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadSettings, Row } from './types.ts';

export interface Machine {
  readonly cpuModel: string;
  readonly cpuCount: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly node: string;
}

export function machine(): Machine {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cpuCount: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()}`,
    node: process.version,
  };
}

export function machineLine(m: Machine): string {
  return `${m.cpuCount} x ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}`;
}

export interface ResultsFile {
  readonly suite: string;
  readonly date: string;
  readonly machine: Machine;
  readonly settings: LoadSettings & { readonly quick: boolean; readonly [suiteSetting: string]: unknown };
  readonly wallSeconds: number;
  readonly rows: readonly Row[];
  readonly warnings: readonly string[];
  readonly ok: boolean;
}

/** Writes `<ISO-date>-<suite>.json` and `latest-<suite>.json`; returns both paths. */
export function writeResults(dir: string, data: ResultsFile): string[] {
  mkdirSync(dir, { recursive: true });
  const stamp = data.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const text = `${JSON.stringify(data, null, 2)}\n`;
  const paths = [join(dir, `${stamp}-${data.suite}.json`), join(dir, `latest-${data.suite}.json`)];
  for (const p of paths) writeFileSync(p, text);
  return paths;
}
