/**
 * Headless Chromium for the browser tests: Debian's `chromium` (or CHROMIUM_PATH), installed with apt
 * when missing and the tests run as root (the CI machine starts without it), driven by playwright-core.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

const DEFAULT_PATH = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function onPath(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The Chromium executable, installing Debian's package first when allowed; throws with the reason otherwise. */
export function findChromium(): string {
  const wanted = process.env['CHROMIUM_PATH'];
  if (wanted !== undefined && wanted !== '') {
    if (!existsSync(wanted)) throw new Error(`CHROMIUM_PATH=${wanted} does not exist`);
    return wanted;
  }
  if (existsSync(DEFAULT_PATH)) return DEFAULT_PATH;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root || !onPath('apt-get')) {
    throw new Error(`No Chromium at ${DEFAULT_PATH}; install Debian's chromium package or set CHROMIUM_PATH`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update'], { stdio: 'inherit', env, timeout: 300_000 });
  execFileSync('apt-get', ['install', '-y', 'chromium'], { stdio: 'inherit', env, timeout: 900_000 });
  if (!existsSync(DEFAULT_PATH)) throw new Error(`apt-get installed chromium but ${DEFAULT_PATH} is missing`);
  return DEFAULT_PATH;
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: findChromium(), headless: true, args: CHROMIUM_ARGS });
}

/**
 * Where screenshots go: docs/images when UPDATE_SCREENSHOTS=1 (to refresh the documentation), otherwise a
 * temp dir, so that running the tests leaves the work tree unchanged.
 */
export const SCREENSHOTS =
  process.env['UPDATE_SCREENSHOTS'] === '1' ? join(import.meta.dirname, '..', '..', 'docs', 'images') : mkdtempSync(join(tmpdir(), 'parley-shots-'));

/** Runs a JavaScript expression in the page (a string: these files are type-checked without the DOM lib). */
export function js<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate(expression) as Promise<T>;
}
