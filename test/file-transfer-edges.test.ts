/**
 * Chat API v2 file transfer: file/limits, upload, download, delete, the FileUploaded / FileDeleted
 * events, [client-file-transfer] limits, multipart edge cases and the agent API's file endpoint.
 * Real server on port 0 with a throwaway SQLite file (test/helpers.ts BASE_INI: max file 40000, total
 * 100000, 3 files, types txt:png:pdf, 2 downloads per file).
 */
import { request } from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS, type ErrorCode } from '../src/errors.ts';
import { AgentClient, ChatClient, postForm, postMultipart, startTestServer, type ApiResponse, type TestServer } from './helpers.ts';
import { startClockedServer } from './support/clocked-server.ts';

let server: TestServer;
const extra: TestServer[] = [];

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});
afterEach(async () => {
  for (const s of extra.splice(0)) await s.close();
});

async function another(ini = '', env: Record<string, string> = {}): Promise<TestServer> {
  const s = await startTestServer(ini, env);
  extra.push(s);
  return s;
}

async function newChat(base = server.url): Promise<ChatClient> {
  const c = new ChatClient(base);
  const r = await c.start({ nickname: 'Ann', subject: 'Files' });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return c;
}

const url = (c: ChatClient, op: string) => `${c.chatUrl}/${c.chatId}/${op}`;
const tokens = (c: ChatClient) => ({ secureKey: c.secureKey, userId: c.userId });
const text = (s: string) => new TextEncoder().encode(s);

function upload(c: ChatClient, name: string, bytes: Uint8Array, type = 'text/plain', fields: Record<string, string> = {}): Promise<ApiResponse> {
  return postMultipart(url(c, 'file'), { ...tokens(c), ...fields }, { name, type, bytes });
}

function download(c: ChatClient, fileId: string): Promise<ApiResponse> {
  return postForm(url(c, `file/${encodeURIComponent(fileId)}/download`), tokens(c));
}

async function limits(c: ChatClient): Promise<Record<string, string>> {
  const r = await postForm(url(c, 'file/limits'), tokens(c));
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.userData;
}

async function transcript(c: ChatClient): Promise<Array<{ type: string; index: number; userData?: Record<string, string> }>> {
  const r = await postForm(url(c, 'refresh'), { ...tokens(c), transcriptPosition: 1 });
  expect(r.status).toBe(200);
  return r.body.messages;
}

function expectChatError(r: ApiResponse, code: ErrorCode): void {
  const spec = ERRORS[code];
  expect(r.status, JSON.stringify(r.body)).toBe(spec.http);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  expect(r.body.statusCode).toBe(spec.statusCode);
  expect(r.body.errors).toEqual([{ code: spec.wire, advice: expect.any(String) }]);
  expect(r.body.messages).toEqual([]);
  expect(r.body.chatEnded).toBe(code === 'CHAT_ENDED');
  for (const k of ['secureKey', 'userId', 'userData', 'nextPosition']) expect(r.body).not.toHaveProperty(k);
}

/** A hand-built multipart body, for what FormData cannot express. */
function multipart(parts: Array<{ headers: string[]; body: string | Uint8Array }>, boundary = 'XyZbOuNdArY'): { body: Buffer; type: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\n${p.headers.join('\r\n')}\r\n\r\n`));
    chunks.push(typeof p.body === 'string' ? Buffer.from(p.body) : Buffer.from(p.body));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), type: `multipart/form-data; boundary=${boundary}` };
}

const field = (name: string, value: string) => ({ headers: [`Content-Disposition: form-data; name="${name}"`], body: value });

async function postBody(u: string, body: Buffer, type: string): Promise<ApiResponse> {
  const res = await fetch(u, { method: 'POST', headers: { 'content-type': type }, body });
  const ct = res.headers.get('content-type') ?? '';
  return { status: res.status, headers: res.headers, body: ct.startsWith('application/json') ? await res.json() : Buffer.from(await res.arrayBuffer()) };
}

/** RFC 8187 ext-value: charset'lang'value-chars, value-chars = pct-encoded / attr-char. */
const ATTR_CHARS = /^[A-Za-z0-9!#$&+\-.^_`|~]$/;
function rfc8187Decode(header: string): string {
  const m = /filename\*=([^;]*)/.exec(header);
  if (m === null) throw new Error(`no filename* in ${header}`);
  const ext = /^UTF-8'[A-Za-z-]*'(.*)$/i.exec(m[1]!.trim());
  if (ext === null) throw new Error(`bad ext-value ${m[1]}`);
  const value = ext[1]!;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i]!;
    if (ch === '%') {
      if (!/^%[0-9A-Fa-f]{2}$/.test(value.slice(i, i + 3))) throw new Error(`bad pct-encoding at ${i} in ${value}`);
      i += 2;
    } else if (!ATTR_CHARS.test(ch)) {
      throw new Error(`character ${JSON.stringify(ch)} is not an RFC 8187 attr-char (in ${value})`);
    }
  }
  return decodeURIComponent(value);
}

// ---------------------------------------------------------------------------------------------------------

describe('upload and download round trips (checked, right)', () => {
  it('a zero-byte file uploads, is announced with file-size 0, and downloads as zero bytes', async () => {
    const c = await newChat();
    const up = await upload(c, 'empty.txt', new Uint8Array(0));
    expect(up.status, JSON.stringify(up.body)).toBe(200);
    const fileId = up.body.userData['file-id'];
    const ev = (await transcript(c)).find((e) => e.type === 'FileUploaded');
    expect(ev?.userData).toMatchObject({ 'file-id': fileId, 'file-name': 'empty.txt', 'file-size': '0' });
    const dl = await download(c, fileId);
    expect(dl.status).toBe(200);
    expect(dl.headers.get('content-length')).toBe('0');
    expect((dl.body as Buffer).length).toBe(0);
    expect(await limits(c)).toMatchObject({ 'used-upload-max-files': '1', 'used-upload-max-total-size': '0', 'used-download-attempts': '1' });
  });

  it('binary bytes (all 256 values, CRLF and boundary-like sequences) survive byte for byte', async () => {
    const c = await newChat();
    const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\r\n--XyZbOuNdArY\r\n--\r\n')]);
    const up = await upload(c, 'blob.pdf', bytes, 'application/pdf');
    expect(up.status).toBe(200);
    const dl = await download(c, up.body.userData['file-id']);
    expect(dl.headers.get('content-type')).toBe('application/pdf');
    expect(Buffer.compare(dl.body as Buffer, bytes)).toBe(0);
  });

  it('fields after the file part (secureKey, description) are read', async () => {
    const c = await newChat();
    const { body, type } = multipart([
      { headers: ['Content-Disposition: form-data; name="file"; filename="late.txt"', 'Content-Type: text/plain'], body: 'late fields' },
      field('secureKey', c.secureKey),
      field('userData[file-description]', 'after the file'),
    ]);
    const r = await postBody(url(c, 'file'), body, type);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const ev = (await transcript(c)).find((e) => e.type === 'FileUploaded');
    expect(ev?.userData).toMatchObject({ 'file-name': 'late.txt', 'file-description': 'after the file', 'file-size': '11' });
  });

  it('a client path in the file name is stripped (C:\\fakepath\\x.txt is x.txt)', async () => {
    const c = await newChat();
    const { body, type } = multipart([
      field('secureKey', c.secureKey),
      { headers: ['Content-Disposition: form-data; name="file"; filename="C:\\\\fakepath\\\\report.txt"', 'Content-Type: text/plain'], body: 'x' },
    ]);
    const r = await postBody(url(c, 'file'), body, type);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const ev = (await transcript(c)).find((e) => e.type === 'FileUploaded');
    expect(ev?.userData?.['file-name']).toBe('report.txt');
  });

  it('the extension check ignores case (REPORT.PDF is a pdf)', async () => {
    const c = await newChat();
    const r = await upload(c, 'REPORT.PDF', text('%PDF'), 'application/pdf');
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  });

  it('unicode names: the download carries an ASCII fallback and the exact UTF-8 name in filename*', async () => {
    const c = await newChat();
    const name = 'Ärger 😀 «quoted» 100%.txt';
    const up = await upload(c, name, text('x'));
    expect(up.status).toBe(200);
    const ev = (await transcript(c)).find((e) => e.type === 'FileUploaded');
    expect(ev?.userData?.['file-name']).toBe(name);
    const dl = await download(c, up.body.userData['file-id']);
    const cd = dl.headers.get('content-disposition') ?? '';
    expect(cd).toMatch(/^attachment; filename="[\x20-\x7e]*"; filename\*=/);
    // The ASCII fallback must not break out of its quoted string.
    expect(/filename="([^"\\]*)"/.exec(cd)?.[1]).toBeDefined();
    expect(rfc8187Decode(cd)).toBe(name);
    expect(dl.headers.get('x-content-type-options')).toBe('nosniff');
    expect(dl.headers.get('cache-control')).toBe('no-store');
  });

  // Regression test (this was a bug, now fixed). Was: src/http/content-disposition.ts:4 builds filename* with encodeURIComponent, which leaves ' ( ) * !
  // unencoded. RFC 8187 (the ext-value RFC 6266 uses, cited at content-disposition.ts:1) allows only
  // attr-char = ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
  // besides %XX: an apostrophe ends the charset/language parts, so `filename*=UTF-8''Ann's (copy).txt` is
  // malformed and a strict parser rejects it (or cuts the name). Right: percent-encode ' ( ) * as well.
  it("a name with an apostrophe or parentheses gives a valid RFC 8187 filename* (Ann's (copy).txt)", async () => {
    const c = await newChat();
    const name = "Ann's (copy)*.txt";
    const up = await upload(c, name, text('x'));
    expect(up.status).toBe(200);
    const dl = await download(c, up.body.userData['file-id']);
    expect(rfc8187Decode(dl.headers.get('content-disposition') ?? '')).toBe(name);
  });

  it('GET download with the identity in the query string works and counts like POST', async () => {
    const c = await newChat();
    const up = await upload(c, 'a.txt', text('get me'));
    const fileId = up.body.userData['file-id'];
    const res = await fetch(`${url(c, `file/${fileId}/download`)}?${new URLSearchParams(tokens(c))}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('get me');
    expect((await limits(c))['used-download-attempts']).toBe('1');
  });
});

describe('refusals: codes, statuses, and nothing stored (checked, right)', () => {
  it('a wrong secureKey gets the same 403 for an existing and a made-up file id (no file-id oracle), on download and delete', async () => {
    const c = await newChat();
    const up = await upload(c, 'a.txt', text('secret'));
    const fileId = up.body.userData['file-id'];
    for (const op of ['download', 'delete']) {
      for (const id of [fileId, 'NOSUCHFILE']) {
        const r = await postForm(url(c, `file/${id}/${op}`), { secureKey: 'f'.repeat(20) });
        expectChatError(r, 'ACCESS_DENIED');
      }
    }
    // Nothing counted, nothing deleted.
    expect(await limits(c)).toMatchObject({ 'used-download-attempts': '0', 'used-upload-max-files': '1' });
    expect((await download(c, fileId)).status).toBe(200);
  });

  it('a missing secureKey on upload is MISSING_PARAMETER and stores nothing', async () => {
    const c = await newChat();
    const r = await postMultipart(url(c, 'file'), { userId: c.userId }, { name: 'a.txt', type: 'text/plain', bytes: text('x') });
    expectChatError(r, 'MISSING_PARAMETER');
    expect((await limits(c))['used-upload-max-files']).toBe('0');
  });

  it('an over-long file description is 413 MESSAGE_TOO_LONG and stores nothing', async () => {
    const s = await another('', { PARLEY_HTTP_MAX_FIELD_LENGTH: '100' });
    const c = await newChat(s.url);
    const before = await transcript(c);
    const r = await upload(c, 'a.txt', text('x'), 'text/plain', { 'userData[file-description]': 'd'.repeat(101) });
    expectChatError(r, 'MESSAGE_TOO_LONG');
    expect(await transcript(c)).toEqual(before);
    expect((await limits(c))['used-upload-max-files']).toBe('0');
  });

  it('an ended chat: upload, delete and limits are CHAT_ENDED; the file still downloads and the download counts', async () => {
    const c = await newChat();
    const up = await upload(c, 'a.txt', text('keep'));
    const fileId = up.body.userData['file-id'];
    expect((await c.op('disconnect')).body.chatEnded).toBe(true);
    expectChatError(await upload(c, 'b.txt', text('late')), 'CHAT_ENDED');
    expectChatError(await postForm(url(c, `file/${fileId}/delete`), tokens(c)), 'CHAT_ENDED');
    expectChatError(await postForm(url(c, 'file/limits'), tokens(c)), 'CHAT_ENDED');
    const dl1 = await download(c, fileId);
    expect(dl1.status).toBe(200);
    expect(Buffer.from(dl1.body as Buffer).toString()).toBe('keep');
    expect((await download(c, fileId)).status).toBe(200);
    expectChatError(await download(c, fileId), 'DOWNLOAD_LIMIT_REACHED');
  });

  it('a deleted file: download and delete are 404 UNKNOWN_FILE, the upload still counts, the 4th upload is refused', async () => {
    const c = await newChat();
    const ids: string[] = [];
    for (const n of ['a.txt', 'b.txt', 'c.txt']) ids.push((await upload(c, n, text('12345'))).body.userData['file-id']);
    expect((await postForm(url(c, `file/${ids[0]}/delete`), tokens(c))).status).toBe(200);
    expectChatError(await download(c, ids[0]!), 'UNKNOWN_FILE');
    expectChatError(await postForm(url(c, `file/${ids[0]}/delete`), tokens(c)), 'UNKNOWN_FILE');
    expect(await limits(c)).toMatchObject({ 'used-upload-max-files': '3', 'used-upload-max-total-size': '15' });
    const before = await transcript(c);
    expectChatError(await upload(c, 'd.txt', text('x')), 'FILE_LIMIT_REACHED');
    expect(await transcript(c)).toEqual(before);
  });

  it('concurrent uploads at the upload-max-files limit: exactly 3 of 6 are accepted', async () => {
    const c = await newChat();
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => upload(c, `f${i}.txt`, text(`file ${i}`))));
    expect(rs.filter((r) => r.status === 200)).toHaveLength(3);
    for (const r of rs.filter((x) => x.status !== 200)) expectChatError(r, 'FILE_LIMIT_REACHED');
    expect((await transcript(c)).filter((e) => e.type === 'FileUploaded')).toHaveLength(3);
    expect((await limits(c))['used-upload-max-files']).toBe('3');
  });

  it('concurrent downloads at download-attempts: exactly 2 of 5 get the bytes', async () => {
    const c = await newChat();
    const fileId = (await upload(c, 'a.txt', text('abc'))).body.userData['file-id'];
    const rs = await Promise.all(Array.from({ length: 5 }, () => download(c, fileId)));
    expect(rs.filter((r) => r.status === 200)).toHaveLength(2);
    for (const r of rs.filter((x) => x.status !== 200)) expectChatError(r, 'DOWNLOAD_LIMIT_REACHED');
  });

  it('download-attempts counts per file: a second file still downloads after the first ran out', async () => {
    const c = await newChat();
    const a = (await upload(c, 'a.txt', text('a'))).body.userData['file-id'];
    const b = (await upload(c, 'b.txt', text('b'))).body.userData['file-id'];
    await download(c, a);
    await download(c, a);
    expectChatError(await download(c, a), 'DOWNLOAD_LIMIT_REACHED');
    expect((await download(c, b)).status).toBe(200);
    expect((await limits(c))['used-download-attempts']).toBe('2');
  });

  it('the download count survives a restart (the limit cannot be reset by a restart)', async () => {
    const s = await another();
    const c = await newChat(s.url);
    const fileId = (await upload(c, 'a.txt', text('a'))).body.userData['file-id'];
    expect((await download(c, fileId)).status).toBe(200);
    expect((await download(c, fileId)).status).toBe(200);
    await s.restart();
    expectChatError(await download(c, fileId), 'DOWNLOAD_LIMIT_REACHED');
    expect(await limits(c)).toMatchObject({ 'used-download-attempts': '2', 'used-upload-max-files': '1' });
  });
});

describe('multipart edge cases (checked, right)', () => {
  it('a file part named "file" without filename but application/octet-stream is a file named "file" (no extension: 415)', async () => {
    const c = await newChat();
    const { body, type } = multipart([
      field('secureKey', c.secureKey),
      { headers: ['Content-Disposition: form-data; name="file"', 'Content-Type: application/octet-stream'], body: 'raw' },
    ]);
    const r = await postBody(url(c, 'file'), body, type);
    expectChatError(r, 'FILE_TYPE_FORBIDDEN');
    expect((await limits(c))['used-upload-max-files']).toBe('0');
  });

  it('a "file" part without filename and as text is a field, not a file: MISSING_PARAMETER', async () => {
    const c = await newChat();
    const { body, type } = multipart([field('secureKey', c.secureKey), field('file', 'not a file')]);
    expectChatError(await postBody(url(c, 'file'), body, type), 'MISSING_PARAMETER');
  });

  it('a body that ends inside the file part is INVALID_PARAMETER and stores nothing', async () => {
    const c = await newChat();
    const { body, type } = multipart([
      field('secureKey', c.secureKey),
      { headers: ['Content-Disposition: form-data; name="file"; filename="cut.txt"', 'Content-Type: text/plain'], body: 'x'.repeat(1000) },
    ]);
    const r = await postBody(url(c, 'file'), body.subarray(0, body.length - 40), type);
    expectChatError(r, 'INVALID_PARAMETER');
    expect((await limits(c))['used-upload-max-files']).toBe('0');
  });

  it('a file over upload-max-file-size is refused with connection: close and the server keeps serving', async () => {
    const c = await newChat();
    const r = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const { body, type } = multipart([
        field('secureKey', c.secureKey),
        { headers: ['Content-Disposition: form-data; name="file"; filename="big.txt"', 'Content-Type: text/plain'], body: 'x'.repeat(40_001) },
      ]);
      const u = new URL(url(c, 'file'));
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': type, 'content-length': body.length } }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(r.status).toBe(413);
    expect(r.headers['connection']).toBe('close');
    expect(JSON.parse(r.body).errors[0].code).toBe(ERRORS.FILE_TOO_LARGE.wire);
    expect((await limits(c))['used-upload-max-files']).toBe('0');
  });
});

describe('[client-file-transfer] options (checked, right)', () => {
  it('upload-file-types empty: any type, also a name without extension', async () => {
    const s = await another('', { PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_FILE_TYPES: '' });
    const c = await newChat(s.url);
    expect((await limits(c))['upload-file-types']).toBe('');
    for (const n of ['README', 'x.exe', 'archive.tar.gz']) expect((await upload(c, n, text('x'), 'application/octet-stream')).status).toBe(200);
  });

  it('upload-file-types with dots and upper case in the config matches lower-case extensions', async () => {
    const s = await another('', { PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_FILE_TYPES: '.JPG, .Png' });
    const c = await newChat(s.url);
    expect((await limits(c))['upload-file-types']).toBe('jpg:png');
    expect((await upload(c, 'a.jpg', text('x'), 'image/jpeg')).status).toBe(200);
    expectChatError(await upload(c, 'a.txt', text('x')), 'FILE_TYPE_FORBIDDEN');
  });

  it('upload-need-agent: refused with 400 code 115 statusCode 1 before an agent joins, accepted after', async () => {
    const s = await another('', { PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_NEED_AGENT: 'true' });
    const c = await newChat(s.url);
    expect((await limits(c))['upload-need-agent']).toBe('true');
    const before = await transcript(c);
    expectChatError(await upload(c, 'a.txt', text('x')), 'FILE_UPLOAD_NOT_ALLOWED');
    expect(await transcript(c)).toEqual(before);
    const alice = new AgentClient(s.url, 'alice', 'alice-secret');
    await alice.login();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    expect((await upload(c, 'a.txt', text('x'))).status).toBe(200);
    expect((await limits(c))['used-upload-max-files']).toBe('1');
  });

  it('delete-file = none: 403 ACCESS_DENIED, no FileDeleted, the file still downloads', async () => {
    const s = await another('', { PARLEY_CLIENT_FILE_TRANSFER_DELETE_FILE: 'none' });
    const c = await newChat(s.url);
    const fileId = (await upload(c, 'a.txt', text('x'))).body.userData['file-id'];
    const before = await transcript(c);
    expectChatError(await postForm(url(c, `file/${fileId}/delete`), tokens(c)), 'ACCESS_DENIED');
    expect(await transcript(c)).toEqual(before);
    expect((await download(c, fileId)).status).toBe(200);
  });

  it('download-attempts = 0 means unlimited', async () => {
    const s = await another('', { PARLEY_CLIENT_FILE_TRANSFER_DOWNLOAD_ATTEMPTS: '0' });
    const c = await newChat(s.url);
    const fileId = (await upload(c, 'a.txt', text('x'))).body.userData['file-id'];
    for (let i = 0; i < 5; i++) expect((await download(c, fileId)).status).toBe(200);
    expect((await limits(c))['used-download-attempts']).toBe('5');
  });

  it('upload-max-files = 0: every upload is FILE_LIMIT_REACHED', async () => {
    const s = await another('', { PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_MAX_FILES: '0' });
    const c = await newChat(s.url);
    expectChatError(await upload(c, 'a.txt', text('x')), 'FILE_LIMIT_REACHED');
  });
});

describe('the agent side', () => {
  it('an agent reads a customer file (bytes, type, disposition), not counted against download-attempts; a deleted one is UNKNOWN_FILE', async () => {
    const c = await newChat();
    const alice = new AgentClient(server.url, 'alice', 'alice-secret');
    await alice.login();
    expect((await alice.accept(c.chatId)).status).toBe(200);
    const fileId = (await upload(c, 'scan.png', new Uint8Array([0x89, 0x50, 0x4e, 0x47]), 'image/png')).body.userData['file-id'];
    const get = () => fetch(`${server.url}/agent/api/chats/${c.chatId}/files/${fileId}`, { headers: { authorization: `Bearer ${alice.token}` } });
    for (let i = 0; i < 3; i++) {
      const r = await get();
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('image/png');
      expect(r.headers.get('content-disposition')).toContain('attachment');
      expect(new Uint8Array(await r.arrayBuffer())).toEqual(new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
    }
    expect((await limits(c))['used-download-attempts']).toBe('0');
    expect((await download(c, fileId)).status).toBe(200);
    // The agent view shows the FileUploaded event with the same userData.
    const view = await alice.call('GET', `chats/${c.chatId}`);
    expect(view.body.events.find((e: { type: string }) => e.type === 'FileUploaded')?.userData).toMatchObject({ 'file-id': fileId, 'file-name': 'scan.png' });
    expect((await postForm(url(c, `file/${fileId}/delete`), tokens(c))).status).toBe(200);
    const gone = await get();
    expect(gone.status).toBe(404);
    expect(await gone.json()).toEqual({ error: { code: 'UNKNOWN_FILE', message: expect.any(String) } });
    await alice.close(c.chatId);
  });

  it('without a token the agent file endpoint is 401 and sends no bytes', async () => {
    const c = await newChat();
    const fileId = (await upload(c, 'a.txt', text('PRIVATE-BYTES'))).body.userData['file-id'];
    const r = await fetch(`${server.url}/agent/api/chats/${c.chatId}/files/${fileId}`);
    expect(r.status).toBe(401);
    expect(await r.text()).not.toContain('PRIVATE-BYTES');
  });
});

describe('deleting a file', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat/session.ts:367-377 (deleteFile) only flags the FileMeta as deleted; nothing removes the
  // row from the `files` table (src/store/sqlite.ts:48-52 / postgres.ts:63-67 have no DELETE for it; the
  // Store port, src/store/port.ts, has no way to remove a file). docs/security.md:10 lists chat files as
  // customers' personal data, and a customer who deletes a file he sent by mistake (an ID card, a bank
  // statement) expects it to be gone; the FileDeleted event says so to the agent. Right: the delete commits
  // the removal of the stored bytes together with the FileDeleted event.
  it('the bytes of a deleted file are removed from the store', async () => {
    const s = await another();
    const c = await newChat(s.url);
    const fileId = (await upload(c, 'id-card.png', text('PASSPORT-NUMBER-123'), 'image/png')).body.userData['file-id'];
    const db = new Database(join(s.dir, 'parley.db'), { readonly: true, fileMustExist: true });
    try {
      const count = () => (db.prepare('SELECT count(*) FROM files WHERE chat_id = ? AND file_id = ?').pluck().get(c.chatId, fileId) as number);
      expect(count()).toBe(1);
      expect((await postForm(url(c, `file/${fileId}/delete`), tokens(c))).status).toBe(200);
      expect(count()).toBe(0);
    } finally {
      db.close();
    }
  });
});

describe('refused uploads and the disconnect timeout', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/client-ops.ts:276-280 (upload) runs checkUploadAllowed / checkUploadSize before
  // touch() (line 280), so an upload refused for its type, the file count or the total size never restarts
  // the client's flex-disconnect-timeout, while every other refused request with valid tokens does (perform()
  // touches before apply(): a blank send, an unknown file delete, a download over its limit). docs/lifecycle.md
  // "Which requests count": "Every Chat API request of the client with its tokens, file downloads included,
  // restarts its disconnect timeout." Right: touch (and acknowledge push) once the tokens are authorised.
  it('an upload refused with FILE_TYPE_FORBIDDEN restarts the disconnect timeout like any request', async () => {
    const { srv, tick } = await startClockedServer({ PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45' }, 1_700_000_000_000);
    extra.push(srv);
    const c = new ChatClient(srv.url);
    await c.start();
    await tick(30_000);
    expectChatError(await upload(c, 'virus.exe', text('x'), 'application/octet-stream'), 'FILE_TYPE_FORBIDDEN');
    await tick(30_000); // 60 s after start, 30 s after the refused upload
    expect(srv.running.app.sessions.counts().open).toBe(1);
  });

  it('(control) a refused delete of an unknown file does restart the disconnect timeout', async () => {
    const { srv, tick } = await startClockedServer({ PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '45' }, 1_700_000_000_000);
    extra.push(srv);
    const c = new ChatClient(srv.url);
    await c.start();
    await tick(30_000);
    expectChatError(await postForm(url(c, 'file/NOSUCH/delete'), tokens(c)), 'UNKNOWN_FILE');
    await tick(30_000);
    expect(srv.running.app.sessions.counts().open).toBe(1);
  });
});

describe('downloads of an ended chat', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/live-sessions.ts:291-292 does not keep an ended session in memory ("read for the
  // request at hand"), so serial() (live-sessions.ts:301-316) gives every request that arrives after the
  // previous load finished its own detached copy and its own queue: nothing serialises them. Downloads of an
  // ended chat are allowed (docs/chat-api.md "Ended chats"), and ClientOps.download
  // (src/chat-server/client-ops.ts:298-309) reads `downloads`, checks download-attempts and commits +1 on
  // its copy, so concurrent downloads all pass the check and overwrite each other's count (lost updates).
  // With download-attempts = 2, up to 20 of 20 concurrent downloads got the bytes. docs/chat-api.md and
  // docs/configuration.md: "download-attempts ... How many times the client may download one file"; errors.md
  // DOWNLOAD_LIMIT_REACHED. Right: at most 2 downloads succeed, whatever the timing (serialise requests of an
  // ended chat, or make the count a conditional update in the store).
  it('concurrent downloads of an ended chat get the bytes at most download-attempts (2) times', async () => {
    const counts: number[] = [];
    for (let round = 0; round < 5; round++) {
      const c = await newChat();
      const fileId = (await upload(c, 'a.txt', text('once or twice'))).body.userData['file-id'];
      expect((await c.op('disconnect')).body.chatEnded).toBe(true);
      const rs = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          await new Promise((r) => setTimeout(r, i % 5));
          return download(c, fileId);
        }),
      );
      for (const r of rs) if (r.status !== 200) expectChatError(r, 'DOWNLOAD_LIMIT_REACHED');
      counts.push(rs.filter((r) => r.status === 200).length);
    }
    expect(counts.every((n) => n <= 2), `successful downloads per round: ${counts.join(', ')}`).toBe(true);
  });

  it('(checked, right) the same storm on a live chat gives exactly 2 downloads', async () => {
    const c = await newChat();
    const fileId = (await upload(c, 'a.txt', text('x'))).body.userData['file-id'];
    const rs = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        await new Promise((r) => setTimeout(r, i % 5));
        return download(c, fileId);
      }),
    );
    expect(rs.filter((r) => r.status === 200)).toHaveLength(2);
  });
});
