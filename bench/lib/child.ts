/**
 * Server children: `node --import tsx bench/<script>` in its own process, ready once it prints
 * `READY <url>` on stdout. Every child is tracked so the harness can kill all of them on any exit path;
 * children also exit by themselves when their stdin closes (i.e. when the parent dies).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export interface ServerChild {
  readonly name: string;
  readonly pid: number;
  readonly url: string;
  /** Last lines the child wrote on stderr (its logger writes warnings and errors there). */
  stderrLines(): readonly string[];
  /** Writes one line to the child's stdin (children that take commands, e.g. bench/receiver-process.ts). */
  writeLine(line: string): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
const STDERR_KEEP = 200;

export interface SpawnOptions {
  env?: Record<string, string>;
  args?: string[];
  /** Node options before the script (e.g. `--cpu-prof`, which NODE_OPTIONS does not allow). */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
  /** Called with every stdout line after `READY` (otherwise stdout after READY is drained and dropped). */
  onStdoutLine?: (line: string) => void;
  /**
   * The ready line of a child that does not print `READY <url>` (e.g. `../src/cli.ts`): a pattern whose
   * group 1 is the URL. Default /^READY (\S+)$/.
   */
  readyPattern?: RegExp;
}

export async function spawnServer(root: string, script: string, opts: SpawnOptions = {}): Promise<ServerChild> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', join(root, 'bench', script), ...(opts.args ?? [])], {
    cwd: root,
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  live.add(child);
  child.stdin?.on('error', () => undefined); // EPIPE after the child died: nothing to do
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', () => live.delete(child));

  const stderr: string[] = [];
  let partial = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) if (l.trim() !== '') stderr.push(l);
    if (stderr.length > STDERR_KEEP) stderr.splice(0, stderr.length - STDERR_KEEP);
  });

  // stdout is split into lines from the start: the READY line resolves `url`, later lines go to
  // opts.onStdoutLine (or are dropped), so the child never blocks on a full pipe.
  let ready = false;
  let onReady: ((url: string) => void) | undefined;
  let outPartial = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    const lines = (outPartial + chunk).split('\n');
    outPartial = lines.pop() ?? '';
    for (const line of lines) {
      if (!ready) {
        const m = (opts.readyPattern ?? /^READY (\S+)$/).exec(line);
        if (m?.[1] !== undefined) {
          ready = true;
          onReady?.(m[1]);
        }
      } else opts.onStdoutLine?.(line);
    }
  });

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${script} did not print READY within ${opts.readyTimeoutMs ?? 20_000} ms`)), opts.readyTimeoutMs ?? 20_000);
    const onExit = (code: number | null, signal: string | null) =>
      fail(new Error(`${script} exited (code ${code}, signal ${signal}) before READY:\n${stderr.slice(-20).join('\n')}`));
    onReady = (u) => {
      cleanup();
      resolve(u);
    };
    function cleanup() {
      clearTimeout(timer);
      onReady = undefined;
      child.off('exit', onExit);
    }
    function fail(err: Error) {
      cleanup();
      child.kill('SIGKILL');
      reject(err);
    }
    child.once('exit', onExit);
  });

  return {
    name: script,
    pid: child.pid ?? -1,
    url,
    stderrLines: () => [...stderr, ...(partial.trim() === '' ? [] : [partial])],
    writeLine(line: string) {
      if (child.stdin?.writable === true) child.stdin.write(`${line}\n`);
    },
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Synchronous last resort (process `exit` handler, watchdog): SIGKILL every child still running. */
export function killAllChildren(): number {
  let n = 0;
  for (const c of live) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      n++;
    }
  }
  live.clear();
  return n;
}

/**
 * For the child side: exit when the parent goes away (stdin closes) or on SIGTERM/SIGINT, after `close`.
 */
export function exitWithParent(close: () => Promise<void>): void {
  let closing = false;
  const stop = (code: number) => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => process.exit(code), 3_000);
    force.unref();
    close().then(
      () => process.exit(code),
      () => process.exit(1),
    );
  };
  process.stdin.on('end', () => stop(0));
  process.stdin.on('error', () => stop(0));
  process.stdin.resume();
  process.once('SIGTERM', () => stop(0));
  process.once('SIGINT', () => stop(0));
}
