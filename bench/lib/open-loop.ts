/**
 * Open-loop HTTP/1.1 load at a fixed rate, for the short-polling half of the pings suite.
 *
 * Request j is due at t0 + j / rate and is request (start + j) % N of a pre-encoded list, so with one
 * request per session each session polls once every N / rate seconds, the sessions evenly spread. A due
 * request goes out on the first free keep-alive connection (one request in flight per connection, no
 * pipelining); when all connections are busy, due requests wait in the client, in order. Nothing is
 * skipped: a server that cannot keep up shows as a growing backlog and a growing latency, measured from
 * each request's scheduled time (no coordinated omission).
 *
 * The client is a few lines over `net` sockets with the requests encoded once up front, because on a
 * 2-core machine a heavier client (undici costs about 40-50 us of CPU per request) would take CPU
 * the server needs. Replies must carry content-length (every Parley JSON reply does).
 */
import { connect, type Socket } from 'node:net';
import { procCpuMs } from './load.ts';
import { latencyStats, round3, type LatencyStats } from './push.ts';

export interface PollRequest {
  readonly path: string;
  readonly body: string;
}

/** Every request as the bytes of one HTTP/1.1 POST (form body), to `base`'s host. */
export function encodeRequests(base: string, requests: readonly PollRequest[]): Buffer[] {
  const u = new URL(base);
  if (u.hostname !== '127.0.0.1') throw new Error(`benchmark traffic goes to 127.0.0.1 only, not ${u.hostname}`);
  return requests.map((r) =>
    Buffer.from(
      `POST ${r.path} HTTP/1.1\r\nhost: ${u.host}\r\ncontent-type: application/x-www-form-urlencoded\r\n` +
        `content-length: ${Buffer.byteLength(r.body)}\r\n\r\n${r.body}`,
    ),
  );
}

export interface OpenLoopResult {
  /** Requests due during the window (the offered load). */
  readonly due: number;
  /** Of those, sent before the window ended. */
  readonly sentInWindow: number;
  /** Responses (any status) received within the window. */
  readonly completedInWindow: number;
  /** Responses to requests of the window received after it, while draining. */
  readonly completedLate: number;
  /** Requests of the window not answered (or never sent) when the drain time ran out. */
  readonly unanswered: number;
  /** Requests waiting in the client (not yet sent) when the window ended: the backlog. */
  readonly backlogAtEnd: number;
  readonly windowSeconds: number;
  readonly drainSeconds: number;
  readonly statusCodes: Record<string, number>;
  readonly non2xx: number;
  /** Connection errors (a connection that failed or closed with a request in flight). */
  readonly errors: number;
  /** Response time from the request's scheduled time (includes the wait for a free connection). */
  readonly latencyFromSchedule: LatencyStats;
  /** Response time from the moment the request was written to its connection. */
  readonly latencyFromSend: LatencyStats;
  /** Write time - scheduled time: how late requests went out (the client's own lateness and waits for a free connection). */
  readonly sendLagFromSchedule: LatencyStats;
  /** Wall-clock time (ms, `performance.timeOrigin` based) of t0: request j was due at startWall + j * 1000 / rate. */
  readonly startWall: number;
  /** Responses per second, one value per second of the window. */
  readonly perSecond: readonly number[];
  readonly replyBytes: number;
  /** CPU over the window, % of one core: this process and (Linux /proc) the server child. */
  readonly cpuPercent: { readonly loadGenerator: number; readonly server: number | null };
  /** Index of the request after the last one due, to continue the rotation in a following run. */
  readonly next: number;
}

interface Conn {
  socket: Socket;
  /** Sequence number j of the request in flight, or -1. */
  job: number;
  sentAt: number;
  buf: Buffer | undefined;
  /** Body bytes still expected for the reply being read, -1 while reading its head. */
  remaining: number;
  status: number;
  bodyBytes: number;
}

const HEAD_END = Buffer.from('\r\n\r\n');

export async function openLoop(
  base: string,
  encoded: readonly Buffer[],
  opts: {
    rate: number;
    seconds: number;
    connections: number;
    start: number;
    drainMs: number;
    serverPid?: number;
    onWindowEnd?: () => void;
    /** Called with each reply: request j (0-based in this run) and its status. */
    onReply?: (j: number, status: number) => void;
  },
): Promise<OpenLoopResult> {
  const u = new URL(base);
  if (u.hostname !== '127.0.0.1') throw new Error(`benchmark traffic goes to 127.0.0.1 only, not ${u.hostname}`);
  const port = Number(u.port);
  const n = encoded.length;
  const total = Math.floor(opts.seconds * opts.rate);
  const windowMs = opts.seconds * 1000;
  const fromSchedule: number[] = [];
  const fromSend: number[] = [];
  const sendLag: number[] = [];
  const perSecond = new Array<number>(Math.ceil(opts.seconds)).fill(0);
  const statusCodes: Record<string, number> = {};
  let non2xx = 0;
  let errors = 0;
  let inWindow = 0;
  let late = 0;
  let sentInWindow = 0;
  let replyBytes = 0;
  let nextToSend = 0;
  let dueCount = 0;
  let answered = 0;
  let t0 = 0;
  let end = Infinity;
  let running = true;
  let onAllAnswered: (() => void) | undefined;
  const idle: Conn[] = [];
  const conns = new Set<Conn>();

  const dueAt = (j: number) => t0 + (j * 1000) / opts.rate;

  const send = (c: Conn) => {
    const j = nextToSend++;
    c.job = j;
    c.sentAt = performance.now();
    sendLag.push(c.sentAt - dueAt(j));
    if (c.sentAt <= end) sentInWindow++;
    c.socket.write(encoded[(opts.start + j) % n] as Buffer);
  };

  /** Hands due requests to free connections. */
  const pump = () => {
    while (idle.length > 0 && nextToSend < dueCount) send(idle.pop() as Conn);
  };

  const finish = (c: Conn) => {
    const done = performance.now();
    const j = c.job;
    c.job = -1;
    answered++;
    statusCodes[c.status] = (statusCodes[c.status] ?? 0) + 1;
    if (c.status < 200 || c.status > 299) non2xx++;
    replyBytes = c.bodyBytes;
    opts.onReply?.(j, c.status);
    fromSchedule.push(done - dueAt(j));
    fromSend.push(done - c.sentAt);
    if (done <= end) {
      inWindow++;
      const s = Math.min(perSecond.length - 1, Math.floor((done - t0) / 1000));
      perSecond[s] = (perSecond[s] ?? 0) + 1;
    } else late++;
    if (running && nextToSend < dueCount) send(c);
    else idle.push(c);
    if (answered + errors >= total) onAllAnswered?.();
  };

  const onData = (c: Conn, chunk: Buffer) => {
    c.buf = c.buf === undefined ? chunk : Buffer.concat([c.buf, chunk]);
    for (;;) {
      const buf: Buffer = c.buf;
      if (c.remaining < 0) {
        const at = buf.indexOf(HEAD_END);
        if (at < 0) return;
        const head = buf.toString('latin1', 0, at);
        c.status = Number(head.slice(9, 12));
        const m = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
        if (m?.[1] === undefined) {
          c.socket.destroy(new Error(`reply without content-length: ${head.slice(0, 200)}`));
          return;
        }
        c.remaining = Number(m[1]);
        c.bodyBytes = c.remaining;
        c.buf = buf.subarray(at + HEAD_END.length);
        continue;
      }
      if (buf.length < c.remaining) return;
      const rest = buf.subarray(c.remaining);
      c.remaining = -1;
      c.buf = rest.length === 0 ? undefined : rest;
      if (c.job >= 0) finish(c);
      if (c.buf === undefined) return;
    }
  };

  const open = (): Promise<Conn> =>
    new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, noDelay: true });
      const c: Conn = { socket, job: -1, sentAt: 0, buf: undefined, remaining: -1, status: 0, bodyBytes: 0 };
      socket.once('connect', () => {
        conns.add(c);
        resolve(c);
      });
      socket.on('data', (chunk: Buffer) => onData(c, chunk));
      socket.on('error', (err) => {
        if (!conns.has(c)) reject(err);
      });
      socket.on('close', () => {
        if (!conns.delete(c)) return;
        const i = idle.indexOf(c);
        if (i >= 0) idle.splice(i, 1);
        if (c.job >= 0) {
          errors++;
          c.job = -1;
          if (answered + errors >= total) onAllAnswered?.();
        }
        // Keep the connection count: the server closed a keep-alive connection (or it failed).
        if (running) open().then(
          (fresh) => {
            idle.push(fresh);
            pump();
          },
          () => undefined,
        );
      });
    });

  for (const c of await Promise.all(Array.from({ length: opts.connections }, open))) idle.push(c);

  const cpu0 = process.cpuUsage();
  const server0 = procCpuMs(opts.serverPid);
  t0 = performance.now();
  end = t0 + windowMs;
  for (;;) {
    const now = performance.now();
    if (now >= end) break;
    dueCount = Math.min(total, Math.floor(((now - t0) * opts.rate) / 1000));
    pump();
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  dueCount = total;
  const backlogAtEnd = total - nextToSend;
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const server1 = procCpuMs(opts.serverPid);
  opts.onWindowEnd?.();
  pump();

  if (answered + errors < total) {
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      onAllAnswered = resolve;
      timer = setTimeout(resolve, opts.drainMs);
    });
    clearTimeout(timer);
  }
  running = false;
  const unanswered = total - answered - errors;
  for (const c of conns) c.socket.destroy();
  conns.clear();

  return {
    due: total,
    sentInWindow,
    completedInWindow: inWindow,
    completedLate: late,
    unanswered,
    backlogAtEnd,
    windowSeconds: opts.seconds,
    drainSeconds: round3((performance.now() - t0 - wallMs) / 1000),
    statusCodes,
    non2xx,
    errors,
    latencyFromSchedule: latencyStats(fromSchedule),
    latencyFromSend: latencyStats(fromSend),
    sendLagFromSchedule: latencyStats(sendLag),
    startWall: performance.timeOrigin + t0,
    perSecond,
    replyBytes,
    cpuPercent: {
      loadGenerator: Math.round(((cpu.user + cpu.system) / 1000 / wallMs) * 1000) / 10,
      server: server0 === undefined || server1 === undefined ? null : Math.round(((server1 - server0) / wallMs) * 1000) / 10,
    },
    next: (opts.start + total) % n,
  };
}
