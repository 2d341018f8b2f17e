/** How an option is shown in docs/configuration.md: its type, default and range cells. `docs.test.ts` checks them. */
import type { Option } from './types.ts';

const code = (s: string): string => `\`${s}\``;

export function typeCell(o: Option): string {
  return o.type;
}

export function defaultCell(o: Option): string {
  switch (o.type) {
    case 'string':
      if (o.defaultFromId) return '(the section id)';
      if (o.required && o.default === '') return '(required)';
      return o.default === '' ? '(empty)' : code(o.default);
    case 'list':
      return o.default.length === 0 ? '(empty)' : code(o.default.join((o.separators ?? ',')[0]));
    default:
      return code(String(o.default));
  }
}

export function rangeCell(o: Option): string {
  switch (o.type) {
    case 'string': {
      const parts: string[] = [];
      if (o.required) parts.push('not empty');
      if (o.minLength !== undefined) parts.push(`at least ${o.minLength} characters`);
      if (o.patternDoc !== undefined) parts.push(o.patternDoc);
      return parts.length === 0 ? 'any text' : parts.join('; ');
    }
    case 'int':
      return `${o.min}..${o.max}`;
    case 'seconds':
      return `${o.min}..${o.max} seconds`;
    case 'bool':
      return 'true/false, yes/no, 1/0';
    case 'enum':
      return o.values.map(code).join(', ');
    case 'list': {
      const seps = [...(o.separators ?? ',')].map((c) => code(c)).join(' or ');
      return `${seps} separated${o.itemDoc === undefined ? '' : `; each ${o.itemDoc}`}`;
    }
  }
}
