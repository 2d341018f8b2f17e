/**
 * WAL checkpoints of the SQLite store, off the event loop: the main connection never checkpoints by itself
 * (`wal_autocheckpoint = 0`, so no request pays for one), and a worker thread with its own connection runs
 * passive checkpoints (fsyncs included), which never block writers.
 *
 * Under a steady stream of commits a passive checkpoint never finds the WAL fully copied, so the WAL would
 * grow without end; and a blocking checkpoint of a large WAL stalls every write for its whole copy (a
 * TRUNCATE of 50,000 frames held commits for 100-140 ms every 2.5 s at 5,000 sends/s). So once the WAL is
 * large, the worker first catches up with passive checkpoints (back to back) and then restarts the WAL
 * with a RESTART checkpoint that has only the last few frames to copy, and makes the first write of the
 * new WAL itself (a row in `wal_restarts`), which is the write that pays the fsync of the new WAL header.
 * `journal_size_limit` cuts the file back when the WAL restarts. Writes wait meanwhile without blocking
 * the event loop (see the write queue in sqlite.ts).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 1000');
db.pragma('journal_size_limit = ' + workerData.journalSizeLimit);
const mark = db.prepare('INSERT INTO wal_restarts (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at');
let stopped = false;
function tick() {
  if (stopped) return;
  let again = workerData.everyMs;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    const behind = r ? r.log - r.checkpointed : 0;
    if (r && r.log >= workerData.restartFrames && behind <= workerData.catchUpFrames) {
      db.pragma('wal_checkpoint(RESTART)');
      // The first write after a restart rewinds the WAL and fsyncs its new header: done here, so that
      // the main thread's next commit is an ordinary one.
      mark.run(Date.now());
    } else if (behind > workerData.catchUpFrames) {
      again = 10;
    }
  } catch (e) {}
  setTimeout(tick, again);
}
parentPort.on('message', (m) => { if (m === 'stop') { stopped = true; try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (e) {} db.close(); process.exit(0); } });
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
  /** Frames still to copy under which the restart is done (it blocks writers while it copies them). */
  readonly catchUpFrames: number;
}

export const CHECKPOINTER_DEFAULTS: CheckpointerOptions = { everyMs: 200, restartFrames: 20_000, catchUpFrames: 1_000 };

/** The WAL file is cut back to this size when it restarts (`journal_size_limit`). */
export const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;

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
