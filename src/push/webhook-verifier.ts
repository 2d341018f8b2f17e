/**
 * What a push receiver needs to check Parley's signed POSTs (Standard Webhooks), usable on its own:
 *
 *   import { readVerifiedBody } from 'parley/webhook-verifier';
 *   const body = await readVerifiedBody(secret, req);   // throws ParleyError SIGNATURE_INVALID
 */
import type { IncomingMessage } from 'node:http';
import { ParleyError } from '../errors.ts';
import { readBody } from '../http/body.ts';
import { verifyWebhook } from './signing.ts';

export { signWebhook, verifyWebhook, secretBytes, type WebhookHeaders } from './signing.ts';

/** Reads the request body (at most maxBytes) and verifies its signature; returns the exact bytes verified. */
export async function readVerifiedBody(
  secret: string,
  req: IncomingMessage,
  opts: { maxBytes?: number; nowSec?: number; toleranceSec?: number } = {},
): Promise<Buffer> {
  const body = await readBody(req, opts.maxBytes ?? 1024 * 1024);
  verifyWebhook(secret, req.headers, body, {
    ...(opts.nowSec === undefined ? {} : { nowSec: opts.nowSec }),
    ...(opts.toleranceSec === undefined ? {} : { toleranceSec: opts.toleranceSec }),
  });
  return body;
}

/** True for a ParleyError of a failed verification (to answer 401 rather than 500). */
export function isSignatureError(err: unknown): boolean {
  return err instanceof ParleyError && err.code === 'SIGNATURE_INVALID';
}
