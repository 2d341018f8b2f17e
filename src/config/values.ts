/** Parsers for option values: one per option type, each returning the value or why it is wrong. Pure. */
import type { BoolOption, EnumOption, IntOption, ListOption, Option, SecondsOption, StringOption } from './types.ts';

export type Parsed = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string };

const ok = (value: unknown): Parsed => ({ ok: true, value });
const bad = (message: string): Parsed => ({ ok: false, message });

const TRUE = new Set(['true', 'yes', '1']);
const FALSE = new Set(['false', 'no', '0']);

function parseString(o: StringOption, raw: string): Parsed {
  // A URL's user:password@ is not repeated in an error (it ends up in logs).
  const shown = o.secret ? '' : `, got "${raw.replace(/(\/\/)[^/@\s]*@/, '$1***@')}"`;
  if (raw === '') return o.required ? bad('must not be empty') : ok(raw);
  if (o.minLength !== undefined && raw.length < o.minLength) {
    return bad(`must be at least ${o.minLength} characters${o.secret ? '' : `, got ${raw.length}`}`);
  }
  if (o.pattern !== undefined && !o.pattern.test(raw)) return bad(`must be ${o.patternDoc ?? `like ${o.pattern}`}${shown}`);
  return ok(raw);
}

function parseInteger(o: IntOption | SecondsOption, raw: string): Parsed {
  const unit = o.type === 'seconds' ? ' (seconds)' : '';
  if (!/^[+-]?[0-9]+$/.test(raw)) return bad(`must be a whole number${unit}, got "${raw}"`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < o.min || n > o.max) {
    return bad(`must be between ${o.min} and ${o.max}${unit}, got ${raw}`);
  }
  return ok(o.type === 'seconds' ? n * 1000 : n);
}

function parseBool(_o: BoolOption, raw: string): Parsed {
  const v = raw.toLowerCase();
  if (TRUE.has(v)) return ok(true);
  if (FALSE.has(v)) return ok(false);
  return bad(`must be true/false, yes/no or 1/0, got "${raw}"`);
}

function parseEnum(o: EnumOption, raw: string): Parsed {
  return o.values.includes(raw) ? ok(raw) : bad(`must be one of ${o.values.join(', ')}, got "${raw}"`);
}

/** Splits on any of the separators, trims, drops empty items, then normalises and checks each item. */
export function splitList(o: ListOption, raw: string): string[] {
  const seps = [...(o.separators ?? ',')].map((c) => c.replace(/[\\\]^-]/g, '\\$&')).join('');
  return raw
    .split(new RegExp(`[${seps}]`))
    .map((item) => {
      let v = item.trim();
      if (o.lowerCase) v = v.toLowerCase();
      if (o.stripLeadingDots) v = v.replace(/^\.+/, '');
      return v;
    })
    .filter((v) => v !== '');
}

function parseList(o: ListOption, raw: string): Parsed {
  const items = splitList(o, raw);
  if (o.itemPattern !== undefined) {
    const wrong = items.filter((v) => !o.itemPattern?.test(v));
    if (wrong.length > 0) {
      const what = o.itemDoc ?? `like ${o.itemPattern}`;
      return bad(`each item must be ${what}; wrong: ${wrong.map((v) => `"${v}"`).join(', ')}`);
    }
  }
  return ok(items);
}

/** Parses a raw (trimmed) value for an option. Seconds become milliseconds. */
export function parseValue(option: Option, raw: string): Parsed {
  switch (option.type) {
    case 'string':
      return parseString(option, raw);
    case 'int':
    case 'seconds':
      return parseInteger(option, raw);
    case 'bool':
      return parseBool(option, raw);
    case 'enum':
      return parseEnum(option, raw);
    case 'list':
      return parseList(option, raw);
  }
}

/** The `Config` value of an option nobody set; `id` is the section id for `defaultFromId`. */
export function defaultValue(option: Option, id?: string): unknown {
  switch (option.type) {
    case 'string':
      return option.defaultFromId && id !== undefined ? id : option.default;
    case 'seconds':
      return option.default * 1000;
    case 'list':
      return [...option.default];
    default:
      return option.default;
  }
}
