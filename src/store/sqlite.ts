/**
 * SQLite adapter of the Store port (better-sqlite3, WAL).
 *
 * Writes are group-committed: every write issued during one event-loop turn goes into one transaction
 * at the next `setImmediate`, and each promise resolves only after that transaction committed. If a batch
 * fails, its writes are retried one by one so that one bad write cannot fail its neighbours.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { isFinal, type Notification } from '../chat/notification.ts';
import type { ChatEvent, Session, SessionState } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import { startCheckpointer, type Checkpointer } from './checkpointer.ts';
import type { ChangeRecord, NodeRecord, Ownership, SessionSummary, Store } from './port.ts';

export interface SqliteStoreOptions {
  readonly path: string;
  readonly synchronous: 'normal' | 'full';
}

const MIGRATIONS: readonly string[] = [
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
];

interface PendingWrite {
  run(): void;
  resolve(): void;
  reject(err: unknown): void;
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
  db.pragma('busy_timeout = 5000');
  migrate(db);
  // Checkpoints run in a worker thread, not inside a request (see checkpointer.ts).
  if (opts.path === ':memory:') return new SqliteStore(db);
  db.pragma('wal_autocheckpoint = 0');
  return new SqliteStore(db, startCheckpointer(opts.path));
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
  private closed = false;
  private readonly stmt;

  constructor(
    private readonly db: Database.Database,
    private readonly checkpointer?: Checkpointer,
  ) {
    this.stmt = {
      insertSession: db.prepare('INSERT INTO sessions (chat_id, service, state, updated_at, doc, workbin_agent, owner, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, 1)'),
      updateSession: db.prepare('UPDATE sessions SET state = ?, updated_at = ?, doc = ?, workbin_agent = ? WHERE chat_id = ?'),
      updateFenced: db.prepare('UPDATE sessions SET state = ?, updated_at = ?, doc = ?, workbin_agent = ? WHERE chat_id = ? AND owner = ? AND epoch = ?'),
      workbin: db.prepare('SELECT doc FROM sessions WHERE workbin_agent = ? ORDER BY updated_at DESC LIMIT ?').pluck(),
      loadOwned: db.prepare('SELECT doc, owner, epoch FROM sessions WHERE chat_id = ?'),
      claim: db.prepare('UPDATE sessions SET owner = ?, epoch = epoch + 1 WHERE chat_id = ? AND owner = ? AND epoch = ?'),
      renew: db.prepare("UPDATE sessions SET epoch = epoch + 1 WHERE owner = ? AND state <> 'ended'"),
      listOwned: db.prepare(
        "SELECT chat_id AS chatId, service AS serviceName, state, updated_at AS updatedAt FROM sessions WHERE owner = ? AND state <> 'ended' ORDER BY updated_at",
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
        "SELECT chat_id AS chatId, service AS serviceName, state, updated_at AS updatedAt FROM sessions WHERE state <> 'ended' ORDER BY updated_at",
      ),
      insertFile: db.prepare('INSERT INTO files (chat_id, file_id, bytes) VALUES (?, ?, ?)'),
      loadFile: db.prepare('SELECT bytes FROM files WHERE chat_id = ? AND file_id = ?').pluck(),
      upsertNotification: db.prepare(
        'INSERT INTO notifications (id, chat_id, active, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET active = excluded.active, doc = excluded.doc',
      ),
      activeNotifications: db.prepare('SELECT doc FROM notifications WHERE active = 1').pluck(),
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
      const doc = JSON.stringify(s);
      const r =
        c.fence === undefined
          ? this.stmt.updateSession.run(s.state, s.updatedAt, doc, workbinAgent(s), s.chatId)
          : this.stmt.updateFenced.run(s.state, s.updatedAt, doc, workbinAgent(s), s.chatId, c.fence.owner, c.fence.epoch);
      if (r.changes !== 1) {
        if (c.fence !== undefined && this.stmt.loadSession.get(s.chatId) !== undefined) {
          throw new ParleyError('NOT_OWNER', `session ${s.chatId} is no longer owned by ${c.fence.owner}@${c.fence.epoch}`);
        }
        throw new ParleyError('UNKNOWN_CHAT', `no stored session ${s.chatId}`);
      }
      this.applyRest(c);
    });
  }

  saveNotifications(notifications: readonly Notification[]): Promise<void> {
    if (notifications.length === 0) return Promise.resolve();
    return this.write(() => {
      for (const n of notifications) this.upsertNotification(n);
    });
  }

  async loadActiveNotifications(): Promise<Notification[]> {
    this.assertOpen();
    return (this.stmt.activeNotifications.all() as string[]).map((d) => JSON.parse(d) as Notification);
  }

  /** Events, file and outbox of a change, inside the caller's transaction. */
  private applyRest(c: ChangeRecord): void {
    this.insertEvents(c.session.chatId, c.events);
    if (c.file !== undefined) this.stmt.insertFile.run(c.session.chatId, c.file.fileId, c.file.bytes);
    for (const n of c.outbox ?? []) this.upsertNotification(n);
  }

  private upsertNotification(n: Notification): void {
    this.stmt.upsertNotification.run(n.id, n.chatId, isFinal(n) ? 0 : 1, JSON.stringify(n));
  }

  private insertEvents(chatId: string, events: readonly ChatEvent[]): void {
    const first = events[0];
    if (first === undefined) return;
    const last = (this.stmt.lastIndex.get(chatId) as number | null) ?? 0;
    if (first.index !== last + 1) {
      throw new ParleyError('INTERNAL', `event index ${first.index} does not follow ${last} in ${chatId}`);
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

  async claimSession(chatId: string, expected: Ownership, newOwner: string): Promise<{ session: Session; ownership: Ownership } | undefined> {
    this.assertOpen();
    // Flush first, so that the claim is ordered after every write already issued.
    this.flush();
    const r = this.stmt.claim.run(newOwner, chatId, expected.owner, expected.epoch);
    if (r.changes !== 1) return undefined;
    const doc = this.stmt.loadSession.get(chatId) as string;
    return { session: JSON.parse(doc) as Session, ownership: { owner: newOwner, epoch: expected.epoch + 1 } };
  }

  async renewOwnership(owner: string): Promise<void> {
    this.assertOpen();
    this.flush();
    this.stmt.renew.run(owner);
  }

  async listOwnedOpenSessions(owner: string): Promise<SessionSummary[]> {
    this.assertOpen();
    return this.stmt.listOwned.all(owner) as SessionSummary[];
  }

  async loadActiveNotificationsFor(chatId: string): Promise<Notification[]> {
    this.assertOpen();
    return (this.stmt.activeFor.all(chatId) as string[]).map((d) => JSON.parse(d) as Notification);
  }

  async registerNode(n: NodeRecord): Promise<void> {
    this.assertOpen();
    this.stmt.upsertNode.run(n.appDbid, n.pid, n.url, n.startedAt, n.heartbeatAt);
  }

  async heartbeat(appDbid: string, at: number): Promise<void> {
    this.assertOpen();
    this.stmt.heartbeat.run(at, appDbid);
  }

  async listNodes(): Promise<NodeRecord[]> {
    this.assertOpen();
    return this.stmt.listNodes.all() as NodeRecord[];
  }

  async removeNode(appDbid: string): Promise<void> {
    this.assertOpen();
    this.stmt.removeNode.run(appDbid);
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
    this.flush();
    this.closed = true;
    await this.checkpointer?.stop();
    this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new ParleyError('UNAVAILABLE', 'The store is closed.');
  }

  private write(run: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new ParleyError('UNAVAILABLE', 'The store is closed.'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ run, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    try {
      this.db.transaction(() => {
        for (const w of batch) w.run();
      })();
      for (const w of batch) w.resolve();
    } catch {
      for (const w of batch) {
        try {
          this.db.transaction(() => w.run())();
          w.resolve();
        } catch (err) {
          w.reject(err);
        }
      }
    }
  }
}
