/**
 * An incremental parser of the answer to one push POST (an HTTP/1.1 response, RFC 9112): its status, its
 * headers, and where its body ends. The body is counted, not kept. Pure: bytes in, state out; the socket
 * side is src/push/origin-pool.ts.
 *
 * Liberal where receivers differ and no harm can come of it: bare LF line ends, a reason phrase or none,
 * obsolete header folding (joined with a space), interim 1xx answers (skipped). Strict where a wrong guess
 * would misplace the end of the answer, and so the next one on the connection: an invalid or conflicting
 * Content-Length, a bad chunk size, a head over 16 KiB.
 */

/** The longest answer head taken (status line and headers, like undici's default). */
export const MAX_ANSWER_HEAD_BYTES = 16 * 1024;

/** The longest chunk-size or trailer line taken. */
const MAX_LINE_BYTES = 1024;

/** Header names lower-cased; a header sent twice comes as an array (as undici and node:http give them). */
export type AnswerHeaders = Record<string, string | string[]>;

export type FeedResult =
  /** Every byte was taken; the answer goes on. */
  | { readonly kind: 'more' }
  /** The answer ended; `rest` bytes at the end of the chunk were not part of it. */
  | { readonly kind: 'done'; readonly rest: number }
  | { readonly kind: 'error'; readonly code: string };

type State = 'head' | 'length' | 'until-close' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'done' | 'failed';

const MORE: FeedResult = { kind: 'more' };
/** An RFC 9110 token: what a header name may be. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([0-9]{3})(?:[ \t][^\r\n]*)?$/;
const LF = 0x0a;

export class AnswerParser {
  /** The final status (0 until the head of a final answer is read). */
  status = 0;
  headers: AnswerHeaders = {};
  /** Whether the connection may carry another request once this answer is done. */
  keepAlive = false;
  /** Body bytes read so far (chunk framing not counted). */
  bodyBytes = 0;
  private state: State = 'head';
  /** Head bytes received so far, while the head is incomplete. */
  private pending: Buffer | undefined;
  /** Body bytes still to come in a Content-Length body or the current chunk. */
  private remaining = 0;
  /** A chunk-size, chunk-end or trailer line received so far. */
  private line = '';
  /** Trailer bytes read so far (they count against the head's bound). */
  private trailerBytes = 0;

  get done(): boolean {
    return this.state === 'done';
  }

  feed(chunk: Buffer): FeedResult {
    let at = 0;
    while (at < chunk.length) {
      switch (this.state) {
        case 'head': {
          const r = this.readHead(chunk, at);
          if (typeof r !== 'number') return r;
          at = r;
          break;
        }
        case 'length':
        case 'chunk-data': {
          const n = Math.min(this.remaining, chunk.length - at);
          this.bodyBytes += n;
          this.remaining -= n;
          at += n;
          if (this.remaining === 0) this.state = this.state === 'length' ? 'done' : 'chunk-end';
          break;
        }
        case 'until-close':
          this.bodyBytes += chunk.length - at;
          return MORE;
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers': {
          const r = this.readLine(chunk, at);
          if (r === undefined) return MORE;
          at = r.next;
          const bad = this.takeLine(r.line);
          if (bad !== undefined) return bad;
          break;
        }
        case 'done':
          return { kind: 'done', rest: chunk.length - at };
        case 'failed':
          return { kind: 'error', code: 'answer unreadable' };
      }
      if (this.state === 'done') return { kind: 'done', rest: chunk.length - at };
    }
    return this.state === 'done' ? { kind: 'done', rest: 0 } : MORE;
  }

  /** The connection ended: an answer read up to the close is complete, any other is cut. */
  end(): FeedResult {
    if (this.state === 'until-close' || this.state === 'done') {
      this.state = 'done';
      return { kind: 'done', rest: 0 };
    }
    return this.fail(this.status === 0 ? 'closed before an answer' : 'answer cut short');
  }

  private fail(code: string): FeedResult {
    this.state = 'failed';
    return { kind: 'error', code };
  }

  /** Takes head bytes from `at`; the index after the head, or the result when the head is not complete. */
  private readHead(chunk: Buffer, at: number): number | FeedResult {
    const prior = this.pending?.length ?? 0;
    const buf = prior === 0 ? chunk.subarray(at) : Buffer.concat([this.pending as Buffer, chunk.subarray(at)]);
    const end = headEnd(buf, Math.max(0, prior - 3));
    if (end === undefined) {
      if (buf.length > MAX_ANSWER_HEAD_BYTES) return this.fail('answer head too long');
      this.pending = Buffer.from(buf);
      return MORE;
    }
    if (end.head > MAX_ANSWER_HEAD_BYTES) return this.fail('answer head too long');
    this.pending = undefined;
    const bad = this.takeHead(buf.toString('latin1', 0, end.head));
    if (bad !== undefined) return bad;
    return at + end.body - prior;
  }

  /** Reads a status line and headers; sets the framing of the body that follows. */
  private takeHead(text: string): FeedResult | undefined {
    const lines = text.replace(/\r$/, '').split(/\r?\n/);
    const status = STATUS_LINE.exec(lines[0] ?? '');
    const code = Number(status?.[2] ?? 0);
    if (status === null || code < 100) return this.fail('invalid status line');
    // No prototype: a header named like an Object member (constructor, __proto__) is a header like any other.
    const headers: AnswerHeaders = Object.create(null) as AnswerHeaders;
    let last: string | undefined;
    for (const line of lines.slice(1)) {
      if (line === '') continue;
      if (line.startsWith(' ') || line.startsWith('\t')) {
        // Obsolete folding: the line continues the previous header's value.
        if (last === undefined) return this.fail('invalid header');
        const v = headers[last] as string | string[];
        const folded = line.trim();
        if (Array.isArray(v)) v[v.length - 1] = `${v[v.length - 1] ?? ''} ${folded}`;
        else headers[last] = `${v} ${folded}`;
        continue;
      }
      const colon = line.indexOf(':');
      const name = colon > 0 ? line.slice(0, colon) : '';
      if (!TOKEN.test(name)) return this.fail('invalid header');
      const key = name.toLowerCase();
      const value = line.slice(colon + 1).trim();
      const prev = headers[key];
      headers[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
      last = key;
    }
    if (code < 200) {
      // 100 Continue, 102, 103 Early Hints: an interim answer, the final one follows. 101 would switch protocols.
      if (code === 101) return this.fail('unexpected protocol switch');
      this.state = 'head';
      return undefined;
    }
    this.status = code;
    this.headers = headers;
    const connection = tokens(headers['connection']);
    this.keepAlive = status[1] === '1' ? !connection.includes('close') : connection.includes('keep-alive');
    // An HTTP/1.0 answer with Transfer-Encoding has faulty framing: the connection is not reused (RFC 9112 6.1).
    if (status[1] === '0' && headers['transfer-encoding'] !== undefined) this.keepAlive = false;
    return this.frameBody(code, headers);
  }

  private frameBody(code: number, headers: AnswerHeaders): FeedResult | undefined {
    if (code === 204 || code === 304) {
      this.state = 'done';
      return undefined;
    }
    const te = headers['transfer-encoding'];
    if (te !== undefined) {
      const codings = tokens(te);
      // With both, Transfer-Encoding wins and the connection is not reused (RFC 9112 section 6.3).
      if (headers['content-length'] !== undefined) this.keepAlive = false;
      if (codings[codings.length - 1] === 'chunked') {
        this.state = 'chunk-size';
        return undefined;
      }
      this.keepAlive = false;
      this.state = 'until-close';
      return undefined;
    }
    const cl = headers['content-length'];
    if (cl !== undefined) {
      const values = new Set((Array.isArray(cl) ? cl : [cl]).flatMap((v) => v.split(',')).map((v) => v.trim()));
      const [only] = values;
      if (values.size !== 1 || only === undefined || !/^[0-9]{1,15}$/.test(only)) return this.fail('invalid content-length');
      this.remaining = Number(only);
      this.state = this.remaining === 0 ? 'done' : 'length';
      return undefined;
    }
    this.keepAlive = false;
    this.state = 'until-close';
    return undefined;
  }

  /** A line of the chunked framing, CR LF or LF ended; undefined when the line is not complete yet. */
  private readLine(chunk: Buffer, at: number): { line: string; next: number } | undefined {
    const lf = chunk.indexOf(LF, at);
    const part = chunk.toString('latin1', at, lf === -1 ? chunk.length : lf);
    if (lf === -1) {
      this.line += part;
      // Too long already: handed over as it is, and refused by takeLine.
      return this.line.length > MAX_LINE_BYTES ? { line: this.line, next: chunk.length } : undefined;
    }
    const line = (this.line + part).replace(/\r$/, '');
    this.line = '';
    return { line, next: lf + 1 };
  }

  private takeLine(line: string): FeedResult | undefined {
    if (line.length > MAX_LINE_BYTES) return this.fail('chunk line too long');
    if (this.state === 'chunk-end') {
      if (line !== '') return this.fail('invalid chunk end');
      this.state = 'chunk-size';
      return undefined;
    }
    if (this.state === 'trailers') {
      this.trailerBytes += line.length + 2;
      if (this.trailerBytes > MAX_ANSWER_HEAD_BYTES) return this.fail('answer trailers too long');
      if (line === '') this.state = 'done';
      return undefined;
    }
    const size = (line.split(';')[0] ?? '').trim();
    if (!/^[0-9a-fA-F]{1,12}$/.test(size)) return this.fail('invalid chunk size');
    this.remaining = parseInt(size, 16);
    this.state = this.remaining === 0 ? 'trailers' : 'chunk-data';
    return undefined;
  }
}

/** Where the head ends in `buf` (an empty line, CR LF or LF), searching from `from`. */
function headEnd(buf: Buffer, from: number): { head: number; body: number } | undefined {
  let lf = buf.indexOf(LF, from);
  while (lf !== -1) {
    const next = buf[lf + 1];
    if (next === LF) return { head: lf, body: lf + 2 };
    if (next === 0x0d && buf[lf + 2] === LF) return { head: lf, body: lf + 3 };
    if (next === undefined || (next === 0x0d && lf + 2 >= buf.length)) return undefined;
    lf = buf.indexOf(LF, lf + 1);
  }
  return undefined;
}

/** The comma-separated tokens of a header, lower-cased. */
function tokens(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).flatMap((x) => x.split(',')).map((t) => t.trim().toLowerCase());
}
