/**
 * The request target as a URL, never throwing. Node's HTTP parser lets through targets that `new URL`
 * refuses (`//`, `//a b/`, `//[`): parsed against a base they would throw inside the request listener and
 * end the process. An origin-form target (`/...`) is appended to a fixed origin instead, so `//desk/`
 * stays the path `//desk/` (against a base it would become the host `desk`); anything else that is not
 * a URL gives undefined, which the caller answers with 400.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ParleyError } from '../errors.ts';
import { sendJson } from './respond.ts';

export function requestUrl(req: Pick<IncomingMessage, 'url'>): URL | undefined {
  const target = req.url ?? '/';
  try {
    return new URL(target.startsWith('/') ? `http://localhost${target}` : target);
  } catch {
    return undefined;
  }
}

/** Answers a request whose target is not a URL: 400 in the JSON error format of the non-Chat-API routes. */
export function answerBadTarget(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const err = new ParleyError('INVALID_PARAMETER', 'The request target is not a valid URL path.');
  sendJson(res, 400, { error: { code: err.code, message: err.message } });
}

/** A percent-encoded path segment, decoded; undefined when it is not validly encoded (`%`, `%zz`, `%E0%A4%A`). */
export function decodeSegment(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** The same, or NOT_FOUND: a path that is not validly encoded names no resource. */
export function decodeSegmentOrNotFound(s: string): string {
  const decoded = decodeSegment(s);
  if (decoded === undefined) throw new ParleyError('NOT_FOUND', 'The path is not validly percent-encoded.');
  return decoded;
}
