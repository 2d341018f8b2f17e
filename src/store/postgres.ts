/**
 * PostgreSQL adapter of the Store port (node-postgres pool), shared by several chat server nodes (HA).
 *
 * Same tables and semantics as the SQLite adapter. Every write is one transaction: a change's session
 * update, its events, its file and its outbox commit together or not at all. There is no group commit:
 * PostgreSQL runs concurrent transactions itself, so one bad write never fails another.
 *
 * Order: writes of one session (or of one node record) run in the order they were issued, one after
 * another, as SQLite's group commit does; writes of different sessions run in parallel on the pool.
 * A claim waits for the writes of its session issued before it.
 *
 * Outages: connecting is bounded by `connectTimeoutMs`, a statement by `statement_timeout` on the server
 * and by `query_timeout` in the client (a silent network), so an operation rejects (ParleyError
 * UNAVAILABLE) instead of hanging. Broken connections leave the pool, which opens new ones once
 * PostgreSQL is back; an idle connection's error is absorbed instead of crashing the process.
 */
import pg from 'pg';
import { isFinal, type Notification } from '../chat/notification.ts';
import type { ChatEvent, Session, SessionState } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import type { ChangeRecord, NodeRecord, Ownership, SessionSummary, Store } from './port.ts';

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database */
  readonly url: string;
  /** Connections of this process. */
  readonly poolSize: number;
  /** Schema that holds the tables; created when missing. Default: the server's search_path (public). */
  readonly schema?: string;
  /** Longest wait for a connection, new or from the pool (ms). Default 10 s. */
  readonly connectTimeoutMs?: number;
  /** Longest run of one statement on the server (ms). Default 15 s. */
  readonly statementTimeoutMs?: number;
  /** Longest wait for the answer to one query, whatever the network does (ms). Default statement + 5 s. */
  readonly queryTimeoutMs?: number;
  /** Told of errors of idle connections (the server restarted, the network broke); default: ignored. */
  readonly onIdleError?: (err: Error) => void;
}

/** Applied in order, each in its own transaction; the applied versions are kept in `parley_migrations`. */
const MIGRATIONS: readonly { readonly version: number; readonly sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE sessions (
        chat_id text PRIMARY KEY,
        service text NOT NULL,
        state text NOT NULL,
        updated_at bigint NOT NULL,
        owner text NOT NULL,
        epoch integer NOT NULL DEFAULT 1,
        doc text NOT NULL
      );
      CREATE INDEX sessions_open ON sessions (updated_at) WHERE state <> 'ended';
      CREATE INDEX sessions_owner ON sessions (owner, updated_at) WHERE state <> 'ended';
      CREATE INDEX sessions_recent ON sessions (state, updated_at);
      CREATE TABLE events (
        chat_id text NOT NULL,
        idx integer NOT NULL,
        doc text NOT NULL,
        PRIMARY KEY (chat_id, idx)
      );
      CREATE TABLE files (
        chat_id text NOT NULL,
        file_id text NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (chat_id, file_id)
      );
      CREATE TABLE notifications (
        id text PRIMARY KEY,
        chat_id text NOT NULL,
        active boolean NOT NULL,
        doc text NOT NULL
      );
      CREATE INDEX notifications_active ON notifications (id) WHERE active;
      CREATE INDEX notifications_chat ON notifications (chat_id) WHERE active;
      CREATE TABLE nodes (
        app_dbid text PRIMARY KEY,
        pid integer NOT NULL,
        url text NOT NULL,
        started_at bigint NOT NULL,
        heartbeat_at bigint NOT NULL
      );`,
  },
  {
    version: 2,
    sql: `
      ALTER TABLE sessions ADD COLUMN workbin_agent text;
      CREATE INDEX sessions_workbin ON sessions (workbin_agent, updated_at) WHERE workbin_agent IS NOT NULL;
    `,
  },
  {
    version: 3,
    // Lets a single statement fail itself (and so change nothing) when a check inside it fails.
    sql: `
      CREATE FUNCTION parley_fail(message text) RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = message;
      END $$;
    `,
  },
];

/**
 * A change in one statement, so one round trip instead of five (BEGIN, UPDATE, SELECT max(idx), INSERT,
 * COMMIT): the fenced session update, the events (checked to follow the stored ones, else the statement
 * fails and nothing is written), the file and the outbox. A single statement is atomic by itself.
 * Data-modifying CTEs always run to completion; the events, file and outbox go in only if the session
 * row was updated. Parameters: $1 state, $2 updated_at, $3 doc, $4 workbin agent, $5 chat id, $6 owner
 * and $7 epoch of the fence (null: none), $8 event indexes, $9 event docs, $10 file id, $11 file bytes,
 * $12-$15 outbox ids, chat ids, active flags, docs, $16 ids of files whose bytes go.
 */
const RECORD_CHANGE = `
  WITH s AS (
    UPDATE sessions SET state = $1, updated_at = $2, doc = $3, workbin_agent = $4
    WHERE chat_id = $5 AND ($6::text IS NULL OR (owner = $6 AND epoch = $7::integer))
    RETURNING chat_id
  ), last AS (
    SELECT coalesce(max(idx), 0) AS m FROM events WHERE chat_id = $5
  ), ev AS (
    INSERT INTO events (chat_id, idx, doc)
    SELECT $5, e.i, e.d FROM unnest($8::integer[], $9::text[]) WITH ORDINALITY AS e (i, d, n)
    WHERE CASE
      WHEN NOT EXISTS (SELECT 1 FROM s) THEN false
      WHEN e.i = (SELECT m FROM last) + e.n THEN true
      ELSE parley_fail('event index ' || e.i || ' does not follow ' || ((SELECT m FROM last) + e.n - 1) || ' in ' || $5)
    END
    RETURNING 1
  ), f AS (
    INSERT INTO files (chat_id, file_id, bytes) SELECT $5, $10, $11 FROM s WHERE $10::text IS NOT NULL
    RETURNING 1
  ), rm AS (
    DELETE FROM files WHERE chat_id = $5 AND file_id = ANY($16::text[]) AND EXISTS (SELECT 1 FROM s)
    RETURNING 1
  ), o AS (
    INSERT INTO notifications (id, chat_id, active, doc)
    SELECT * FROM unnest($12::text[], $13::text[], $14::boolean[], $15::text[]) WHERE EXISTS (SELECT 1 FROM s)
    ON CONFLICT (id) DO UPDATE SET chat_id = excluded.chat_id, active = excluded.active, doc = excluded.doc
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM s)::integer AS updated, EXISTS (SELECT 1 FROM sessions WHERE chat_id = $5) AS known`;

/** Of notifications with the same id, the last one given (an upsert of all must not name an id twice). */
function latestById(notifications: readonly Notification[]): Notification[] {
  const byId = new Map<string, Notification>();
  for (const n of notifications) {
    byId.delete(n.id);
    byId.set(n.id, n);
  }
  return [...byId.values()];
}

/**
 * Can PostgreSQL hold this text at all? It refuses NUL in text (SQLSTATE 22021), so no stored id has one:
 * an id with NUL (from a URL's %00) is simply unknown, as in SQLite, not a store error.
 */
function storable(id: string): boolean {
  return !id.includes('\u0000');
}

/** First key of the migration advisory lock ("prly"); the second is the hash of the schema name. */
const MIGRATION_LOCK = 0x70726c79;

/** The indexed workbin owner of a dormant session (null otherwise). */
function workbinAgent(s: Session): string | null {
  return s.state === 'dormant' ? (s.workbin?.agentId ?? null) : null;
}

export async function openPostgresStore(opts: PostgresStoreOptions): Promise<Store> {
  if (!Number.isInteger(opts.poolSize) || opts.poolSize < 1) throw new ParleyError('CONFIG_INVALID', 'store pool-size must be a positive integer.');
  if (opts.schema !== undefined) checkSchemaName(opts.schema);
  const statementTimeout = opts.statementTimeoutMs ?? 15_000;
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    statement_timeout: statementTimeout,
    query_timeout: opts.queryTimeoutMs ?? statementTimeout + 5_000,
    idle_in_transaction_session_timeout: Math.max(statementTimeout * 2, 30_000),
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'parley',
    ...(opts.schema === undefined ? {} : { options: `-c search_path=${escapeOption(pg.escapeIdentifier(opts.schema))}` }),
  });
  // An idle connection that breaks (server restart, network) emits 'error' on the pool; unhandled, it
  // would crash the process. The pool drops that connection and opens a new one when next needed.
  pool.on('error', (err) => opts.onIdleError?.(err));
  try {
    await migrate(pool, opts.schema);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw wrap(err);
  }
  return new PostgresStore(pool);
}

/** Schema names go into the connection options: no quotes, backslashes or control characters. */
function checkSchemaName(schema: string): void {
  if (schema.length === 0 || Buffer.byteLength(schema) > 63 || /["\\\u0000-\u001f]/.test(schema)) {
    throw new ParleyError('CONFIG_INVALID', `Invalid PostgreSQL schema name ${JSON.stringify(schema)}.`);
  }
}

/** Escapes a value for the libpq `options` string, which splits on whitespace and honours backslashes. */
function escapeOption(value: string): string {
  return value.replace(/[\\\s]/g, (c) => `\\${c}`);
}

async function migrate(pool: pg.Pool, schema: string | undefined): Promise<void> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error): void => {
    broken = err;
  };
  client.on('error', onError);
  try {
    for (;;) {
      await client.query('BEGIN');
      try {
        // Serializes nodes that start at once (per schema); released at COMMIT or ROLLBACK.
        await client.query('SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2::text, current_schema()::text, \'\')))', [
          MIGRATION_LOCK,
          schema ?? null,
        ]);
        if (schema !== undefined) {
          await client.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(schema)}`);
          // The search_path names the schema that may only now exist: make this transaction see it.
          await client.query("SELECT set_config('search_path', $1, true)", [pg.escapeIdentifier(schema)]);
        }
        await client.query(
          'CREATE TABLE IF NOT EXISTS parley_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
        );
        const applied = new Set((await client.query<{ version: number }>('SELECT version FROM parley_migrations')).rows.map((r) => r.version));
        const next = MIGRATIONS.find((m) => !applied.has(m.version));
        if (next !== undefined) {
          await client.query(next.sql);
          await client.query('INSERT INTO parley_migrations (version) VALUES ($1)', [next.version]);
        }
        await client.query('COMMIT');
        if (next === undefined) return;
      } catch (err) {
        await client.query('ROLLBACK').catch((e: unknown) => {
          broken ??= e instanceof Error ? e : new Error(String(e));
        });
        throw err;
      }
    }
  } catch (err) {
    broken ??= isConnectionFailure(err) ? (err as Error) : undefined;
    throw err;
  } finally {
    client.removeListener('error', onError);
    client.release(broken);
  }
}

/** Node and socket errors of a connection that is gone or never came. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** The connection is unusable (or never opened): no ROLLBACK on it, it leaves the pool. */
function isConnectionFailure(err: unknown): boolean {
  if (err instanceof AggregateError && err.errors.some(isConnectionFailure)) return true;
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code)) return true;
    // connection_exception, admin/crash shutdown, cannot_connect_now, too_many_connections
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') return true;
  }
  return /connection terminated|timeout exceeded when trying to connect|query read timeout|not queryable|connection error/i.test(err.message);
}

/** Outages become a retryable UNAVAILABLE; a statement timeout too. Other errors pass as they are. */
function wrap(err: unknown): unknown {
  if (err instanceof ParleyError) return err;
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  if (isConnectionFailure(err) || code === '57014') {
    const why = err instanceof Error && err.message !== '' ? err.message : String(code ?? err);
    return new ParleyError('UNAVAILABLE', `The PostgreSQL store is not available (${why}); retry.`, { cause: err });
  }
  return err;
}

/**
 * Runs tasks in the order they were issued per key; tasks with no common key run concurrently.
 * Tails never reject.
 */
class KeyedOrder {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(keys: readonly string[], task: () => Promise<T>): Promise<T> {
    const unique = [...new Set(keys)];
    const before: Promise<void>[] = [];
    for (const k of unique) {
      const t = this.tails.get(k);
      if (t !== undefined) before.push(t);
    }
    const result = before.length === 0 ? task() : Promise.all(before).then(task);
    const done = result.then(
      () => undefined,
      () => undefined,
    );
    for (const k of unique) this.tails.set(k, done);
    void done.then(() => {
      for (const k of unique) if (this.tails.get(k) === done) this.tails.delete(k);
    });
    return result;
  }

  /** Settles when every task issued so far has. */
  async drain(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()]);
  }
}

interface SummaryRow {
  chat_id: string;
  service: string;
  state: SessionState;
  updated_at: string;
}

interface NodeRow {
  app_dbid: string;
  pid: number;
  url: string;
  started_at: string;
  heartbeat_at: string;
}

const SUMMARY_COLUMNS = 'chat_id, service, state, updated_at';

function toSummary(r: SummaryRow): SessionSummary {
  return { chatId: r.chat_id, serviceName: r.service, state: r.state, updatedAt: Number(r.updated_at) };
}

const sessionKey = (chatId: string): string => `s:${chatId}`;
const nodeKey = (appDbid: string): string => `n:${appDbid}`;

class PostgresStore implements Store {
  private closed = false;
  private readonly order = new KeyedOrder();

  private readonly statementNames = new Map<string, string>();

  constructor(private readonly pool: pg.Pool) {}

  private statementName(text: string): string {
    let name = this.statementNames.get(text);
    if (name === undefined) this.statementNames.set(text, (name = `parley_${this.statementNames.size + 1}`));
    return name;
  }

  createSession(c: ChangeRecord): Promise<void> {
    return this.write(this.keysOf(c), async (db) => {
      const s = c.session;
      await db.query('INSERT INTO sessions (chat_id, service, state, updated_at, owner, epoch, doc, workbin_agent) VALUES ($1, $2, $3, $4, $5, 1, $6, $7)', [
        s.chatId,
        s.serviceName,
        s.state,
        s.updatedAt,
        s.alias,
        JSON.stringify(s),
        workbinAgent(s),
      ]);
      await this.applyRest(db, c);
    });
  }

  recordChange(c: ChangeRecord): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    return this.order.run(this.keysOf(c), async () => {
      const s = c.session;
      const outbox = latestById(c.outbox ?? []);
      let rows: Array<{ updated: number; known: boolean }>;
      try {
        rows = await this.query<{ updated: number; known: boolean }>({ name: 'parley_record_change', text: RECORD_CHANGE }, [
          s.state,
          s.updatedAt,
          JSON.stringify(s),
          workbinAgent(s),
          s.chatId,
          c.fence?.owner ?? null,
          c.fence?.epoch ?? null,
          c.events.map((e) => e.index),
          c.events.map((e) => JSON.stringify(e)),
          c.file?.fileId ?? null,
          c.file?.bytes ?? null,
          outbox.map((n) => n.id),
          outbox.map((n) => n.chatId),
          outbox.map((n) => !isFinal(n)),
          outbox.map((n) => JSON.stringify(n)),
          c.removeFiles ?? [],
        ]);
      } catch (err) {
        const e = err as { code?: unknown; message?: unknown; constraint?: unknown };
        if (e.code === 'P0001' && typeof e.message === 'string') throw new ParleyError('INTERNAL', e.message);
        // The index check reads the statement's snapshot; a writer that added the same index and committed
        // while this statement waited for the session row shows up here instead (two writers under one
        // fence, which the per-session order and the epochs are there to prevent).
        if (e.code === '23505' && e.constraint === 'events_pkey') {
          throw new ParleyError('INTERNAL', `event index ${c.events[0]?.index ?? '?'} is already stored in ${s.chatId}`);
        }
        throw err;
      }
      const r = rows[0];
      if (r?.updated === 1) return;
      if (c.fence !== undefined && r?.known === true) {
        throw new ParleyError('NOT_OWNER', `session ${s.chatId} is no longer owned by ${c.fence.owner}@${c.fence.epoch}`);
      }
      throw new ParleyError('UNKNOWN_CHAT', `no stored session ${s.chatId}`);
    });
  }

  saveNotifications(notifications: readonly Notification[]): Promise<void> {
    if (notifications.length === 0) return Promise.resolve();
    return this.write(
      notifications.map((n) => sessionKey(n.chatId)),
      (db) => this.upsertNotifications(db, notifications),
    );
  }

  /** Events, file and outbox of a change, inside its transaction (the session row is locked by now). */
  private async applyRest(db: pg.PoolClient, c: ChangeRecord): Promise<void> {
    const chatId = c.session.chatId;
    await this.insertEvents(db, chatId, c.events);
    if (c.file !== undefined) {
      await db.query('INSERT INTO files (chat_id, file_id, bytes) VALUES ($1, $2, $3)', [chatId, c.file.fileId, c.file.bytes]);
    }
    if (c.outbox !== undefined && c.outbox.length > 0) await this.upsertNotifications(db, c.outbox);
  }

  private async insertEvents(db: pg.PoolClient, chatId: string, events: readonly ChatEvent[]): Promise<void> {
    const first = events[0];
    if (first === undefined) return;
    const r = await db.query<{ m: number | null }>('SELECT max(idx) AS m FROM events WHERE chat_id = $1', [chatId]);
    const last = r.rows[0]?.m ?? 0;
    const gap = events.findIndex((ev, k) => ev.index !== last + 1 + k);
    if (gap !== -1) {
      throw new ParleyError('INTERNAL', `event index ${events[gap]?.index} does not follow ${last + gap} in ${chatId}`);
    }
    await db.query('INSERT INTO events (chat_id, idx, doc) SELECT $1, i, d FROM unnest($2::integer[], $3::text[]) AS e (i, d)', [
      chatId,
      events.map((e) => e.index),
      events.map((e) => JSON.stringify(e)),
    ]);
  }

  /** Upsert by id; of one id given twice, the later state wins (as written one by one). */
  private async upsertNotifications(db: pg.PoolClient, notifications: readonly Notification[]): Promise<void> {
    const list = latestById(notifications);
    await db.query(
      `INSERT INTO notifications (id, chat_id, active, doc)
       SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::text[])
       ON CONFLICT (id) DO UPDATE SET chat_id = excluded.chat_id, active = excluded.active, doc = excluded.doc`,
      [list.map((n) => n.id), list.map((n) => n.chatId), list.map((n) => !isFinal(n)), list.map((n) => JSON.stringify(n))],
    );
  }

  async loadSession(chatId: string): Promise<Session | undefined> {
    if (!storable(chatId)) return undefined;
    const rows = await this.read<{ doc: string }>('SELECT doc FROM sessions WHERE chat_id = $1', [chatId]);
    const row = rows[0];
    return row === undefined ? undefined : (JSON.parse(row.doc) as Session);
  }

  async loadOwned(chatId: string): Promise<{ session: Session; ownership: Ownership } | undefined> {
    if (!storable(chatId)) return undefined;
    const rows = await this.read<{ doc: string; owner: string; epoch: number }>('SELECT doc, owner, epoch FROM sessions WHERE chat_id = $1', [chatId]);
    const row = rows[0];
    return row === undefined ? undefined : { session: JSON.parse(row.doc) as Session, ownership: { owner: row.owner, epoch: row.epoch } };
  }

  claimSession(chatId: string, expected: Ownership, newOwner: string): Promise<{ session: Session; ownership: Ownership } | undefined> {
    if (this.closed) return Promise.reject(closedError());
    if (!storable(chatId)) return Promise.resolve(undefined);
    // Ordered after every write of this session already issued, like SQLite's flush before a claim.
    return this.order.run([sessionKey(chatId)], async () => {
      const rows = await this.query<{ epoch: number; doc: string }>('UPDATE sessions SET owner = $1, epoch = epoch + 1 WHERE chat_id = $2 AND owner = $3 AND epoch = $4 RETURNING epoch, doc', [
        newOwner,
        chatId,
        expected.owner,
        expected.epoch,
      ]);
      const row = rows[0];
      return row === undefined ? undefined : { session: JSON.parse(row.doc) as Session, ownership: { owner: newOwner, epoch: row.epoch } };
    });
  }

  async renewOwnership(owner: string): Promise<void> {
    this.assertOpen();
    await this.query("UPDATE sessions SET epoch = epoch + 1 WHERE owner = $1 AND state <> 'ended'", [owner]);
  }

  async listOwnedOpenSessions(owner: string): Promise<SessionSummary[]> {
    const rows = await this.read<SummaryRow>(
      `SELECT ${SUMMARY_COLUMNS} FROM sessions WHERE owner = $1 AND state <> 'ended' ORDER BY updated_at, chat_id`,
      [owner],
    );
    return rows.map(toSummary);
  }

  async loadEvents(chatId: string, fromIndex: number): Promise<ChatEvent[]> {
    if (!storable(chatId)) return [];
    const rows = await this.read<{ doc: string }>('SELECT doc FROM events WHERE chat_id = $1 AND idx >= $2 ORDER BY idx', [chatId, fromIndex]);
    return rows.map((r) => JSON.parse(r.doc) as ChatEvent);
  }

  async listOpenSessions(): Promise<SessionSummary[]> {
    const rows = await this.read<SummaryRow>(`SELECT ${SUMMARY_COLUMNS} FROM sessions WHERE state <> 'ended' ORDER BY updated_at, chat_id`, []);
    return rows.map(toSummary);
  }

  async listWorkbin(agentId: string, limit: number): Promise<Session[]> {
    this.assertOpen();
    const rows = await this.read<{ doc: string }>('SELECT doc FROM sessions WHERE workbin_agent = $1 ORDER BY updated_at DESC LIMIT $2', [agentId, limit]);
    return rows.map((r) => JSON.parse(r.doc) as Session);
  }

  async loadRecentSessions(states: readonly SessionState[], limit: number): Promise<Session[]> {
    this.assertOpen();
    if (states.length === 0) return [];
    const rows = await this.read<{ doc: string }>('SELECT doc FROM sessions WHERE state = ANY($1::text[]) ORDER BY updated_at DESC LIMIT $2', [
      [...states],
      limit,
    ]);
    return rows.map((r) => JSON.parse(r.doc) as Session);
  }

  async loadFile(chatId: string, fileId: string): Promise<Buffer | undefined> {
    if (!storable(chatId) || !storable(fileId)) return undefined;
    const rows = await this.read<{ bytes: Buffer }>('SELECT bytes FROM files WHERE chat_id = $1 AND file_id = $2', [chatId, fileId]);
    return rows[0]?.bytes;
  }

  async loadActiveNotifications(owner?: string): Promise<Notification[]> {
    const rows =
      owner === undefined
        ? await this.read<{ doc: string }>('SELECT doc FROM notifications WHERE active ORDER BY id', [])
        : await this.read<{ doc: string }>(
            'SELECT n.doc FROM notifications n JOIN sessions s ON s.chat_id = n.chat_id WHERE n.active AND s.owner = $1 ORDER BY n.id',
            [owner],
          );
    return rows.map((r) => JSON.parse(r.doc) as Notification);
  }

  async loadActiveNotificationsFor(chatId: string): Promise<Notification[]> {
    const rows = await this.read<{ doc: string }>('SELECT doc FROM notifications WHERE chat_id = $1 AND active ORDER BY id', [chatId]);
    return rows.map((r) => JSON.parse(r.doc) as Notification);
  }

  registerNode(n: NodeRecord): Promise<void> {
    return this.statement(
      [nodeKey(n.appDbid)],
      `INSERT INTO nodes (app_dbid, pid, url, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (app_dbid) DO UPDATE SET pid = excluded.pid, url = excluded.url, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
      [n.appDbid, n.pid, n.url, n.startedAt, n.heartbeatAt],
    );
  }

  heartbeat(appDbid: string, at: number): Promise<boolean> {
    if (this.closed) return Promise.reject(closedError());
    return this.order.run([nodeKey(appDbid)], async () => {
      const rows = await this.query<{ app_dbid: string }>('UPDATE nodes SET heartbeat_at = $1 WHERE app_dbid = $2 RETURNING app_dbid', [at, appDbid]);
      return rows.length === 1;
    });
  }

  async listNodes(): Promise<NodeRecord[]> {
    const rows = await this.read<NodeRow>('SELECT app_dbid, pid, url, started_at, heartbeat_at FROM nodes ORDER BY app_dbid', []);
    return rows.map((r) => ({ appDbid: r.app_dbid, pid: r.pid, url: r.url, startedAt: Number(r.started_at), heartbeatAt: Number(r.heartbeat_at) }));
  }

  removeNode(appDbid: string): Promise<void> {
    return this.statement([nodeKey(appDbid)], 'DELETE FROM nodes WHERE app_dbid = $1', [appDbid]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Writes already issued still commit (as SQLite flushes on close); the pool waits for borrowed connections.
    await this.order.drain();
    await this.pool.end();
  }

  private keysOf(c: ChangeRecord): string[] {
    return [sessionKey(c.session.chatId), ...(c.outbox ?? []).map((n) => sessionKey(n.chatId))];
  }

  private assertOpen(): void {
    if (this.closed) throw closedError();
  }

  private async read<R extends pg.QueryResultRow>(sql: string, params: readonly unknown[]): Promise<R[]> {
    this.assertOpen();
    return this.query<R>(sql, params);
  }

  /**
   * One statement on any pooled connection; a broken connection leaves the pool. Every statement text is
   * sent as a named prepared statement, so each connection parses and plans it once (the texts are all
   * constants of this file).
   */
  private async query<R extends pg.QueryResultRow>(sql: string | { readonly name: string; readonly text: string }, params: readonly unknown[]): Promise<R[]> {
    try {
      const named = typeof sql === 'string' ? { name: this.statementName(sql), text: sql } : sql;
      return (await this.pool.query<R>({ name: named.name, text: named.text, values: params as unknown[] })).rows;
    } catch (err) {
      throw wrap(err);
    }
  }

  /** A write of one statement (its own transaction), in issue order per key. */
  private statement(keys: readonly string[], sql: string, params: readonly unknown[]): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    return this.order.run(keys, async () => {
      await this.query(sql, params);
    });
  }

  /** A write of several statements in one transaction, in issue order per key. */
  private write(keys: readonly string[], work: (db: pg.PoolClient) => Promise<void>): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    return this.order.run(keys, () => this.transaction(work));
  }

  private async transaction<T>(work: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw wrap(err);
    }
    // A borrowed connection has no pool listener: an error between two statements must not crash the process.
    let broken: Error | undefined;
    const onError = (err: Error): void => {
      broken = err;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (isConnectionFailure(err)) {
        // PostgreSQL rolls back the transaction of a lost connection; this one is not used again.
        broken ??= err as Error;
      } else if (broken === undefined) {
        try {
          await client.query('ROLLBACK');
        } catch (e) {
          broken = e instanceof Error ? e : new Error(String(e));
        }
      }
      throw wrap(err);
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }
}

function closedError(): ParleyError {
  return new ParleyError('UNAVAILABLE', 'The store is closed.');
}
