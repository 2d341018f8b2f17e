/**
 * Sending on a server-side WebSocket with a bound on what may queue up for a peer that does not read (a
 * frozen tab, a desk on a dead network, or a client that asks for transcripts without reading them).
 * Past the bound the connection is cut; the client reconnects and catches up from its position.
 */
import type { WebSocket } from 'ws';

/** Most bytes queued for one peer before its socket is cut. */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/** Sends `text` when the socket is open and its queue is within the bound; cuts it otherwise. */
export function sendBounded(ws: WebSocket, text: string, maxQueued = MAX_QUEUED_BYTES): boolean {
  if (ws.readyState !== ws.OPEN) return false;
  if (ws.bufferedAmount > maxQueued) {
    ws.terminate();
    return false;
  }
  ws.send(text);
  return true;
}
