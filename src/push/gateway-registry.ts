/**
 * The gateway (GMS) nodes a chat server knows, by node group. A session keeps using the node it was given
 * until that node disconnects (the seeds: "associate the node for further notifications").
 */
import type { DeliveryOutcome, Notification } from '../chat/notification.ts';

export interface GatewayNode {
  readonly nodeId: string;
  readonly group: string;
  /** POSTs one notification to its customhttp target and reports the outcome. */
  deliver(n: Notification): Promise<DeliveryOutcome>;
}

export class GatewayRegistry {
  private readonly nodes = new Map<string, GatewayNode>();
  private readonly bySession = new Map<string, string>();
  private turn = 0;
  private readonly joinListeners: Array<(group: string) => void> = [];

  /** Registers a node (a gateway connecting with enable_notification_mode); returns its disconnect. */
  register(node: GatewayNode): () => void {
    this.nodes.set(node.nodeId, node);
    for (const l of this.joinListeners) l(node.group);
    return () => {
      if (this.nodes.get(node.nodeId) === node) this.nodes.delete(node.nodeId);
    };
  }

  /** The session's node, or a node of the group (round robin), or undefined when the group has none. */
  pick(group: string, chatId: string): GatewayNode | undefined {
    const current = this.bySession.get(chatId);
    const node = current === undefined ? undefined : this.nodes.get(current);
    if (node !== undefined && node.group === group) return node;
    const candidates = [...this.nodes.values()].filter((n) => n.group === group);
    if (candidates.length === 0) {
      this.bySession.delete(chatId);
      return undefined;
    }
    const chosen = candidates[this.turn++ % candidates.length] as GatewayNode;
    this.bySession.set(chatId, chosen.nodeId);
    return chosen;
  }

  /** Called with the group of every node that registers. */
  onJoin(listener: (group: string) => void): void {
    this.joinListeners.push(listener);
  }

  /** Forgets the association of an ended session. */
  forget(chatId: string): void {
    this.bySession.delete(chatId);
  }

  get size(): number {
    return this.nodes.size;
  }
}
