/**
 * The gateway side of the notification link: one WebSocket to every live chat server node (re-opened when
 * it drops), carrying notifications to this gateway's customhttp provider and the outcomes back.
 */
import { WebSocket } from 'ws';
import type { Notification } from '../chat/notification.ts';
import { GATEWAY_SOCKET_PATH } from '../chat-server/gateway-socket.ts';
import { NODE_TOKEN_HEADER } from '../chat-server/node-rpc.ts';
import type { NodeDirectory } from '../cluster/node-directory.ts';
import type { Logger } from '../log.ts';
import type { GatewayNode } from '../push/gateway-registry.ts';
import type { NodeRecord } from '../store/port.ts';
import { watchLiveness } from '../http/ws-liveness.ts';
import { LogThrottle } from '../log-throttle.ts';

/** Which process of a node a link was opened to: a node registered again (restarted, moved) gets a new link. */
function incarnation(n: NodeRecord): string {
  return `${n.url} ${n.pid} ${n.startedAt}`;
}

export class NotificationLinks {
  private readonly sockets = new Map<string, { ws: WebSocket; incarnation: string }>();
  private timer: NodeJS.Timeout | undefined;
  private readonly failures = new LogThrottle(60_000);

  constructor(
    private readonly nodes: NodeDirectory,
    private readonly provider: GatewayNode,
    private readonly opts: { token: string; nodeId: string; livenessMs?: number },
    private readonly log: Logger,
  ) {}

  run(everyMs = 1000): void {
    this.sync();
    this.timer = setInterval(() => this.sync(), everyMs);
    this.timer.unref();
  }

  /**
   * Opens a link to every live node that has none, or whose link goes to an earlier process of it (the
   * node registered again, at a new address or pid: the old socket may be half-open after a host crash).
   */
  sync(): void {
    for (const node of this.nodes.live()) {
      const held = this.sockets.get(node.appDbid);
      if (held !== undefined) {
        if (held.incarnation === incarnation(node)) continue;
        this.sockets.delete(node.appDbid);
        held.ws.terminate();
      }
      const url = `${node.url.replace(/^http/, 'ws')}${GATEWAY_SOCKET_PATH}?nodeId=${encodeURIComponent(this.opts.nodeId)}&group=${encodeURIComponent(this.provider.group)}`;
      const ws = new WebSocket(url, { headers: { [NODE_TOKEN_HEADER]: this.opts.token } });
      this.sockets.set(node.appDbid, { ws, incarnation: incarnation(node) });
      ws.once('open', () => watchLiveness(ws, this.opts.livenessMs));
      ws.on('message', (data) => void this.onFrame(ws, data.toString()));
      ws.on('close', () => {
        if (this.sockets.get(node.appDbid)?.ws === ws) this.sockets.delete(node.appDbid);
      });
      ws.on('error', (err) => {
        // Without a link, the node's pushes for this gateway's group wait ("no gms node found"): worth a warning.
        this.failures.log(`${node.appDbid} ${err.message}`, (extra) =>
          this.log.warn(
            { node: node.appDbid, url: node.url, err: err.message, ...extra },
            'notification link to a chat server node failed (a wrong [node] internal-token is refused this way too)',
          ),
        );
        ws.terminate();
      });
    }
  }

  private async onFrame(ws: WebSocket, text: string): Promise<void> {
    let f: { t?: unknown; id?: unknown; n?: unknown } | null;
    try {
      f = JSON.parse(text) as typeof f;
    } catch {
      return;
    }
    // A frame of another shape (a node of another version): ignored; the node times the notification out.
    if (typeof f !== 'object' || f === null || f.t !== 'n' || typeof f.id !== 'number' || typeof f.n !== 'object' || f.n === null) return;
    const n = f.n as Notification;
    const outcome = await Promise.resolve()
      .then(() => this.provider.deliver(n))
      .catch((err: unknown) => ({ kind: 'retry' as const, reason: err instanceof Error ? err.message : 'delivery failed' }));
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ t: 'r', id: f.id, outcome }));
  }

  get connected(): number {
    return [...this.sockets.values()].filter(({ ws }) => ws.readyState === ws.OPEN).length;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const { ws } of this.sockets.values()) ws.terminate();
    this.sockets.clear();
  }
}
