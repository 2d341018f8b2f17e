/** The shapes the agent API speaks (docs/agent-api.md); the desk only reads them. */

// The transcript shapes are the server's own (src/chat/types.ts is pure: no Node types).
export type { ChatEvent, Party, ParticipantType } from '../../src/chat/types.ts';
import type { ChatEvent } from '../../src/chat/types.ts';

// The chat summary too (src/chat/summary.ts: types only).
export type { ChatSummary } from '../../src/chat/summary.ts';
import type { ChatSummary } from '../../src/chat/summary.ts';

export interface Agent {
  readonly agentId: string;
  readonly name: string;
  readonly maxChats: number;
}

export interface AgentListing extends Agent {
  readonly activeChats: number;
  readonly online: boolean;
}

export interface Overview {
  readonly waiting: readonly ChatSummary[];
  readonly mine: readonly ChatSummary[];
  /** The docs list only waiting and mine for the `ready` frame; the server sends the workbin too. */
  readonly workbin?: readonly ChatSummary[];
}

export interface ChatView {
  readonly chat: ChatSummary;
  readonly events: readonly ChatEvent[];
}

/** Frames the server pushes over `/agent/api/ws`. */
export type ServerFrame =
  | { readonly type: 'ready'; readonly agent: Agent; readonly overview: Overview }
  | { readonly type: 'events'; readonly chat: ChatSummary; readonly events: readonly ChatEvent[] }
  | { readonly type: 'chat'; readonly chat: ChatSummary; readonly offered: boolean }
  | { readonly type: 'sync'; readonly chat: ChatSummary; readonly events: readonly ChatEvent[] }
  | { readonly type: 'pong' }
  | { readonly type: 'error'; readonly error: { readonly code: string; readonly message: string } };
