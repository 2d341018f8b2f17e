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

const REDACT = [
  'secureKey',
  '*.secureKey',
  'password',
  '*.password',
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'headers.authorization',
  'headers.apikey',
  'headers["x-api-key"]',
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
