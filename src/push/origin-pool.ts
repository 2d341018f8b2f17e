/**
 * Keep-alive connections to one push target origin (scheme, host, port), for the push client in
 * src/push/http-delivery.ts. At most `max` connections, one POST at a time on each (no pipelining); POSTs
 * beyond that wait in order. A POST is written as one write, in the same turn of the event loop that asked
 * for it, on the connection used last (idle connections are a stack, so few stay warm).
 *
 * Every POST ends with exactly one result, by `deadline` at the latest (`sweep`):
 * - its status and headers once its answer is read (a body over 64 KiB, a body cut short or the deadline
 *   after the status do not change that; the connection is closed);
 * - an error code otherwise: the connection's (ECONNREFUSED, EPUSHFORBIDDEN from the guarded lookup...),
 *   'timeout', or why the answer could not be read.
 * A connection that already carried an answer may have been closed by the receiver in the meantime (its
 * keep-alive timeout). A POST it loses that way before any byte of answer is tried once more on a new
 * connection: a receiver may then see it twice, which pushes allow (they are resent until acknowledged).
 *
 * An idle connection that receives anything is closed: bytes nobody asked for are never taken for the
 * answer to the next POST.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import type { LookupFunction } from 'node:net';
import { connect as tlsConnect, rootCertificates } from 'node:tls';
import { AnswerParser, type AnswerHeaders } from './answer-parser.ts';
import type { AttemptResult } from './retry-policy.ts';

/** The longest answer body read; a longer one is cut (its status is all that counts). */
export const MAX_ANSWER_BYTES = 64 * 1024;

export interface OriginPoolOptions {
  readonly protocol: 'http:' | 'https:';
  /** Host name or IP address (IPv6 without brackets). */
  readonly hostname: string;
  readonly port: number;
  readonly max: number;
  readonly lookup: LookupFunction;
  /** How long a connection may stay idle (shortened by the receiver's `Keep-Alive: timeout=`). */
  readonly idleMs: number;
  readonly now: () => number;
  /** Certificates trusted for https besides the system's (tests: a self-signed receiver). */
  readonly ca?: string | Buffer;
}

export interface PostJob {
  /** The request, head and body, as written. */
  readonly bytes: string;
  /** When the POST must have ended by (the clock of `now`). */
  readonly deadline: number;
  readonly resolve: (r: AttemptResult) => void;
}

interface Job extends PostJob {
  settled: boolean;
  retried: boolean;
}

export class OriginPool {
  private readonly idle: Conn[] = [];
  private readonly busy = new Set<Conn>();
  private queue: Job[] = [];
  /** Connections open or opening. */
  private open = 0;
  private closed = false;

  constructor(private readonly o: OriginPoolOptions) {}

  post(p: PostJob): void {
    // Written out, not `{ ...p, settled, retried }`: in Node 20's V8 a spread followed by a property the
    // source lacks gives every object a hidden class of its own (a map and descriptor array in the old
    // generation per POST; see buildNotification in chat/notification.ts).
    const job: Job = { bytes: p.bytes, deadline: p.deadline, resolve: p.resolve, settled: false, retried: false };
    if (this.closed) return settle(job, { error: 'closed' });
    this.dispatch(job);
  }

  private dispatch(job: Job): void {
    const warm = this.warm();
    if (warm !== undefined) return this.start(warm, job);
    if (this.open < this.o.max) return this.start(this.connect(), job);
    this.queue.push(job);
  }

  /** The idle connection used last whose idle time is not over (those past it are closed on the way). */
  private warm(): Conn | undefined {
    const now = this.o.now();
    for (let conn = this.idle.pop(); conn !== undefined; conn = this.idle.pop()) {
      if (!this.idleOver(conn, now)) return conn;
      conn.socket.destroy();
    }
    return undefined;
  }

  private idleOver(conn: Conn, now: number): boolean {
    return now - conn.idleSince >= Math.min(this.o.idleMs, conn.keepAliveMs);
  }

  /** The next waiting POST still within its deadline (those past it end as timeouts, never written). */
  private nextWaiting(): Job | undefined {
    const now = this.o.now();
    for (let job = this.queue.shift(); job !== undefined; job = this.queue.shift()) {
      if (job.deadline > now) return job;
      settle(job, { error: 'timeout' });
    }
    return undefined;
  }

  private start(conn: Conn, job: Job): void {
    this.busy.add(conn);
    conn.start(job);
  }

  private connect(): Conn {
    this.open++;
    const { hostname, port, lookup } = this.o;
    const socket =
      this.o.protocol === 'https:'
        ? tlsConnect({
            host: hostname,
            port,
            lookup,
            servername: isIP(hostname) !== 0 ? undefined : hostname,
            ALPNProtocols: ['http/1.1'],
            ...(this.o.ca === undefined ? {} : { ca: [...rootCertificates, this.o.ca.toString()] }),
          })
        : netConnect({ host: hostname, port, lookup });
    socket.setNoDelay(true);
    return new Conn(socket, this);
  }

  /** The connection's answer is done and it can carry another POST. */
  released(conn: Conn): void {
    this.busy.delete(conn);
    const next = this.nextWaiting();
    if (next !== undefined) return this.start(conn, next);
    conn.idleSince = this.o.now();
    this.idle.push(conn);
  }

  /** The connection closed (whatever the reason); a POST it lost before any answer byte may go again. */
  gone(conn: Conn, lost?: Job): void {
    this.open--;
    this.busy.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    if (this.closed) return;
    if (lost !== undefined && lost.deadline > this.o.now()) {
      // Once more, on a new connection: another idle one may have been closed by the receiver as well.
      lost.retried = true;
      return this.start(this.connect(), lost);
    }
    if (lost !== undefined) settle(lost, { error: 'timeout' });
    const next = this.open < this.o.max ? this.nextWaiting() : undefined;
    if (next !== undefined) this.start(this.connect(), next);
  }

  /** Ends POSTs past their deadline, and closes connections idle for too long. */
  sweep(): void {
    const now = this.o.now();
    for (const conn of this.busy) conn.expire(now);
    if (this.queue.some((j) => j.deadline <= now)) {
      const [late, waiting] = partition(this.queue, (j) => j.deadline <= now);
      this.queue = waiting;
      for (const j of late) settle(j, { error: 'timeout' });
    }
    const [over, kept] = partition(this.idle, (conn) => this.idleOver(conn, now));
    if (over.length === 0) return;
    this.idle.splice(0, this.idle.length, ...kept);
    for (const conn of over) conn.socket.destroy();
  }

  /** Whether nothing is open or waiting (the pool may be dropped). */
  get empty(): boolean {
    return this.open === 0 && this.queue.length === 0;
  }

  close(): void {
    this.closed = true;
    for (const j of this.queue.splice(0)) settle(j, { error: 'closed' });
    for (const conn of [...this.busy, ...this.idle]) conn.abort('closed');
  }
}

/** One connection; `job` is the POST on it, if any. */
class Conn {
  private job: Job | undefined;
  private parser = new AnswerParser();
  /** Answers this connection carried in full. */
  private served = 0;
  /** Bytes of the current POST's answer received. */
  private received = 0;
  private error: string | undefined;
  idleSince = 0;
  /** The receiver's `Keep-Alive: timeout=` less 1 s, when it gave one. */
  keepAliveMs = Infinity;

  constructor(
    readonly socket: Socket,
    private readonly pool: OriginPool,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error ??= typeof err.code === 'string' ? err.code : err.message;
    });
    socket.on('close', () => this.onClose());
  }

  start(job: Job): void {
    this.job = job;
    this.parser = new AnswerParser();
    this.received = 0;
    this.socket.write(job.bytes);
  }

  private onData(chunk: Buffer): void {
    const job = this.job;
    // Nothing was asked on this connection: whatever it says cannot be trusted for the next POST.
    if (job === undefined) return void this.socket.destroy();
    this.received += chunk.length;
    const r = this.parser.feed(chunk);
    const { status } = this.parser;
    if (r.kind === 'error') return this.end(status > 0 ? this.answer() : { error: r.code });
    if (this.parser.bodyBytes > MAX_ANSWER_BYTES) return this.end(this.answer());
    if (r.kind === 'more') return;
    this.job = undefined;
    settle(job, this.answer());
    this.served++;
    if (!this.parser.keepAlive || r.rest > 0) return void this.socket.destroy();
    this.keepAliveMs = keepAliveHint(this.parser.headers['keep-alive']);
    this.pool.released(this);
  }

  private answer(): AttemptResult {
    return { status: this.parser.status, headers: this.parser.headers };
  }

  /** Ends the POST on this connection with `r` and closes the connection. */
  private end(r: AttemptResult): void {
    const job = this.job;
    this.job = undefined;
    if (job !== undefined) settle(job, r);
    this.socket.destroy();
  }

  private onClose(): void {
    const job = this.job;
    this.job = undefined;
    let lost: Job | undefined;
    if (job !== undefined && !job.settled) {
      const r = this.parser.end();
      if (r.kind === 'done' || this.parser.status > 0) settle(job, this.answer());
      else if (this.served > 0 && this.received === 0 && !job.retried) lost = job;
      else settle(job, { error: this.error ?? (r.kind === 'error' ? r.code : 'closed') });
    }
    this.pool.gone(this, lost);
  }

  /** The POST on this connection is past its deadline: it ends now, with its status if it has one. */
  expire(now: number): void {
    const job = this.job;
    if (job === undefined || job.deadline > now) return;
    this.end(this.parser.status > 0 ? this.answer() : { error: 'timeout' });
  }

  abort(reason: string): void {
    this.end({ error: reason });
  }
}

function settle(job: Job, r: AttemptResult): void {
  if (job.settled) return;
  job.settled = true;
  job.resolve(r);
}

/** `Keep-Alive: timeout=5` -> 4,000 ms (1 s less, so that the receiver is not the first to close). */
function keepAliveHint(v: AnswerHeaders[string] | undefined): number {
  const text = Array.isArray(v) ? v.join(',') : v;
  const m = text === undefined ? null : /(?:^|[,\s])timeout\s*=\s*(\d+)/i.exec(text);
  return m === null ? Infinity : Math.max(0, Number(m[1]) * 1000 - 1000);
}

function partition<T>(xs: readonly T[], p: (x: T) => boolean): [T[], T[]] {
  const yes: T[] = [];
  const no: T[] = [];
  for (const x of xs) (p(x) ? yes : no).push(x);
  return [yes, no];
}
