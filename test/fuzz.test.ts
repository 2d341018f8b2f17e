/**
 * Property-based fuzzing over real HTTP (fast-check): one Parley server per describe, random requests, and
 * the invariants every reply must keep whatever the input:
 *
 *  - Chat API v2: never a 5xx; always the JSON envelope (statusCode 0|1|2, boolean chatEnded, array
 *    messages); statusCode 0 ⇔ HTTP 200 with the session fields; an error is one known wire code with that
 *    code's HTTP status; a rejected request creates no session and changes no stored data (transcript,
 *    nextPosition, file usage); a request with a wrong identity never sees the transcript or tokens.
 *  - Receiver push endpoint: 200 / 400 / 410 exactly as the body says (401 for every unsigned or mis-signed
 *    body when a signing secret is set), never a 5xx, and the process keeps serving.
 *  - Nothing throws uncaught in the process that runs the server.
 *
 * Reproduce a failure with the seed fast-check prints: FUZZ_SEED=<seed> npx vitest run test/fuzz.test.ts
 * (FUZZ_SCALE=<factor> multiplies every numRuns, e.g. FUZZ_SCALE=10 for a long soak).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.ts';
import { signWebhook } from '../src/push/signing.ts';
import { ChatClient, SERVICE, getHealth, memoryLogger, postForm, startTestServer, type TestServer } from './helpers.ts';
import { Browser, cachedByToken, startInProcess, type InProcess } from './receiver-helpers.ts';
import {
  OPERATION_FIELDS,
  REQUEST_FIELDS,
  UncaughtTrap,
  boundaryArb,
  buildMultipart,
  contentTypeArb,
  cutsFileData,
  effectiveIdentity,
  encodeBody,
  encodingArb,
  expectEnvelope,
  fieldNameArb,
  fieldPart,
  filePart,
  headerTextArb,
  identityArb,
  identityPairs,
  isRightIdentity,
  jsonFieldValueArb,
  jsonGarbageArb,
  jsonObjectText,
  methodArb,
  normalizedPath,
  operationArb,
  pct,
  positionArb,
  quoteParam,
  rawRequest,
  segmentArb,
  textArb,
  urlEncoded,
  valueArb,
  type IdentityKind,
  type MpPart,
  type Pair,
  type RawReply,
  type Tokens,
} from './support/arbitraries.ts';

// ---------------------------------------------------------------------------------------------------------
// Settings

const SEED = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);
const SCALE = Number(process.env['FUZZ_SCALE'] ?? '1');

/** fast-check parameters: modest runs, seedable; fast-check prints seed, path and counterexample on failure. */
function params(numRuns: number, noShrink: boolean): fc.Parameters<unknown> {
  return {
    numRuns: Math.max(1, Math.round(numRuns * SCALE)),
    ...(SEED === undefined ? {} : { seed: SEED }),
    ...(noShrink || process.env['FUZZ_NO_SHRINK'] !== undefined ? { endOnFailure: true } : {}),
  };
}

/** `noShrink` for the known-bug properties whose failing runs are slow (a hung request costs its timeout). */
async function check<Ts>(prop: fc.IAsyncProperty<Ts>, numRuns: number, noShrink = false): Promise<void> {
  await fc.assert(prop, params(numRuns, noShrink) as fc.Parameters<Ts>);
}

/** FUZZ_STATS=1 prints how the runs of a property split (accepted / rejected / ...). */
function stats(name: string, seen: object): void {
  if (process.env['FUZZ_STATS'] !== undefined) console.log(`[fuzz] ${name}: ${JSON.stringify(seen instanceof Map ? Object.fromEntries(seen) : seen)}`);
}

const TIMEOUT = 60_000 * Math.max(1, SCALE);
const MAX_FIELD = 2000;
const MAX_BODY = 70_000;
const MAX_FILE = 4000;

/** Small limits, so that values and bodies beyond them stay cheap; many files per chat. */
const SMALL_LIMITS: Record<string, string> = {
  PARLEY_HTTP_MAX_FIELD_LENGTH: String(MAX_FIELD),
  PARLEY_HTTP_MAX_BODY_SIZE: String(MAX_BODY),
  PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_MAX_FILE_SIZE: String(MAX_FILE),
  PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_MAX_TOTAL_SIZE: '50000000',
  PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_MAX_FILES: '1000',
};

/** A first message that must never show up in a reply to a wrong identity. */
const SECRET_TEXT = 'my card number is 4111-1111';

const trap = new UncaughtTrap();
beforeAll(() => trap.install());
afterAll(async () => {
  await trap.expectNone('the last test');
  trap.uninstall();
});

// ---------------------------------------------------------------------------------------------------------
// Helpers

interface Fixture {
  readonly server: TestServer;
  readonly log: ReturnType<typeof memoryLogger>;
}

/** A server with the small limits, a manual clock (no timer ends a chat mid-run) and a logger we can read. */
async function startFixture(): Promise<Fixture> {
  const log = memoryLogger();
  const server = await startTestServer('', SMALL_LIMITS, { clock: new ManualClock(Date.now()), log });
  return { server, log };
}

/** Error-level log lines since the last call (the Chat API logs every 5xx it answers). */
function takeErrorLogs(log: ReturnType<typeof memoryLogger>): string[] {
  const lines = log.lines.splice(0).filter((l) => l.level === 'error');
  return lines.map((l) => `${l.msg ?? ''} ${JSON.stringify(l.obj, (_k, v: unknown) => (v instanceof Error ? `${v.name}: ${v.message}` : v))}`);
}

async function newChat(base: string, service = SERVICE): Promise<ChatClient> {
  const c = new ChatClient(base, service);
  const r = await postForm(c.chatUrl, { nickname: 'Ann', subject: 'Order 42', text: SECRET_TEXT });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  c.chatId = r.body.chatId;
  c.userId = r.body.userId;
  c.secureKey = r.body.secureKey;
  c.alias = r.body.alias;
  c.nextPosition = r.body.nextPosition;
  return c;
}

function tokens(c: ChatClient): Tokens {
  return { secureKey: c.secureKey, userId: c.userId };
}

interface Snapshot {
  readonly nextPosition: number;
  readonly chatEnded: boolean;
  readonly messages: unknown[];
}

/** The whole transcript as a refresh with the right tokens sees it. */
async function snapshot(c: ChatClient): Promise<Snapshot> {
  const r = await postForm(`${c.chatUrl}/${c.chatId}/refresh`, { ...tokens(c), transcriptPosition: 1 });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { nextPosition: r.body.nextPosition, chatEnded: r.body.chatEnded, messages: r.body.messages };
}

/** The file/limits usage of the client. */
async function fileUsage(c: ChatClient): Promise<{ files: number; total: number }> {
  const r = await postForm(`${c.chatUrl}/${c.chatId}/file/limits`, { ...tokens(c) });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { files: Number(r.body.userData['used-upload-max-files']), total: Number(r.body.userData['used-upload-max-total-size']) };
}

async function sessionsTotal(base: string): Promise<number> {
  return ((await getHealth(base)) as { sessions: { total: number } }).sessions.total;
}

/** The longest string anywhere in a value (array items and object values, not keys). */
function longestString(v: unknown): number {
  if (typeof v === 'string') return v.length;
  if (Array.isArray(v)) return Math.max(0, ...v.map(longestString));
  if (typeof v === 'object' && v !== null) return Math.max(0, ...Object.values(v).map(longestString));
  return 0;
}

/** What a reply to a wrong identity must never contain. */
function expectNoLeak(r: RawReply, c: ChatClient, what: string): void {
  for (const secret of [c.secureKey, c.userId, SECRET_TEXT]) {
    expect(r.text.includes(secret), `${what}\n→ the reply contains "${secret}": ${r.text.slice(0, 300)}`).toBe(false);
  }
}

function describeRequest(method: string, path: string, headers: Record<string, string>, body: Buffer | string | undefined): string {
  const b = body === undefined ? '' : typeof body === 'string' ? body : body.toString('latin1');
  return `${method} ${path.length > 300 ? `${path.slice(0, 300)}…(${path.length})` : path} ${JSON.stringify(headers)} body(${b.length}): ${JSON.stringify(b.slice(0, 300))}`;
}

const garbageArbs = { boundary: boundaryArb, contentType: contentTypeArb, garbage: jsonGarbageArb };

// ---------------------------------------------------------------------------------------------------------
// 1. Request Chat

describe('fuzz: Request Chat', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await startFixture();
  });
  afterAll(async () => {
    await fx?.server.close();
  });

  it(
    'answers any field map in any encoding with a clean envelope; only an accepted request creates a session',
    async () => {
      const seen = { accepted: 0, rejected: 0 };
      const prop = fc.asyncProperty(
        fc.record({
          withNickname: fc.boolean(),
          pairs: fc.array(fc.tuple(fieldNameArb([...REQUEST_FIELDS, 'userData']), jsonFieldValueArb(MAX_FIELD, MAX_BODY)), { maxLength: 8 }),
          encoding: encodingArb,
          service: fc.oneof({ weight: 10, arbitrary: fc.constant(SERVICE) }, fc.constantFrom('other', 'nope', 'Customer-Support', `${SERVICE}%20`), textArb.map(pct)),
          ...garbageArbs,
        }),
        async (c) => {
          const pairs: Pair[] = [...(c.withNickname ? [['nickname', 'Ann'] as Pair] : []), ...c.pairs];
          const { body, headers, chunked } = encodeBody(c.encoding, pairs, c);
          const path = `/genesys/2/chat/${c.service}`;
          const what = describeRequest('POST', path, headers, body);
          const before = await sessionsTotal(fx.server.url);
          const r = await rawRequest(fx.server.url, { method: 'POST', path, headers, body, ...(chunked === true ? { chunked } : {}) });
          await trap.expectNone(what);
          expect(takeErrorLogs(fx.log), what).toEqual([]);
          expectEnvelope(r, what);
          const accepted = r.json.statusCode === 0;
          seen[accepted ? 'accepted' : 'rejected']++;
          expect(await sessionsTotal(fx.server.url), `${what}\n(sessions.total after a${accepted ? 'n accepted' : ' rejected'} request)`).toBe(before + (accepted ? 1 : 0));

          // Limits hold whatever the encoding: too large bodies and too long values are never accepted.
          const size = Buffer.byteLength(body);
          if (size > MAX_BODY) expect(accepted, `${what}\n(accepted a body of ${size} bytes)`).toBe(false);
          const parsed = c.encoding !== 'random-type' && c.encoding !== 'json-garbage';
          const longest = c.encoding === 'json' ? longestString(JSON.parse(jsonObjectText(pairs))) : Math.max(0, ...pairs.map(([, v]) => (typeof v === 'string' ? v : JSON.stringify(v) ?? '').length));
          if (parsed && longest > MAX_FIELD) expect(accepted, `${what}\n(accepted a value of ${longest} characters)`).toBe(false);
        },
      );
      await check(prop, 150);
      stats('request chat', seen);
      // The generators reach both sides.
      expect(seen.accepted).toBeGreaterThan(0);
      expect(seen.rejected).toBeGreaterThan(0);
    },
    TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------
// 2. Operations on an existing chat

describe('fuzz: operations on an existing chat', () => {
  let fx: Fixture;
  let chat: ChatClient;
  let other: ChatClient;
  beforeAll(async () => {
    fx = await startFixture();
    chat = await newChat(fx.server.url);
    other = await newChat(fx.server.url);
  });
  afterAll(async () => {
    await fx?.server.close();
  });

  const opArb = fc.record({
    method: methodArb,
    service: fc.oneof({ weight: 10, arbitrary: fc.constant<string | undefined>(undefined) }, fc.constantFrom('other', 'nope'), segmentArb),
    chat: fc.oneof(
      { weight: 10, arbitrary: fc.constant<'ours' | 'other' | 'none' | 'random'>('ours') },
      fc.constantFrom<'ours' | 'other' | 'none' | 'random'>('other', 'none', 'random'),
    ),
    chatSegment: segmentArb,
    op: operationArb,
    fileId: fc.oneof(fc.constant('AAAAAAAAAAAAAAAA'), segmentArb),
    identity: identityArb,
    randomKey: textArb,
    withMessage: fc.boolean(),
    position: fc.option(positionArb),
    pairs: fc.array(
      fc.oneof(
        { weight: 4, arbitrary: fc.tuple(fieldNameArb(OPERATION_FIELDS), valueArb(MAX_FIELD, MAX_BODY)) },
        { weight: 1, arbitrary: fc.tuple(fc.constant('pushUrl'), fc.webUrl()) },
        { weight: 1, arbitrary: fc.tuple(fc.constant('transcriptPosition'), positionArb) },
      ),
      { maxLength: 6 },
    ),
    encoding: encodingArb,
    query: fc.option(textArb.map((s) => `${pct(s)}=${pct(s)}`)),
    ...garbageArbs,
  });

  it(
    'answers any operation, path and identity with a clean envelope; a rejected or wrongly identified request changes nothing and leaks nothing',
    async () => {
      const seen = { accepted: 0, rejected: 0, wrong: 0 };
      const prop = fc.asyncProperty(opArb, async (c) => {
        let before = await snapshot(chat);
        if (before.chatEnded) {
          // A fuzzed disconnect with the right tokens ended it: go on with a fresh chat.
          chat = await newChat(fx.server.url);
          before = await snapshot(chat);
        }
        const chatSeg = c.chat === 'ours' ? chat.chatId : c.chat === 'other' ? other.chatId : c.chat === 'random' ? c.chatSegment : undefined;
        const opSegs = c.op.map((s) => (s === 'FILEID' ? c.fileId : s));
        const path =
          `/genesys/2/chat/${c.service ?? SERVICE}` + (chatSeg === undefined ? '' : `/${chatSeg}`) + (opSegs.length === 0 ? '/' : `/${opSegs.join('/')}`);

        const pairs: Pair[] = [
          ...identityPairs(c.identity as IdentityKind, tokens(chat), tokens(other), c.randomKey),
          ...(c.position === null ? [] : [['transcriptPosition', c.position] as Pair]),
          ...c.pairs,
          // Late, so that random fields win (first value wins in forms) but send/updateNickname often succeed.
          ...(c.withMessage ? [['message', 'hello'] as Pair, ['nickname', 'Bea'] as Pair] : []),
        ];
        const get = c.method === 'GET';
        const encoded = get ? { body: undefined, headers: {} as Record<string, string> } : encodeBody(c.encoding, pairs, c);
        const query = get ? `?${urlEncoded(pairs)}` : c.query === null ? '' : `?${c.query}`;
        const fullPath = path + query;
        const what = describeRequest(c.method, fullPath, encoded.headers, encoded.body);

        const r = await rawRequest(fx.server.url, {
          method: c.method,
          path: fullPath,
          headers: encoded.headers,
          ...(encoded.body === undefined ? {} : { body: encoded.body }),
          ...('chunked' in encoded && encoded.chunked === true ? { chunked: true } : {}),
        });
        await trap.expectNone(what);
        expect(takeErrorLogs(fx.log), what).toEqual([]);
        expect(r.transportError, what).toBeUndefined();
        expect(r.status, `${what}\n→ ${r.text.slice(0, 300)}`).toBeLessThan(500);

        const routed = normalizedPath(fullPath);
        const chatApi = routed.startsWith('/genesys/2/chat/');
        const download = r.status === 200 && /\/file\/[^/]+\/download$/.test(routed) && r.json === undefined;
        // A request line beyond node's max header size (16 KiB) is refused by node's HTTP parser itself
        // (400/431, no body) before any Parley code runs: no envelope to check there.
        const headTooLarge = fullPath.length > 16 * 1024 - 512;
        if (headTooLarge) expect([400, 431, 200, 404, 405, 403, 413], what).toContain(r.status);
        else if (chatApi && !download) expectEnvelope(r, what);

        const accepted = r.status === 200;
        seen[accepted ? 'accepted' : 'rejected']++;
        const lastWins = !get && c.encoding === 'json';
        const right = isRightIdentity(effectiveIdentity(pairs, lastWins), tokens(chat));
        if (!right) {
          seen.wrong++;
          expectNoLeak(r, chat, what);
        }
        if (!accepted || !right) {
          expect(await snapshot(chat), `${what}\n→ ${r.status} ${r.text.slice(0, 300)}\n(the transcript changed)`).toEqual(before);
        }
      });
      await check(prop, 250);
      stats('operations', seen);
      expect(seen.accepted).toBeGreaterThan(0);
      expect(seen.rejected).toBeGreaterThan(0);
      expect(seen.wrong).toBeGreaterThan(0);
    },
    TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------
// 3. Multipart

const FILE_NAMES = [
  'a.txt', 'report.pdf', 'img.PNG', 'x.exe', 'noext', '.txt', 'a.txt.exe', '../../etc/passwd.txt', 'C:\\temp\\a.txt', 'quo"te.txt',
  "it's.txt", 'crlf\r\nX-Evil: 1.txt', 'tab\t.txt', 'semi;colon.txt', 'ü n i c ö d e.txt', '😀.txt', '\u202Etxt.exe', '', ' ', 'a%22b.txt',
];

const fileNameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...FILE_NAMES) },
  { weight: 3, arbitrary: fc.tuple(textArb, fc.constantFrom('.txt', '.png', '.pdf', '.TXT', '', '.zip')).map(([a, b]) => a + b) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 400 }).map((n) => `${'n'.repeat(n)}.txt`) },
);

/** How the filename is written in Content-Disposition. */
type NameStyle = 'browser' | 'raw' | 'rfc5987' | 'both' | 'token';

function disposition(name: string, fileName: string, style: NameStyle): string {
  const n = `name=${quoteParam(name)}`;
  switch (style) {
    case 'browser':
      return `Content-Disposition: form-data; ${n}; filename=${quoteParam(fileName)}`;
    case 'raw':
      return `Content-Disposition: form-data; ${n}; filename="${fileName}"`;
    case 'rfc5987':
      return `Content-Disposition: form-data; ${n}; filename*=UTF-8''${pct(fileName)}`;
    case 'both':
      return `Content-Disposition: form-data; ${n}; filename="fallback.txt"; filename*=UTF-8''${pct(fileName)}`;
    case 'token':
      return `Content-Disposition: form-data; ${n}; filename=${fileName}`;
  }
}

const EXTRA_HEADERS = ['Content-Transfer-Encoding: base64', 'Content-Type: text/plain; charset=utf-16le', 'X-Thing: y', 'garbage', ': no name', 'Content-Length: 5'];

const filePartArb: fc.Arbitrary<MpPart & { readonly named: string }> = fc
  .record({
    // Not empty: an unnamed part is the second multipart bug below.
    name: fc.oneof({ weight: 8, arbitrary: fc.constant('file') }, fc.constantFrom('File', 'files', 'upload'), textArb.filter((n) => n !== '')),
    fileName: fileNameArb,
    style: fc.oneof({ weight: 6, arbitrary: fc.constant<NameStyle>('browser') }, fc.constantFrom<NameStyle>('raw', 'rfc5987', 'both', 'token')),
    type: fc.oneof(fc.constantFrom('text/plain', 'image/png', 'application/pdf', 'application/octet-stream', 'text/plain; charset=utf-8'), headerTextArb),
    size: fc.oneof(fc.integer({ min: MAX_FILE - 3, max: MAX_FILE + 3 }), fc.nat(64), fc.constant(0), fc.integer({ min: MAX_FILE * 2, max: MAX_FILE * 3 })),
    fill: fc.integer({ min: 0, max: 255 }),
    extra: fc.oneof({ weight: 6, arbitrary: fc.constant<string[]>([]) }, fc.array(fc.oneof(fc.constantFrom(...EXTRA_HEADERS), headerTextArb), { maxLength: 2 })),
  })
  .map((f) => ({
    named: f.name,
    headers: [disposition(f.name, f.fileName, f.style), ...(f.type === '' ? [] : [`Content-Type: ${f.type}`]), ...f.extra],
    body: Buffer.alloc(f.size, f.fill),
  }));

const otherPartArb: fc.Arbitrary<MpPart> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(fieldNameArb([...OPERATION_FIELDS, 'userData[file-description]', 'description']).filter((n) => n !== ''), valueArb(MAX_FIELD, MAX_BODY))
      .map(([k, v]) => fieldPart(k, v)),
  },
  {
    weight: 1,
    arbitrary: fc.record({ headers: fc.array(fc.oneof(fc.constantFrom(...EXTRA_HEADERS), headerTextArb), { maxLength: 3 }), body: textArb }).map((p) => ({ headers: p.headers, body: Buffer.from(p.body, 'utf8') })),
  },
);

type BoundaryHeader = 'same' | 'quoted' | 'missing' | 'other' | 'case' | 'random-type';

const multipartArb = fc.record({
  target: fc.oneof({ weight: 4, arbitrary: fc.constant<'upload' | 'request'>('upload') }, fc.constant<'upload' | 'request'>('request')),
  identity: fc.oneof({ weight: 4, arbitrary: fc.constant<IdentityKind>('right') }, identityArb),
  identityAt: fc.nat(4),
  nickname: fc.boolean(),
  boundary: boundaryArb,
  boundaryHeader: fc.oneof({ weight: 10, arbitrary: fc.constant<BoundaryHeader>('same') }, fc.constantFrom<BoundaryHeader>('quoted', 'missing', 'other', 'case', 'random-type')),
  contentType: contentTypeArb,
  preamble: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, textArb.map((s) => s.replace(/-/g, ''))),
  files: fc.oneof({ weight: 6, arbitrary: fc.array(filePartArb, { minLength: 1, maxLength: 1 }) }, fc.array(filePartArb, { maxLength: 3 })),
  others: fc.array(otherPartArb, { maxLength: 3 }),
  order: fc.array(fc.nat(), { maxLength: 8 }),
  closing: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, fc.constant(false)),
  epilogue: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, textArb),
  cut: fc.oneof({ weight: 4, arbitrary: fc.constant<number | null>(null) }, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true })),
  chunked: fc.boolean(),
});

type MultipartCase = typeof multipartArb extends fc.Arbitrary<infer T> ? T : never;

/** The parts in a shuffled order, with the identity parts at `identityAt`. */
function assembleParts(c: MultipartCase, chat: ChatClient, other: ChatClient): MpPart[] {
  const body: MpPart[] = [...c.files, ...c.others, ...(c.nickname ? [fieldPart('nickname', 'Ann')] : [])];
  // A seeded shuffle: each `order` entry swaps two positions.
  c.order.forEach((n, i) => {
    const a = i % Math.max(1, body.length);
    const b = n % Math.max(1, body.length);
    const pa = body[a];
    const pb = body[b];
    if (pa !== undefined && pb !== undefined) {
      body[a] = pb;
      body[b] = pa;
    }
  });
  const ids = identityPairs(c.identity, tokens(chat), tokens(other), 'x').map(([k, v]) => fieldPart(k, String(v)));
  body.splice(c.identityAt % (body.length + 1), 0, ...ids);
  return body;
}

function multipartContentType(c: MultipartCase): string {
  const needsQuotes = /[()<>@,;:\\"/[\]?= ]/.test(c.boundary);
  switch (c.boundaryHeader) {
    case 'same':
      return `multipart/form-data; boundary=${needsQuotes ? `"${c.boundary}"` : c.boundary}`;
    case 'quoted':
      return `multipart/form-data; boundary="${c.boundary}"`;
    case 'missing':
      return 'multipart/form-data';
    case 'other':
      return `multipart/form-data; boundary="${c.boundary}x"`;
    case 'case':
      return `Multipart/Form-Data; BOUNDARY="${c.boundary.toUpperCase() === c.boundary ? c.boundary.toLowerCase() : c.boundary.toUpperCase()}"`;
    case 'random-type':
      return c.contentType;
  }
}

describe('fuzz: multipart', () => {
  let fx: Fixture;
  let chat: ChatClient;
  let other: ChatClient;
  beforeAll(async () => {
    fx = await startFixture();
    chat = await newChat(fx.server.url);
    other = await newChat(fx.server.url);
  });
  afterAll(async () => {
    await fx?.server.close();
  });

  /** Sends one fuzzed multipart request and checks every invariant. `cutAt` is the byte count actually sent. */
  async function runMultipart(
    c: MultipartCase,
    cutAt: (built: ReturnType<typeof buildMultipart>) => number,
    seen?: { accepted: number; rejected: number },
    timeoutMs?: number,
  ): Promise<void> {
    const parts = assembleParts(c, chat, other);
    const built = buildMultipart({ boundary: c.boundary, preamble: c.preamble, parts, closing: c.closing, epilogue: c.epilogue });
    const body = built.body.subarray(0, cutAt(built));
    const headers = { 'content-type': multipartContentType(c) };
    const path = c.target === 'upload' ? `/genesys/2/chat/${SERVICE}/${chat.chatId}/file` : `/genesys/2/chat/${SERVICE}`;
    const what = describeRequest('POST', path, headers, body);

    const usageBefore = await fileUsage(chat);
    const snapBefore = await snapshot(chat);
    const sessionsBefore = await sessionsTotal(fx.server.url);
    const r = await rawRequest(fx.server.url, { method: 'POST', path, headers, body, chunked: c.chunked, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
    await trap.expectNone(what);
    expect(takeErrorLogs(fx.log), what).toEqual([]);
    expectEnvelope(r, what);
    const accepted = r.json.statusCode === 0;
    if (seen !== undefined) seen[accepted ? 'accepted' : 'rejected']++;

    const usage = await fileUsage(chat);
    const snap = await snapshot(chat);
    if (!accepted || c.target === 'request') {
      expect(usage, `${what}\n→ ${r.text.slice(0, 300)}\n(file usage grew)`).toEqual(usageBefore);
      expect(snap, `${what}\n(the transcript changed)`).toEqual(snapBefore);
    }
    expect(await sessionsTotal(fx.server.url), `${what}\n(sessions.total)`).toBe(sessionsBefore + (accepted && c.target === 'request' ? 1 : 0));
    if (!accepted) return;
    if (c.target === 'request') return;

    // An accepted upload: counted once, and it downloads byte for byte.
    expect(usage.files, what).toBe(usageBefore.files + 1);
    const fileId = String(r.json.userData?.['file-id']);
    const candidates = parts.filter((p) => p.headers.some((h) => /filename/i.test(h)));
    const dl = await rawRequest(fx.server.url, {
      method: 'POST',
      path: `/genesys/2/chat/${SERVICE}/${chat.chatId}/file/${encodeURIComponent(fileId)}/download`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: urlEncoded([['secureKey', chat.secureKey], ['userId', chat.userId]]),
    });
    expect(dl.status, `${what}\n(download of ${fileId}: ${dl.text.slice(0, 200)})`).toBe(200);
    expect(String(dl.headers['content-disposition']), what).toMatch(/^attachment; /);
    // The stored bytes are the part's data only when its header lines are well-formed (an empty or broken
    // line ends the headers early and the rest belongs to the data).
    const only = candidates.length === 1 && candidates[0]?.headers.every((h) => /^[A-Za-z][A-Za-z0-9-]*: [^\r\n]*$/.test(h)) ? candidates[0] : undefined;
    if (only !== undefined) {
      expect(usage.total, what).toBe(usageBefore.total + only.body.length);
      expect(dl.raw.equals(only.body), `${what}\n(downloaded bytes differ: ${dl.raw.length} vs ${only.body.length})`).toBe(true);
    }
  }

  it(
    'answers random multipart bodies (boundaries, parts, headers, filenames, sizes, several files, cut bodies) with a clean envelope; a rejected upload changes no usage',
    async () => {
      const seen = { accepted: 0, rejected: 0 };
      const prop = fc.asyncProperty(multipartArb, (c) =>
        runMultipart(
          c,
          (built) => {
            let at = c.cut === null ? built.body.length : Math.floor(c.cut * built.body.length);
            // A body that ends inside a file part's data (cut, or no closing delimiter after a last file
            // part) is the bug below; here such a body ends before that part instead (and again before an
            // earlier file part whose delimiter that end cuts off).
            for (let inside = cutsFileData(built, at); inside !== undefined; inside = cutsFileData(built, at)) at = inside.partStart;
            return at;
          },
          seen,
        ),
      );
      await check(prop, 150);
      stats('multipart', seen);
      expect(seen.accepted).toBeGreaterThan(0);
      expect(seen.rejected).toBeGreaterThan(0);
    },
    TIMEOUT,
  );

  // Regression: found by this suite and fixed.
  it(
    'refuses a multipart body that ends inside a file part without an uncaught exception in the server process',
    async () => {
      const cutCase = fc.record({
        base: multipartArb,
        fileName: fc.constantFrom('a.txt', 'b.pdf'),
        size: fc.integer({ min: 1, max: MAX_FILE }),
        cut: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      });
      const prop = fc.asyncProperty(cutCase, (k) => {
        const c: MultipartCase = {
          ...k.base,
          identity: 'right',
          boundaryHeader: 'same',
          files: [{ ...filePart('file', k.fileName, 'text/plain', Buffer.alloc(k.size, 0x61)), named: 'file' }],
          others: [],
          closing: true,
        };
        return runMultipart(c, (built) => {
          const f = built.fileParts[0];
          if (f === undefined) return built.body.length;
          return f.dataStart + Math.floor(k.cut * k.size);
        });
      });
      await check(prop, 20);
    },
    TIMEOUT,
  );

  // Regression: found by this suite and fixed.
  it(
    'refuses multipart parts without a name (file parts, too long fields) with a clean 4xx and nothing uncaught',
    async () => {
      const unnamedArb = fc.record({
        base: multipartArb,
        name: fc.constantFrom('Content-Disposition: form-data; name=""', 'Content-Disposition: form-data'),
        kind: fc.constantFrom('filename', 'octet-stream', 'long-field', 'very-long-field'),
        extra: fc.nat(100),
      });
      const prop = fc.asyncProperty(unnamedArb, (k) => {
        const part: MpPart =
          k.kind === 'filename'
            ? { headers: [`${k.name}; filename="a.txt"`, 'Content-Type: text/plain'], body: Buffer.alloc(k.extra, 0x61) }
            : k.kind === 'octet-stream'
              ? { headers: [k.name, 'Content-Type: application/octet-stream'], body: Buffer.alloc(k.extra, 0x61) }
              : { headers: [k.name], body: Buffer.alloc(k.kind === 'long-field' ? MAX_FIELD + 1 + k.extra : MAX_FIELD * 4 + 2 + k.extra, 0x61) };
        const c: MultipartCase = { ...k.base, identity: 'right', boundaryHeader: 'same', files: [], others: [part], closing: true, cut: null };
        return runMultipart(c, (built) => built.body.length, undefined, 1500);
      });
      await check(prop, 10, true);
    },
    TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------
// 4. Receiver push endpoint

/** What /receiver/push must answer for a body (no signing): 400 not a JSON object, 410 unknown device, 200. */
function expectedPushStatus(body: string, deviceId: string): 200 | 400 | 410 {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(body, 'utf8').toString('utf8'));
  } catch {
    return 400;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 400;
  return (v as { deviceId?: unknown }).deviceId === deviceId ? 200 : 410;
}

const notNull = fc.jsonValue({ maxDepth: 2 }).filter((v) => v !== null);

/**
 * Push bodies: objects shaped like the gateway's customhttp notification with random fields, JSON that is
 * not an object, and text that is not JSON. `anyEvents` lets the transcript events in `data.messages` be
 * any JSON (null, no `from`); otherwise they are objects with an object `from` (or non-null non-events).
 */
function pushBodyArb(deviceId: string, anyEvents: boolean): fc.Arbitrary<string> {
  const fromArb = anyEvents
    ? fc.oneof(fc.record({ nickname: textArb, participantId: fc.oneof(fc.nat(3), notNull), type: fc.constantFrom('Agent', 'Client') }, { requiredKeys: [] }), fc.jsonValue({ maxDepth: 1 }))
    : fc.record({ nickname: textArb, participantId: fc.oneof(fc.nat(3), notNull), type: fc.constantFrom('Agent', 'Client', 'External') }, { requiredKeys: [] });
  const eventArb = fc.record(
    {
      index: fc.oneof(fc.nat(12), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
      type: fc.oneof(fc.constantFrom('Message', 'ParticipantLeft', 'ParticipantJoined', 'Notice', 'TypingStarted'), textArb),
      text: textArb,
      utcTime: fc.nat(),
      from: fromArb,
      userData: fc.oneof(fc.constant<unknown>({ 'quit-reason-advice': 'reconnect' }), fc.dictionary(textArb, textArb, { maxKeys: 3 }), fc.jsonValue({ maxDepth: 1 })),
    },
    { requiredKeys: anyEvents ? ['index'] : ['index', 'type', 'from'] },
  );
  const messageArb = anyEvents
    ? fc.oneof({ weight: 4, arbitrary: eventArb }, fc.constant(null), fc.jsonValue({ maxDepth: 2 }))
    : fc.oneof({ weight: 4, arbitrary: eventArb }, notNull);
  const dataArb = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record(
        {
          statusCode: fc.jsonValue({ maxDepth: 1 }),
          chatEnded: fc.oneof(fc.boolean(), fc.jsonValue({ maxDepth: 1 })),
          nextPosition: fc.jsonValue({ maxDepth: 1 }),
          messages: fc.oneof({ weight: 4, arbitrary: fc.array(messageArb, { maxLength: 5 }) }, fc.jsonValue({ maxDepth: 1 }).filter((v) => !Array.isArray(v))),
        },
        { requiredKeys: [] },
      ),
    },
    fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)),
  );
  const objArb = fc.record(
    {
      deviceId: fc.oneof({ weight: 6, arbitrary: fc.constant<unknown>(deviceId) }, textArb, fc.jsonValue({ maxDepth: 1 }), fc.constantFrom(deviceId.toUpperCase(), ` ${deviceId}`, `${deviceId}x`, '')),
      message: textArb,
      type: fc.oneof(fc.constantFrom('push-url', 'Message', 'ParticipantLeft'), textArb, fc.jsonValue({ maxDepth: 1 })),
      // Mostly unique: a repeated id is a duplicate, whose events are not delivered again.
      notificationId: fc.oneof({ weight: 4, arbitrary: fc.uuid() }, textArb, fc.jsonValue({ maxDepth: 1 }), fc.constantFrom('ntf_fixed', '__proto__')),
      attempt: fc.oneof(fc.nat(5), fc.jsonValue({ maxDepth: 1 })),
      data: dataArb,
    },
    { requiredKeys: [] },
  );
  return fc.oneof(
    { weight: 8, arbitrary: objArb.map((o) => JSON.stringify(o)) },
    { weight: 1, arbitrary: objArb.map((o) => JSON.stringify(o).slice(0, -1)) },
    { weight: 1, arbitrary: jsonGarbageArb },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: textArb },
  );
}

const pushContentTypeArb = fc.oneof({ weight: 4, arbitrary: fc.constant<string | null>('application/json') }, fc.constant<string | null>(null), contentTypeArb);

interface ReceiverFixture {
  readonly p: InProcess;
  readonly browser: Browser;
  readonly deviceId: string;
  readonly customer: ChatClient;
}

async function startReceiverFixture(env: Record<string, string> = {}): Promise<ReceiverFixture> {
  const p = await startInProcess(env);
  const browser = await Browser.open(p.url);
  const { token } = await browser.start();
  const { deviceId } = cachedByToken(p.cachePath, token);
  const customer = await newChat(p.url);
  return { p, browser, deviceId, customer };
}

async function closeReceiverFixture(rf: ReceiverFixture | undefined): Promise<void> {
  await rf?.browser.close();
  await rf?.p.srv.close();
}

/** The process still serves: health, a Chat API refresh, a receiver WebSocket ping. */
async function expectStillServing(rf: ReceiverFixture): Promise<void> {
  const health = await fetch(`${rf.p.url}/health`);
  expect(health.status).toBe(200);
  const refresh = await postForm(`${rf.customer.chatUrl}/${rf.customer.chatId}/refresh`, { ...tokens(rf.customer), transcriptPosition: 1 });
  expect(refresh.status, JSON.stringify(refresh.body)).toBe(200);
  expect(refresh.body.statusCode).toBe(0);
  rf.browser.send({ type: 'ping' });
  expect(await rf.browser.next('pong')).toEqual({ type: 'pong' });
  await trap.expectNone('the push fuzz');
}

function expectPushReply(r: RawReply, expected: number, what: string): void {
  const ctx = `${what}\n→ HTTP ${r.status} ${r.transportError ?? ''} ${r.text.slice(0, 300)}`;
  expect(r.transportError, ctx).toBeUndefined();
  expect(r.status, ctx).toBeLessThan(500);
  expect([200, 400, 401, 410], ctx).toContain(r.status);
  expect(r.status, ctx).toBe(expected);
  expect(String(r.headers['content-type']), ctx).toMatch(/^application\/json/);
  if (r.status === 200) {
    expect(r.json, ctx).toEqual({ ok: true, duplicate: expect.any(Boolean) });
    return;
  }
  const code = { 400: 'INVALID_PARAMETER', 401: 'SIGNATURE_INVALID', 410: 'UNKNOWN_CHAT' }[r.status as 400 | 401 | 410];
  expect(r.json, ctx).toEqual({ error: { code, message: expect.any(String) } });
}

async function push(rf: ReceiverFixture, body: string, contentType: string | null, chunked: boolean, extra: Record<string, string> = {}): Promise<{ r: RawReply; what: string }> {
  const headers = { ...(contentType === null ? {} : { 'content-type': contentType }), ...extra };
  const what = describeRequest('POST', '/receiver/push', headers, body);
  const r = await rawRequest(rf.p.url, { method: 'POST', path: '/receiver/push', headers, body, chunked });
  await trap.expectNone(what);
  return { r, what };
}

describe('fuzz: receiver push endpoint', () => {
  let rf: ReceiverFixture;
  beforeAll(async () => {
    rf = await startReceiverFixture();
  });
  afterAll(async () => {
    await closeReceiverFixture(rf);
  });

  it(
    'answers any push body with 200, 400 or 410 as its deviceId says, never a 5xx, and keeps serving',
    async () => {
      const seen = new Map<number, number>();
      const prop = fc.asyncProperty(pushBodyArb(rf.deviceId, false), pushContentTypeArb, fc.boolean(), async (body, type, chunked) => {
        const { r, what } = await push(rf, body, type, chunked);
        expectPushReply(r, expectedPushStatus(body, rf.deviceId), what);
        expect(takeErrorLogs(rf.p.log), what).toEqual([]);
        seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
      });
      await check(prop, 200);
      stats('push', seen);
      expect([...seen.keys()].sort()).toEqual([200, 400, 410]);
      await expectStillServing(rf);
    },
    TIMEOUT,
  );

  // Regression: found by this suite and fixed.
  it(
    'answers push bodies whose data.messages hold any JSON (null, events without from) with 200/400/410, never a 5xx',
    async () => {
      const prop = fc.asyncProperty(pushBodyArb(rf.deviceId, true), pushContentTypeArb, fc.boolean(), async (body, type, chunked) => {
        const { r, what } = await push(rf, body, type, chunked);
        takeErrorLogs(rf.p.log);
        expectPushReply(r, expectedPushStatus(body, rf.deviceId), what);
      });
      await check(prop, 100);
    },
    TIMEOUT,
  );

  it('still serves after the fuzz (health, Chat API refresh, receiver WebSocket)', async () => {
    await expectStillServing(rf);
  });
});

describe('fuzz: receiver push endpoint with a signing secret', () => {
  const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const OTHER_SECRET = `whsec_${Buffer.from('another secret of 32 bytes......').toString('base64')}`;
  let rf: ReceiverFixture;
  beforeAll(async () => {
    rf = await startReceiverFixture({ PARLEY_RECEIVER_SIGNING_SECRET: SECRET, PARLEY_PUSH_SIGNING_SECRET: SECRET });
  });
  afterAll(async () => {
    await closeReceiverFixture(rf);
  });

  type Variant =
    | 'signed'
    | 'unsigned'
    | 'random-headers'
    | 'wrong-secret'
    | 'tampered-body'
    | 'other-body'
    | 'other-id'
    | 'stale'
    | 'future'
    | 'v2-only'
    | 'malformed'
    | 'empty-signature'
    | 'partial-headers';

  const idArb = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 30 });

  function signedHeaders(v: Variant, body: string, id: string, rnd: string, skew: number): Record<string, string> {
    const now = Math.floor(Date.now() / 1000);
    const sign = (secret: string, i: string, t: number, b: string) => ({ ...signWebhook(secret, i, t, b) }) as Record<string, string>;
    switch (v) {
      case 'signed':
        return sign(SECRET, id, now, body);
      case 'unsigned':
        return {};
      case 'random-headers':
        return { 'webhook-id': rnd || 'x', 'webhook-timestamp': rnd.slice(0, 12) || String(now), 'webhook-signature': `v1,${rnd}` };
      case 'wrong-secret':
        return sign(OTHER_SECRET, id, now, body);
      case 'tampered-body':
        return sign(SECRET, id, now, `${body} `);
      case 'other-body':
        return sign(SECRET, id, now, rnd === body ? `${rnd}x` : rnd);
      case 'other-id':
        return { ...sign(SECRET, id, now, body), 'webhook-id': `${id}x` };
      case 'stale':
        return sign(SECRET, id, now - 301 - skew, body);
      case 'future':
        return sign(SECRET, id, now + 301 + skew, body);
      case 'v2-only': {
        const h = sign(SECRET, id, now, body);
        return { ...h, 'webhook-signature': (h['webhook-signature'] ?? '').replace(/^v1,/, 'v2,') };
      }
      case 'malformed':
        return { ...sign(SECRET, id, now, body), 'webhook-signature': `v1,${rnd}` };
      case 'empty-signature':
        return { ...sign(SECRET, id, now, body), 'webhook-signature': ' ' };
      case 'partial-headers': {
        const h = sign(SECRET, id, now, body);
        delete h[['webhook-id', 'webhook-timestamp', 'webhook-signature'][skew % 3] ?? 'webhook-id'];
        return h;
      }
    }
  }

  it(
    'answers every unsigned or mis-signed push with 401 (never 200) and a correctly signed one as its body says',
    async () => {
      const seen = new Map<number, number>();
      const prop = fc.asyncProperty(
        fc.record({
          body: pushBodyArb(rf.deviceId, false),
          variant: fc.oneof(
            { weight: 2, arbitrary: fc.constant<Variant>('signed') },
            {
              weight: 11,
              arbitrary: fc.constantFrom<Variant>(
                'unsigned', 'random-headers', 'wrong-secret', 'tampered-body', 'other-body', 'other-id', 'stale', 'future', 'v2-only', 'malformed',
                'empty-signature', 'partial-headers',
              ),
            },
          ),
          id: idArb,
          rnd: headerTextArb,
          skew: fc.nat(100_000),
          type: pushContentTypeArb,
          chunked: fc.boolean(),
        }),
        async (c) => {
          const headers = signedHeaders(c.variant, c.body, c.id, c.rnd, c.skew);
          const { r, what } = await push(rf, c.body, c.type, c.chunked, headers);
          const expected = c.variant === 'signed' ? expectedPushStatus(c.body, rf.deviceId) : 401;
          expectPushReply(r, expected, `${what}\n(variant ${c.variant})`);
          expect(takeErrorLogs(rf.p.log), what).toEqual([]);
          seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
        },
      );
      await check(prop, 150);
      stats('signed push', seen);
      expect(seen.get(401) ?? 0).toBeGreaterThan(0);
      expect(seen.get(200) ?? 0).toBeGreaterThan(0);
      await expectStillServing(rf);
    },
    TIMEOUT,
  );
});
