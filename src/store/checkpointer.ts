/**
 * WAL checkpoints of the SQLite store, off the event loop: the main connection never checkpoints by itself
 * (`wal_autocheckpoint = 0`, so no request pays for one), and a worker thread with its own connection runs
 * a passive checkpoint every second (a truncating one when the WAL grew large), fsyncs included.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 1000');
let stopped = false;
function tick() {
  if (stopped) return;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    if (r && r.log > 50000) db.pragma('wal_checkpoint(TRUNCATE)');
  } catch (e) {}
  setTimeout(tick, workerData.everyMs);
}
parentPort.on('message', (m) => { if (m === 'stop') { stopped = true; try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (e) {} db.close(); process.exit(0); } });
tick();
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

export function startCheckpointer(path: string, everyMs = 1000): Checkpointer {
  const module = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER, { eval: true, workerData: { path, module, everyMs } });
  worker.unref();
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        worker.once('exit', () => resolve());
        worker.postMessage('stop');
      }),
  };
}
