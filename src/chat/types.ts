/** Chat domain types: the shapes that the Chat API v2 transcript carries, and the session they belong to. */
import type { PushSubscription } from './push-subscription.ts';

export type ParticipantType = 'Client' | 'Agent' | 'Supervisor' | 'External';

export const EVENT_TYPES = [
  'ParticipantJoined',
  'ParticipantLeft',
  'Message',
  'Notice',
  'CustomNotice',
  'PushUrl',
  'TypingStarted',
  'TypingStopped',
  'NicknameUpdated',
  'FileUploaded',
  'FileDeleted',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface Party {
  readonly nickname: string;
  readonly participantId: number;
  readonly type: ParticipantType;
}

/** One transcript event, exactly as it goes on the wire in `messages[]`. */
export interface ChatEvent {
  readonly from: Party;
  readonly index: number;
  readonly type: EventType;
  readonly utcTime: number;
  readonly text?: string;
  readonly messageType?: string;
  readonly userData?: Readonly<Record<string, string>>;
}

/**
 * A message in a reply. Transcript events have an index; the `file-client-cfg-get` Notice of
 * `file/limits` is not part of the transcript and has none (as in a real GMS capture, wire facts §1.3).
 */
export type ReplyMessage = ChatEvent | Omit<ChatEvent, 'index'>;

export interface Participant {
  readonly participantId: number;
  readonly type: ParticipantType;
  readonly nickname: string;
  /** Set for agents. */
  readonly agentId?: string;
  readonly joinedAt: number;
  readonly leftAt?: number;
}

export interface FileMeta {
  readonly fileId: string;
  readonly name: string;
  readonly contentType: string;
  readonly size: number;
  readonly uploadedBy: number;
  readonly uploadedAt: number;
  readonly description?: string;
  readonly downloads: number;
  readonly deleted: boolean;
}

/**
 * waiting: in the queue, no agent · active: at least one agent · dormant: on hold in an agent's workbin
 * (async chat), woken by the customer or the async idle alert · ended: closed.
 */
export type SessionState = 'waiting' | 'active' | 'dormant' | 'ended';

/**
 * When each kind of participant activity last happened (epoch ms; 0 = never). Which kinds count as
 * activity for idle control is a setting (async-idle-notices, include-notices), so the time of each kind
 * is kept and the setting picks from them.
 */
export interface ActivityTimes {
  /** Messages, participants joining or leaving: always activity. */
  readonly base: number;
  /** "Major" notices: push URL, file uploaded, file deleted. */
  readonly major: number;
  /** Custom notices. */
  readonly custom: number;
  /** Typing started. */
  readonly typing: number;
  /** Every other user notice: typing stopped, nickname updated. */
  readonly other: number;
}

/** An idle-control notice sent by the chat server: which stage and when. */
export interface IdleAlert {
  readonly stage: 1 | 2;
  readonly at: number;
}

export interface Session {
  readonly chatId: string;
  readonly serviceName: string;
  readonly secureKey: string;
  /** The client's userId. */
  readonly userId: string;
  /** The app dbid of the chat server node that owns the session now. */
  readonly alias: string;
  readonly state: SessionState;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly endedAt?: number;
  readonly subject: string;
  readonly emailAddress: string;
  readonly firstName: string;
  readonly lastName: string;
  readonly userData: Readonly<Record<string, string>>;
  readonly participants: readonly Participant[];
  readonly nextParticipantId: number;
  /** Index of the last transcript event (0 when none). */
  readonly lastIndex: number;
  readonly files: readonly FileMeta[];
  /** Last transcriptPosition the client reported as read (readReceipt). */
  readonly clientReadPosition: number;
  readonly push?: PushState;
  /** An async chat (GCTI_Chat_AsyncMode=true or an async service): async idle control, dormancy. */
  readonly asyncMode: boolean;
  readonly activity: ActivityTimes;
  /** The last idle alert sent; it counts only while no activity came after it. */
  readonly idleAlert?: IdleAlert;
  /** On hold: in this agent's workbin since then. */
  readonly workbin?: { readonly agentId: string; readonly since: number };
  /** Waiting after a wake-up or transfer: offered only to this agent until `until`, then to anyone. */
  readonly routing?: { readonly agentId: string; readonly until: number };
  /** Waiting: since when (the chat opened, woke up, or its last agent left); the queue is ordered by it. */
  readonly queuedAt?: number;
  /** The agent who handled the chat last (for routing a woken chat back). */
  readonly lastAgentId?: string;
  /**
   * Idempotency keys of the last requests that changed the session (a gateway retrying a call on another
   * node after a crash must not apply it twice); stored with the change they made.
   */
  readonly recentRequests?: readonly string[];
}

/** A push subscription of the session; `active` once acknowledged (at join with flex-push-on-join). */
export interface PushState {
  readonly subscription: PushSubscription;
  readonly active: boolean;
}

/** The result of every domain operation: the new session and the events it appended, in order. */
export interface Change {
  readonly session: Session;
  readonly events: readonly ChatEvent[];
}

export const CLIENT_PARTICIPANT_ID = 1;
