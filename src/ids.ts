import { randomBytes } from 'node:crypto';

/** Randomness, injected so that the pure core never calls it itself. */
export interface IdSource {
  /** chatId, 16 characters as in Genesys (`00048aAPEQJ8000U`). */
  chatId(): string;
  /** userId, 16 upper-case hex digits (`007555677B20000A`). */
  userId(): string;
  /** secureKey, 20 lower-case hex digits (`02f8e3936f763afffcce`). */
  secureKey(): string;
  /** fileId, opaque. */
  fileId(): string;
  /** A bearer token. */
  token(): string;
  /** A push notification id (also the webhook-id). */
  notificationId(): string;
}

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function base62(bytes: Buffer): string {
  let s = '';
  for (const b of bytes) s += B62[b % 62];
  return s;
}

export function createRandomIds(): IdSource {
  return {
    chatId: () => base62(randomBytes(16)),
    userId: () => randomBytes(8).toString('hex').toUpperCase(),
    secureKey: () => randomBytes(10).toString('hex'),
    fileId: () => base62(randomBytes(12)),
    token: () => randomBytes(24).toString('base64url'),
    notificationId: () => `ntf_${randomBytes(12).toString('base64url')}`,
  };
}

/** Deterministic ids for tests. */
export function createSequentialIds(prefix = 'T'): IdSource {
  let n = 0;
  const next = (w: number) => (++n).toString(16).toUpperCase().padStart(w, '0');
  return {
    chatId: () => `${prefix}${next(15)}`.slice(0, 16),
    userId: () => next(16),
    secureKey: () => next(20).toLowerCase(),
    fileId: () => `F${next(11)}`,
    token: () => `tok${next(20)}`,
    notificationId: () => `ntf_${next(12)}`,
  };
}
