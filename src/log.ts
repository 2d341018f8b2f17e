/**
 * Structured logging behind a small interface, pino underneath. Secrets are redacted by path; only the
 * CLI decides where logs go.
 */
import { pino } from 'pino';

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** Keys whose values are secrets, redacted in a log line's object down to four levels deep. */
const SECRET_KEYS = ['secureKey', 'password', 'token', 'apiKey', 'signingSecret', 'internalToken'];
/** Request headers that carry credentials, in a `headers` object at the top or one level down. */
const SECRET_HEADERS = ['authorization', 'apikey', '["x-api-key"]', '["x-parley-node-token"]', '["x-parley-session"]'];
const DEPTHS = ['', '*.', '*.*.', '*.*.*.'];

const REDACT = [
  ...SECRET_KEYS.flatMap((k) => DEPTHS.map((d) => `${d}${k}`)),
  ...SECRET_HEADERS.flatMap((h) => ['headers', '*.headers'].map((at) => (h.startsWith('[') ? `${at}${h}` : `${at}.${h}`))),
];

export function createLogger(opts: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    { level: opts.level ?? 'info', base: { pid: process.pid }, redact: { paths: REDACT, censor: '[redacted]' } },
    opts.destination ?? process.stdout,
  ) as unknown as Logger;
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
