/**
 * A small INI reader that keeps section names whole (`[chat.customer-support]` is one section) and
 * knows line numbers. Lines: `[section]`, `key = value`, and whole-line comments starting with `;` or `#`.
 * Names and values are trimmed; a value wrapped in matching quotes loses them. A section may appear
 * more than once (its keys merge); a key set twice in one section is a problem. Pure.
 */

export interface IniEntry {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

export interface IniSection {
  readonly name: string;
  /** Line of the first header of this section. */
  readonly line: number;
  readonly entries: Map<string, IniEntry>;
}

export interface IniSyntaxProblem {
  readonly section: string;
  readonly key: string;
  readonly message: string;
  readonly line: number;
}

export interface IniFile {
  /** In order of first appearance. */
  readonly sections: IniSection[];
  readonly problems: IniSyntaxProblem[];
}

function unquote(v: string): string {
  if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v[v.length - 1] === v[0]) return v.slice(1, -1);
  return v;
}

export function readIni(text: string): IniFile {
  const byName = new Map<string, IniSection>();
  const problems: IniSyntaxProblem[] = [];
  let current: IniSection | undefined;
  /** After a malformed header, its keys are skipped: the header was reported already. */
  let skipping = false;
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);

  lines.forEach((rawLine, index) => {
    const line = index + 1;
    const text = rawLine.trim();
    if (text === '' || text.startsWith(';') || text.startsWith('#')) return;
    const section = current?.name ?? '';

    if (text.startsWith('[')) {
      const name = text.endsWith(']') ? text.slice(1, -1).trim() : '';
      if (!text.endsWith(']') || name === '') {
        problems.push({ section, key: '', message: `malformed section header "${text}"`, line });
        current = undefined;
        skipping = true;
        return;
      }
      skipping = false;
      current = byName.get(name);
      if (current === undefined) {
        current = { name, line, entries: new Map() };
        byName.set(name, current);
      }
      return;
    }

    const eq = text.indexOf('=');
    if (eq < 0) {
      // Nothing of the line is quoted: it may be a secret written with the wrong separator, or alone on a line.
      problems.push({ section, key: '', message: 'expected "key = value" (the line is not quoted: it may hold a secret)', line });
      return;
    }
    const key = text.slice(0, eq).trim();
    const value = unquote(text.slice(eq + 1).trim());
    if (key === '') {
      problems.push({ section, key: '', message: `missing key before "="`, line });
      return;
    }
    if (current === undefined) {
      if (!skipping) problems.push({ section: '', key, message: 'key outside any section', line });
      return;
    }
    const first = current.entries.get(key);
    if (first !== undefined) {
      problems.push({ section, key, message: `duplicate key (first set on line ${first.line})`, line });
      return;
    }
    current.entries.set(key, { key, value, line });
  });

  return { sections: [...byName.values()], problems };
}
