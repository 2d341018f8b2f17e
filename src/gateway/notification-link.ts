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

export class NotificationLinks {
  private readonly sockets = new Map<string, WebSocket>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nodes: NodeDirectory,
    private readonly provider: GatewayNode,
    private readonly opts: { token: string; nodeId: string },
    private readonly log: Logger,
  ) {}

  run(everyMs = 1000): void {
    this.sync();
    this.timer = setInterval(() => this.sync(), everyMs);
    this.timer.unref();
  }

  /** Opens a link to every live node that has none. */
  sync(): void {
    for (const node of this.nodes.live()) {
      if (this.sockets.has(node.appDbid)) continue;
      const url = `${node.url.replace(/^http/, 'ws')}${GATEWAY_SOCKET_PATH}?nodeId=${encodeURIComponent(this.opts.nodeId)}&group=${encodeURIComponent(this.provider.group)}`;
      const ws = new WebSocket(url, { headers: { [NODE_TOKEN_HEADER]: this.opts.token } });
      this.sockets.set(node.appDbid, ws);
      ws.on('message', (data) => void this.onFrame(ws, data.toString()));
      ws.on('close', () => this.sockets.delete(node.appDbid));
      ws.on('error', (err) => {
        this.log.debug({ node: node.appDbid, err: err.message }, 'notification link failed');
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
    return [...this.sockets.values()].filter((s) => s.readyState === s.OPEN).length;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const s of this.sockets.values()) s.terminate();
    this.sockets.clear();
  }
}
