/**
 * The push receiver of the push benchmark, in its own process: a minimal HTTP/1.1 server on raw sockets
 * (127.0.0.1, port 0) that reads each POST to its end, takes the receive time, and answers 200.
 *   node --import tsx bench/receiver-process.ts
 * It is the measuring end of the push path, so it does as little as it can: on a 2-core machine it shares
 * the cores with the chat server under test, and a node:http server took 15 % of a core at 5,000 POSTs/s
 * (see bench/README.md). It understands what a push client sends: requests with a `content-length` body
 * (none: empty), on keep-alive connections; anything else (a chunked body, a malformed head) is written to
 * stderr and the connection is closed, so such a push shows as lost.
 * Prints `READY <url>` on stdout, then one line per notification, written in batches (one write per
 * event-loop turn, after every request of the turn has its answer) so that reporting costs little:
 *   M <t> <attempt> <text>   one per `Message` event in data.messages (payload included)
 *   N <t> <type> <attempt>   a notification without a Message event (ParticipantJoined, ...)
 *   X <t> <bytes>            a POST whose body is not a push notification
 * Fields are separated by tabs; <t> is `performance.timeOrigin + performance.now()` in ms (wall clock,
 * sub-ms), taken when the body has been read, before the reply is written.
 * Commands on stdin, one per line: `CLOCK <id>` answers `CLOCK <id> <t>` at once (clock check).
 * Exits on SIGTERM or when stdin closes (the parent died).
 */
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { exitWithParent } from './lib/child.ts';

const now = (): number => performance.timeOrigin + performance.now();

const REPLY = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nsuccess');
const HEAD_END = Buffer.from('\r\n\r\n');
/** A head larger than this without its end is not a request this receiver takes. */
const MAX_HEAD = 64 * 1024;

/** Received bodies of this turn, reported once every request of the turn has its answer. */
let received: Array<{ t: number; body: string }> = [];
let flushQueued = false;

function receive(t: number, body: string): void {
  received.push({ t, body });
  if (flushQueued) return;
  flushQueued = true;
  setImmediate(flush);
}

function flush(): void {
  flushQueued = false;
  const batch = received;
  received = [];
  const out: string[] = [];
  for (const r of batch) record(out, r.t, r.body);
  if (out.length > 0) process.stdout.write(`${out.join('\n')}\n`);
}

interface PushJson {
  type?: unknown;
  attempt?: unknown;
  data?: { messages?: Array<{ type?: unknown; text?: unknown }> };
}

function record(out: string[], t: number, raw: string): void {
  let body: PushJson;
  try {
    body = JSON.parse(raw) as PushJson;
  } catch {
    out.push(`X\t${t.toFixed(3)}\t${Buffer.byteLength(raw)}`);
    return;
  }
  const attempt = typeof body.attempt === 'number' ? body.attempt : 0;
  let messages = 0;
  for (const m of body.data?.messages ?? []) {
    if (m.type === 'Message' && typeof m.text === 'string') {
      out.push(`M\t${t.toFixed(3)}\t${attempt}\t${m.text}`);
      messages++;
    }
  }
  if (messages === 0) out.push(`N\t${t.toFixed(3)}\t${typeof body.type === 'string' ? body.type : '?'}\t${attempt}`);
}

/** The body length a request head announces: its `content-length` (0 without one), or an error. */
function bodyLength(head: string): number | string {
  let length = 0;
  const lines = head.split('\r\n');
  if (!/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(lines[0] ?? '')) return `not an HTTP/1.x request line: ${JSON.stringify(lines[0])}`;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const colon = line.indexOf(':');
    if (colon <= 0) return `malformed header line ${JSON.stringify(line)}`;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'transfer-encoding') return `transfer-encoding ${value} is not taken`;
    if (name === 'content-length') {
      if (!/^\d+$/.test(value)) return `bad content-length ${JSON.stringify(value)}`;
      length = Number(value);
    }
  }
  return length;
}

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  let pending: Buffer | undefined;
  const refuse = (why: string): void => {
    process.stderr.write(`receiver-process: ${why}; connection closed\n`);
    socket.destroy();
  };
  socket.on('data', (chunk: Buffer) => {
    let buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
    pending = undefined;
    let answers = 0;
    for (;;) {
      const headEnd = buf.indexOf(HEAD_END);
      if (headEnd === -1) {
        if (buf.length > MAX_HEAD) return refuse(`request head over ${MAX_HEAD} bytes`);
        break;
      }
      const length = bodyLength(buf.toString('latin1', 0, headEnd));
      if (typeof length === 'string') return refuse(length);
      const end = headEnd + HEAD_END.length + length;
      if (buf.length < end) break;
      receive(now(), buf.toString('utf8', headEnd + HEAD_END.length, end));
      answers++;
      buf = buf.subarray(end);
    }
    if (buf.length > 0) pending = buf;
    if (answers === 1) socket.write(REPLY);
    else if (answers > 1) socket.write(Buffer.concat(Array.from({ length: answers }, () => REPLY)));
  });
  socket.on('error', () => socket.destroy());
}

const server = createServer(serve);
const sockets = new Set<Socket>();
server.on('connection', (s: Socket) => {
  sockets.add(s);
  s.once('close', () => sockets.delete(s));
});

let stdinPartial = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  const lines = (stdinPartial + chunk).split('\n');
  stdinPartial = lines.pop() ?? '';
  for (const line of lines) {
    const m = /^CLOCK (\S+)$/.exec(line.trim());
    if (m !== null) process.stdout.write(`CLOCK ${m[1]} ${now().toFixed(3)}\n`);
  }
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`READY http://127.0.0.1:${port}\n`);
  exitWithParent(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
