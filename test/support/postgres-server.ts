/**
 * A throwaway PostgreSQL server for tests: initdb in a temp dir, trust auth, 127.0.0.1 on a free port,
 * no fsync. The binaries are the highest version under /usr/lib/postgresql/N/bin (Debian), else those of
 * `pg_config --bindir`, else `initdb` on the PATH; when there are none and we are root with apt-get,
 * the `postgresql` package is installed. initdb refuses to run as root, so as root the server runs as
 * the `postgres` system user (created when missing).
 *
 * Without binaries and without a way to install them, startPostgres throws: a test that needs the
 * server fails loudly instead of skipping.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { appendFile, mkdir, readFile, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from './ports.ts';

export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:PORT/parley */
  readonly url: string;
  readonly port: number;
  /** The temp dir: data/ and the server log. */
  readonly dir: string;
  /** Immediate shutdown, then the data dir is removed. */
  stop(): Promise<void>;
  /** Fast shutdown (sessions are cut) and start again on the same port and data. */
  restart(): Promise<void>;
}

const INSTALL_TIMEOUT_MS = 15 * 60_000;
const CTL_TIMEOUT_S = 60;

interface RunOptions {
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`.trim(), { cause: err }));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

function onPath(name: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (d !== '' && existsSync(join(d, name))) return join(d, name);
  }
  return undefined;
}

/** The directory with initdb and pg_ctl, or undefined. */
export function findPostgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'pg_ctl')))
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    const best = versions[0];
    if (best !== undefined) return join(root, best, 'bin');
  }
  const pgConfig = onPath('pg_config');
  if (pgConfig !== undefined) {
    try {
      const dir = execFileSync(pgConfig, ['--bindir'], { encoding: 'utf8' }).trim();
      if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir;
    } catch {
      // no usable pg_config
    }
  }
  const initdb = onPath('initdb');
  if (initdb !== undefined && onPath('pg_ctl') !== undefined) return join(initdb, '..');
  return undefined;
}

const isRoot = (): boolean => process.getuid?.() === 0;

/** Serializes installs of parallel test workers (apt and dpkg take locks of their own, but fail on them). */
async function withInstallLock<T>(fn: () => Promise<T>): Promise<T> {
  const lock = join(tmpdir(), 'parley-postgres-install.lock');
  const deadline = Date.now() + INSTALL_TIMEOUT_MS;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A lock left by a killed worker is stale after the install timeout.
      const age = Date.now() - (await stat(lock).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > INSTALL_TIMEOUT_MS) await rmdir(lock).catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
}

async function ensureBinaries(): Promise<string> {
  const found = findPostgresBinDir();
  if (found !== undefined) return found;
  const apt = onPath('apt-get');
  if (!isRoot() || apt === undefined) {
    throw new Error(
      'PostgreSQL server binaries (initdb, pg_ctl) are not installed and cannot be installed here ' +
        `(${isRoot() ? 'no apt-get' : 'not root'}). Install the "postgresql" package to run the PostgreSQL store tests.`,
    );
  }
  return withInstallLock(async () => {
    const again = findPostgresBinDir();
    if (again !== undefined) return again;
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const lockWait = ['-o', 'DPkg::Lock::Timeout=600'];
    await run(apt, [...lockWait, 'update'], { timeoutMs: INSTALL_TIMEOUT_MS, env });
    await run(apt, [...lockWait, 'install', '-y', '--no-install-recommends', 'postgresql'], { timeoutMs: INSTALL_TIMEOUT_MS, env });
    const installed = findPostgresBinDir();
    if (installed === undefined) throw new Error('apt-get installed "postgresql" but no initdb/pg_ctl was found');
    return installed;
  });
}

function userIds(name: string): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

async function ensurePostgresUser(): Promise<{ uid: number; gid: number }> {
  const known = userIds('postgres');
  if (known !== undefined) return known;
  await run(onPath('useradd') ?? '/usr/sbin/useradd', ['-r', '-M', '-d', '/var/lib/postgresql', '-s', '/bin/sh', 'postgres']).catch((err: unknown) => {
    // A parallel worker may have created it meanwhile.
    if (userIds('postgres') === undefined) throw err;
  });
  const ids = userIds('postgres');
  if (ids === undefined) throw new Error('could not create the postgres system user');
  return ids;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** argv for running a command as the postgres user when root, as ourselves otherwise. */
function asServerUser(argv: readonly string[]): [string, string[]] {
  if (!isRoot()) return [argv[0] ?? '', argv.slice(1)];
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p)) ?? onPath('runuser');
  if (runuser !== undefined) return [runuser, ['-u', 'postgres', '--', ...argv]];
  return [onPath('su') ?? '/bin/su', ['postgres', '-s', '/bin/sh', '-c', argv.map(shellQuote).join(' ')]];
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = await ensureBinaries();
  const dir = mkdtempSync(join(tmpdir(), 'parley-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  if (isRoot()) {
    const { uid, gid } = await ensurePostgresUser();
    chownSync(dir, uid, gid);
  }
  const ctl = (args: readonly string[]): Promise<string> => {
    const [file, argv] = asServerUser([join(bin, 'pg_ctl'), '-D', data, '-l', log, '-t', String(CTL_TIMEOUT_S), ...args]);
    return run(file, argv, { timeoutMs: (CTL_TIMEOUT_S + 30) * 1000 });
  };
  const serverLog = async (): Promise<string> => {
    try {
      return (await readFile(log, 'utf8')).slice(-4000);
    } catch {
      return '(no server log)';
    }
  };

  let started = false;
  const emergencyStop = (): void => {
    if (!started) return;
    try {
      const [file, argv] = asServerUser([join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', 'stop']);
      execFileSync(file, argv, { stdio: 'ignore', timeout: 10_000 });
    } catch {
      // best effort at exit
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const [initFile, initArgs] = asServerUser([
      join(bin, 'initdb'),
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '--encoding=UTF8',
      '--no-locale',
      '--no-sync',
    ]);
    await run(initFile, initArgs);
    const port = await freePort();
    // Also in postgresql.conf, so that a restart keeps them.
    const settings = {
      listen_addresses: "'127.0.0.1'",
      port: String(port),
      unix_socket_directories: `'${dir}'`,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_connections: '200',
    };
    await appendFile(join(data, 'postgresql.conf'), `\n${Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`);
    const opts = Object.entries(settings)
      .map(([k, v]) => `-c ${k}=${v.replace(/'/g, '')}`)
      .join(' ');
    process.once('exit', emergencyStop);
    started = true;
    await ctl(['-o', opts, '-w', 'start']).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}\n--- server log ---\n${await serverLog()}`, { cause: err });
    });

    const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 10_000 });
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE parley');
    } finally {
      await admin.end();
    }

    return {
      url: `postgres://postgres@127.0.0.1:${port}/parley`,
      port,
      dir,
      async restart() {
        await ctl(['-m', 'fast', '-w', 'restart']).catch(async (err: unknown) => {
          throw new Error(`${(err as Error).message}\n--- server log ---\n${await serverLog()}`, { cause: err });
        });
      },
      async stop() {
        process.removeListener('exit', emergencyStop);
        started = false;
        try {
          await ctl(['-m', 'immediate', '-w', 'stop']);
        } catch {
          // already stopped
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    emergencyStop();
    process.removeListener('exit', emergencyStop);
    throw err;
  }
}

/**
 * One server for the test file: started in beforeAll, stopped in afterAll. Read `.url` / `.server`
 * inside tests and hooks (not at collection time).
 */
export function usePostgresServer(): { readonly url: string; readonly server: PostgresServer } {
  let server: PostgresServer | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  }, INSTALL_TIMEOUT_MS + 120_000);
  afterAll(async () => {
    await server?.stop();
    server = undefined;
  }, 60_000);
  const get = (): PostgresServer => {
    if (server === undefined) throw new Error('the PostgreSQL test server is not running (use it inside tests and hooks)');
    return server;
  };
  return {
    get url() {
      return get().url;
    },
    get server() {
      return get();
    },
  };
}

/**
 * The test server and an admin pool on it for a whole test file: checks on the database, and `dropSchema`
 * for the schema each test store was opened in. Idle admin connections cut by a server restart are ignored.
 */
export function usePostgresAdmin(): { readonly url: string; readonly server: PostgresServer; readonly admin: pg.Pool; dropSchema(schema: string): Promise<void> } {
  const pgServer = usePostgresServer();
  let pool: pg.Pool | undefined;
  beforeAll(() => {
    pool = new pg.Pool({ connectionString: pgServer.url, max: 2, connectionTimeoutMillis: 5000 });
    pool.on('error', () => undefined);
  });
  afterAll(async () => {
    await pool?.end();
    pool = undefined;
  });
  const admin = (): pg.Pool => {
    if (pool === undefined) throw new Error('the admin pool is open only inside tests and hooks');
    return pool;
  };
  return {
    get url() {
      return pgServer.url;
    },
    get server() {
      return pgServer.server;
    },
    get admin() {
      return admin();
    },
    async dropSchema(schema: string) {
      await admin().query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
    },
  };
}
