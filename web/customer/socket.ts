/**
 * The page's WebSocket to the receiver (`/receiver/ws`). Reconnects with exponential backoff and jitter
 * after a drop, at once when the browser comes back online or the tab becomes visible again (a laptop
 * waking up), and pings so that a connection that died silently (sleep, NAT timeout) is noticed.
 */
import type { ClientFrame, ServerFrame } from './types.ts';

export type SocketStatus = 'connecting' | 'live' | 'offline';

export interface SocketHandlers {
  /** The socket opened: send start or resume. */
  open(): void;
  frame(f: ServerFrame): void;
  status(s: SocketStatus): void;
}

const PING_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export class ChatSocket {
  private ws: WebSocket | undefined;
  private attempt = 0;
  private running = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private ping: ReturnType<typeof setInterval> | undefined;
  private pongDue: ReturnType<typeof setTimeout> | undefined;
  /** Stay offline until then (epoch ms): the test hook that simulates a network outage. */
  private holdUntil = 0;

  constructor(private readonly on: SocketHandlers) {
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

  stop(): void {
    this.running = false;
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    ws?.close(1000, 'done');
  }

  send(frame: ClientFrame): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** The session is (re)established: the backoff starts over. */
  established(): void {
    this.attempt = 0;
    this.on.status('live');
  }

  /** Closes the socket as a network drop would; the reconnect waits at least `downMs` (tests). */
  drop(downMs = 0): void {
    this.holdUntil = Date.now() + downMs;
    this.discard(4000, 'dropped');
  }

  /** Closes and reconnects after the backoff (the server could not resume us just now). */
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
    this.on.status('connecting');
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/receiver/ws`;
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
      this.on.open();
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== this.ws || typeof ev.data !== 'string') return;
      let f: ServerFrame;
      try {
        f = JSON.parse(ev.data) as ServerFrame;
      } catch {
        return;
      }
      if (f.type === 'pong' && this.pongDue !== undefined) {
        clearTimeout(this.pongDue);
        this.pongDue = undefined;
      }
      this.on.frame(f);
    });
    ws.addEventListener('close', () => {
      if (ws !== this.ws) return;
      this.ws = undefined;
      this.clearTimers();
      if (this.running) this.schedule();
    });
  }

  private schedule(): void {
    this.on.status('offline');
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 16);
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
    ws.send(JSON.stringify({ type: 'ping' } satisfies ClientFrame));
    if (this.pongDue === undefined) {
      this.pongDue = setTimeout(() => {
        this.pongDue = undefined;
        if (ws === this.ws) this.discard(4002, 'no pong');
      }, PONG_TIMEOUT_MS);
    }
  }

  private startPing(ws: WebSocket): void {
    if (this.ping !== undefined) clearInterval(this.ping);
    this.ping = setInterval(() => {
      if (ws === this.ws) this.probe();
    }, PING_MS);
  }

  private clearTimers(): void {
    if (this.retry !== undefined) clearTimeout(this.retry);
    if (this.ping !== undefined) clearInterval(this.ping);
    if (this.pongDue !== undefined) clearTimeout(this.pongDue);
    this.retry = this.ping = this.pongDue = undefined;
  }
}
