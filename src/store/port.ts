/**
 * The Store port: named for what the chat server does, not for tables. Adapters (SQLite now,
 * PostgreSQL later) implement it and pass one conformance suite (`conformance.ts`).
 *
 * Durability contract: when a returned promise resolves, the change is committed.
 */
import type { ChatEvent, Session, SessionState } from '../chat/types.ts';

export interface StoredFile {
  readonly chatId: string;
  readonly fileId: string;
  readonly bytes: Buffer;
}

export interface SessionSummary {
  readonly chatId: string;
  readonly serviceName: string;
  readonly state: SessionState;
  readonly updatedAt: number;
}

export interface Store {
  /** Records a new session with its first events. Fails if the chatId exists. */
  createSession(session: Session, events: readonly ChatEvent[]): Promise<void>;
  /**
   * Records a change of a session: its new state and the events appended, atomically.
   * Events must continue the stored index sequence.
   */
  recordChange(session: Session, events: readonly ChatEvent[]): Promise<void>;
  /** The session, or undefined. */
  loadSession(chatId: string): Promise<Session | undefined>;
  /** Transcript events with index >= fromIndex, in order. */
  loadEvents(chatId: string, fromIndex: number): Promise<ChatEvent[]>;
  /** Sessions not ended, oldest first. */
  listOpenSessions(): Promise<SessionSummary[]>;
  /** Stores file bytes together with the session change that announces the upload. */
  saveFile(file: StoredFile, session: Session, events: readonly ChatEvent[]): Promise<void>;
  loadFile(chatId: string, fileId: string): Promise<Buffer | undefined>;
  close(): Promise<void>;
}
