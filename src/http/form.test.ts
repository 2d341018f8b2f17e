import { describe, expect, it } from 'vitest';
import { ParleyError, type ErrorCode } from '../errors.ts';
import { EMPTY_FORM, FormBuilder, parseJson, parseUrlEncoded, type Form } from './form.ts';

const MAX = 100;

const url = (s: string, max = MAX): Form => parseUrlEncoded(Buffer.from(s, 'utf8'), max);
const json = (s: string, max = MAX): Form => parseJson(Buffer.from(s, 'utf8'), max);
const fieldsOf = (f: Form): Record<string, string> => Object.fromEntries(f.fields);

function codeOf(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ParleyError);
    return (err as ParleyError).code;
  }
  return undefined;
}

describe('parseUrlEncoded', () => {
  it('reads plain fields', () => {
    const f = url('nickname=Jane&subject=Billing&text=hello');
    expect(fieldsOf(f)).toEqual({ nickname: 'Jane', subject: 'Billing', text: 'hello' });
    expect(f.userData).toEqual({});
  });

  it('gathers userData[key] fields into userData and not into fields', () => {
    const f = url('nickname=Jane&userData[a]=1&userData[b]=two');
    expect(f.userData).toEqual({ a: '1', b: 'two' });
    expect(fieldsOf(f)).toEqual({ nickname: 'Jane' });
  });

  it('accepts %-encoded brackets in userData names', () => {
    expect(url('userData%5Bkey%5D=v').userData).toEqual({ key: 'v' });
  });

  it('keeps spaces inside a userData key (as + or %20)', () => {
    expect(url('userData[a+b]=1').userData).toEqual({ 'a b': '1' });
    expect(url('userData%5Ba%20b%5D=2').userData).toEqual({ 'a b': '2' });
  });

  it('keeps brackets inside a userData key', () => {
    expect(url('userData[x[y]]=1').userData).toEqual({ 'x[y]': '1' });
    expect(url('userData%5Bx%5By%5D%5D=2').userData).toEqual({ 'x[y]': '2' });
    expect(url('userData[[a]]=3&userData[a][b]=4').userData).toEqual({ '[a]': '3', 'a][b': '4' });
  });

  it('treats names that only look like userData as plain fields', () => {
    const f = url('userdata[a]=1&userData=2&xuserData[a]=3&userData[a]x=4');
    expect(f.userData).toEqual({});
    expect(fieldsOf(f)).toEqual({ 'userdata[a]': '1', userData: '2', 'xuserData[a]': '3', 'userData[a]x': '4' });
  });

  it('keeps the first value of a repeated field', () => {
    expect(fieldsOf(url('text=first&text=second&text=third'))).toEqual({ text: 'first' });
  });

  it('keeps the first value of a repeated userData key', () => {
    expect(url('userData[k]=first&userData[k]=second').userData).toEqual({ k: 'first' });
  });

  it('decodes + as a space and %-escapes, including UTF-8', () => {
    const f = url('text=hello+world%21&nickname=Jos%C3%A9&q=a%2Bb%26c%3Dd&emoji=%F0%9F%98%80');
    expect(fieldsOf(f)).toEqual({ text: 'hello world!', nickname: 'José', q: 'a+b&c=d', emoji: '😀' });
  });

  it('reads empty values and names without =', () => {
    expect(fieldsOf(url('a=&b&c=3'))).toEqual({ a: '', b: '', c: '3' });
  });

  it('gives an empty form for an empty body', () => {
    const f = url('');
    expect(f.fields.size).toBe(0);
    expect(f.userData).toEqual({});
  });

  it('accepts a field of exactly the maximum length', () => {
    expect(fieldsOf(url(`text=${'x'.repeat(MAX)}`)).text).toHaveLength(MAX);
  });

  it('refuses a field over the maximum length with MESSAGE_TOO_LONG', () => {
    expect(codeOf(() => url(`text=${'x'.repeat(MAX + 1)}`))).toBe('MESSAGE_TOO_LONG');
  });

  it('refuses a userData value over the maximum length with MESSAGE_TOO_LONG', () => {
    expect(codeOf(() => url(`userData[k]=${'x'.repeat(MAX + 1)}`))).toBe('MESSAGE_TOO_LONG');
  });

  it('measures the decoded value, not the encoded one', () => {
    // 100 × %41 is 300 encoded characters but 100 decoded ones.
    expect(fieldsOf(url(`text=${'%41'.repeat(MAX)}`)).text).toBe('A'.repeat(MAX));
  });

  it('accepts a userData key of 256 characters', () => {
    const key = 'k'.repeat(256);
    expect(url(`userData[${key}]=v`).userData).toEqual({ [key]: 'v' });
  });

  it('refuses a userData key over 256 characters with INVALID_PARAMETER', () => {
    expect(codeOf(() => url(`userData[${'k'.repeat(257)}]=v`))).toBe('INVALID_PARAMETER');
  });

  it('keeps userData keys that are Object.prototype names as plain data', () => {
    const f = url('userData[constructor]=c&userData[toString]=t&userData[hasOwnProperty]=h');
    expect(f.userData).toEqual({ constructor: 'c', toString: 't', hasOwnProperty: 'h' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  // Regression: a plain assignment would hit the __proto__ setter and silently drop the key.
  it('keeps a userData key named __proto__', () => {
    const f = url('userData[__proto__]=x&userData[a]=1');
    expect(Object.keys(f.userData)).toEqual(['__proto__', 'a']);
    expect(Object.getOwnPropertyDescriptor(f.userData, '__proto__')?.value).toBe('x');
  });

  it('does not let a __proto__ userData key pollute Object.prototype', () => {
    const f = url('userData[__proto__]=x');
    expect(Object.getPrototypeOf(f.userData)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe('parseJson', () => {
  it('reads a flat object of strings', () => {
    const f = json('{"nickname":"Jane","subject":"Billing","text":"hi"}');
    expect(fieldsOf(f)).toEqual({ nickname: 'Jane', subject: 'Billing', text: 'hi' });
    expect(f.userData).toEqual({});
  });

  it('turns numbers and booleans into strings and null into an empty string', () => {
    const f = json('{"transcriptPosition":3,"ratio":1.5,"neg":-2,"alert":true,"off":false,"none":null}');
    expect(fieldsOf(f)).toEqual({ transcriptPosition: '3', ratio: '1.5', neg: '-2', alert: 'true', off: 'false', none: '' });
  });

  it('reads a nested userData object into userData', () => {
    const f = json('{"nickname":"Jane","userData":{"a":"1","b c":"2","n":5,"t":true,"z":null}}');
    expect(f.userData).toEqual({ a: '1', 'b c': '2', n: '5', t: 'true', z: '' });
    expect(fieldsOf(f)).toEqual({ nickname: 'Jane' });
  });

  it('accepts an empty userData object', () => {
    const f = json('{"userData":{}}');
    expect(f.userData).toEqual({});
    expect(f.fields.size).toBe(0);
  });

  it.each([
    ['an array field', '{"text":["a","b"]}'],
    ['an object field', '{"text":{"a":"b"}}'],
    ['an array userData value', '{"userData":{"a":[1]}}'],
    ['an object userData value', '{"userData":{"a":{"b":"c"}}}'],
  ])('refuses %s with INVALID_PARAMETER', (_label, body) => {
    expect(codeOf(() => json(body))).toBe('INVALID_PARAMETER');
  });

  it('refuses userData given as an array with INVALID_PARAMETER', () => {
    expect(codeOf(() => json('{"userData":["a"]}'))).toBe('INVALID_PARAMETER');
  });

  it.each([
    ['truncated', '{"a":'],
    ['single quotes', "{'a':'b'}"],
    ['trailing comma', '{"a":"b",}'],
    ['plain text', 'nickname=Jane'],
    ['whitespace only', '   '],
  ])('refuses invalid JSON (%s) with INVALID_PARAMETER', (_label, body) => {
    expect(codeOf(() => json(body))).toBe('INVALID_PARAMETER');
  });

  it.each([
    ['an array', '[{"a":"b"}]'],
    ['an empty array', '[]'],
    ['a string', '"hello"'],
    ['a number', '42'],
    ['true', 'true'],
    ['null', 'null'],
  ])('refuses JSON that is %s with INVALID_PARAMETER', (_label, body) => {
    expect(codeOf(() => json(body))).toBe('INVALID_PARAMETER');
  });

  it('gives an empty form for an empty body', () => {
    const f = parseJson(Buffer.alloc(0), MAX);
    expect(f.fields.size).toBe(0);
    expect(f.userData).toEqual({});
  });

  it('gives an empty form for {}', () => {
    const f = json('{}');
    expect(f.fields.size).toBe(0);
    expect(f.userData).toEqual({});
  });

  it('enforces the field length on fields and userData values', () => {
    expect(fieldsOf(json(`{"text":"${'x'.repeat(MAX)}"}`)).text).toHaveLength(MAX);
    expect(codeOf(() => json(`{"text":"${'x'.repeat(MAX + 1)}"}`))).toBe('MESSAGE_TOO_LONG');
    expect(codeOf(() => json(`{"userData":{"k":"${'x'.repeat(MAX + 1)}"}}`))).toBe('MESSAGE_TOO_LONG');
  });

  it('enforces the userData key length', () => {
    expect(Object.keys(json(`{"userData":{"${'k'.repeat(256)}":"v"}}`).userData)).toEqual(['k'.repeat(256)]);
    expect(codeOf(() => json(`{"userData":{"${'k'.repeat(257)}":"v"}}`))).toBe('INVALID_PARAMETER');
  });

  it('decodes UTF-8', () => {
    expect(fieldsOf(json('{"nickname":"José 😀"}')).nickname).toBe('José 😀');
  });
});

describe('FormBuilder and EMPTY_FORM', () => {
  it('EMPTY_FORM has no fields and no userData', () => {
    expect(EMPTY_FORM.fields.size).toBe(0);
    expect(EMPTY_FORM.userData).toEqual({});
  });

  it('collects fields one at a time with the first value winning', () => {
    const b = new FormBuilder(10);
    b.add('a', '1');
    b.add('a', '2');
    b.add('userData[k]', 'v');
    b.add('userData[k]', 'w');
    const f = b.build();
    expect(fieldsOf(f)).toEqual({ a: '1' });
    expect(f.userData).toEqual({ k: 'v' });
  });

  it('names the field (cut to 64 characters) in the MESSAGE_TOO_LONG message', () => {
    const b = new FormBuilder(1);
    const name = 'n'.repeat(100);
    try {
      b.add(name, 'too long');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ParleyError);
      expect((err as ParleyError).code).toBe('MESSAGE_TOO_LONG');
      expect((err as ParleyError).message).toContain(`"${'n'.repeat(64)}"`);
      expect((err as ParleyError).message).not.toContain('n'.repeat(65));
    }
  });
});

describe('the number of fields', () => {
  const many = (n: number, name = (i: number) => `f${i}`) => Array.from({ length: n }, (_, i) => `${name(i)}=x`).join('&');

  it('accepts 1000 fields, userData keys included, in every encoding', () => {
    expect(url(many(500) + '&' + many(500, (i) => `userData[k${i}]`)).fields.size).toBe(500);
    const obj = { ...Object.fromEntries(Array.from({ length: 499 }, (_, i) => [`f${i}`, 'x'])), userData: Object.fromEntries(Array.from({ length: 501 }, (_, i) => [`k${i}`, 'x'])) };
    expect(Object.keys(json(JSON.stringify(obj)).userData)).toHaveLength(501);
  });

  it('refuses 1001 with INVALID_PARAMETER, urlencoded (counted before parsing), JSON and userData', () => {
    expect(codeOf(() => url(many(1001)))).toBe('INVALID_PARAMETER');
    expect(codeOf(() => url('&'.repeat(200_000)))).toBe('INVALID_PARAMETER');
    expect(codeOf(() => url(many(1001, (i) => `userData[k${i}]`)))).toBe('INVALID_PARAMETER');
    expect(codeOf(() => json(JSON.stringify(Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`f${i}`, 'x'])))))).toBe('INVALID_PARAMETER');
    expect(codeOf(() => json(JSON.stringify({ userData: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`k${i}`, 'x'])) })))).toBe('INVALID_PARAMETER');
    const b = new FormBuilder(MAX);
    for (let i = 0; i < 1000; i++) b.add(`userData[${i}]`, 'v');
    expect(codeOf(() => b.add('one', 'more'))).toBe('INVALID_PARAMETER');
  });
});
