/**
 * WAL checkpoints of the SQLite store, off the event loop: the main connection never checkpoints by itself
 * (`wal_autocheckpoint = 0`, so no request pays for one), and a worker thread with its own connection runs
 * passive checkpoints (fsyncs included), which never block writers.
 *
 * Under a steady stream of commits a passive checkpoint never finds the WAL fully copied, so the WAL would
 * grow without end; and a blocking checkpoint of a large WAL stalls every write for its whole copy (a
 * TRUNCATE of 50,000 frames held commits for 100-140 ms every 2.5 s at 5,000 sends/s). So once the WAL is
 * large, the worker catches up with passive checkpoints back to back, until one had only a few frames to
 * copy, and then restarts the WAL with a RESTART checkpoint, and makes the first write of the new WAL
 * itself (a row in `wal_restarts`), which is the write that pays the fsync of the new WAL header. Writes
 * wait meanwhile without blocking the event loop (see the write queue in sqlite.ts).
 *
 * The restart holds the write lock throughout, so it is kept short (measured at 5,000 sends/s: 13-18 ms,
 * at worst 50 ms, before; 1-2 ms, at worst 8 ms, after):
 * - the worker never sleeps in SQLite's busy handler (its 1, 2, 5, 10 ms naps were taken while holding the
 *   write lock, waiting for a reader): a restart that cannot finish at once is tried again 10 ms later;
 * - the WAL is synced without a lock before each catch-up pass and before the restart, so the syncs under
 *   the lock find little to write;
 * - `journal_size_limit` is above the size the WAL reaches between restarts: it cuts back a WAL that grew
 *   in a burst, but a steady restart no longer truncates it (cutting 20 MB off took 9 ms under the lock).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path);
// Never sleeps in SQLite's busy handler: a blocking checkpoint holds the write lock while it waits (for
// readers, in 1, 2, 5, 10 ms naps), and every write of the main thread waits with it. One that cannot
// finish at once gives up (busy) and is tried again 10 ms later.
db.pragma('busy_timeout = 0');
// Checkpoints sync the WAL and the database file all the same; only the commit of the marker row below is
// not synced on its own (the new WAL header it writes is).
db.pragma('synchronous = NORMAL');
const fs = require('node:fs');
// fsync of the WAL through a descriptor of its own, taking no lock: what the main thread appended since the
// last checkpoint reaches the disk here, so that the syncs inside the restart (which holds the write lock)
// have little left to do. SQLite locks the database and -shm files, never the WAL, so this descriptor
// cannot drop one of its POSIX locks.
let walFd;
function syncWal() {
  try {
    walFd ??= fs.openSync(workerData.path + '-wal', 'r');
    fs.fsyncSync(walFd);
  } catch (e) {}
}
db.pragma('journal_size_limit = ' + workerData.journalSizeLimit);
const mark = db.prepare('INSERT INTO wal_restarts (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at');
let stopped = false;
function passive() {
  const [r] = db.pragma('wal_checkpoint(PASSIVE)');
  return r;
}
function tick() {
  if (stopped) return;
  let again = workerData.everyMs;
  try {
    let r = passive();
    if (r && r.log >= workerData.restartFrames) {
      // The restart holds the write lock while it copies what is left and syncs the database file, so it
      // must find next to nothing left: passes follow back to back, each copying what was appended during
      // the one before, until one had only a few frames to copy. Every pass first syncs the WAL without a
      // lock, so the syncs under the lock have little to write either.
      let appended = Infinity;
      for (let i = 0; i < 4 && r && appended > workerData.catchUpFrames; i++) {
        const before = r.log;
        syncWal();
        r = passive();
        if (r) appended = r.log - before;
      }
      syncWal();
      const caughtUp = r && r.checkpointed === r.log && appended <= workerData.catchUpFrames;
      const [x] = caughtUp ? db.pragma('wal_checkpoint(RESTART)') : [undefined];
      if (x && x.busy === 0) {
        // The first write after a restart rewinds the WAL and fsyncs its new header: done here when the
        // lock is free, so that the main thread's next commit is an ordinary one.
        try { mark.run(Date.now()); } catch (e) {}
      } else {
        again = 10;
      }
    }
  } catch (e) {}
  setTimeout(tick, again);
}
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  stopped = true;
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (e) {}
  db.close();
  if (walFd !== undefined) fs.closeSync(walFd);
  process.exit(0);
});
tick();
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

export interface CheckpointerOptions {
  /** Pause between passive checkpoints when the WAL is caught up. */
  readonly everyMs: number;
  /** WAL frames (pages) from which the WAL is restarted from its beginning, once caught up. */
  readonly restartFrames: number;
  /**
   * The restart is done once a catch-up pass found at most this many frames appended during the pass
   * before it: the restart blocks writers while it copies about as many.
   */
  readonly catchUpFrames: number;
}

export const CHECKPOINTER_DEFAULTS: CheckpointerOptions = { everyMs: 200, restartFrames: 20_000, catchUpFrames: 50 };

/**
 * The WAL file is cut back to this size when it restarts (`journal_size_limit`): above the size of
 * `restartFrames` frames of 4 KB pages (20,000 frames: 82 MB) and what is appended while the restart
 * catches up, so that only a WAL that grew in a burst is truncated.
 */
export const JOURNAL_SIZE_LIMIT = 128 * 1024 * 1024;

export function startCheckpointer(path: string, options: CheckpointerOptions = CHECKPOINTER_DEFAULTS): Checkpointer {
  const module = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER, { eval: true, workerData: { path, module, journalSizeLimit: JOURNAL_SIZE_LIMIT, ...options } });
  worker.unref();
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  return {
    stop: () => {
      // A worker that already ended (it crashed, or stop() ran before) has nothing left to do.
      if (!exited) worker.postMessage('stop');
      return exit;
    },
  };
}
