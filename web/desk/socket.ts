/**
 * The desk's WebSocket (`/agent/api/ws`): authenticates with the token, reconnects with exponential
 * backoff (and jitter) after a drop, pings to notice a dead connection, and hands every frame to the app.
 */
import type { ServerFrame } from './types.ts';

export type SocketStatus = 'connecting' | 'live' | 'offline';

export interface SocketHandlers {
  frame(f: ServerFrame): void;
  status(s: SocketStatus): void;
  /** The server refused the token (close 4401): sign in again. */
  authFailed(): void;
}

const PING_MS = 20_000;
const PONG_TIMEOUT_MS = 10_000;
const BACKOFF_MIN_MS = 400;
const BACKOFF_MAX_MS = 10_000;

export class DeskSocket {
  private ws: WebSocket | undefined;
  private attempt = 0;
  private stopped = true;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private ping: ReturnType<typeof setInterval> | undefined;
  private pongDue: ReturnType<typeof setTimeout> | undefined;
  /** A test or a user asked to stay offline until then (epoch ms). */
  private holdUntil = 0;

  constructor(
    private readonly token: () => string,
    private readonly on: SocketHandlers,
  ) {}

  get open(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  start(): void {
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    ws?.close(1000, 'signed out');
  }

  send(frame: Record<string, unknown>): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Closes the socket as a network drop would; the reconnect waits at least `downMs`. */
  drop(downMs = 0): void {
    this.holdUntil = Date.now() + downMs;
    this.ws?.close(4000, 'dropped');
  }

  private connect(): void {
    if (this.stopped) return;
    this.on.status('connecting');
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/agent/api/ws`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      this.schedule();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ type: 'auth', token: this.token() }));
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== this.ws || typeof ev.data !== 'string') return;
      let f: ServerFrame;
      try {
        f = JSON.parse(ev.data) as ServerFrame;
      } catch {
        return;
      }
      if (f.type === 'ready') {
        this.attempt = 0;
        this.startPing(ws);
        this.on.status('live');
      }
      if (f.type === 'pong' && this.pongDue !== undefined) {
        clearTimeout(this.pongDue);
        this.pongDue = undefined;
      }
      this.on.frame(f);
    });
    ws.addEventListener('close', (ev) => {
      if (ws !== this.ws) return;
      this.ws = undefined;
      this.clearTimers();
      if (this.stopped) return;
      if (ev.code === 4401) {
        this.stopped = true;
        this.on.status('offline');
        this.on.authFailed();
        return;
      }
      this.schedule();
    });
  }

  private schedule(): void {
    this.on.status('offline');
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 10);
    const delay = Math.max(base / 2 + Math.random() * (base / 2), this.holdUntil - Date.now());
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect();
    }, delay);
  }

  private startPing(ws: WebSocket): void {
    if (this.ping !== undefined) clearInterval(this.ping);
    this.ping = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ type: 'ping' }));
      if (this.pongDue === undefined) this.pongDue = setTimeout(() => ws.close(4000, 'no pong'), PONG_TIMEOUT_MS);
    }, PING_MS);
  }

  private clearTimers(): void {
    if (this.retry !== undefined) clearTimeout(this.retry);
    if (this.ping !== undefined) clearInterval(this.ping);
    if (this.pongDue !== undefined) clearTimeout(this.pongDue);
    this.retry = this.ping = this.pongDue = undefined;
  }
}
