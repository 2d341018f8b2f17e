/**
 * The node side of the notification link: gateways connect a WebSocket to `/internal/notifications`
 * (query: nodeId, group) and become gateway nodes of that group in this node's registry, until the socket
 * closes. Frames: node → gateway `{t:"n", id, n: Notification}`; gateway → node `{t:"r", id, outcome}`.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { DeliveryOutcome, Notification } from '../chat/notification.ts';
import { constantTimeEqual } from '../chat/secure-compare.ts';
import { isLoopback } from '../http/loopback.ts';
import type { Logger } from '../log.ts';
import type { GatewayRegistry } from '../push/gateway-registry.ts';
import { NODE_TOKEN_HEADER } from './node-rpc.ts';
import { requestUrl } from '../http/request-url.ts';
import { watchLiveness } from '../http/ws-liveness.ts';

export const GATEWAY_SOCKET_PATH = '/internal/notifications';

export function createGatewaySocket(o: { registry: GatewayRegistry; token: string; replyTimeoutMs: number; log: Logger; livenessMs?: number }) {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });

  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    const q = requestUrl(req)?.searchParams ?? new URLSearchParams();
    const nodeId = q.get('nodeId') ?? 'gateway';
    const group = q.get('group') ?? '';
    const pending = new Map<number, (o: DeliveryOutcome) => void>();
    let seq = 0;
    const unregister = o.registry.register({
      nodeId,
      group,
      deliver(n: Notification): Promise<DeliveryOutcome> {
        return new Promise((resolve) => {
          if (ws.readyState !== ws.OPEN) return resolve({ kind: 'retry', reason: 'gateway disconnected' });
          const id = ++seq;
          const timer = setTimeout(() => {
            pending.delete(id);
            resolve({ kind: 'retry', reason: 'gateway did not answer' });
          }, o.replyTimeoutMs);
          pending.set(id, (outcome) => {
            clearTimeout(timer);
            resolve(outcome);
          });
          ws.send(JSON.stringify({ t: 'n', id, n }));
        });
      },
    });
    o.log.info({ nodeId, group }, 'gateway node connected');
    // A gateway gone without closing (host crash) leaves the group after a missed pong, not never.
    watchLiveness(ws, o.livenessMs);
    ws.on('message', (data) => {
      try {
        const f = JSON.parse(data.toString()) as { t?: unknown; id?: unknown; outcome?: unknown } | null;
        if (f?.t === 'r' && typeof f.id === 'number') {
          pending.get(f.id)?.(outcomeOf(f.outcome));
          pending.delete(f.id);
        }
      } catch {
        // ignore malformed frames from a gateway
      }
    });
    ws.on('close', () => {
      unregister();
      for (const done of pending.values()) done({ kind: 'retry', reason: 'gateway disconnected' });
      pending.clear();
      o.log.info({ nodeId, group }, 'gateway node disconnected');
    });
    ws.on('error', () => ws.terminate());
  });

  return {
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
      if (requestUrl(req)?.pathname !== GATEWAY_SOCKET_PATH) return false;
      const given = req.headers[NODE_TOKEN_HEADER];
      const refused = o.token === '' ? !isLoopback(req.socket.remoteAddress) : !constantTimeEqual(typeof given === 'string' ? given : '', o.token);
      if (refused) {
        socket.destroy();
        return true;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
      return true;
    },
    close(): void {
      for (const c of wss.clients) c.terminate();
      wss.close();
    },
  };
}

/**
 * A gateway's answer as the push engine may use it: a malformed one (a gateway of another version, a
 * bug) counts as a failed POST to retry, so that no unknown kind or non-numeric delay reaches the resend
 * arithmetic.
 */
export function outcomeOf(v: unknown): DeliveryOutcome {
  const o = (typeof v === 'object' && v !== null ? v : {}) as { kind?: unknown; reason?: unknown; retryAfterMs?: unknown };
  const reason = typeof o.reason === 'string' ? o.reason.slice(0, 500) : undefined;
  if (o.kind === 'delivered') return { kind: 'delivered' };
  if (o.kind === 'gone') return { kind: 'gone', reason: reason ?? 'gone' };
  if (o.kind === 'retry') {
    const after = o.retryAfterMs;
    const ok = typeof after === 'number' && Number.isFinite(after) && after >= 0;
    return { kind: 'retry', reason: reason ?? 'retry', ...(ok ? { retryAfterMs: after } : {}) };
  }
  return { kind: 'retry', reason: 'malformed answer from the gateway' };
}
