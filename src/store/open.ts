/** Opens the store the config names: the embedded SQLite file or a shared PostgreSQL. */
import type { Config } from '../config/catalogue.ts';
import type { Store } from './port.ts';
import { openSqliteStore } from './sqlite.ts';

export async function openStore(config: Pick<Config, 'store'>): Promise<Store> {
  const s = config.store;
  if (s.type === 'postgres') {
    const { openPostgresStore } = await import('./postgres.ts');
    return openPostgresStore({ url: s.url, poolSize: s.poolSize });
  }
  return openSqliteStore({ path: s.path, synchronous: s.synchronous });
}
