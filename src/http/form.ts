/**
 * Chat API v2 request fields, whatever the encoding: form-urlencoded, multipart or (liberally) JSON.
 * `userData[key]=value` fields are gathered into `userData`.
 */
import { ParleyError } from '../errors.ts';

export interface Form {
  readonly fields: ReadonlyMap<string, string>;
  readonly userData: Readonly<Record<string, string>>;
}

export const EMPTY_FORM: Form = { fields: new Map(), userData: {} };

const USER_DATA = /^userData\[(.+)\]$/;
const MAX_USER_DATA_KEY = 256;
/** Fields (userData keys included) one request may carry, whatever its encoding. */
export const MAX_FIELDS = 1000;

function tooManyFields(): ParleyError {
  return new ParleyError('INVALID_PARAMETER', `A request carries at most ${MAX_FIELDS} fields (userData keys included).`);
}

/** Collects fields one at a time, enforcing the field length; the first value of a repeated name wins. */
export class FormBuilder {
  private readonly fields = new Map<string, string>();
  private readonly userData: Record<string, string> = {};
  private count = 0;

  constructor(private readonly maxFieldLength: number) {}

  add(name: string, value: string): void {
    if (++this.count > MAX_FIELDS) throw tooManyFields();
    if (value.length > this.maxFieldLength) {
      throw new ParleyError('MESSAGE_TOO_LONG', `Field "${name.slice(0, 64)}" is longer than ${this.maxFieldLength} characters.`);
    }
    const m = USER_DATA.exec(name);
    if (m !== null) {
      const key = m[1] ?? '';
      if (key.length > MAX_USER_DATA_KEY) throw new ParleyError('INVALID_PARAMETER', 'A userData key is too long.');
      // defineProperty, not assignment: a key named "__proto__" must be kept as data, not hit the setter.
      if (!Object.hasOwn(this.userData, key)) {
        Object.defineProperty(this.userData, key, { value, enumerable: true, writable: true, configurable: true });
      }
      return;
    }
    if (!this.fields.has(name)) this.fields.set(name, value);
  }

  build(): Form {
    return { fields: this.fields, userData: this.userData };
  }
}

export function parseUrlEncoded(body: Buffer, maxFieldLength: number): Form {
  // Counted before parsing: a body of a million empty fields is refused without building them all.
  let separators = 0;
  for (let i = body.indexOf(0x26); i !== -1; i = body.indexOf(0x26, i + 1)) {
    if (++separators >= MAX_FIELDS) throw tooManyFields();
  }
  const b = new FormBuilder(maxFieldLength);
  for (const [k, v] of new URLSearchParams(body.toString('utf8'))) b.add(k, v);
  return b.build();
}

/** A flat JSON object; `userData` may be an object of strings. Numbers and booleans become strings. */
export function parseJson(body: Buffer, maxFieldLength: number): Form {
  let obj: unknown;
  try {
    obj = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
  } catch {
    throw new ParleyError('INVALID_PARAMETER', 'The JSON body is not valid JSON.');
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ParleyError('INVALID_PARAMETER', 'The JSON body must be an object.');
  }
  const b = new FormBuilder(maxFieldLength);
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'userData' && typeof v === 'object' && v !== null && !Array.isArray(v)) {
      for (const [uk, uv] of Object.entries(v)) b.add(`userData[${uk}]`, scalar(`userData[${uk}]`, uv));
    } else {
      b.add(k, scalar(k, v));
    }
  }
  return b.build();
}

function scalar(name: string, v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null) return '';
  throw new ParleyError('INVALID_PARAMETER', `Field "${name.slice(0, 64)}" must be a string.`);
}
