/**
 * A page's WebSocket to its server, kept up: reconnects with exponential backoff and jitter after a drop,
 * at once when the browser comes back online or the tab becomes visible again (a laptop waking up), and
 * pings so that a connection that died silently (sleep, NAT timeout) is noticed. Shared by the customer
 * page and the agent desk; each says what to send when the socket opens and which closes are final.
 */
export type SocketStatus = 'connecting' | 'live' | 'offline';

export interface ReconnectingSocketOptions<F extends { readonly type: string }> {
  /** Path on this page's host (`/receiver/ws`, `/agent/api/ws`). */
  readonly path: string;
  readonly pingMs: number;
  readonly pongTimeoutMs: number;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  /** The backoff stops doubling after this many attempts. */
  readonly maxAttempt: number;
  /** The socket opened: authenticate, start or resume. */
  opened(): void;
  frame(f: F): void;
  status(s: SocketStatus): void;
  /** A close after which reconnecting is pointless (the server refused us): the socket stops. */
  isFinal?(code: number): boolean;
}

export class ReconnectingSocket<F extends { readonly type: string }> {
  private ws: WebSocket | undefined;
  private attempt = 0;
  private running = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private ping: ReturnType<typeof setInterval> | undefined;
  private pongDue: ReturnType<typeof setTimeout> | undefined;
  /** Stay offline until then (epoch ms): the test hook that simulates a network outage. */
  private holdUntil = 0;

  constructor(private readonly o: ReconnectingSocketOptions<F>) {
    addEventListener('online', () => this.retryNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible') return;
      if (this.ws === undefined) this.retryNow();
      else this.probe();
    });
  }

  get open(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Connects, and keeps reconnecting until stop(). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    this.connect();
  }

  stop(reason = 'done'): void {
    this.running = false;
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    ws?.close(1000, reason);
  }

  send(frame: unknown): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** The session is (re)established: the backoff starts over. */
  established(): void {
    this.attempt = 0;
    this.o.status('live');
  }

  /** Closes the socket as a network drop would; the reconnect waits at least `downMs` (tests). */
  drop(downMs = 0): void {
    this.holdUntil = Date.now() + downMs;
    this.discard(4000, 'dropped');
  }

  /** Closes and reconnects after the backoff (the server could not take us just now). */
  reconnectLater(): void {
    this.discard(4001, 'retry');
  }

  /**
   * Gives up the current socket at once (its close handshake may never finish on a dead network) and
   * schedules the reconnect.
   */
  private discard(code: number, reason: string): void {
    const ws = this.ws;
    if (ws === undefined) return;
    this.ws = undefined;
    this.clearTimers();
    ws.close(code, reason);
    if (this.running) this.schedule();
  }

  private retryNow(): void {
    if (!this.running || this.ws !== undefined || Date.now() < this.holdUntil) return;
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = undefined;
    this.connect();
  }

  private connect(): void {
    if (!this.running) return;
    this.o.status('connecting');
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${this.o.path}`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      this.schedule();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (ws !== this.ws) return;
      this.startPing(ws);
      this.o.opened();
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== this.ws || typeof ev.data !== 'string') return;
      let f: F;
      try {
        f = JSON.parse(ev.data) as F;
      } catch {
        return;
      }
      if (f.type === 'pong' && this.pongDue !== undefined) {
        clearTimeout(this.pongDue);
        this.pongDue = undefined;
      }
      this.o.frame(f);
    });
    ws.addEventListener('close', (ev) => {
      if (ws !== this.ws) return;
      this.ws = undefined;
      this.clearTimers();
      if (!this.running) return;
      if (this.o.isFinal?.(ev.code) === true) {
        this.running = false;
        this.o.status('offline');
        return;
      }
      this.schedule();
    });
  }

  private schedule(): void {
    this.o.status('offline');
    const base = Math.min(this.o.backoffMaxMs, this.o.backoffMinMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, this.o.maxAttempt);
    const delay = Math.max(base / 2 + Math.random() * (base / 2), this.holdUntil - Date.now());
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect();
    }, delay);
  }

  /** Sends a ping; no pong in time closes the socket (and reconnects). */
  private probe(): void {
    const ws = this.ws;
    if (ws === undefined || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: 'ping' }));
    if (this.pongDue === undefined) {
      this.pongDue = setTimeout(() => {
        this.pongDue = undefined;
        if (ws === this.ws) this.discard(4002, 'no pong');
      }, this.o.pongTimeoutMs);
    }
  }

  private startPing(ws: WebSocket): void {
    if (this.ping !== undefined) clearInterval(this.ping);
    this.ping = setInterval(() => {
      if (ws === this.ws) this.probe();
    }, this.o.pingMs);
  }

  private clearTimers(): void {
    if (this.retry !== undefined) clearTimeout(this.retry);
    if (this.ping !== undefined) clearInterval(this.ping);
    if (this.pongDue !== undefined) clearTimeout(this.pongDue);
    this.retry = this.ping = this.pongDue = undefined;
  }
}
