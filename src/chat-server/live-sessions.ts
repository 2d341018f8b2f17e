/**
 * The sessions a chat server node holds in memory. Operations on one session run one at a time; a change
 * is applied in memory only after the store committed it, so a failed write changes nothing.
 */
import { durable, type Notification } from '../chat/notification.ts';
import { catchUp, onlyEventFieldsChanged } from '../chat/catch-up.ts';
import { filesDeleted, upgradeSession } from '../chat/session.ts';
import type { Change, ChatEvent, Session } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import type { Store } from '../store/port.ts';

/**
 * A session held in memory. Its transcript is not: replies read the events they carry from the store
 * (`LiveSessions.transcript`). A transcript per live chat, growing with every message, was most of what
 * filled the old generation of a busy node (at 5,000 pushes/s, leaving it out halved the messages over
 * 10 ms), and most replies carry no events (a client refreshes from its nextPosition).
 */
export interface LiveSession {
  session: Session;
  tail: Promise<unknown>;
  /** This node's ownership epoch of the session (fences every write). */
  epoch: number;
  /**
   * Loaded at start-up, before this node could answer its peers: another node may have restored the
   * session meanwhile. The first use checks the ownership in the store once.
   */
  unverified?: boolean;
  /**
   * A write of it failed and may still have been committed: memory may lag the store. It stays listed
   * (queues, capacity, timers see its last known state) and is read from the store again at its next use.
   */
  stale?: boolean;
  /**
   * Memory holds more than the stored document and the events say (a restoration adjusted the session):
   * the next change is written whole, not as events only (chat/catch-up.ts).
   */
  unsaved?: boolean;
}

/** HA: who else may own a session, and what happens when this node restores one. */
export interface Ownership {
  /** Is that node alive (registered with a fresh heartbeat)? A single node: only itself. */
  isAlive(owner: string): Promise<boolean>;
  /**
   * This node's ownership lease (cluster/lease.ts); absent on a single node. While it is not valid, a
   * session held in memory is checked against the store at every use; when its lapse count grows, every
   * held session is checked once more (it may have moved during the lapse).
   */
  lease?: { valid(): boolean; lapses(): number };
  /** Adjusts a session this node just restored from a dead node (before it is used). */
  restore?(session: Session, from: string): Session;
  /** A session owned by a dead node was claimed by this one. */
  onRestored?(session: Session, from: string): void;
  /** A session this node held was found owned by another node (restored there): let go of what it kept. */
  onLost?(chatId: string): void;
}

const SINGLE_NODE = (alias: string): Ownership => ({ isAlive: async (owner) => owner === alias });

/** A flex user: a push-subscribed session, acknowledged or not yet (it counts against limit-for-flex-users). */
const flexOf = (s: Session): 0 | 1 => (s.push === undefined ? 0 : 1);

/** Told of every committed change, with the notifications it raised. */
export type SessionListener = (session: Session, events: readonly ChatEvent[], outbox: readonly Notification[]) => void;

/** Computes the push notifications a change raises; they are committed with it (transactional outbox). */
export type OutboxFor = (session: Session, events: readonly ChatEvent[]) => Notification[];

const NO_OUTBOX: OutboxFor = () => [];

export class LiveSessions {
  private readonly live = new Map<string, LiveSession>();
  private readonly loading = new Map<string, Promise<LiveSession>>();
  /**
   * Ended sessions are not held, but while operations on one are queued (downloads of an ended chat) they
   * share its entry, so that they run one at a time like those of a live session.
   */
  private readonly endedInUse = new Map<string, LiveSession>();
  private readonly listeners = new Set<SessionListener>();

  private readonly ownership: Ownership;
  /** Open sessions and push-subscribed open sessions held here, kept up to date on every change. */
  private open = 0;
  private flex = 0;
  private dormant = 0;
  /**
   * Dormant sessions of this node that are not held in memory (a million of them must fit): chatId → 1 when
   * push-subscribed, else 0. They are read from the store again when touched.
   */
  private readonly parked = new Map<string, 0 | 1>();
  private parkedFlex = 0;
  /** The lease lapses already accounted for (see noticeLapses). */
  private seenLapses = 0;

  constructor(
    private readonly store: Store,
    private readonly alias: string,
    private readonly outboxFor: OutboxFor = NO_OUTBOX,
    ownership?: Ownership,
  ) {
    this.ownership = ownership ?? SINGLE_NODE(alias);
  }

  /** Subscribes to every committed change; returns the unsubscribe function. */
  subscribe(fn: SessionListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  all(): IterableIterator<LiveSession> {
    return this.live.values();
  }

  /** The session as held in memory now, if it is (no load, no check). */
  peek(chatId: string): Session | undefined {
    return this.live.get(chatId)?.session;
  }

  get size(): number {
    return this.live.size;
  }

  /** Open sessions of this node (in memory or parked): all, push-subscribed (flex users, acknowledged or not), dormant. */
  counts(): { open: number; flex: number; dormant: number } {
    return { open: this.open + this.parked.size, flex: this.flex + this.parkedFlex, dormant: this.dormant + this.parked.size };
  }

  /**
   * The push-subscribed sessions parked out of memory, read from the store without taking them back in
   * (a planned shutdown advises them too); stops reading once `until` (epoch ms) has passed.
   */
  async *parkedSubscribed(until: number): AsyncIterable<Session> {
    for (const [chatId, flex] of [...this.parked]) {
      if (Date.now() > until) return;
      if (flex === 0 || !this.parked.has(chatId)) continue;
      const stored = await guard(() => this.store.loadOwned(chatId)).catch(() => undefined);
      // A dormant document is always written whole (chat/catch-up.ts): no events to fold in.
      if (stored !== undefined && stored.ownership.owner === this.alias && stored.session.state === 'dormant') yield upgradeSession(stored.session);
    }
  }

  /** Drops a dormant session from memory, keeping only its flag (timers keep their own deadlines). */
  private park(entry: LiveSession): void {
    const s = entry.session;
    // An adjustment not stored yet would be lost: such an entry stays until its next write.
    if (s.state !== 'dormant' || this.live.get(s.chatId) !== entry || entry.unsaved === true) return;
    this.account(s, undefined);
    this.live.delete(s.chatId);
    const flex = flexOf(s);
    this.parked.set(s.chatId, flex);
    this.parkedFlex += flex;
  }

  private unpark(chatId: string): void {
    const flex = this.parked.get(chatId);
    if (flex === undefined) return;
    this.parked.delete(chatId);
    this.parkedFlex -= flex;
  }

  /** Keeps the counts and the map in step with one entry's session change. */
  private account(before: Session | undefined, after: Session | undefined): void {
    this.weigh(before, -1);
    this.weigh(after, +1);
  }

  // A method, not a closure made in account(): `npm start` runs the sources through tsx, whose esbuild
  // transform (keepNames) gives every named closure its name with Object.defineProperty, which turns the
  // new function object into a dictionary-mode one: measurable on a path taken for every message.
  private weigh(s: Session | undefined, sign: number): void {
    if (s === undefined || s.state === 'ended') return;
    this.open += sign;
    this.flex += sign * flexOf(s);
    if (s.state === 'dormant') this.dormant += sign;
  }

  /**
   * Start-up: loads the open sessions this node owns ('owned'), or every open session, restoring those of
   * dead owners ('all': a single node after a change of app dbid).
   */
  async loadOpen(scope: 'owned' | 'all' = 'all', onLoaded?: (s: Session) => void): Promise<void> {
    const list = scope === 'owned' ? await this.store.listOwnedOpenSessions(this.alias) : await this.store.listOpenSessions();
    for (const s of list) {
      try {
        // A dormant session of this node is parked at once: its transcript is not read at all.
        if (s.state === 'dormant' && !this.live.has(s.chatId)) {
          const stored = await guard(() => this.store.loadOwned(s.chatId));
          if (stored !== undefined && stored.ownership.owner === this.alias && stored.session.state === 'dormant') {
            const session = upgradeSession(stored.session);
            onLoaded?.(session);
            const flex = flexOf(session);
            if (!this.parked.has(s.chatId)) {
              this.parked.set(s.chatId, flex);
              this.parkedFlex += flex;
            }
            continue;
          }
        }
        const entry = await this.get(s.chatId);
        entry.unverified = true;
        onLoaded?.(entry.session);
        this.park(entry);
      } catch (err) {
        if (!(err instanceof ParleyError && err.code === 'NOT_OWNER')) throw err;
      }
    }
  }

  /** The entry as memory holds it now (an ended session is read for the request at hand and never held). */
  private isCurrent(entry: LiveSession): boolean {
    const chatId = entry.session.chatId;
    const held = this.live.get(chatId);
    if (held === entry) return true;
    if (held !== undefined || entry.session.state !== 'ended') return false;
    const inUse = this.endedInUse.get(chatId);
    return inUse === undefined || inUse === entry;
  }

  /** Another node owns the session now: out of memory, and its pushes and timers are no longer ours. */
  private lose(chatId: string): void {
    this.evict(chatId);
    this.ownership.onLost?.(chatId);
  }

  /** Forgets a session held in memory (it moved to another node, or its state is no longer known). */
  evict(chatId: string): void {
    const e = this.live.get(chatId);
    if (e === undefined) return;
    this.account(e.session, undefined);
    this.live.delete(chatId);
  }

  /** Stores a new session and holds it; `counted` runs as soon as the counts include it (before any listener). */
  async create(change: Change, counted?: () => void): Promise<LiveSession> {
    const outbox = this.outboxFor(change.session, change.events);
    await guard(() => this.store.createSession({ session: change.session, events: change.events, outbox: durable(outbox) }));
    const entry: LiveSession = { session: change.session, tail: Promise.resolve(), epoch: 1 };
    this.live.set(change.session.chatId, entry);
    this.account(undefined, entry.session);
    counted?.();
    this.emit(change.session, change.events, outbox);
    return entry;
  }

  /** The live session, loaded from the store when needed; UNKNOWN_CHAT when there is none. */
  async get(chatId: string): Promise<LiveSession> {
    this.noticeLapses();
    let hit = this.live.get(chatId) ?? this.endedInUse.get(chatId);
    // Read again from the store; until then (and if that fails) the last known state stays listed.
    if (hit?.stale === true) hit = await this.reload(hit);
    if (hit !== undefined) return hit.unverified === true || this.ownership.lease?.valid() === false ? this.verify(hit) : hit;
    return this.loadOnce(chatId, () => this.load(chatId));
  }

  /** One load of a session at a time: callers arriving meanwhile share it. */
  private loadOnce(chatId: string, run: () => Promise<LiveSession>): Promise<LiveSession> {
    let pending = this.loading.get(chatId);
    if (pending === undefined) {
      pending = run().finally(() => this.loading.delete(chatId));
      this.loading.set(chatId, pending);
    }
    return pending;
  }

  /** A stale entry read again from the store (a load like any other); it replaces the entry once read. */
  private reload(stale: LiveSession): Promise<LiveSession> {
    const chatId = stale.session.chatId;
    return this.loadOnce(chatId, async () => {
      this.evict(chatId);
      try {
        return await this.load(chatId);
      } catch (err) {
        // Not readable now: the last known state is listed again, still stale.
        if (!this.live.has(chatId) && !(err instanceof ParleyError && (err.code === 'NOT_OWNER' || err.code === 'UNKNOWN_CHAT'))) {
          this.live.set(chatId, stale);
          this.account(undefined, stale.session);
        }
        throw err;
      }
    });
  }

  /** After a lapse of the ownership lease, every session held here is checked once before its next use. */
  private noticeLapses(): void {
    const lapses = this.ownership.lease?.lapses();
    if (lapses === undefined || lapses === this.seenLapses) return;
    this.seenLapses = lapses;
    for (const e of this.live.values()) e.unverified = true;
  }

  /**
   * The first use of a session loaded at start-up, or any use while the lease has lapsed: still ours, at
   * our epoch? Otherwise it moved, and this node forgets it.
   */
  private async verify(entry: LiveSession): Promise<LiveSession> {
    const chatId = entry.session.chatId;
    const stored = await guard(() => this.store.loadOwned(chatId));
    if (stored === undefined || stored.ownership.owner !== this.alias || stored.ownership.epoch !== entry.epoch) {
      this.lose(chatId);
      throw new ParleyError('NOT_OWNER', undefined, stored === undefined ? undefined : { details: { owner: stored.ownership.owner } });
    }
    entry.unverified = false;
    return entry;
  }

  /**
   * Loads a session. One owned by this node is simply read; one owned by a live node is refused with
   * NOT_OWNER (details.owner says where it lives); one owned by a dead node is claimed by compare-and-set
   * and restored here: its alias becomes this node's.
   */
  private async load(chatId: string): Promise<LiveSession> {
    let stored = await guard(() => this.store.loadOwned(chatId));
    if (stored === undefined) throw new ParleyError('UNKNOWN_CHAT');
    let epoch = stored.ownership.epoch;
    const from = stored.ownership.owner;
    if (from !== this.alias) {
      if (stored.session.state !== 'ended' && (await this.ownership.isAlive(from))) {
        // A parked session of this node that another node restored meanwhile: no longer ours to count.
        if (this.parked.has(chatId)) {
          this.unpark(chatId);
          this.ownership.onLost?.(chatId);
        }
        throw new ParleyError('NOT_OWNER', undefined, { details: { owner: from } });
      }
      const expected = stored.ownership;
      const claimed = await guard(() => this.store.claimSession(chatId, expected, this.alias));
      if (claimed === undefined) throw new ParleyError('NOT_OWNER', 'Another node restored this session first; retry.');
      // The claim waited for the old owner's last transaction: the session it returns is as it is now.
      stored = claimed;
      epoch = claimed.ownership.epoch;
    }
    const doc = upgradeSession(stored.session);
    // The stored document may lag the transcript by the events of message-only changes (chat/catch-up.ts).
    const later = await guard(() => this.store.loadEvents(chatId, doc.lastIndex + 1));
    const hit = this.live.get(chatId);
    if (hit !== undefined) return hit;
    let session: Session = { ...catchUp(doc, later), alias: this.alias };
    let unsaved = false;
    if (from !== this.alias && session.state !== 'ended' && this.ownership.restore !== undefined) {
      const restored = this.ownership.restore(session, from);
      if (restored !== session) {
        // What the restoration adjusted (push paused until the client asks) is stored at once: the session
        // may be parked, or read again, before any change of its own is written.
        try {
          await guard(() => this.store.recordChange({ session: restored, events: [], fence: { owner: this.alias, epoch } }));
        } catch {
          // Written whole with its next change instead; until then it is not parked (see park()).
          unsaved = true;
        }
      }
      session = restored;
    }
    const entry: LiveSession = { session, tail: Promise.resolve(), epoch, ...(unsaved ? { unsaved } : {}) };
    // An ended session is read for the request at hand (a late refresh, an old timer) and not kept, nor
    // counted here any more (a parked session that ended on another node).
    if (session.state === 'ended') {
      this.unpark(chatId);
      return entry;
    }
    const again = this.live.get(chatId);
    if (again !== undefined) return again;
    this.live.set(chatId, entry);
    this.unpark(chatId);
    this.account(undefined, entry.session);
    if (from !== this.alias && stored.session.state !== 'ended') this.ownership.onRestored?.(entry.session, from);
    return entry;
  }

  /** Runs fn after every earlier operation on the same session has finished. */
  async serial<T>(chatId: string, fn: (entry: LiveSession) => Promise<T>): Promise<T> {
    let entry = await this.get(chatId);
    // While get() waited (a load, or an ownership check against the store), the operation ahead may have
    // finished and parked the session, or a failed write evicted it: join the queue of the session as it
    // is in memory now, not a detached copy.
    for (let again = 0; again < 3 && !this.isCurrent(entry); again++) entry = await this.get(chatId);
    const ended = entry.session.state === 'ended' && this.live.get(chatId) !== entry;
    if (ended) this.endedInUse.set(chatId, entry);
    const run = entry.tail.then(
      () => fn(entry),
      () => fn(entry),
    );
    const tail = run.catch(() => undefined).then(() => {
      if (entry.tail !== tail) return;
      // Nothing else queued on a session left dormant: it goes back out of memory; an ended one is let go.
      this.park(entry);
      if (this.endedInUse.get(chatId) === entry) this.endedInUse.delete(chatId);
    });
    entry.tail = tail;
    return run;
  }

  /** Commits a change to the store, then to memory, then tells the listeners. Call inside `serial`. */
  async commit(entry: LiveSession, change: Change, file?: { fileId: string; bytes: Buffer }): Promise<void> {
    if (change.events.length === 0 && change.session === entry.session) return;
    const outbox = this.outboxFor(change.session, change.events);
    try {
      // One literal with every field (not `{ ...change, outbox, ... }`, see buildNotification in
      // chat/notification.ts): the same hidden class for every record.
      await guard(() =>
        this.store.recordChange({
          session: change.session,
          events: change.events,
          outbox: durable(outbox),
          file,
          fence: { owner: this.alias, epoch: entry.epoch },
          onlyEventFields: file === undefined && entry.unsaved !== true && onlyEventFieldsChanged(entry.session, change.session, change.events),
          removeFiles: filesDeleted(entry.session, change.session),
        }),
      );
    } catch (err) {
      // Another node restored the session meanwhile (this one was thought dead): it is theirs now. Any other
      // failure may still have been committed (a connection lost during COMMIT): memory is no longer known
      // to match the store, so the session is read from the store again at its next use (a retry with the
      // same request id is then recognised as done).
      if (this.live.get(change.session.chatId) === entry) {
        if (err instanceof ParleyError && err.code === 'NOT_OWNER') this.lose(change.session.chatId);
        else entry.stale = true;
      }
      throw err;
    }
    if (this.live.get(change.session.chatId) === entry) this.account(entry.session, change.session);
    entry.session = change.session;
    entry.unsaved = false;
    this.emit(change.session, change.events, outbox);
    // An ended session leaves memory (a late refresh reads it from the store) once what is queued on it ran.
    if (change.session.state === 'ended' && this.live.get(change.session.chatId) === entry) {
      this.live.delete(change.session.chatId);
      this.endedInUse.set(change.session.chatId, entry);
    }
  }

  /**
   * The session's transcript from index `from` to the last event memory knows of, read from the store.
   * Call inside `serial`: every change memory holds is committed then. Nothing is read when `from` is past
   * the end (a client up to date).
   */
  async transcript(entry: LiveSession, from: number): Promise<ChatEvent[]> {
    const last = entry.session.lastIndex;
    if (from > last) return [];
    const events = await guard(() => this.store.loadEvents(entry.session.chatId, Math.max(1, from)));
    // A write whose outcome is unknown (entry.stale) may have stored more than memory says: not shown yet.
    return (events.at(-1)?.index ?? 0) > last ? events.filter((e) => e.index <= last) : events;
  }

  /** Tells the listeners about a session that changed without a stored change (a routing deadline passed). */
  announce(session: Session): void {
    this.emit(session, [], []);
  }

  /** An agent's workbin, from the store (dormant sessions are not held in memory). */
  async workbin(agentId: string, limit = 500): Promise<Session[]> {
    const stored = await guard(() => this.store.listWorkbin(agentId, limit));
    return stored.map((s) => this.live.get(s.chatId)?.session ?? upgradeSession(s)).filter((s) => s.state === 'dormant');
  }

  /** Recently updated sessions in these states (contact history), newest first; live state where loaded. */
  async recent(states: readonly Session['state'][], limit: number): Promise<Session[]> {
    const stored = await guard(() => this.store.loadRecentSessions(states, limit));
    return stored.map((s) => this.live.get(s.chatId)?.session ?? upgradeSession(s));
  }

  /** File bytes straight from the store (files are not kept in memory). */
  readFile(chatId: string, fileId: string): Promise<Buffer | undefined> {
    return guard(() => this.store.loadFile(chatId, fileId));
  }

  private emit(session: Session, events: readonly ChatEvent[], outbox: readonly Notification[]): void {
    for (const fn of this.listeners) {
      try {
        fn(session, events, outbox);
      } catch {
        // A listener's failure is its own; the change is committed.
      }
    }
  }
}

/** Store failures become a retryable UNAVAILABLE; domain errors pass through. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ParleyError && err.code !== 'INTERNAL') throw err;
    throw new ParleyError('UNAVAILABLE', 'The chat store is not available; retry.', { cause: err });
  }
}
