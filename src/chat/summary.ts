/**
 * A chat as the agent API lists it (docs/agent-api.md): the server builds it (`summarize` in
 * src/chat-server/agent-ops.ts) and the desk reads it (web/desk/types.ts). Types only, no Node types, so
 * the page build can import it.
 */
import type { SessionState } from './types.ts';

export interface ChatSummary {
  readonly chatId: string;
  readonly serviceName: string;
  readonly state: SessionState;
  readonly nickname: string;
  readonly subject: string;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly lastIndex: number;
  readonly agents: readonly string[];
  readonly asyncMode: boolean;
  /** Dormant: whose workbin. */
  readonly workbinAgentId?: string;
  /** Waiting: since when (the queue is ordered by it, longest waiting first). */
  readonly queuedAt?: number;
  /** Waiting: offered only to this agent until `routedUntil`. */
  readonly routedTo?: string;
  readonly routedUntil?: number;
}
