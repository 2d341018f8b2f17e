/**
 * The desk's WebSocket (`/agent/api/ws`), kept up by the shared ReconnectingSocket (backoff with jitter,
 * reconnect on online / visible, pings): authenticates with the token when it opens, is live once the
 * server says `ready`, and stops for good when the server refuses the token (close 4401).
 */
import { ReconnectingSocket, type SocketStatus } from '../shared/reconnecting-socket.ts';
import type { ServerFrame } from './types.ts';

export type { SocketStatus };

export interface SocketHandlers {
  frame(f: ServerFrame): void;
  status(s: SocketStatus): void;
  /** The server refused the token (close 4401): sign in again. */
  authFailed(): void;
}

export class DeskSocket {
  private readonly socket: ReconnectingSocket<ServerFrame>;

  constructor(token: () => string, on: SocketHandlers) {
    this.socket = new ReconnectingSocket<ServerFrame>({
      path: '/agent/api/ws',
      pingMs: 20_000,
      pongTimeoutMs: 10_000,
      backoffMinMs: 400,
      backoffMaxMs: 10_000,
      maxAttempt: 10,
      opened: () => this.socket.send({ type: 'auth', token: token() }),
      frame: (f) => {
        if (f.type === 'ready') this.socket.established();
        on.frame(f);
      },
      status: (s) => on.status(s),
      isFinal: (code) => {
        if (code !== 4401) return false;
        queueMicrotask(() => on.authFailed());
        return true;
      },
    });
  }

  get open(): boolean {
    return this.socket.open;
  }

  start(): void {
    this.socket.start();
  }

  stop(): void {
    this.socket.stop('signed out');
  }

  send(frame: Record<string, unknown>): boolean {
    return this.socket.send(frame);
  }

  /** Closes the socket as a network drop would; the reconnect waits at least `downMs`. */
  drop(downMs = 0): void {
    this.socket.drop(downMs);
  }
}
