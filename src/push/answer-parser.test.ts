import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AnswerParser, MAX_ANSWER_HEAD_BYTES, type FeedResult } from './answer-parser.ts';

/** Feeds `text` in the given pieces; the last result and the parser. */
function parse(pieces: readonly (string | Buffer)[]): { r: FeedResult; p: AnswerParser } {
  const p = new AnswerParser();
  let r: FeedResult = { kind: 'more' };
  for (const piece of pieces) {
    r = p.feed(typeof piece === 'string' ? Buffer.from(piece, 'latin1') : piece);
    if (r.kind !== 'more') break;
  }
  return { r, p };
}

const one = (text: string) => parse([text]);

describe('AnswerParser: status, headers, keep-alive', () => {
  it('reads a 200 with Content-Length, and the connection stays usable', () => {
    const { r, p } = one('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 7\r\n\r\nsuccess');
    expect(r).toEqual({ kind: 'done', rest: 0 });
    expect(p).toMatchObject({ status: 200, keepAlive: true, bodyBytes: 7, headers: { 'content-type': 'text/plain', 'content-length': '7' } });
  });

  it('takes bare LF line ends, no reason phrase, and folded header lines', () => {
    const { r, p } = one('HTTP/1.1 503\nRetry-After:  5 \nX-Long: a\n  b\ncontent-length: 0\n\n');
    expect(r).toEqual({ kind: 'done', rest: 0 });
    expect(p).toMatchObject({ status: 503, headers: { 'retry-after': '5', 'x-long': 'a b' } });
  });

  it('a header sent twice is an array, in order', () => {
    const { p } = one('HTTP/1.1 200 OK\r\nX-Many: a\r\nx-many: b\r\nX-MANY: c\r\ncontent-length: 0\r\n\r\n');
    expect(p.headers['x-many']).toEqual(['a', 'b', 'c']);
  });

  it('skips interim 1xx answers and reads the final one', () => {
    const { r, p } = one('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok');
    expect(r).toEqual({ kind: 'done', rest: 0 });
    expect(p).toMatchObject({ status: 202, bodyBytes: 2 });
    expect(p.headers['link']).toBeUndefined();
  });

  it('keep-alive: HTTP/1.1 unless Connection: close; HTTP/1.0 only with Connection: keep-alive', () => {
    expect(one('HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n').p.keepAlive).toBe(false);
    expect(one('HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n').p.keepAlive).toBe(false);
    expect(one('HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n').p.keepAlive).toBe(true);
  });

  it('204 and 304 have no body whatever their headers say', () => {
    expect(one('HTTP/1.1 204 No Content\r\ncontent-length: 10\r\n\r\n').r).toEqual({ kind: 'done', rest: 0 });
    expect(one('HTTP/1.1 304 Not Modified\r\n\r\nextra').r).toEqual({ kind: 'done', rest: 5 });
  });

  it('bytes after the end of the answer are counted as rest', () => {
    expect(one('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200').r).toEqual({ kind: 'done', rest: 12 });
  });
});

describe('AnswerParser: body framing', () => {
  it('chunked, with extensions and trailers', () => {
    const { r, p } = one('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\n');
    expect(r).toEqual({ kind: 'done', rest: 0 });
    expect(p).toMatchObject({ bodyBytes: 15, keepAlive: true });
  });

  it('without Content-Length or chunked, the body runs to the close and the connection is not reused', () => {
    const p = new AnswerParser();
    expect(p.feed(Buffer.from('HTTP/1.1 200 OK\r\n\r\nsome'))).toEqual({ kind: 'more' });
    expect(p.feed(Buffer.from(' more'))).toEqual({ kind: 'more' });
    expect(p.end()).toEqual({ kind: 'done', rest: 0 });
    expect(p).toMatchObject({ status: 200, bodyBytes: 9, keepAlive: false });
  });

  it('a transfer coding other than chunked last: read to the close', () => {
    const { r, p } = one('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nxyz');
    expect(r).toEqual({ kind: 'more' });
    expect(p.keepAlive).toBe(false);
  });

  it('Transfer-Encoding and Content-Length both: chunked wins and the connection is not reused', () => {
    const { r, p } = one('HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
    expect(r).toEqual({ kind: 'done', rest: 0 });
    expect(p).toMatchObject({ bodyBytes: 2, keepAlive: false });
  });

  it('the same Content-Length repeated is one length', () => {
    expect(one('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2, 2\r\n\r\nok').r).toEqual({ kind: 'done', rest: 0 });
  });

  it('an answer cut before its end is an error, with the status kept when it was read', () => {
    const p = new AnswerParser();
    p.feed(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial'));
    expect(p.end()).toEqual({ kind: 'error', code: 'answer cut short' });
    expect(p.status).toBe(200);
    expect(new AnswerParser().end()).toEqual({ kind: 'error', code: 'closed before an answer' });
    const half = new AnswerParser();
    half.feed(Buffer.from('HTTP/1.1 200 O'));
    expect(half.end()).toEqual({ kind: 'error', code: 'closed before an answer' });
  });
});

describe('AnswerParser: refused answers', () => {
  it.each([
    ['not HTTP', 'SSH-2.0-OpenSSH\r\n\r\n', 'invalid status line'],
    ['HTTP/2 status line', 'HTTP/2 200\r\n\r\n', 'invalid status line'],
    ['two-digit status', 'HTTP/1.1 20 OK\r\n\r\n', 'invalid status line'],
    ['status under 100', 'HTTP/1.1 099 Odd\r\n\r\n', 'invalid status line'],
    ['header without colon', 'HTTP/1.1 200 OK\r\nbroken\r\n\r\n', 'invalid header'],
    ['space in a header name', 'HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n', 'invalid header'],
    ['fold before any header', 'HTTP/1.1 200 OK\r\n folded\r\n\r\n', 'invalid header'],
    ['conflicting lengths', 'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx', 'invalid content-length'],
    ['negative length', 'HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n', 'invalid content-length'],
    ['length not a number', 'HTTP/1.1 200 OK\r\ncontent-length: 1e3\r\n\r\n', 'invalid content-length'],
    ['bad chunk size', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n', 'invalid chunk size'],
    ['chunk data longer than its size', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokay\r\n', 'invalid chunk end'],
    ['protocol switch', 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n', 'unexpected protocol switch'],
  ])('%s', (_name, text, code) => {
    expect(one(text).r).toEqual({ kind: 'error', code });
  });

  it('a head over 16 KiB, whole or arriving in pieces, and an endless chunk-size line', () => {
    const big = `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(MAX_ANSWER_HEAD_BYTES)}\r\n\r\n`;
    expect(one(big).r).toEqual({ kind: 'error', code: 'answer head too long' });
    const pieces = ['HTTP/1.1 200 OK\r\nx-big: ', ...Array.from({ length: 20 }, () => 'a'.repeat(1024))];
    expect(parse(pieces).r).toEqual({ kind: 'error', code: 'answer head too long' });
    const chunkLine = ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', ...Array.from({ length: 3 }, () => '0'.repeat(600))];
    expect(parse(chunkLine).r).toEqual({ kind: 'error', code: 'chunk line too long' });
  });

  it('after an error every later byte is refused too', () => {
    const p = new AnswerParser();
    expect(p.feed(Buffer.from('nope\r\n\r\n')).kind).toBe('error');
    expect(p.feed(Buffer.from('HTTP/1.1 200 OK\r\n\r\n')).kind).toBe('error');
  });
});

describe('AnswerParser: cut anywhere', () => {
  /** An answer with any framing, as text, and what parsing it must give. */
  const answer = fc
    .record({
      status: fc.integer({ min: 200, max: 599 }),
      headers: fc.array(fc.tuple(fc.constantFrom('x-a', 'Retry-After', 'X-B', 'link'), fc.stringMatching(/^[!-~]([ !-~]{0,20}[!-~])?$/)), { maxLength: 5 }),
      framing: fc.constantFrom('length', 'chunked', 'close'),
      body: fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 4 }),
      interim: fc.boolean(),
      lf: fc.boolean(),
      trailing: fc.uint8Array({ maxLength: 20 }),
    })
    .map((a) => {
      const eol = a.lf ? '\n' : '\r\n';
      const status = a.status === 204 || a.status === 304 ? 200 : a.status;
      const body = Buffer.concat(a.body.map((b) => Buffer.from(b)));
      let head = a.interim ? `HTTP/1.1 100 Continue${eol}${eol}` : '';
      head += `HTTP/1.1 ${status} Whatever${eol}`;
      for (const [k, v] of a.headers) head += `${k}: ${v}${eol}`;
      let payload: Buffer;
      if (a.framing === 'length') {
        head += `content-length: ${body.length}${eol}`;
        payload = body;
      } else if (a.framing === 'chunked') {
        head += `transfer-encoding: chunked${eol}`;
        const parts = a.body.map((b) => Buffer.concat([Buffer.from(`${b.length.toString(16)}${eol}`), Buffer.from(b), Buffer.from(eol)]));
        payload = Buffer.concat([...parts, Buffer.from(`0${eol}${eol}`)]);
      } else payload = body;
      const bytes = Buffer.concat([Buffer.from(`${head}${eol}`, 'latin1'), payload, a.framing === 'close' ? Buffer.alloc(0) : Buffer.from(a.trailing)]);
      const expected: Record<string, string | string[]> = {};
      for (const [k, v] of a.headers) {
        const key = k.toLowerCase();
        const prev = expected[key];
        expected[key] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
      return { bytes, status, bodyBytes: body.length, framing: a.framing, rest: a.framing === 'close' ? 0 : a.trailing.length, headers: expected };
    });

  it('gives the same status, headers, body length and rest for every way of cutting the bytes', () => {
    fc.assert(
      fc.property(answer, fc.array(fc.nat(), { maxLength: 8 }), (a, cuts) => {
        const at = [...new Set(cuts.map((c) => c % (a.bytes.length + 1)))].sort((x, y) => x - y);
        const pieces = [0, ...at].map((from, i) => a.bytes.subarray(from, at[i] ?? a.bytes.length)).filter((b) => b.length > 0);
        const p = new AnswerParser();
        let r: FeedResult = { kind: 'more' };
        let rest = 0;
        for (const [i, piece] of pieces.entries()) {
          r = p.feed(piece);
          if (r.kind === 'error') throw new Error(`error ${r.code}`);
          if (r.kind === 'done') {
            rest = r.rest + pieces.slice(i + 1).reduce((n, b) => n + b.length, 0);
            break;
          }
        }
        if (a.framing === 'close') r = p.end();
        expect(r.kind).toBe('done');
        expect(rest).toBe(a.rest);
        expect(p.status).toBe(a.status);
        expect(p.bodyBytes).toBe(a.bodyBytes);
        expect(p.keepAlive).toBe(a.framing !== 'close');
        for (const [k, v] of Object.entries(a.headers)) expect(p.headers[k]).toEqual(v);
      }),
      { numRuns: 2000 },
    );
  });
});
