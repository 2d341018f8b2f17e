/**
 * The push receiver of the push benchmark, in its own process: a bare node:http server on 127.0.0.1
 * port 0 that reads each POST to its end, takes the receive time, and answers 200.
 *   node --import tsx bench/receiver-process.ts
 * Prints `READY <url>` on stdout, then one line per notification, written in batches (one write per
 * event-loop turn) so that reporting costs little:
 *   M <t> <attempt> <text>   one per `Message` event in data.messages (payload included)
 *   N <t> <type> <attempt>   a notification without a Message event (ParticipantJoined, ...)
 *   X <t> <bytes>            a POST whose body is not a push notification
 * Fields are separated by tabs; <t> is `performance.timeOrigin + performance.now()` in ms (wall clock,
 * sub-ms), taken when the body has been read, before the reply is written.
 * Commands on stdin, one per line: `CLOCK <id>` answers `CLOCK <id> <t>` at once (clock check).
 * Exits on SIGTERM or when stdin closes (the parent died).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exitWithParent } from './lib/child.ts';

const now = (): number => performance.timeOrigin + performance.now();

let pending: string[] = [];
let flushQueued = false;
function report(line: string): void {
  pending.push(line);
  if (flushQueued) return;
  flushQueued = true;
  setImmediate(() => {
    flushQueued = false;
    const out = pending;
    pending = [];
    process.stdout.write(`${out.join('\n')}\n`);
  });
}

interface PushJson {
  type?: unknown;
  attempt?: unknown;
  data?: { messages?: Array<{ type?: unknown; text?: unknown }> };
}

function record(t: number, raw: string): void {
  let body: PushJson;
  try {
    body = JSON.parse(raw) as PushJson;
  } catch {
    report(`X\t${t.toFixed(3)}\t${Buffer.byteLength(raw)}`);
    return;
  }
  const attempt = typeof body.attempt === 'number' ? body.attempt : 0;
  let messages = 0;
  for (const m of body.data?.messages ?? []) {
    if (m.type === 'Message' && typeof m.text === 'string') {
      report(`M\t${t.toFixed(3)}\t${attempt}\t${m.text}`);
      messages++;
    }
  }
  if (messages === 0) report(`N\t${t.toFixed(3)}\t${typeof body.type === 'string' ? body.type : '?'}\t${attempt}`);
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const t = now();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '7' });
    res.end('success');
    record(t, Buffer.concat(chunks).toString('utf8'));
  });
});
server.keepAliveTimeout = 60_000;

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
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
