/**
 * POSTs to push targets: one undici Pool per target origin (keep-alive, bounded connections), a request
 * timeout, and the SSRF guard on every connection (the lookup) and on IP-literal hosts (which undici
 * connects to without a lookup).
 */
import { Pool, type Dispatcher } from 'undici';
import type { AttemptResult } from './retry-policy.ts';
import { guardedLookup, screenTarget, type NetworkAllowList } from './ssrf.ts';

export interface HttpDeliveryOptions {
  readonly timeoutMs: number;
  readonly connectionsPerOrigin: number;
  readonly allow: NetworkAllowList;
}

/** A push URL checked once: where it goes, or refused. */
type Target = { readonly origin: string; readonly path: string } | 'forbidden';

/** Checked URLs kept (the push URLs of a deployment are a handful; the bound only guards memory). */
const TARGET_CACHE_SIZE = 1024;

export class HttpDelivery {
  private readonly pools = new Map<string, Pool>();
  /** URL -> checked target: the URL parse and the allow-list check are done once per URL, not per POST. */
  private readonly targets = new Map<string, Target>();
  private readonly lookup;
  /**
   * Answer bodies being read, with the time their POST must end by: undici's body timeout restarts with
   * every chunk, so a receiver that trickles its answer could hold a POST (and a slot of max-concurrency)
   * open for good. A sweep every 100 ms cuts those past their deadline; the status is known by then.
   */
  private readonly reading = new Set<Answer>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly o: HttpDeliveryOptions) {
    this.lookup = guardedLookup(o.allow);
  }

  post(url: string, body: string, headers: Record<string, string>): Promise<AttemptResult> {
    const target = this.target(url);
    if (target === 'forbidden') return Promise.resolve({ error: 'EPUSHFORBIDDEN' });
    return new Promise((resolve) => {
      const answer = new Answer(Date.now() + this.o.timeoutMs, this.reading, resolve);
      this.sweeper ??= setInterval(() => this.sweep(), 100).unref();
      this.pool(target.origin).dispatch(
        {
          method: 'POST',
          path: target.path,
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
          body,
          headersTimeout: this.o.timeoutMs,
          bodyTimeout: this.o.timeoutMs,
        },
        answer,
      );
    });
  }

  private target(url: string): Target {
    let t = this.targets.get(url);
    if (t !== undefined) return t;
    t = parseTarget(url, this.o.allow);
    if (this.targets.size >= TARGET_CACHE_SIZE) this.targets.clear();
    this.targets.set(url, t);
    return t;
  }

  private pool(origin: string): Pool {
    let p = this.pools.get(origin);
    if (p === undefined) {
      p = new Pool(origin, {
        connections: this.o.connectionsPerOrigin,
        pipelining: 1,
        connect: { lookup: this.lookup, timeout: this.o.timeoutMs },
        keepAliveTimeout: 30_000,
      });
      this.pools.set(origin, p);
    }
    return p;
  }

  private sweep(): void {
    const now = Date.now();
    for (const answer of this.reading) if (answer.deadline <= now) answer.cut();
  }

  async close(): Promise<void> {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    await Promise.allSettled([...this.pools.values()].map((p) => p.destroy()));
    this.pools.clear();
  }
}

/** The longest answer body read; a longer one is cut (its status is all that counts). */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * The answer to one POST, taken as undici's parser delivers it (no response stream): its status and
 * headers, the body read and dropped. Once the status is known, a body that fails, is too long or is cut
 * by the sweep does not change the result.
 */
class Answer implements Dispatcher.DispatchHandler {
  private status = 0;
  private headers: Record<string, string | string[] | undefined> = {};
  private bytes = 0;
  private controller: Dispatcher.DispatchController | undefined;
  private done = false;

  constructor(
    /** When the POST must end by (epoch ms), its answer body included. */
    readonly deadline: number,
    private readonly reading: Set<Answer>,
    private readonly resolve: (r: AttemptResult) => void,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.controller = controller;
    if (statusCode < 200) return;
    this.status = statusCode;
    this.headers = headers;
    this.reading.add(this);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.bytes > MAX_ANSWER_BYTES) controller.abort(new Error('answer body too long'));
  }

  onResponseEnd(): void {
    this.finish({ status: this.status, headers: this.headers });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.finish(this.status === 0 ? { error: errorCode(err) } : { status: this.status, headers: this.headers });
  }

  /** Past the POST's deadline while its body is read (a trickling receiver). */
  cut(): void {
    this.reading.delete(this);
    this.controller?.abort(new Error('answer body past the request timeout'));
  }

  private finish(r: AttemptResult): void {
    if (this.done) return;
    this.done = true;
    this.reading.delete(this);
    this.resolve(r);
  }
}

/** http(s) only; a host written as an IP address must be in the allowed networks (names are checked at lookup). */
function parseTarget(url: string, allow: NetworkAllowList): Target {
  try {
    const { url: u } = screenTarget(url, allow);
    return { origin: u.origin, path: `${u.pathname}${u.search}` };
  } catch {
    return 'forbidden';
  }
}

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown }; name?: unknown };
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : undefined;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout';
  if (code === 'EPUSHFORBIDDEN') return code;
  return code ?? (typeof e.name === 'string' ? e.name : 'error');
}
