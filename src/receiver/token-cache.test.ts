import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log.ts';
import type { GatewayClient } from './gateway-client.ts';
import { Receiver } from './receiver.ts';
import { TokenCache, type CachedSession } from './token-cache.ts';

const DAY = 86_400_000;

function session(token: string, ended: boolean): CachedSession {
  return {
    browserToken: token,
    deviceId: `dev-${token}`,
    serviceName: 'svc',
    chatId: `chat-${token}`,
    userId: 'u',
    secureKey: 'k',
    alias: '117',
    nickname: 'Ann',
    createdAt: 0,
    nextPosition: 2,
    ended,
    nextPingAt: 10 * DAY,
  };
}

describe('[receiver] ended-retention: ended chats leave the token cache after the retention', () => {
  let dir: string;
  let now = 0;
  const caches: TokenCache[] = [];
  const open = () => {
    const c = new TokenCache(join(dir, 'tokens.db'), () => now);
    caches.push(c);
    return c;
  };

  /** A cache file as written before the retention (no ended_at), with one ended chat 'legacy'. */
  const legacyCache = () => {
    const db = new Database(join(dir, 'tokens.db'));
    db.exec(`CREATE TABLE receiver_sessions (browser_token TEXT PRIMARY KEY, device_id TEXT NOT NULL UNIQUE, chat_id TEXT NOT NULL,
      alias TEXT NOT NULL, ended INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;`);
    db.prepare('INSERT INTO receiver_sessions VALUES (?, ?, ?, ?, 1, ?)').run('legacy', 'dev-legacy', 'chat-legacy', '117', JSON.stringify(session('legacy', true)));
    db.close();
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'parley-tokens-'));
    now = 1_000;
  });
  afterEach(() => {
    for (const c of caches.splice(0)) c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('deletes an ended chat stored as ended before the limit; a newer ended one and running ones stay', () => {
    const cache = open();
    cache.put(session('old', false));
    cache.put(session('old', true));
    now = 2 * DAY;
    cache.put(session('new', true));
    cache.put(session('running', false));
    // Stored again as ended later (a late push): the time it ended stays.
    now = 3 * DAY;
    cache.put(session('old', true));
    expect(cache.purgeEnded(2 * DAY)).toBe(1);
    expect(cache.endedByBrowserToken('old')).toBeUndefined();
    expect(cache.endedByBrowserToken('new')?.ended).toBe(true);
    expect(cache.byBrowserToken('running')?.ended).toBe(false);
    expect(cache.purgeEnded(10 * DAY)).toBe(1);
    expect(cache.byBrowserToken('running')).toBeDefined();
  });

  it('a cache from before the retention: its ended chats are kept one more retention from the upgrade', () => {
    legacyCache();
    now = 5 * DAY;
    const cache = open();
    expect(cache.purgeEnded(5 * DAY)).toBe(0);
    expect(cache.endedByBrowserToken('legacy')).toBeDefined();
    expect(cache.purgeEnded(5 * DAY + 1)).toBe(1);
  });

  it('ended rows written without an end time (an older version after a downgrade) get one at the next open', () => {
    const first = open();
    first.put(session('x', true));
    first.close();
    caches.splice(caches.indexOf(first), 1);
    const db = new Database(join(dir, 'tokens.db'));
    db.prepare('UPDATE receiver_sessions SET ended_at = NULL').run();
    db.close();
    now = 9 * DAY;
    const cache = open();
    expect(cache.purgeEnded(9 * DAY)).toBe(0);
    expect(cache.purgeEnded(9 * DAY + 1)).toBe(1);
  });

  it('a chat that ended, ran again and ended again counts from its last end', () => {
    const cache = open();
    cache.put(session('a', true));
    now = 2 * DAY;
    cache.put(session('a', false));
    now = 3 * DAY;
    cache.put(session('a', true));
    expect(cache.purgeEnded(2 * DAY + 1)).toBe(0);
    expect(cache.purgeEnded(3 * DAY + 1)).toBe(1);
  });

  it('the upgrade of an older cache happens once: a restart does not move the end time of its ended chats', () => {
    legacyCache();
    now = 5 * DAY;
    open().close();
    caches.splice(0);
    now = 9 * DAY;
    const cache = open();
    expect(cache.purgeEnded(5 * DAY)).toBe(0);
    expect(cache.purgeEnded(5 * DAY + 1)).toBe(1);
  });

  it('a browser coming back within the retention gets its ended chat; after the purge the token is unknown', async () => {
    const cache = open();
    cache.put(session('gone', true));
    const receiver = new Receiver(
      cache,
      { service: 'svc' } as unknown as GatewayClient,
      { now: () => now },
      { nodeGroup: 'g', pingIntervalMs: 1_800_000, endedRetentionMs: DAY, restoreConcurrency: 1, random: () => 0.5, newToken: () => 't', newDeviceId: () => 'd' },
      silentLogger,
    );
    now = DAY;
    await receiver.tick();
    expect(receiver.session('gone').ended).toBe(true);
    now = DAY + 3_600_000;
    await receiver.tick();
    expect(() => receiver.session('gone')).toThrow(expect.objectContaining({ code: 'ACCESS_DENIED' }));
  });

  it('the receiver deletes them at its first tick and then once an hour', async () => {
    const cache = open();
    cache.put(session('a', true));
    const gateway = { service: 'svc' } as unknown as GatewayClient;
    const receiver = new Receiver(
      cache,
      gateway,
      { now: () => now },
      { nodeGroup: 'g', pingIntervalMs: 1_800_000, endedRetentionMs: DAY, restoreConcurrency: 1, random: () => 0.5, newToken: () => 't', newDeviceId: () => 'd' },
      silentLogger,
    );
    now = DAY + 1_000;
    await receiver.tick();
    expect(cache.endedByBrowserToken('a')).toBeDefined();
    cache.put(session('b', true));
    now = DAY + 1_001;
    await receiver.tick();
    // Past a's retention, but the next purge is an hour after the first.
    expect(cache.endedByBrowserToken('a')).toBeDefined();
    now = DAY + 1_000 + 3_600_000;
    await receiver.tick();
    expect(cache.endedByBrowserToken('a')).toBeUndefined();
    expect(cache.endedByBrowserToken('b')).toBeDefined();
  });
});
