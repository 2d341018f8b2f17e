/** The results table: plain text for the terminal and Markdown for bench/README.md. */
import type { Row } from './types.ts';

export const HEADERS = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'vs bare'] as const;

function num(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A row is flagged when any request failed: non-2xx, connection errors or timeouts. */
export function flagged(row: Row): boolean {
  return row.non2xx > 0 || row.errors > 0 || row.timeouts > 0;
}

/** autocannon's latency histogram has 1 ms resolution: whole numbers print as such. */
function ms(n: number): string {
  return Number.isInteger(n) ? num(n, 0) : num(n, n < 10 ? 2 : 1);
}

export function cells(row: Row, baseline: Row | undefined): string[] {
  const ratio = baseline === undefined || baseline.reqPerSec === 0 ? '' : `${num((row.reqPerSec / baseline.reqPerSec) * 100, 1)} %`;
  const failures = flagged(row)
    ? `${row.non2xx} !!${row.errors + row.timeouts > 0 ? ` (+${row.errors} err, ${row.timeouts} timeouts)` : ''}`
    : '0';
  return [
    row.scenario,
    num(row.reqPerSec, row.reqPerSec < 100 ? 1 : 0),
    ms(row.latencyMs.p50),
    ms(row.latencyMs.p99),
    failures,
    row.baseline === true ? '(baseline)' : ratio,
  ];
}

/** Fixed-width text table; numeric columns right-aligned. */
export function textTable(rows: readonly Row[]): string {
  const baseline = rows.find((r) => r.baseline === true);
  const body = rows.map((r) => cells(r, baseline));
  const all = [[...HEADERS], ...body];
  const widths = HEADERS.map((_, c) => Math.max(...all.map((line) => (line[c] ?? '').length)));
  const fmt = (line: string[]) =>
    line.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [fmt([...HEADERS]), rule, ...body.map(fmt)].join('\n');
}

export function markdownTable(rows: readonly Row[]): string {
  const baseline = rows.find((r) => r.baseline === true);
  const line = (cs: readonly string[]) => `| ${cs.join(' | ')} |`;
  return [line(HEADERS), line(HEADERS.map((_, c) => (c === 0 ? '---' : '---:'))), ...rows.map((r) => line(cells(r, baseline)))].join('\n');
}

/** Latency detail for rows that measure it themselves (the push suite): percentiles with sub-ms digits. */
export const LATENCY_HEADERS = ['scenario', 'messages', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'lost'] as const;

function latencyCells(row: Row): string[] {
  const l = row.latencyMs;
  return [
    row.scenario,
    num(row.requests, 0),
    ms(l.p50),
    l.p90 === undefined ? '' : ms(l.p90),
    ms(l.p99),
    ms(l.max),
    row.timeouts > 0 ? `${row.timeouts} !!` : '0',
  ];
}

export function latencyTextTable(rows: readonly Row[]): string {
  const all = [[...LATENCY_HEADERS], ...rows.map(latencyCells)];
  const widths = LATENCY_HEADERS.map((_, c) => Math.max(...all.map((line) => (line[c] ?? '').length)));
  const fmt = (line: string[]) =>
    line.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  ');
  return [fmt([...LATENCY_HEADERS]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => fmt(latencyCells(r)))].join('\n');
}

export function latencyMarkdownTable(rows: readonly Row[]): string {
  const line = (cs: readonly string[]) => `| ${cs.join(' | ')} |`;
  return [line(LATENCY_HEADERS), line(LATENCY_HEADERS.map((_, c) => (c === 0 ? '---' : '---:'))), ...rows.map((r) => line(latencyCells(r)))].join('\n');
}
