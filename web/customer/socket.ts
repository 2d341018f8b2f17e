/**
 * The page's WebSocket to the receiver (`/receiver/ws`), kept up by the shared ReconnectingSocket
 * (backoff with jitter, reconnect on online / visible, pings). The app sends start or resume when it opens.
 */
import { ReconnectingSocket, type SocketStatus } from '../shared/reconnecting-socket.ts';
import type { ClientFrame, ServerFrame } from './types.ts';

export type { SocketStatus };

export interface SocketHandlers {
  /** The socket opened: send start or resume. */
  open(): void;
  frame(f: ServerFrame): void;
  status(s: SocketStatus): void;
}

export class ChatSocket {
  private readonly socket: ReconnectingSocket<ServerFrame>;

  constructor(on: SocketHandlers) {
    this.socket = new ReconnectingSocket<ServerFrame>({
      path: '/receiver/ws',
      pingMs: 25_000,
      pongTimeoutMs: 10_000,
      backoffMinMs: 500,
      backoffMaxMs: 30_000,
      maxAttempt: 16,
      opened: () => on.open(),
      frame: (f) => on.frame(f),
      status: (s) => on.status(s),
    });
  }

  get open(): boolean {
    return this.socket.open;
  }

  /** Connects, and keeps reconnecting until stop(). */
  start(): void {
    this.socket.start();
  }

  stop(): void {
    this.socket.stop();
  }

  send(frame: ClientFrame): boolean {
    return this.socket.send(frame);
  }

  /** The session is (re)established: the backoff starts over. */
  established(): void {
    this.socket.established();
  }

  /** Closes the socket as a network drop would; the reconnect waits at least `downMs` (tests). */
  drop(downMs = 0): void {
    this.socket.drop(downMs);
  }

  /** Closes and reconnects after the backoff (the server could not resume us just now). */
  reconnectLater(): void {
    this.socket.reconnectLater();
  }
}
