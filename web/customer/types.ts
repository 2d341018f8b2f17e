/** The receiver's wire shapes (src/receiver/receiver-http.ts) as the customer page sees them. */

export type ParticipantType = 'Client' | 'Agent' | 'Supervisor' | 'External';

export interface Party {
  readonly nickname: string;
  readonly participantId: number;
  readonly type: ParticipantType;
}

/** One Chat API v2 transcript event. */
export interface ChatEvent {
  readonly from: Party;
  readonly index: number;
  readonly type: string;
  readonly utcTime: number;
  readonly text?: string;
  readonly messageType?: string;
  readonly userData?: Readonly<Record<string, string>>;
}

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
