/**
 * POSTs to push targets: keep-alive connections per target origin (src/push/origin-pool.ts, bounded), a
 * request timeout over the whole POST, and the SSRF guard on every connection (the lookup) and on
 * IP-literal hosts (which are connected to without a lookup).
 *
 * The client is Parley's own (src/push/answer-parser.ts reads the answers) rather than undici: undici 7
 * writes a request on a reused keep-alive connection only in the next turn of the event loop (its check
 * for bytes left on an idle socket), which under load put a whole turn into every push; and a push needs
 * little of a general client (a POST of a string body, its status and headers). See bench/README.md.
 */
import type { LookupFunction } from 'node:net';
import { TOKEN } from './answer-parser.ts';
import { OriginPool } from './origin-pool.ts';
import type { AttemptResult } from './retry-policy.ts';
import { guardedLookup, screenTarget, type NetworkAllowList } from './ssrf.ts';

export interface HttpDeliveryOptions {
  readonly timeoutMs: number;
  readonly connectionsPerOrigin: number;
  readonly allow: NetworkAllowList;
}

/** A push URL checked once: where it goes (the start of its request), or refused. */
type Target = { readonly origin: string; readonly pool: () => OriginPool; readonly requestLine: string } | 'forbidden';

/** Checked URLs kept (the push URLs of a deployment are a handful; the bound only guards memory). */
const TARGET_CACHE_SIZE = 1024;

/** How long a connection to a receiver stays open unused. */
const IDLE_MS = 30_000;

/** What a header value may not hold: control characters but HTAB, and code points over U+00FF (names: TOKEN). */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

export class HttpDelivery {
  private readonly pools = new Map<string, OriginPool>();
  /** URL -> checked target: the URL parse and the allow-list check are done once per URL, not per POST. */
  private readonly targets = new Map<string, Target>();
  private readonly lookup: LookupFunction;
  /** Ends POSTs past their deadline and closes idle connections, every 100 ms while there are pools. */
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: HttpDeliveryOptions) {
    this.lookup = guardedLookup(o.allow);
  }

  post(url: string, body: string, headers: Record<string, string>): Promise<AttemptResult> {
    if (this.closed) return Promise.resolve({ error: 'closed' });
    const target = this.target(url);
    if (target === 'forbidden') return Promise.resolve({ error: 'EPUSHFORBIDDEN' });
    let head = target.requestLine;
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if (lower === 'host' || lower === 'content-length' || lower === 'connection' || lower === 'transfer-encoding') continue;
      if (!TOKEN.test(name) || BAD_VALUE.test(value)) return Promise.resolve({ error: 'invalid request header' });
      head += `${name}: ${value}\r\n`;
    }
    const bytes = `${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    this.sweeper ??= setInterval(() => this.sweep(), 100).unref();
    return new Promise((resolve) => target.pool().post({ bytes, deadline: Date.now() + this.o.timeoutMs, resolve }));
  }

  private target(url: string): Target {
    let t = this.targets.get(url);
    if (t !== undefined) return t;
    t = this.parseTarget(url);
    if (this.targets.size >= TARGET_CACHE_SIZE) this.targets.clear();
    this.targets.set(url, t);
    return t;
  }

  /** http(s) only; a host written as an IP address must be in the allowed networks (names are checked at lookup). */
  private parseTarget(url: string): Target {
    let u: URL;
    let host: string;
    try {
      ({ url: u, host } = screenTarget(url, this.o.allow));
    } catch {
      return 'forbidden';
    }
    const protocol = u.protocol === 'https:' ? 'https:' : 'http:';
    const port = u.port === '' ? (protocol === 'https:' ? 443 : 80) : Number(u.port);
    const origin = u.origin;
    return {
      origin,
      requestLine: `POST ${u.pathname}${u.search} HTTP/1.1\r\nhost: ${u.host}\r\n`,
      pool: () => {
        let p = this.pools.get(origin);
        if (p === undefined) {
          p = new OriginPool({ protocol, hostname: host, port, max: this.o.connectionsPerOrigin, lookup: this.lookup, idleMs: IDLE_MS, now: Date.now });
          this.pools.set(origin, p);
        }
        return p;
      },
    };
  }

  private sweep(): void {
    for (const [origin, pool] of this.pools) {
      pool.sweep();
      if (pool.empty) this.pools.delete(origin);
    }
    if (this.pools.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
  }
}

