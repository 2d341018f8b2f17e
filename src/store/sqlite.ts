/**
 * SQLite adapter of the Store port (better-sqlite3, WAL).
 *
 * Writes are group-committed: every write issued during one event-loop turn goes into one transaction
 * at the next `setImmediate`, and each promise resolves only after that transaction committed. If a batch
 * fails, its writes are retried one by one so that one bad write cannot fail its neighbours.
 *
 * The event loop never waits for the write lock. A transaction starts with BEGIN IMMEDIATE on a
 * connection whose busy timeout is 0; when the lock is taken (the checkpointer's WAL restart holds it for
 * a few ms), the batch stays queued and is tried again 1 ms later, while requests go on being served.
 * SQLite's own busy handler would sleep the whole process instead, in steps of 1, 2, 5, 10 ms...
 * Reads never need that lock in WAL mode.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { isFinal, type Notification } from '../chat/notification.ts';
import type { ChatEvent, Session, SessionState } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import { CHECKPOINTER_DEFAULTS, JOURNAL_SIZE_LIMIT, startCheckpointer, type Checkpointer, type CheckpointerOptions } from './checkpointer.ts';
import type { ChangeRecord, NodeRecord, Ownership, SessionSummary, Store } from './port.ts';

export interface SqliteStoreOptions {
  readonly path: string;
  readonly synchronous: 'normal' | 'full';
  /** How long writes wait for a taken write lock before they fail with UNAVAILABLE (default 5 s). */
  readonly lockWaitMs?: number;
  /** Checkpointer settings (tests use small ones). */
  readonly checkpoints?: CheckpointerOptions;
}

/** Schema versions in order (`user_version` = how many ran); exported for the migration test. */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE sessions (
     chat_id TEXT PRIMARY KEY,
     service TEXT NOT NULL,
     state TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     doc TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE INDEX sessions_open ON sessions (state, updated_at) WHERE state <> 'ended';
   CREATE TABLE events (
     chat_id TEXT NOT NULL,
     idx INTEGER NOT NULL,
     doc TEXT NOT NULL,
     PRIMARY KEY (chat_id, idx)
   ) WITHOUT ROWID;
   CREATE TABLE files (
     chat_id TEXT NOT NULL,
     file_id TEXT NOT NULL,
     bytes BLOB NOT NULL,
     PRIMARY KEY (chat_id, file_id)
   ) WITHOUT ROWID;`,
  `CREATE TABLE notifications (
     id TEXT PRIMARY KEY,
     chat_id TEXT NOT NULL,
     active INTEGER NOT NULL,
     doc TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE INDEX notifications_active ON notifications (active) WHERE active = 1;`,
  `ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
   ALTER TABLE sessions ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;
   UPDATE sessions SET owner = json_extract(doc, '$.alias');
   CREATE INDEX sessions_owner ON sessions (owner, updated_at) WHERE state <> 'ended';
   CREATE INDEX notifications_chat ON notifications (chat_id) WHERE active = 1;
   CREATE TABLE nodes (
     app_dbid TEXT PRIMARY KEY,
     pid INTEGER NOT NULL,
     url TEXT NOT NULL,
     started_at INTEGER NOT NULL,
     heartbeat_at INTEGER NOT NULL
   ) WITHOUT ROWID;`,
  `ALTER TABLE sessions ADD COLUMN workbin_agent TEXT;
   UPDATE sessions SET workbin_agent = json_extract(doc, '$.workbin.agentId') WHERE state = 'dormant';
   CREATE INDEX sessions_workbin ON sessions (workbin_agent, updated_at) WHERE workbin_agent IS NOT NULL;`,
  // Fewer pages written per message: a rowid table (a session document over about 1,000 bytes overflowed
  // the index b-tree of a WITHOUT ROWID table onto a second page) and indexes without updated_at (which
  // changes with every message, so each index moved an entry on every send). A message now rewrites the
  // session's table page and adds its event: 2 WAL frames instead of 5.
  `CREATE TABLE sessions_v5 (
     chat_id TEXT NOT NULL PRIMARY KEY,
     service TEXT NOT NULL,
     state TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     doc TEXT NOT NULL,
     owner TEXT NOT NULL DEFAULT '',
     epoch INTEGER NOT NULL DEFAULT 1,
     workbin_agent TEXT
   );
   INSERT INTO sessions_v5 (chat_id, service, state, updated_at, doc, owner, epoch, workbin_agent)
     SELECT chat_id, service, state, updated_at, doc, owner, epoch, workbin_agent FROM sessions;
   DROP TABLE sessions;
   ALTER TABLE sessions_v5 RENAME TO sessions;
   CREATE INDEX sessions_open ON sessions (state) WHERE state <> 'ended';
   CREATE INDEX sessions_owner ON sessions (owner) WHERE state <> 'ended';
   CREATE INDEX sessions_workbin ON sessions (workbin_agent, updated_at) WHERE workbin_agent IS NOT NULL;
   CREATE TABLE wal_restarts (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);`,
];

interface PendingWrite {
  run(): unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

const LOCK_WAIT_MS = 5_000;

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'));
}

/** The indexed workbin owner of a dormant session (null otherwise). */
function workbinAgent(s: Session): string | null {
  return s.state === 'dormant' ? (s.workbin?.agentId ?? null) : null;
}

export function openSqliteStore(opts: SqliteStoreOptions): Store {
  if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
  const db = new Database(opts.path);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma(`busy_timeout = ${LOCK_WAIT_MS}`);
  migrate(db);
  // From here on a taken write lock is handled by the write queue, never by sleeping (see above).
  db.pragma('busy_timeout = 0');
  // Checkpoints run in a worker thread, not inside a request (see checkpointer.ts).
  const lockWaitMs = opts.lockWaitMs ?? LOCK_WAIT_MS;
  if (opts.path === ':memory:') return new SqliteStore(db, lockWaitMs);
  db.pragma('wal_autocheckpoint = 0');
  db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
  return new SqliteStore(db, lockWaitMs, startCheckpointer(opts.path, opts.checkpoints ?? CHECKPOINTER_DEFAULTS));
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] ?? '');
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

class SqliteStore implements Store {
  private pending: PendingWrite[] = [];
  private scheduled = false;
  /** When the write lock was first found taken by the queued writes (undefined: it was not). */
  private busySince: number | undefined;
  private closed = false;
  private readonly stmt;

  constructor(
    private readonly db: Database.Database,
    private readonly lockWaitMs: number,
    private readonly checkpointer?: Checkpointer,
  ) {
    this.stmt = {
      insertSession: db.prepare('INSERT INTO sessions (chat_id, service, state, updated_at, doc, workbin_agent, owner, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, 1)'),
      updateSession: db.prepare('UPDATE sessions SET state = ?, updated_at = ?, doc = ?, workbin_agent = ? WHERE chat_id = ?'),
      updateFenced: db.prepare('UPDATE sessions SET state = ?, updated_at = ?, doc = ?, workbin_agent = ? WHERE chat_id = ? AND owner = ? AND epoch = ?'),
      // The same when state and workbin agent stay as they are (most changes): no indexed column is set,
      // so no index is touched. 0 changes when they differ; the full update follows.
      updateDoc: db.prepare('UPDATE sessions SET updated_at = ?, doc = ? WHERE chat_id = ? AND state = ? AND workbin_agent IS ?'),
      updateDocFenced: db.prepare(
        'UPDATE sessions SET updated_at = ?, doc = ? WHERE chat_id = ? AND state = ? AND workbin_agent IS ? AND owner = ? AND epoch = ?',
      ),
      workbin: db.prepare('SELECT doc FROM sessions WHERE workbin_agent = ? ORDER BY updated_at DESC LIMIT ?').pluck(),
      loadOwned: db.prepare('SELECT doc, owner, epoch FROM sessions WHERE chat_id = ?'),
      isOwned: db.prepare('SELECT 1 FROM sessions WHERE chat_id = ? AND owner = ? AND epoch = ?').pluck(),
      claim: db.prepare('UPDATE sessions SET owner = ?, epoch = epoch + 1 WHERE chat_id = ? AND owner = ? AND epoch = ?'),
      renew: db.prepare("UPDATE sessions SET epoch = epoch + 1 WHERE owner = ? AND state <> 'ended'"),
      listOwned: db.prepare(
        "SELECT chat_id AS chatId, service AS serviceName, state, updated_at AS updatedAt FROM sessions WHERE owner = ? AND state <> 'ended' ORDER BY updated_at, chat_id",
      ),
      activeFor: db.prepare('SELECT doc FROM notifications WHERE chat_id = ? AND active = 1').pluck(),
      upsertNode: db.prepare(
        'INSERT INTO nodes (app_dbid, pid, url, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (app_dbid) DO UPDATE SET pid = excluded.pid, url = excluded.url, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at',
      ),
      heartbeat: db.prepare('UPDATE nodes SET heartbeat_at = ? WHERE app_dbid = ?'),
      listNodes: db.prepare('SELECT app_dbid AS appDbid, pid, url, started_at AS startedAt, heartbeat_at AS heartbeatAt FROM nodes ORDER BY app_dbid'),
      removeNode: db.prepare('DELETE FROM nodes WHERE app_dbid = ?'),
      insertEvent: db.prepare('INSERT INTO events (chat_id, idx, doc) VALUES (?, ?, ?)'),
      lastIndex: db.prepare('SELECT max(idx) AS m FROM events WHERE chat_id = ?').pluck(),
      loadSession: db.prepare('SELECT doc FROM sessions WHERE chat_id = ?').pluck(),
      loadEvents: db.prepare('SELECT doc FROM events WHERE chat_id = ? AND idx >= ? ORDER BY idx').pluck(),
      listOpen: db.prepare(
        "SELECT chat_id AS chatId, service AS serviceName, state, updated_at AS updatedAt FROM sessions WHERE state <> 'ended' ORDER BY updated_at, chat_id",
      ),
      insertFile: db.prepare('INSERT INTO files (chat_id, file_id, bytes) VALUES (?, ?, ?)'),
      loadFile: db.prepare('SELECT bytes FROM files WHERE chat_id = ? AND file_id = ?').pluck(),
      deleteFile: db.prepare('DELETE FROM files WHERE chat_id = ? AND file_id = ?'),
      upsertNotification: db.prepare(
        'INSERT INTO notifications (id, chat_id, active, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET active = excluded.active, doc = excluded.doc',
      ),
      activeNotifications: db.prepare('SELECT doc FROM notifications WHERE active = 1').pluck(),
      activeNotificationsOf: db
        .prepare('SELECT n.doc FROM notifications n JOIN sessions s ON s.chat_id = n.chat_id WHERE n.active = 1 AND s.owner = ?')
        .pluck(),
    };
  }

  createSession(c: ChangeRecord): Promise<void> {
    return this.write(() => {
      const s = c.session;
      this.stmt.insertSession.run(s.chatId, s.serviceName, s.state, s.updatedAt, JSON.stringify(s), workbinAgent(s), s.alias);
      this.applyRest(c);
    });
  }

  recordChange(c: ChangeRecord): Promise<void> {
    return this.write(() => {
      const s = c.session;
      if (c.onlyEventFields === true) {
        // Only events: the document stays (see ChangeRecord), but the write is fenced all the same.
        const f = c.fence;
        const owned = f === undefined ? this.stmt.loadSession.get(s.chatId) !== undefined : this.stmt.isOwned.get(s.chatId, f.owner, f.epoch) !== undefined;
        if (owned) return this.applyRest(c);
        this.refuse(c);
      }
      const doc = JSON.stringify(s);
      const wb = workbinAgent(s);
      const f = c.fence;
      let r =
        f === undefined
          ? this.stmt.updateDoc.run(s.updatedAt, doc, s.chatId, s.state, wb)
          : this.stmt.updateDocFenced.run(s.updatedAt, doc, s.chatId, s.state, wb, f.owner, f.epoch);
      if (r.changes !== 1) {
        r =
          f === undefined
            ? this.stmt.updateSession.run(s.state, s.updatedAt, doc, wb, s.chatId)
            : this.stmt.updateFenced.run(s.state, s.updatedAt, doc, wb, s.chatId, f.owner, f.epoch);
      }
      if (r.changes !== 1) this.refuse(c);
      this.applyRest(c);
    });
  }

  /** Why a change found no session row to write: owned by another node now, or none at all. */
  private refuse(c: ChangeRecord): never {
    const chatId = c.session.chatId;
    if (c.fence !== undefined && this.stmt.loadSession.get(chatId) !== undefined) {
      throw new ParleyError('NOT_OWNER', `session ${chatId} is no longer owned by ${c.fence.owner}@${c.fence.epoch}`);
    }
    throw new ParleyError('UNKNOWN_CHAT', `no stored session ${chatId}`);
  }

  saveNotifications(notifications: readonly Notification[]): Promise<void> {
    if (notifications.length === 0) return Promise.resolve();
    return this.write(() => {
      for (const n of notifications) this.upsertNotification(n);
    });
  }

  async loadActiveNotifications(owner?: string): Promise<Notification[]> {
    this.assertOpen();
    const docs = (owner === undefined ? this.stmt.activeNotifications.all() : this.stmt.activeNotificationsOf.all(owner)) as string[];
    return docs.map((d) => JSON.parse(d) as Notification);
  }

  /** Events, file and outbox of a change, inside the caller's transaction. */
  private applyRest(c: ChangeRecord): void {
    this.insertEvents(c.session.chatId, c.events);
    if (c.file !== undefined) this.stmt.insertFile.run(c.session.chatId, c.file.fileId, c.file.bytes);
    for (const fileId of c.removeFiles ?? []) this.stmt.deleteFile.run(c.session.chatId, fileId);
    for (const n of c.outbox ?? []) this.upsertNotification(n);
  }

  private upsertNotification(n: Notification): void {
    this.stmt.upsertNotification.run(n.id, n.chatId, isFinal(n) ? 0 : 1, JSON.stringify(n));
  }

  private insertEvents(chatId: string, events: readonly ChatEvent[]): void {
    const first = events[0];
    if (first === undefined) return;
    const last = (this.stmt.lastIndex.get(chatId) as number | null) ?? 0;
    const gap = events.findIndex((ev, k) => ev.index !== last + 1 + k);
    if (gap !== -1) {
      throw new ParleyError('INTERNAL', `event index ${events[gap]?.index} does not follow ${last + gap} in ${chatId}`);
    }
    for (const ev of events) this.stmt.insertEvent.run(chatId, ev.index, JSON.stringify(ev));
  }

  async loadSession(chatId: string): Promise<Session | undefined> {
    this.assertOpen();
    const doc = this.stmt.loadSession.get(chatId) as string | undefined;
    return doc === undefined ? undefined : (JSON.parse(doc) as Session);
  }

  async loadOwned(chatId: string): Promise<{ session: Session; ownership: Ownership } | undefined> {
    this.assertOpen();
    const row = this.stmt.loadOwned.get(chatId) as { doc: string; owner: string; epoch: number } | undefined;
    return row === undefined ? undefined : { session: JSON.parse(row.doc) as Session, ownership: { owner: row.owner, epoch: row.epoch } };
  }

  /** A claim is queued like every write, so it is ordered after every write already issued. */
  claimSession(chatId: string, expected: Ownership, newOwner: string): Promise<{ session: Session; ownership: Ownership } | undefined> {
    return this.write(() => {
      const r = this.stmt.claim.run(newOwner, chatId, expected.owner, expected.epoch);
      if (r.changes !== 1) return undefined;
      const doc = this.stmt.loadSession.get(chatId) as string;
      return { session: JSON.parse(doc) as Session, ownership: { owner: newOwner, epoch: expected.epoch + 1 } };
    });
  }

  renewOwnership(owner: string): Promise<void> {
    return this.write(() => {
      this.stmt.renew.run(owner);
    });
  }

  async listOwnedOpenSessions(owner: string): Promise<SessionSummary[]> {
    this.assertOpen();
    return this.stmt.listOwned.all(owner) as SessionSummary[];
  }

  async loadActiveNotificationsFor(chatId: string): Promise<Notification[]> {
    this.assertOpen();
    return (this.stmt.activeFor.all(chatId) as string[]).map((d) => JSON.parse(d) as Notification);
  }

  registerNode(n: NodeRecord): Promise<void> {
    return this.write(() => {
      this.stmt.upsertNode.run(n.appDbid, n.pid, n.url, n.startedAt, n.heartbeatAt);
    });
  }

  heartbeat(appDbid: string, at: number): Promise<boolean> {
    return this.write(() => this.stmt.heartbeat.run(at, appDbid).changes === 1);
  }

  async listNodes(): Promise<NodeRecord[]> {
    this.assertOpen();
    return this.stmt.listNodes.all() as NodeRecord[];
  }

  removeNode(appDbid: string): Promise<void> {
    return this.write(() => {
      this.stmt.removeNode.run(appDbid);
    });
  }

  async loadEvents(chatId: string, fromIndex: number): Promise<ChatEvent[]> {
    this.assertOpen();
    return (this.stmt.loadEvents.all(chatId, fromIndex) as string[]).map((d) => JSON.parse(d) as ChatEvent);
  }

  async listOpenSessions(): Promise<SessionSummary[]> {
    this.assertOpen();
    return this.stmt.listOpen.all() as SessionSummary[];
  }

  async listWorkbin(agentId: string, limit: number): Promise<Session[]> {
    this.assertOpen();
    return (this.stmt.workbin.all(agentId, limit) as string[]).map((d) => JSON.parse(d) as Session);
  }

  async loadRecentSessions(states: readonly SessionState[], limit: number): Promise<Session[]> {
    this.assertOpen();
    if (states.length === 0) return [];
    const marks = states.map(() => '?').join(', ');
    const rows = this.db
      .prepare(`SELECT doc FROM sessions WHERE state IN (${marks}) ORDER BY updated_at DESC LIMIT ?`)
      .pluck()
      .all(...states, limit) as string[];
    return rows.map((d) => JSON.parse(d) as Session);
  }

  async loadFile(chatId: string, fileId: string): Promise<Buffer | undefined> {
    this.assertOpen();
    return this.stmt.loadFile.get(chatId, fileId) as Buffer | undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // The last writes may wait for the lock (blocking is fine now), then whatever could not be written fails.
    this.db.pragma(`busy_timeout = ${this.lockWaitMs}`);
    this.flush();
    this.closed = true;
    for (const w of this.pending.splice(0)) w.reject(new ParleyError('UNAVAILABLE', 'The store is closed.'));
    await this.checkpointer?.stop();
    this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new ParleyError('UNAVAILABLE', 'The store is closed.');
  }

  private write<T>(run: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new ParleyError('UNAVAILABLE', 'The store is closed.'));
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits every queued write: in one transaction, or one by one when the batch fails. */
  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    let results: unknown[];
    try {
      results = this.db.transaction(() => batch.map((w) => w.run())).immediate();
    } catch (err) {
      if (isBusy(err)) return this.waitForLock(batch);
      return this.flushOneByOne(batch);
    }
    this.busySince = undefined;
    batch.forEach((w, i) => w.resolve(results[i]));
  }

  private flushOneByOne(batch: readonly PendingWrite[]): void {
    for (let i = 0; i < batch.length; i++) {
      const w = batch[i] as PendingWrite;
      let result: unknown;
      try {
        result = this.db.transaction(() => w.run()).immediate();
      } catch (err) {
        if (isBusy(err)) return this.waitForLock(batch.slice(i));
        w.reject(err);
        continue;
      }
      this.busySince = undefined;
      w.resolve(result);
    }
  }

  /** The write lock is taken: `batch` goes back to the head of the queue and is tried again shortly. */
  private waitForLock(batch: readonly PendingWrite[]): void {
    const now = Date.now();
    this.busySince ??= now;
    if (now - this.busySince > this.lockWaitMs) {
      this.busySince = undefined;
      const failed = [...batch, ...this.pending.splice(0)];
      for (const w of failed) w.reject(new ParleyError('UNAVAILABLE', `The store's write lock was taken for over ${this.lockWaitMs} ms.`));
      return;
    }
    this.pending = [...batch, ...this.pending];
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 1);
    }
  }
}
