/**
 * The Store port: named for what the chat server does, not for tables. Adapters (SQLite now,
 * PostgreSQL later) implement it and pass one conformance suite (`conformance.ts`).
 *
 * Durability contract: when a returned promise resolves, the change is committed.
 */
import type { Notification } from '../chat/notification.ts';
import type { ChatEvent, Session, SessionState } from '../chat/types.ts';

export interface StoredFile {
  readonly fileId: string;
  readonly bytes: Buffer;
}

/**
 * One change of one session, committed atomically: its new state, the transcript events it appended, the
 * push notifications it raised (the outbox), and the bytes of an uploaded file.
 */
export interface ChangeRecord {
  readonly session: Session;
  readonly events: readonly ChatEvent[];
  readonly outbox?: readonly Notification[];
  readonly file?: StoredFile;
}

export interface SessionSummary {
  readonly chatId: string;
  readonly serviceName: string;
  readonly state: SessionState;
  readonly updatedAt: number;
}

export interface Store {
  /** Records a new session with its first events. Fails if the chatId exists. */
  createSession(change: ChangeRecord): Promise<void>;
  /** Records a change of an existing session. Events must continue the stored index sequence. */
  recordChange(change: ChangeRecord): Promise<void>;
  /** The session, or undefined. */
  loadSession(chatId: string): Promise<Session | undefined>;
  /** Transcript events with index >= fromIndex, in order. */
  loadEvents(chatId: string, fromIndex: number): Promise<ChatEvent[]>;
  /** Sessions not ended, oldest first. */
  listOpenSessions(): Promise<SessionSummary[]>;
  /** The most recently updated sessions in these states, newest first (contact history). */
  loadRecentSessions(states: readonly SessionState[], limit: number): Promise<Session[]>;
  loadFile(chatId: string, fileId: string): Promise<Buffer | undefined>;
  /** Stores the new delivery state of notifications (upsert by id). */
  saveNotifications(notifications: readonly Notification[]): Promise<void>;
  /** Notifications that are not final (pending, or delivered and awaiting acknowledgement). */
  loadActiveNotifications(): Promise<Notification[]>;
  close(): Promise<void>;
}
