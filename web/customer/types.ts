/** The receiver's wire shapes (src/receiver/receiver-http.ts) as the customer page sees them. */

// The transcript shapes are the server's own (src/chat/types.ts is pure: no Node types).
export type { ChatEvent, Party, ParticipantType } from '../../src/chat/types.ts';
import type { ChatEvent } from '../../src/chat/types.ts';

export interface WireError {
  readonly code: string;
  readonly message: string;
}

export type ServerFrame =
  | { readonly type: 'started'; readonly token: string; readonly chatId: string; readonly nickname: string; readonly resumed?: boolean }
  | { readonly type: 'events'; readonly events: readonly ChatEvent[]; readonly chatEnded: boolean; readonly nextPosition: number }
  | { readonly type: 'pong' }
  | { readonly type: 'error'; readonly error: WireError };

export type ClientFrame =
  | { type: 'start'; nickname: string; subject?: string; emailAddress?: string }
  | { type: 'resume'; token: string; from: number }
  | { type: 'send'; text: string }
  | { type: 'typing'; typing: boolean }
  | { type: 'leave' }
  | { type: 'ping' };

/** The customer is always participant 1 of the chat. */
export const CUSTOMER_ID = 1;
