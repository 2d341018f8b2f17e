/** docs/configuration.md must list exactly the catalogue's options, with matching type, default and range. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { catalogueEntries } from './catalogue.ts';
import { defaultCell, rangeCell, typeCell } from './describe.ts';

interface DocRow {
  readonly section: string;
  readonly key: string;
  readonly cells: readonly string[];
  readonly line: number;
}

/** Rows `| \`key\` | ... |` under the nearest heading `## \`[section]\``. */
function docRows(markdown: string): DocRow[] {
  const rows: DocRow[] = [];
  let section = '';
  markdown.split('\n').forEach((text, i) => {
    const heading = /^#{2,3} `\[([^\]]+)\]`\s*$/.exec(text);
    if (heading) section = heading[1] ?? '';
    else if (/^#{1,3} /.test(text)) section = '';
    const row = /^\| `([^`]+)` \|(.*)\|\s*$/.exec(text);
    if (row) {
      const cells = (row[2] ?? '').split(/(?<!\\)\|/).map((c) => c.trim());
      rows.push({ section, key: row[1] ?? '', cells, line: i + 1 });
    }
  });
  return rows;
}

const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
const rows = docRows(doc);
const entries = catalogueEntries();
const id = (section: string, key: string): string => `[${section}] ${key}`;

describe('docs/configuration.md', () => {
  it('lists every catalogue option', () => {
    const documented = new Set(rows.map((r) => id(r.section, r.key)));
    const missing = entries.map((e) => id(e.section, e.key)).filter((x) => !documented.has(x));
    expect(missing, 'options missing from docs/configuration.md').toEqual([]);
  });

  it('lists no option that is not in the catalogue, and none twice', () => {
    const known = new Set(entries.map((e) => id(e.section, e.key)));
    const extra = rows.filter((r) => !known.has(id(r.section, r.key))).map((r) => `${id(r.section, r.key)} (line ${r.line})`);
    expect(extra, 'rows in docs/configuration.md that are not options').toEqual([]);
    const ids = rows.map((r) => id(r.section, r.key));
    expect(ids.filter((x, i) => ids.indexOf(x) !== i), 'duplicate rows').toEqual([]);
  });

  it('shows each option with its type, default, range and a description', () => {
    for (const e of entries) {
      const row = rows.find((r) => r.section === e.section && r.key === e.key);
      if (row === undefined) continue;
      const [type, dflt, range, description] = row.cells;
      const where = `${id(e.section, e.key)} (line ${row.line})`;
      expect({ type, default: dflt, range }, where).toEqual({
        type: typeCell(e.option),
        default: defaultCell(e.option),
        range: rangeCell(e.option),
      });
      expect(description ?? '', where).not.toBe('');
    }
  });
});
