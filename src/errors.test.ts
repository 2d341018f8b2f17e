/** The error table is consistent, docs/errors.md lists exactly its codes, and INTERNAL details never reach a client. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, ERRORS, ParleyError, publicAdvice, toParleyError, type ErrorCode } from './errors.ts';

interface DocRow {
  readonly code: string;
  readonly http: string;
  readonly wire: string;
  readonly statusCode: string;
  readonly when: string;
  readonly todo: string;
  readonly line: number;
}

/** Rows `| \`CODE_NAME\` | http | wire | statusCode | when | what to do |`. */
function docRows(markdown: string): DocRow[] {
  const rows: DocRow[] = [];
  markdown.split('\n').forEach((text, i) => {
    const m = /^\| `([^`]+)` \|(.*)\|\s*$/.exec(text);
    if (m === null) return;
    const [http = '', wire = '', statusCode = '', when = '', todo = ''] = (m[2] ?? '').split(/(?<!\\)\|/).map((c) => c.trim());
    rows.push({ code: m[1] ?? '', http, wire, statusCode, when, todo, line: i + 1 });
  });
  return rows;
}

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const rows = docRows(doc);

describe('docs/errors.md', () => {
  it('has a row for every ErrorCode with the same HTTP status, wire code and statusCode', () => {
    for (const code of ERROR_CODES) {
      const row = rows.find((r) => r.code === code);
      expect(row, `${code} is missing from docs/errors.md`).toBeDefined();
      if (row === undefined) continue;
      const spec = ERRORS[code];
      expect({ http: row.http, wire: row.wire, statusCode: row.statusCode }, `${code} (line ${row.line})`).toEqual({
        http: String(spec.http),
        wire: String(spec.wire),
        statusCode: String(spec.statusCode),
      });
      expect(row.when, `${code}: when it happens`).not.toBe('');
      expect(row.todo, `${code}: what the client should do`).not.toBe('');
    }
  });

  it('lists no code that does not exist, and none twice', () => {
    const known = new Set<string>(ERROR_CODES);
    expect(rows.filter((r) => !known.has(r.code)).map((r) => `${r.code} (line ${r.line})`)).toEqual([]);
    const names = rows.map((r) => r.code);
    expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
    expect(rows).toHaveLength(ERROR_CODES.length);
  });
});

describe('ERRORS', () => {
  it('has unique wire codes', () => {
    const wires = ERROR_CODES.map((c) => ERRORS[c].wire);
    const dupes = ERROR_CODES.filter((c, i) => wires.indexOf(ERRORS[c].wire) !== i);
    expect(dupes).toEqual([]);
  });

  it('gives every code a statusCode of 1 or 2, an error HTTP status and an advice', () => {
    for (const code of ERROR_CODES) {
      const spec = ERRORS[code];
      expect([1, 2], code).toContain(spec.statusCode);
      expect(spec.http, code).toBeGreaterThanOrEqual(400);
      expect(spec.http, code).toBeLessThan(600);
      expect(spec.advice.trim(), code).not.toBe('');
    }
  });

  it('uses the GMS-attested wire code 249 for INTERNAL', () => {
    expect(ERRORS.INTERNAL.wire).toBe(249);
  });

  it('lists every key of ERRORS in ERROR_CODES', () => {
    expect([...ERROR_CODES].sort()).toEqual(Object.keys(ERRORS).sort());
  });
});

describe('ParleyError', () => {
  it('defaults its message to the advice and exposes its spec', () => {
    const e = new ParleyError('UNKNOWN_CHAT');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('ParleyError');
    expect(e.message).toBe(ERRORS.UNKNOWN_CHAT.advice);
    expect(e.spec).toBe(ERRORS.UNKNOWN_CHAT);
    expect(e.cause).toBeUndefined();
  });

  it('keeps a given message, cause and details', () => {
    const cause = new Error('disk');
    const e = new ParleyError('UNAVAILABLE', 'The store is closed.', { cause, details: { n: 1 } });
    expect(e.message).toBe('The store is closed.');
    expect(e.cause).toBe(cause);
    expect(e.details).toEqual({ n: 1 });
  });
});

describe('toParleyError', () => {
  it('wraps a plain Error as INTERNAL, keeping the cause', () => {
    const cause = new Error('SQLITE_CORRUPT at /var/lib/parley.db');
    const e = toParleyError(cause);
    expect(e).toBeInstanceOf(ParleyError);
    expect(e.code).toBe('INTERNAL');
    expect(e.cause).toBe(cause);
    expect(e.message).toBe(ERRORS.INTERNAL.advice);
  });

  it('wraps a thrown non-Error value as INTERNAL too', () => {
    const e = toParleyError('boom');
    expect(e.code).toBe('INTERNAL');
    expect(e.cause).toBe('boom');
  });

  it('passes a ParleyError through unchanged', () => {
    const original = new ParleyError('ACCESS_DENIED', 'nope');
    expect(toParleyError(original)).toBe(original);
  });
});

describe('publicAdvice', () => {
  it('hides the message of INTERNAL', () => {
    const e = new ParleyError('INTERNAL', 'no participant 7 in chat 00048aAPEQJ8000U, secureKey 02f8e3936f763afffcce');
    expect(publicAdvice(e)).toBe(ERRORS.INTERNAL.advice);
    const wrapped = toParleyError(new TypeError('Cannot read properties of undefined (reading "x")'));
    expect(publicAdvice(wrapped)).toBe(ERRORS.INTERNAL.advice);
  });

  it('shows the precise message of every other code', () => {
    for (const code of ERROR_CODES.filter((c): c is Exclude<ErrorCode, 'INTERNAL'> => c !== 'INTERNAL')) {
      expect(publicAdvice(new ParleyError(code, `precise ${code}`)), code).toBe(`precise ${code}`);
    }
  });
});
