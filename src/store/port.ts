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
  /**
   * Write only while the session is still owned this way (HA fencing): a node that lost the session to
   * another node can no longer change it. The write fails with NOT_OWNER otherwise.
   */
  readonly fence?: Ownership;
  /**
   * The session changed only in what its events imply (`onlyEventFieldsChanged` in chat/catch-up.ts): the
   * store may keep the stored document as it is and store the events alone (the SQLite store does; the
   * loader folds them back in with `catchUp`). The fence and the index sequence are checked all the same.
   */
  readonly onlyEventFields?: boolean;
  /** Files the change deleted: their stored bytes are removed with it. */
  readonly removeFiles?: readonly string[];
}

/** Which chat server node owns a session; `epoch` grows with every change of owner. */
export interface Ownership {
  readonly owner: string;
  readonly epoch: number;
}

/** A chat server node as registered in the shared store. */
export interface NodeRecord {
  /** The application dbid, which is also the alias clients send. */
  readonly appDbid: string;
  readonly pid: number;
  /** Base URL of the node's HTTP listener. */
  readonly url: string;
  readonly startedAt: number;
  readonly heartbeatAt: number;
}

export interface SessionSummary {
  readonly chatId: string;
  readonly serviceName: string;
  readonly state: SessionState;
  readonly updatedAt: number;
}

export interface Store {
  /** Records a new session with its first events, owned by `session.alias` at epoch 1. Fails if the chatId exists. */
  createSession(change: ChangeRecord): Promise<void>;
  /** Records a change of an existing session. Events must continue the stored index sequence. */
  recordChange(change: ChangeRecord): Promise<void>;
  /** The session, or undefined. */
  loadSession(chatId: string): Promise<Session | undefined>;
  /** The session with its ownership, or undefined. */
  loadOwned(chatId: string): Promise<{ session: Session; ownership: Ownership } | undefined>;
  /**
   * Compare-and-set of the owner: succeeds only if the session is still owned as `expected`; then it is
   * owned by `newOwner` at epoch + 1, returned with the session as it is once the claim is done (after the
   * old owner's last transaction). Of two nodes racing, exactly one wins.
   */
  claimSession(chatId: string, expected: Ownership, newOwner: string): Promise<{ session: Session; ownership: Ownership } | undefined>;
  /**
   * A node (re)starting under its app dbid bumps the epoch of every open session it owns, so that a claim
   * decided from what was seen of its previous process fails its compare-and-set.
   */
  renewOwnership(owner: string): Promise<void>;
  /** Open sessions owned by this node, oldest first. */
  listOwnedOpenSessions(owner: string): Promise<SessionSummary[]>;
  /** Transcript events with index >= fromIndex, in order. */
  loadEvents(chatId: string, fromIndex: number): Promise<ChatEvent[]>;
  /** Sessions not ended, oldest first. */
  listOpenSessions(): Promise<SessionSummary[]>;
  /** The dormant sessions in an agent's workbin, most recently updated first. */
  listWorkbin(agentId: string, limit: number): Promise<Session[]>;
  /** The most recently updated sessions in these states, newest first (contact history). */
  loadRecentSessions(states: readonly SessionState[], limit: number): Promise<Session[]>;
  loadFile(chatId: string, fileId: string): Promise<Buffer | undefined>;
  /** Stores the new delivery state of notifications (upsert by id). */
  saveNotifications(notifications: readonly Notification[]): Promise<void>;
  /**
   * Notifications that are not final (pending, or delivered and awaiting acknowledgement); with `owner`,
   * only those of the sessions that node owns (a cluster node must not send those of a live peer).
   */
  loadActiveNotifications(owner?: string): Promise<Notification[]>;
  /** The same, of one session (a node that restores the session takes over its outbox). */
  loadActiveNotificationsFor(chatId: string): Promise<Notification[]>;
  /** Registers (or re-registers) a chat server node. */
  registerNode(node: NodeRecord): Promise<void>;
  /** Moves the node's heartbeat; false when the node is not registered (then nothing changed). */
  heartbeat(appDbid: string, at: number): Promise<boolean>;
  listNodes(): Promise<NodeRecord[]>;
  removeNode(appDbid: string): Promise<void>;
  close(): Promise<void>;
}
