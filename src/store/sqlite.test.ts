import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSession } from '../chat/session.ts';
import { describeStoreConformance } from './conformance.ts';
import { openSqliteStore } from './sqlite.ts';

describeStoreConformance('sqlite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-sqlite-'));
  const path = join(dir, 'test.db');
  return {
    open: async () => openSqliteStore({ path, synchronous: 'normal' }),
    reopen: async () => openSqliteStore({ path, synchronous: 'normal' }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

describe('background checkpoints', () => {
  it('moves the WAL into the database file from a worker thread, not from the writes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parley-ckpt-'));
    const path = join(dir, 'c.db');
    const store = openSqliteStore({ path, synchronous: 'normal' });
    try {
      const before = statSync(path).size;
      const writes: Array<Promise<void>> = [];
      for (let i = 0; i < 2000; i++) {
        const c = openSession({ chatId: `ck${i}`, serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'N', text: 'x'.repeat(200) }, i);
        writes.push(store.createSession(c));
      }
      await Promise.all(writes);
      // The writes themselves never checkpoint (wal_autocheckpoint = 0): the data sits in the WAL.
      expect(statSync(`${path}-wal`).size).toBeGreaterThan(100_000);
      let grown = false;
      for (let t = 0; t < 50 && !grown; t++) {
        await new Promise((r) => setTimeout(r, 100));
        grown = statSync(path).size > before + 100_000;
      }
      expect(grown).toBe(true);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
