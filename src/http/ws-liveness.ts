/**
 * A WebSocket whose peer vanished without a FIN or RST (a host crash, a partition) looks open for good.
 * Pinged every `everyMs`: a socket that did not answer the previous ping with a pong is terminated, so its
 * close handler runs and whoever holds it connects again or forgets it.
 */
import type { WebSocket } from 'ws';

export const LIVENESS_MS = 10_000;

export function watchLiveness(ws: WebSocket, everyMs = LIVENESS_MS): void {
  let answered = true;
  ws.on('pong', () => {
    answered = true;
  });
  const timer = setInterval(() => {
    if (ws.readyState !== ws.OPEN) return;
    if (!answered) {
      ws.terminate();
      return;
    }
    answered = false;
    ws.ping();
  }, everyMs);
  timer.unref();
  ws.once('close', () => clearInterval(timer));
}
