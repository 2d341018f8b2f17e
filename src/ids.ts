import { RandomPool } from './lib/random-pool.ts';

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

/** `length` base62 characters, each uniform: bytes of 248 and up are skipped (248 = 4 × 62), so no character is likelier. */
function base62(take: (n: number) => Buffer, length: number): string {
  let s = '';
  while (s.length < length) {
    for (const b of take(length - s.length + 2)) {
      if (b >= 248) continue;
      s += B62[b % 62];
      if (s.length === length) break;
    }
  }
  return s;
}

export function createRandomIds(): IdSource {
  const pool = new RandomPool();
  const randomBytes = (n: number) => pool.take(n);
  return {
    chatId: () => base62(randomBytes, 16),
    userId: () => randomBytes(8).toString('hex').toUpperCase(),
    secureKey: () => randomBytes(10).toString('hex'),
    fileId: () => base62(randomBytes, 12),
    token: () => randomBytes(24).toString('base64url'),
    notificationId: () => `ntf_${randomBytes(12).toString('base64url')}`,
  };
}
