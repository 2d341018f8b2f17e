/** CORS for browsers that call the API directly (Genesys Widgets do). */
import type { IncomingMessage, ServerResponse } from 'node:http';

const ALLOW_HEADERS = 'content-type, apikey, x-api-key, gms_user, authorization, authentication, contactcenterid, x-request-id';

export function allowedOrigin(origin: string | undefined, allowed: readonly string[]): string | undefined {
  if (origin === undefined || origin === '') return undefined;
  if (allowed.includes('*')) return '*';
  return allowed.includes(origin) ? origin : undefined;
}

/**
 * Adds CORS headers for an allowed origin. Returns true when the request was a preflight and has been
 * answered.
 */
export function handleCors(req: IncomingMessage, res: ServerResponse, allowed: readonly string[]): boolean {
  const origin = allowedOrigin(req.headers.origin, allowed);
  if (origin !== undefined) {
    res.setHeader('access-control-allow-origin', origin);
    if (origin !== '*') res.setHeader('vary', 'origin');
    res.setHeader('access-control-expose-headers', 'content-disposition, content-type');
  }
  if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return false;
  if (origin === undefined) {
    res.writeHead(403, { 'content-length': 0 });
  } else {
    res.writeHead(204, {
      'access-control-allow-methods': 'POST, GET, OPTIONS',
      'access-control-allow-headers': ALLOW_HEADERS,
      'access-control-max-age': '600',
      'content-length': 0,
    });
  }
  res.end();
  return true;
}
