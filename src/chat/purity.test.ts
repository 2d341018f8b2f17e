/**
 * The chat core is pure: no Node built-ins, no store, no HTTP, no clock or randomness of its own.
 * Arrows point down only (design.md): src/chat imports nothing above it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const DIR = join(import.meta.dirname, '.');
const sources = readdirSync(DIR).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));

it.each(sources)('%s imports only the chat core and errors', (file) => {
  const text = readFileSync(join(DIR, file), 'utf8');
  const imports = [...text.matchAll(/^import\s[^;]*?from\s+'([^']+)'/gm)].map((m) => m[1] ?? '');
  for (const spec of imports) {
    expect(spec === '../errors.ts' || /^\.\/[a-z-]+\.ts$/.test(spec), `${file} imports ${spec}`).toBe(true);
  }
  // Formatting a given time (new Date(ms)) is fine; reading the clock is not.
  expect(text).not.toMatch(/\bDate\.now\(|new Date\(\)|Math\.random\(|process\./);
});
