/**
 * Standard Webhooks (https://www.standardwebhooks.com/) signing of push notifications, and the
 * verifier Parley exports for receivers.
 *
 * The signed content is `${webhook-id}.${webhook-timestamp}.${body}`, signed with HMAC-SHA256; the
 * `webhook-signature` header is a space-separated list of `<version>,<base64>` entries, of which
 * Parley writes and checks only `v1`. Secrets of the form `whsec_<base64>` are base64-decoded;
 * any other secret string is used as its UTF-8 bytes.
 */
import { headerValue, type HeaderBag } from '../http/headers.ts';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ParleyError } from '../errors.ts';

export interface WebhookHeaders {
  readonly 'webhook-id': string;
  readonly 'webhook-timestamp': string;
  readonly 'webhook-signature': string;
}

/** Default accepted clock skew between sender and receiver, in seconds (as the reference libraries). */
export const DEFAULT_TOLERANCE_SEC = 300;

const SECRET_PREFIX = 'whsec_';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;
/** An HMAC-SHA256 is 32 bytes: 44 base64 characters with padding, 43 without. */
const SIGNATURE_BYTES = 32;

/** Secret decoding: "whsec_<base64>" → the decoded bytes; any other string → its UTF-8 bytes. Empty → CONFIG_INVALID. */
export function secretBytes(secret: string): Buffer {
  if (secret === '') throw new ParleyError('CONFIG_INVALID', 'The webhook secret is empty.');
  if (!secret.startsWith(SECRET_PREFIX)) return Buffer.from(secret, 'utf8');
  const encoded = secret.slice(SECRET_PREFIX.length);
  if (encoded === '') throw new ParleyError('CONFIG_INVALID', 'The webhook secret "whsec_" has no key after the prefix.');
  if (!BASE64.test(encoded)) throw new ParleyError('CONFIG_INVALID', 'The webhook secret after "whsec_" is not valid base64.');
  return Buffer.from(encoded, 'base64');
}

function toBytes(body: string | Uint8Array): Buffer {
  return typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

function hmac(key: Buffer, id: string, timestamp: string, body: string | Uint8Array): Buffer {
  return createHmac('sha256', key).update(`${id}.${timestamp}.`, 'utf8').update(toBytes(body)).digest();
}

/** Signs `${id}.${timestampSec}.${body}` with HMAC-SHA256; signature header "v1,<base64>". */
export function signWebhook(secret: string, id: string, timestampSec: number, body: string | Uint8Array): WebhookHeaders {
  if (!/^[\x21-\x7e]+$/.test(id)) throw new ParleyError('INVALID_PARAMETER', 'The webhook id must be non-empty visible ASCII without spaces.');
  if (!Number.isSafeInteger(timestampSec) || timestampSec < 0) {
    throw new ParleyError('INVALID_PARAMETER', `The webhook timestamp must be whole seconds since the epoch (got ${timestampSec}).`);
  }
  const timestamp = String(timestampSec);
  const signature = hmac(secretBytes(secret), id, timestamp, body).toString('base64');
  return { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature}` };
}


function invalid(reason: string): ParleyError {
  return new ParleyError('SIGNATURE_INVALID', `Webhook signature invalid: ${reason}.`);
}

/**
 * Throws ParleyError('SIGNATURE_INVALID', precise reason) unless the timestamp is within toleranceSec
 * of nowSec and one of the space-separated v1 signatures matches (constant-time comparison).
 * Entries of other versions (v1a, v2, …) are ignored, as the specification asks. Header lookup is
 * case-insensitive; an array value (node's IncomingHttpHeaders) gives its first element.
 */
export function verifyWebhook(
  secret: string,
  headers: HeaderBag | WebhookHeaders,
  body: string | Uint8Array,
  { nowSec = Date.now() / 1000, toleranceSec = DEFAULT_TOLERANCE_SEC }: { nowSec?: number; toleranceSec?: number } = {},
): void {
  if (!Number.isFinite(toleranceSec) || toleranceSec < 0) throw new ParleyError('INVALID_PARAMETER', 'toleranceSec must be a finite number ≥ 0.');
  if (!Number.isFinite(nowSec)) throw new ParleyError('INVALID_PARAMETER', 'nowSec must be a finite number.');
  const key = secretBytes(secret);

  // An interface has no index signature; WebhookHeaders is accepted as well for a direct round trip.
  const bag: HeaderBag = headers as HeaderBag;
  const id = headerValue(bag, 'webhook-id');
  const timestamp = headerValue(bag, 'webhook-timestamp');
  const signatures = headerValue(bag, 'webhook-signature');
  if (id === undefined || id === '') throw invalid('missing webhook-id header');
  if (timestamp === undefined || timestamp === '') throw invalid('missing webhook-timestamp header');
  if (signatures === undefined) throw invalid('missing webhook-signature header');

  if (!/^[0-9]{1,15}$/.test(timestamp)) throw invalid('webhook-timestamp is not a whole number of seconds');
  const ts = Number(timestamp);
  if (nowSec - ts > toleranceSec) throw invalid(`timestamp too old (more than ${toleranceSec} s before now)`);
  if (ts - nowSec > toleranceSec) throw invalid(`timestamp too new (more than ${toleranceSec} s after now)`);

  const entries = signatures.split(' ').filter((e) => e !== '');
  if (entries.length === 0) throw invalid('webhook-signature header is empty');

  const expected = hmac(key, id, timestamp, body);
  let v1 = 0;
  let malformed = 0;
  let matched = false;
  for (const entry of entries) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1') continue;
    v1++;
    const value = entry.slice(comma + 1);
    const candidate = BASE64.test(value) ? Buffer.from(value, 'base64') : undefined;
    if (candidate?.length !== SIGNATURE_BYTES) {
      malformed++;
      continue;
    }
    // Every well-formed candidate is compared, also after a match: time does not reveal which one matched.
    if (timingSafeEqual(candidate, expected)) matched = true;
  }
  if (matched) return;
  if (v1 === 0) throw invalid('no v1 signature in webhook-signature header');
  if (malformed === v1) throw invalid('malformed v1 signature (expected base64 of 32 bytes)');
  throw invalid('no v1 signature matches');
}
