/**
 * Parley under benchmark: every role in this one process (`startAll`), on the SQLite file given by
 * PARLEY_STORE_PATH (the harness passes a fresh temp file), port 0 on 127.0.0.1.
 *   node --import tsx bench/server-parley.ts [INI_FILE]
 * Without INI_FILE the built-in BENCH_INI below is used, followed by the INI text in the environment
 * variable BENCH_PARLEY_INI if set (extra sections, e.g. the push suite's [push] and agents).
 * PARLEY_<SECTION>_<KEY> variables override either, as with the CLI. Prints `READY <url>` on stdout; warnings and errors are logged as JSON lines
 * on stderr (the harness reports them). Exits on SIGTERM or when stdin closes.
 */
import { loadConfigFile, parseConfig } from '../src/config/load.ts';
import { createLogger } from '../src/log.ts';
import { startChatServer } from '../src/roles/chat-server.ts';
import { startGateway } from '../src/roles/gateway.ts';
import { startAll } from '../src/roles/start.ts';
import { exitWithParent } from './lib/child.ts';
import { BENCH_SERVICE } from './lib/parley.ts';
import { watchStalls } from './lib/stalls.ts';

const BENCH_INI = `
[node]
app-dbid = 117
[http]
host = 127.0.0.1
port = 0
[store]
path = ./data/bench.db
synchronous = normal
[chat.${BENCH_SERVICE}]
description = benchmark service
[receiver]
service = ${BENCH_SERVICE}
[agent.alice]
name = Alice
password = alice-secret
max-chats = 3
`;

async function sampleAllocations(file: string): Promise<() => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 16384,
    includeObjectsCollectedByMajorGC: true,
    // BENCH_SERVER_HEAP_PROF_PROMOTED=1: only what outlived the young generation (promoted or still alive).
    includeObjectsCollectedByMinorGC: process.env['BENCH_SERVER_HEAP_PROF_PROMOTED'] !== '1',
  });
  return async () => {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

async function main(): Promise<void> {
  const file = process.argv[2];
  const config =
    file === undefined
      ? parseConfig(BENCH_INI + (process.env['BENCH_PARLEY_INI'] ?? ''), 'bench/server-parley.ts', process.env)
      : loadConfigFile(file, process.env);
  const log = createLogger({ level: process.env['PARLEY_LOG_LEVEL'] ?? 'warn', destination: process.stderr });
  // BENCH_PARLEY_ROLE: `all` (default, every role in this process), or one role of a split deployment on
  // the same store file: `chat-server` or `gateway` (the push suite's split scenario runs one of each).
  const role = process.env['BENCH_PARLEY_ROLE'] ?? 'all';
  const running =
    role === 'chat-server'
      ? await startChatServer(config, { log })
      : role === 'gateway'
        ? await startGateway(config, { log })
        : role === 'all'
          ? await startAll(config, { log })
          : undefined;
  if (running === undefined) throw new Error(`BENCH_PARLEY_ROLE: unknown role ${role}`);
  // BENCH_SERVER_STALLS=<file>: event-loop stalls and GC pauses, for the tail analysis (bench/lib/stalls.ts).
  const stalls = process.env['BENCH_SERVER_STALLS'];
  if (stalls !== undefined && stalls !== '') watchStalls(stalls);
  // BENCH_SERVER_HEAP_PROF=<file>: a sampling heap profile of every allocation (collected ones included),
  // from READY to the stop, written as a .heapprofile (Chrome DevTools format).
  const heapProf = process.env['BENCH_SERVER_HEAP_PROF'];
  const stopHeapProf = heapProf === undefined || heapProf === '' ? async () => undefined : await sampleAllocations(heapProf);
  process.stdout.write(`READY ${running.url}\n`);
  exitWithParent(async () => {
    await stopHeapProf();
    await running.close();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`server-parley: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
