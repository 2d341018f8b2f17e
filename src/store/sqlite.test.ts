import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
