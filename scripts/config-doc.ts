/**
 * Rewrites the "## Options" part of docs/configuration.md from the catalogue:
 *   node --import tsx scripts/config-doc.ts
 * `src/config/docs.test.ts` checks that the document and the catalogue agree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fixedSections, templateDisplayName, templateSections } from '../src/config/catalogue.ts';
import { defaultCell, rangeCell, typeCell } from '../src/config/describe.ts';
import type { Options } from '../src/config/types.ts';

const PATH = 'docs/configuration.md';

function table(options: Options): string {
  const rows = Object.entries(options).map(
    ([key, o]) => `| \`${key}\` | ${typeCell(o)} | ${defaultCell(o)} | ${rangeCell(o)} | ${o.doc} |`,
  );
  return ['| Key | Type | Default | Range / values | Description |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}

const parts: string[] = ['## Options', ''];
for (const [name, s] of fixedSections) parts.push(`## \`[${name}]\``, '', s.doc, '', table(s.options), '');
for (const [prefix, t] of templateSections) {
  parts.push(`## \`[${templateDisplayName(prefix, t)}]\``, '', t.doc.replace(/\(\/genesys\/2\/chat\/<name>\)/, '(`/genesys/2/chat/<name>`)'), '', table(t.options), '');
}

const doc = readFileSync(PATH, 'utf8');
const start = doc.indexOf('## Options');
const end = doc.indexOf('## Adding an option');
if (start < 0 || end < 0) throw new Error(`${PATH} lacks "## Options" or "## Adding an option"`);
writeFileSync(PATH, doc.slice(0, start) + parts.join('\n') + doc.slice(end));
process.stdout.write(`${PATH} updated\n`);
