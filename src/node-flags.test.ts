import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SERVER_NODE_FLAGS } from './node-flags.ts';

const root = new URL('../', import.meta.url);

/**
 * After a full GC, makes about 60 MB of objects that each live through a few scavenges (so they are
 * promoted) and then die in the old generation, and prints how many full GCs that took.
 */
const OLD_GARBAGE = `
const { PerformanceObserver, constants, performance } = require('node:perf_hooks');
const ring = new Array(100000).fill(null);
const fill = (n) => { for (let i = 0; i < n; i++) ring[i % ring.length] = { a: i, b: 'x' + i, c: [i, i + 1, i + 2] }; };
fill(100000);
globalThis.gc();
const from = performance.now();
let majors = 0;
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR && e.startTime > from) majors++;
});
obs.observe({ entryTypes: ['gc'] });
fill(500000);
setTimeout(() => { obs.disconnect(); console.log(majors); }, 50);
`;

function fullGcsFor(flags: readonly string[]): number {
  return Number(execFileSync(process.execPath, ['--expose-gc', ...flags, '-e', OLD_GARBAGE], { encoding: 'utf8' }).trim());
}

describe('SERVER_NODE_FLAGS', () => {
  it('are on every command line that starts a Parley server: npm start and bin/parley.js', () => {
    const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['start']).toMatch(new RegExp(`^node ${SERVER_NODE_FLAGS.join(' ')} --import tsx `));
    const shebang = readFileSync(new URL('bin/parley.js', root), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${SERVER_NODE_FLAGS.join(' ')}`);
  });

  it('keep V8 from running full GCs while the old generation is small (without them it runs some)', () => {
    expect(fullGcsFor([])).toBeGreaterThan(0);
    expect(fullGcsFor(SERVER_NODE_FLAGS)).toBe(0);
  });
});
