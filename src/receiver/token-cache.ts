/**
 * The receiver's durable cache of the sessions it runs for browsers: the Chat API v2 tokens (chatId,
 * userId, secureKey, alias), the device id its pushes carry, the browser's own session token, and the
 * ping schedule. SQLite (its own file), synchronous: the receiver's writes are few and small.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

export interface CachedSession {
  /** The browser's secret for this session (never the secureKey). */
  readonly browserToken: string;
  readonly deviceId: string;
  readonly serviceName: string;
  readonly chatId: string;
  readonly userId: string;
  readonly secureKey: string;
  /** The chat server node (app dbid) that served the last request. */
  readonly alias: string;
  readonly nickname: string;
  readonly createdAt: number;
  /** nextPosition of the last reply seen: events below it are known. */
  readonly nextPosition: number;
  readonly ended: boolean;
  /** When the next rare ping is due. */
  readonly nextPingAt: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS receiver_sessions (
  browser_token TEXT PRIMARY KEY,
  device_id TEXT NOT NULL UNIQUE,
  chat_id TEXT NOT NULL,
  alias TEXT NOT NULL,
  ended INTEGER NOT NULL,
  doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receiver_sessions_alias ON receiver_sessions (alias) WHERE ended = 0;`;

/** When a session was first stored as ended (epoch ms), for the retention of ended chats; added later. */
const ENDED_AT = `ALTER TABLE receiver_sessions ADD COLUMN ended_at INTEGER;
CREATE INDEX receiver_sessions_ended ON receiver_sessions (ended_at) WHERE ended = 1;`;

export class TokenCache {
  private readonly db: Database.Database;
  private readonly byDevice = new Map<string, CachedSession>();
  private readonly byToken = new Map<string, CachedSession>();
  private readonly upsert;

  private readonly purge;

  constructor(
    path: string,
    private readonly now: () => number = Date.now,
  ) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    const columns = this.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all('receiver_sessions') as string[];
    if (!columns.includes('ended_at')) this.db.exec(ENDED_AT);
    // Ended chats without an end time (a cache from before the retention, or rows an older version wrote
    // after a downgrade) count as ended now: kept one more retention, then deleted like the others.
    this.db.prepare('UPDATE receiver_sessions SET ended_at = ? WHERE ended = 1 AND ended_at IS NULL').run(now());
    // ended_at is set when a session is first stored as ended and kept after that.
    this.upsert = this.db.prepare(
      `INSERT INTO receiver_sessions (browser_token, device_id, chat_id, alias, ended, doc, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (browser_token) DO UPDATE SET alias = excluded.alias, ended = excluded.ended, doc = excluded.doc,
         ended_at = CASE WHEN excluded.ended = 0 THEN NULL ELSE coalesce(receiver_sessions.ended_at, excluded.ended_at) END`,
    );
    this.purge = this.db.prepare('DELETE FROM receiver_sessions WHERE ended = 1 AND ended_at < ?');
    for (const doc of this.db.prepare('SELECT doc FROM receiver_sessions WHERE ended = 0').pluck().all() as string[]) {
      this.remember(JSON.parse(doc) as CachedSession);
    }
  }

  private remember(s: CachedSession): void {
    this.byDevice.set(s.deviceId, s);
    this.byToken.set(s.browserToken, s);
  }

  put(s: CachedSession): void {
    this.upsert.run(s.browserToken, s.deviceId, s.chatId, s.alias, s.ended ? 1 : 0, JSON.stringify(s), s.ended ? this.now() : null);
    if (s.ended) {
      this.byDevice.delete(s.deviceId);
      this.byToken.delete(s.browserToken);
    } else {
      this.remember(s);
    }
  }

  byDeviceId(deviceId: string): CachedSession | undefined {
    return this.byDevice.get(deviceId);
  }

  byBrowserToken(token: string): CachedSession | undefined {
    return this.byToken.get(token);
  }

  /** An ended session by its browser token (a browser that comes back to a finished chat). */
  endedByBrowserToken(token: string): CachedSession | undefined {
    const doc = this.db.prepare('SELECT doc FROM receiver_sessions WHERE browser_token = ?').pluck().get(token) as string | undefined;
    return doc === undefined ? undefined : (JSON.parse(doc) as CachedSession);
  }

  /** Deletes the ended sessions stored as ended before `before` (epoch ms); how many went. */
  purgeEnded(before: number): number {
    return this.purge.run(before).changes;
  }

  /** Every running session (served by any node). */
  all(): IterableIterator<CachedSession> {
    return this.byDevice.values();
  }

  /** Running sessions last served by this chat server node. */
  onNode(alias: string): CachedSession[] {
    return [...this.byDevice.values()].filter((s) => s.alias === alias);
  }

  get size(): number {
    return this.byDevice.size;
  }

  close(): void {
    this.db.close();
  }
}
