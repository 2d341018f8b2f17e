/**
 * Building blocks of `test/fuzz.test.ts`: a raw HTTP client (any method, path, header and body, no URL
 * normalisation, no automatic content type), a multipart body builder that knows where its file data lies,
 * fast-check arbitraries for field maps, path segments, identities and push bodies, and the invariants of a
 * Chat API v2 reply.
 */
import { request } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import fc from 'fast-check';
import { expect } from 'vitest';
import { ERRORS } from '../../src/errors.ts';

// ---------------------------------------------------------------------------------------------------------
// Raw HTTP

export interface RawReply {
  /** 0 when no response arrived (see transportError). */
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly raw: Buffer;
  readonly text: string;
  /** The parsed body when the reply says application/json and parses; undefined otherwise. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly json: any;
  readonly transportError?: string;
}

export interface RawRequest {
  readonly method: string;
  /** Sent exactly as given (must be \x21-\x7e). */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer | string;
  /** Chunked transfer encoding instead of content-length. */
  readonly chunked?: boolean;
  /** Give up after this long without a reply (default 5 s; the server answers in milliseconds). */
  readonly timeoutMs?: number;
}

/** One request on a fresh connection; never rejects. */
export function rawRequest(base: string, r: RawRequest): Promise<RawReply> {
  const u = new URL(base);
  const body = r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body, 'utf8');
  const headers: Record<string, string | number> = { ...r.headers };
  if (body !== undefined && r.chunked !== true) headers['content-length'] = body.length;
  return new Promise((resolve) => {
    let settled = false;
    let responded = false;
    const finish = (reply: RawReply) => {
      if (settled) return;
      settled = true;
      resolve(reply);
    };
    const req = request({ host: u.hostname, port: u.port, method: r.method, path: r.path, headers, agent: false });
    const timeoutMs = r.timeoutMs ?? 5000;
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`client timeout: no reply within ${timeoutMs} ms`)));
    req.on('response', (res) => {
      responded = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const done = (transportError?: string) => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString('utf8');
        let json: unknown;
        if ((res.headers['content-type'] ?? '').startsWith('application/json')) {
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
        }
        finish({ status: res.statusCode ?? 0, headers: res.headers, raw, text, json, ...(transportError === undefined ? {} : { transportError }) });
      };
      res.on('end', () => done());
      res.on('error', (e) => done(`response error: ${e.message}`));
      res.on('close', () => done(res.complete ? undefined : 'response closed before its end'));
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (responded) return;
      finish({ status: 0, headers: {}, raw: Buffer.alloc(0), text: '', json: undefined, transportError: e.code ?? e.message });
    });
    if (body === undefined) req.end();
    else if (r.chunked === true) {
      // A few chunks, so that the server sees a stream without a declared length.
      const step = Math.max(1, Math.ceil(body.length / 4));
      for (let i = 0; i < body.length; i += step) req.write(body.subarray(i, i + step));
      req.end();
    } else req.end(body);
  });
}

/** Percent-encodes every byte of the UTF-8 form except unreserved characters (lone surrogates become U+FFFD). */
export function pct(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The path the server routes on: WHATWG URL normalisation of `.`/`..`/`%2e` segments, as `new URL` does. */
export function normalizedPath(path: string): string {
  return new URL(path, 'http://localhost').pathname;
}

// ---------------------------------------------------------------------------------------------------------
// Bodies

export type Pair = readonly [string, unknown];

export function urlEncoded(pairs: readonly Pair[]): string {
  const p = new URLSearchParams();
  for (const [k, v] of pairs) p.append(k, String(v));
  return p.toString();
}

/** A JSON object text that keeps duplicate keys in order (JSON.parse: the last one wins). */
export function jsonObjectText(pairs: readonly Pair[]): string {
  return `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`;
}

export interface MpPart {
  /** Header lines without line ends. */
  readonly headers: readonly string[];
  readonly body: Buffer;
}

export interface MultipartSpec {
  readonly boundary: string;
  readonly preamble: string;
  readonly parts: readonly MpPart[];
  /** Write the closing delimiter `--boundary--`. */
  readonly closing: boolean;
  readonly epilogue: string;
}

export interface BuiltMultipart {
  readonly body: Buffer;
  /**
   * For each part whose headers mention a filename: from the start of its delimiter line to just after the
   * delimiter that follows its data (+2 bytes); Infinity when no delimiter follows. A cut inside
   * [dataStart, safeFrom) leaves busboy with an open file stream.
   */
  readonly fileParts: ReadonlyArray<{ readonly partStart: number; readonly dataStart: number; readonly safeFrom: number }>;
}

/** The quoting browsers use for a name or filename in Content-Disposition. */
export function quoteParam(s: string): string {
  return `"${s.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A')}"`;
}

export function fieldPart(name: string, value: string): MpPart {
  return { headers: [`Content-Disposition: form-data; name=${quoteParam(name)}`], body: Buffer.from(value, 'utf8') };
}

export function filePart(name: string, fileName: string, type: string, bytes: Buffer): MpPart {
  return {
    headers: [`Content-Disposition: form-data; name=${quoteParam(name)}; filename=${quoteParam(fileName)}`, `Content-Type: ${type}`],
    body: bytes,
  };
}

export function buildMultipart(spec: MultipartSpec): BuiltMultipart {
  const chunks: Buffer[] = [];
  let size = 0;
  const push = (b: Buffer | string) => {
    const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    chunks.push(buf);
    size += buf.length;
  };
  const files: Array<{ partStart: number; dataStart: number; safeFrom: number }> = [];
  push(spec.preamble);
  spec.parts.forEach((part, i) => {
    const partStart = size;
    push(`${i === 0 && spec.preamble === '' ? '' : '\r\n'}--${spec.boundary}\r\n`);
    for (const h of part.headers) push(`${h}\r\n`);
    push('\r\n');
    const dataStart = size;
    push(part.body);
    const isLast = i === spec.parts.length - 1;
    const followed = !isLast || spec.closing;
    // busboy streams a part as a file when it has a filename or is application/octet-stream.
    if (part.headers.some((h) => /filename|application\/octet-stream/i.test(h))) {
      files.push({ partStart, dataStart, safeFrom: followed ? size + 2 + 2 + spec.boundary.length + 2 : Infinity });
    }
  });
  if (spec.closing) push(`${spec.parts.length === 0 && spec.preamble === '' ? '' : '\r\n'}--${spec.boundary}--\r\n`);
  push(spec.epilogue);
  return { body: Buffer.concat(chunks, size), fileParts: files };
}

/** Where a cut at `at` falls inside the data of a file part (busboy keeps a file stream open there). */
export function cutsFileData(built: BuiltMultipart, at: number): { readonly partStart: number } | undefined {
  return built.fileParts.find((f) => at >= f.dataStart && at < f.safeFrom);
}

// ---------------------------------------------------------------------------------------------------------
// Arbitraries

/** Awkward strings that random generation rarely hits. */
const NASTY = [
  '', ' ', '\t\n', '\u0000', '\uFEFF', '\uD800', '\uDC00x', '😀', 'e\u0301', '%', '%zz', '%E0%A4%A', '+', '&', '=', '&a=b',
  '[', ']', 'userData[x]', '__proto__', 'constructor', 'true', '1', '0', '-1', 'null', '<script>', '\r\n\r\n--x--', '"', "'",
  '\\', '\u202E', '\u2028', 'ǅ', '١٢', '９',
];

/** Arbitrary unicode text of modest length, in all of fast-check's string units. */
export const textArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-composite', maxLength: 20 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.constantFrom(...NASTY) },
);

/** Values around max-field-length (in UTF-16 units, like the server counts) and, rarely, around max-body-size. */
export function hugeArb(maxField: number, maxBody: number): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.tuple(fc.integer({ min: maxField - 2, max: maxField + 2 }), fc.constantFrom('a', 'é', '€', '😀', ' ', '%', '&', '\u0000')).map(([n, ch]) => ch.repeat(Math.ceil(n / ch.length)).slice(0, n)) },
    { weight: 1, arbitrary: fc.integer({ min: maxBody - 200, max: maxBody + 2000 }).map((n) => 'b'.repeat(n)) },
  );
}

export function valueArb(maxField: number, maxBody: number): fc.Arbitrary<string> {
  return fc.oneof({ weight: 12, arbitrary: textArb }, { weight: 1, arbitrary: hugeArb(maxField, maxBody) });
}

export const REQUEST_FIELDS = ['nickname', 'firstName', 'lastName', 'subject', 'emailAddress', 'text'] as const;
export const OPERATION_FIELDS = ['message', 'messageType', 'transcriptPosition', 'pushUrl', 'nickname', 'alias'] as const;

const USER_DATA_KEYS = [
  'GCTI_Chat_AsyncMode', 'GCTI_Chat_PushSubscribe', 'GCTI_GMS_NodeGroup', 'GCTI_GMS_PushDeviceId', 'GCTI_GMS_PushDeviceType',
  'GCTI_GMS_PushIncludePayload', 'file-description', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '[', ']', ' ',
];

export const userDataNameArb: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 3, arbitrary: fc.constantFrom(...USER_DATA_KEYS) },
    { weight: 3, arbitrary: textArb.filter((s) => s !== '') },
    { weight: 1, arbitrary: fc.integer({ min: 255, max: 258 }).map((n) => 'k'.repeat(n)) },
  )
  .map((k) => `userData[${k}]`);

/** Field names: the known ones of the operation, userData[...] and random ones. */
export function fieldNameArb(known: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...known) },
    { weight: 3, arbitrary: userDataNameArb },
    { weight: 2, arbitrary: textArb },
    { weight: 1, arbitrary: fc.constantFrom('userData', 'userData[]', 'userData[', '__proto__', 'constructor', 'nickname ', 'Nickname', 'nickname[]', 'secureKey', 'userId') },
  );
}

/** A JSON field value of any type: what a careless client sends. */
export function jsonFieldValueArb(maxField: number, maxBody: number): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 6, arbitrary: valueArb(maxField, maxBody) },
    { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.constant(1e308), fc.constant(-0)) },
    { weight: 1, arbitrary: fc.boolean() },
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }) },
    { weight: 1, arbitrary: fc.dictionary(textArb, fc.oneof(textArb, fc.jsonValue({ maxDepth: 2 })), { maxKeys: 4 }) },
  );
}

export type Encoding = 'form' | 'multipart' | 'json' | 'json-garbage' | 'text-plain' | 'no-type' | 'random-type' | 'chunked-form';

export const encodingArb: fc.Arbitrary<Encoding> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Encoding>('form') },
  { weight: 3, arbitrary: fc.constant<Encoding>('multipart') },
  { weight: 3, arbitrary: fc.constant<Encoding>('json') },
  { weight: 1, arbitrary: fc.constantFrom<Encoding>('json-garbage', 'text-plain', 'no-type', 'random-type', 'chunked-form') },
);

const HEADER_CHAR = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));

/** Header-safe text (what node's client accepts in a header value). */
export const headerTextArb: fc.Arbitrary<string> = fc.string({ unit: HEADER_CHAR, maxLength: 60 });

export const contentTypeArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    'application/xml', 'text/html', 'application/octet-stream', 'application/x-www-form-urlencoded; charset=latin1',
    'APPLICATION/JSON', 'Application/X-WWW-Form-Urlencoded', ' application/json ;', 'multipart/mixed; boundary=x',
    'multipart/form-data', 'multipart/form-data; boundary=', 'multipart/form-data; boundary=""', 'multipart/form-data; boundary="a b"',
    'multipart/form-data; boundary=' + 'z'.repeat(100), 'text/plain; charset=utf-16', 'application/json; charset=utf-32', ';', '/', '*/*',
    'application/json, text/plain', 'application/ld+json', 'text/json',
  ),
  headerTextArb,
);

/** A body whose field values are given, in the given encoding; `json` keeps the values' JSON types. */
export function encodeBody(
  encoding: Encoding,
  pairs: readonly Pair[],
  extra: { boundary: string; contentType: string; garbage: string },
): { body: Buffer | string; headers: Record<string, string>; chunked?: boolean } {
  const asText = pairs.map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v) ?? ''] as const);
  switch (encoding) {
    case 'form':
      return { body: urlEncoded(asText), headers: { 'content-type': 'application/x-www-form-urlencoded' } };
    case 'chunked-form':
      return { body: urlEncoded(asText), headers: { 'content-type': 'application/x-www-form-urlencoded' }, chunked: true };
    case 'text-plain':
      return { body: urlEncoded(asText), headers: { 'content-type': 'text/plain;charset=UTF-8' } };
    case 'no-type':
      return { body: urlEncoded(asText), headers: {} };
    case 'random-type':
      return { body: urlEncoded(asText), headers: { 'content-type': extra.contentType } };
    case 'multipart': {
      // An unnamed part is the multipart bug of fuzz.test.ts (it has its own property): name it here.
      const parts = asText.map(([k, v]) => fieldPart(k === '' ? '_' : k, v));
      const built = buildMultipart({ boundary: extra.boundary, preamble: '', parts, closing: true, epilogue: '' });
      return { body: built.body, headers: { 'content-type': `multipart/form-data; boundary=${extra.boundary}` } };
    }
    case 'json':
      return { body: jsonObjectText(pairs), headers: { 'content-type': 'application/json' } };
    case 'json-garbage':
      return { body: extra.garbage, headers: { 'content-type': 'application/json' } };
  }
}

/** Garbage JSON bodies: not JSON, JSON that is not an object, truncated objects. */
export const jsonGarbageArb: fc.Arbitrary<string> = fc.oneof(
  textArb,
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)).map((s) => s.slice(0, Math.max(0, s.length - 1))),
  fc.constantFrom('{"nickname":', '{"nickname":"Ann"', '[]', '{}', 'null', '"Ann"', '{"__proto__":{"nickname":"x"}}', '{"userData":[1]}', '{"userData":null}', '\uFEFF{"nickname":"Ann"}'),
);

/** RFC 2046 boundary characters (bchars), 1 to 70 of them, not ending in a space. */
export const boundaryArb: fc.Arbitrary<string> = fc
  .string({ unit: fc.constantFrom(...'0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\'()+_,-./:=?'), minLength: 1, maxLength: 70 })
  .filter((b) => !b.endsWith(' '));

/** One raw path segment as a client might send it (only \x21-\x7e, so that node's client accepts it). */
export const segmentArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('.', '..', '%2e', '%2E%2E', '.%2e', '%', '%E0%A4%A', '%00', '%2F', '%ZZ', '~', '%C0%AF', '%ED%A0%80', '%F0%9F%98%80', '%20', '+', ';', 'a;b=c', '%u0041') },
  { weight: 3, arbitrary: textArb.map(pct) },
  { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 20 }).map((s) => s.replace(/[/?#]/g, '')) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 5000 }).map((n) => 'a'.repeat(n)) },
);

/** transcriptPosition values, legal and not. */
export const positionArb: fc.Arbitrary<string> = fc.oneof(
  fc.nat(50).map(String),
  fc.constantFrom('0', ' 3 ', '-1', '1.5', '1e3', '0x10', '+1', '١', '９', '9'.repeat(15), '9'.repeat(16), '', ' ', '00001', '1 2', 'NaN', 'Infinity'),
  textArb,
);

/** Random Chat API operation paths after `{chatId}/` as segment lists (FILEID is replaced at run time). */
export const operationArb: fc.Arbitrary<readonly string[]> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      ['send'], ['refresh'], ['startTyping'], ['stopTyping'], ['disconnect'], ['pushUrl'], ['updateNickname'], ['updateData'],
      ['customNotice'], ['readReceipt'], ['file'], ['file', 'limits'], ['file', 'FILEID', 'download'], ['file', 'FILEID', 'delete'],
    ),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      ['Send'], ['REFRESH'], ['refresh', ''], ['frobnicate'], ['__proto__'], ['constructor'], ['toString'], ['hasOwnProperty'], [''],
      ['file', 'limits', 'x'], ['file', 'download'], ['file', 'FILEID'], ['file', 'FILEID', 'rename'], ['send', 'send'], [],
    ),
  },
  { weight: 2, arbitrary: fc.array(segmentArb, { minLength: 1, maxLength: 4 }) },
);

export const methodArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: fc.constant('POST') },
  { weight: 1, arbitrary: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS') },
);

/** How a request identifies itself; resolved against the real tokens at run time. */
export type IdentityKind =
  | 'right'
  | 'right-no-user'
  | 'right-empty-user'
  | 'right-then-wrong'
  | 'wrong-then-right'
  | 'key-flipped'
  | 'key-longer'
  | 'key-shorter'
  | 'key-upper'
  | 'key-padded'
  | 'key-random'
  | 'other-chat'
  | 'missing'
  | 'empty-key'
  | 'wrong-user'
  | 'user-only';

export const identityArb: fc.Arbitrary<IdentityKind> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom<IdentityKind>('right', 'right-no-user', 'right-empty-user') },
  {
    weight: 6,
    arbitrary: fc.constantFrom<IdentityKind>(
      'right-then-wrong', 'wrong-then-right', 'key-flipped', 'key-longer', 'key-shorter', 'key-upper', 'key-padded', 'key-random',
      'other-chat', 'missing', 'empty-key', 'wrong-user', 'user-only',
    ),
  },
);

export interface Tokens {
  readonly secureKey: string;
  readonly userId: string;
}

/** The identity fields of a kind, in order; `random` fills key-random. */
export function identityPairs(kind: IdentityKind, t: Tokens, other: Tokens, random: string): Pair[] {
  const flipped = t.secureKey.replace(/^./, (c) => (c === '0' ? '1' : '0'));
  switch (kind) {
    case 'right':
      return [['secureKey', t.secureKey], ['userId', t.userId]];
    case 'right-no-user':
      return [['secureKey', t.secureKey]];
    case 'right-empty-user':
      return [['secureKey', t.secureKey], ['userId', '']];
    case 'right-then-wrong':
      return [['secureKey', t.secureKey], ['secureKey', flipped], ['userId', t.userId]];
    case 'wrong-then-right':
      return [['secureKey', flipped], ['secureKey', t.secureKey], ['userId', t.userId]];
    case 'key-flipped':
      return [['secureKey', flipped], ['userId', t.userId]];
    case 'key-longer':
      return [['secureKey', `${t.secureKey}0`], ['userId', t.userId]];
    case 'key-shorter':
      return [['secureKey', t.secureKey.slice(0, -1)], ['userId', t.userId]];
    case 'key-upper':
      return [['secureKey', t.secureKey.toUpperCase() === t.secureKey ? t.secureKey.toLowerCase() : t.secureKey.toUpperCase()]];
    case 'key-padded':
      return [['secureKey', ` ${t.secureKey} `]];
    case 'key-random':
      return [['secureKey', random], ['userId', t.userId]];
    case 'other-chat':
      return [['secureKey', other.secureKey], ['userId', other.userId]];
    case 'missing':
      return [];
    case 'empty-key':
      return [['secureKey', ''], ['userId', t.userId]];
    case 'wrong-user':
      return [['secureKey', t.secureKey], ['userId', t.userId.replace(/^./, (c) => (c === '0' ? '1' : '0'))]];
    case 'user-only':
      return [['userId', t.userId]];
  }
}

/**
 * The secureKey and userId the server sees: forms keep the first value of a name, JSON.parse the last;
 * non-string JSON values are stringified by the server.
 */
export function effectiveIdentity(pairs: readonly Pair[], lastWins: boolean): { secureKey?: string; userId?: string } {
  const out: { secureKey?: string; userId?: string } = {};
  for (const [k, v] of lastWins ? [...pairs].reverse() : pairs) {
    if ((k === 'secureKey' || k === 'userId') && out[k] === undefined) out[k] = typeof v === 'string' ? v : v === null ? '' : String(v);
  }
  return out;
}

export function isRightIdentity(id: { secureKey?: string; userId?: string }, t: Tokens): boolean {
  return id.secureKey === t.secureKey && (id.userId === undefined || id.userId === '' || id.userId === t.userId);
}

// ---------------------------------------------------------------------------------------------------------
// Invariants

const BY_WIRE = new Map(Object.entries(ERRORS).map(([code, spec]) => [spec.wire, { code, ...spec }]));

/**
 * A Chat API v2 envelope: never a 5xx, JSON, statusCode 0|1|2, boolean chatEnded, array messages;
 * statusCode 0 ⇔ HTTP 200 with the session fields; otherwise one known error whose HTTP status and
 * statusCode match the code's, no messages and no tokens. Returns the error's code name, or undefined.
 */
export function expectEnvelope(r: RawReply, what: string): string | undefined {
  const ctx = `${what}\n→ HTTP ${r.status} ${r.transportError ?? ''} ${r.text.slice(0, 500)}`;
  expect(r.transportError, ctx).toBeUndefined();
  expect(r.status, ctx).toBeGreaterThanOrEqual(200);
  expect(r.status, ctx).toBeLessThan(500);
  expect(String(r.headers['content-type']), ctx).toMatch(/^application\/json/);
  const b = r.json;
  expect(typeof b === 'object' && b !== null && !Array.isArray(b), ctx).toBe(true);
  expect([0, 1, 2], ctx).toContain(b.statusCode);
  expect(typeof b.chatEnded, ctx).toBe('boolean');
  expect(Array.isArray(b.messages), ctx).toBe(true);
  expect(b.statusCode === 0, ctx).toBe(r.status === 200);
  if (b.statusCode === 0) {
    for (const k of ['chatId', 'secureKey', 'userId', 'alias']) {
      expect(typeof b[k], `${ctx}\n(${k})`).toBe('string');
      expect(b[k], `${ctx}\n(${k})`).not.toBe('');
    }
    expect(Number.isInteger(b.nextPosition) && b.nextPosition >= 1, ctx).toBe(true);
    expect(b.errors, ctx).toBeUndefined();
    return undefined;
  }
  expect(Array.isArray(b.errors) && b.errors.length >= 1, ctx).toBe(true);
  const e = b.errors[0];
  expect(typeof e.code, ctx).toBe('number');
  expect(typeof e.advice === 'string' && e.advice !== '', ctx).toBe(true);
  const spec = BY_WIRE.get(e.code);
  expect(spec, `${ctx}\n(wire code ${e.code} is not in ERRORS)`).toBeDefined();
  if (spec === undefined) return undefined;
  expect(r.status, `${ctx}\n(HTTP status of ${spec.code})`).toBe(spec.http);
  expect(b.statusCode, `${ctx}\n(statusCode of ${spec.code})`).toBe(spec.statusCode);
  expect(b.chatEnded, ctx).toBe(spec.code === 'CHAT_ENDED');
  expect(b.messages, ctx).toEqual([]);
  for (const k of ['secureKey', 'userId', 'nextPosition', 'userData']) expect(b, `${ctx}\n(${k} in an error)`).not.toHaveProperty(k);
  return spec.code;
}

/** Exceptions nobody caught in this process (the server runs in it), recorded instead of crashing the run. */
export class UncaughtTrap {
  readonly errors: unknown[] = [];
  private readonly onError = (e: unknown) => void this.errors.push(e);

  install(): void {
    process.on('uncaughtException', this.onError);
    process.on('unhandledRejection', this.onError);
  }

  uninstall(): void {
    process.off('uncaughtException', this.onError);
    process.off('unhandledRejection', this.onError);
  }

  /** Lets pending ticks run, then fails with whatever was thrown since the last call. */
  async expectNone(what: string): Promise<void> {
    await new Promise((r) => setTimeout(r, 5));
    const found = this.errors.splice(0);
    expect(found.map((e) => (e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e))), `uncaught in the server process after ${what}`).toEqual([]);
  }
}
