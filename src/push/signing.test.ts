import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ParleyError, type ErrorCode } from '../errors.ts';
import { secretBytes, signWebhook, verifyWebhook, type WebhookHeaders } from './signing.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const TS = 1614265330;
const BODY = '{"test": 2432232314}';
const NOW = { nowSec: TS };

type Headers = Record<string, string | readonly string[] | undefined> | WebhookHeaders;

function failure(fn: () => unknown): { code: ErrorCode; message: string } | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ParleyError);
    return { code: (err as ParleyError).code, message: (err as ParleyError).message };
  }
  return undefined;
}

/** The SIGNATURE_INVALID message of a verification that must fail. */
function rejection(headers: Headers, body: string | Uint8Array = BODY, opts: { nowSec?: number; toleranceSec?: number } = NOW, secret = SECRET): string {
  const f = failure(() => verifyWebhook(secret, headers, body, opts));
  expect(f?.code).toBe('SIGNATURE_INVALID');
  return f?.message ?? '';
}

const signed = (): WebhookHeaders => signWebhook(SECRET, ID, TS, BODY);
const sigOf = (h: WebhookHeaders): string => h['webhook-signature'].slice('v1,'.length);

describe('signWebhook / verifyWebhook round trip', () => {
  it('verifies what it signs (string body)', () => {
    const h = signed();
    expect(h['webhook-id']).toBe(ID);
    expect(h['webhook-timestamp']).toBe(String(TS));
    expect(h['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(() => verifyWebhook(SECRET, h, BODY, NOW)).not.toThrow();
  });

  it('verifies what it signs (byte body, also a view into a larger buffer)', () => {
    const whole = Buffer.from(`xx${BODY}yy`, 'utf8');
    const view = new Uint8Array(whole.buffer, whole.byteOffset + 2, Buffer.byteLength(BODY));
    const h = signWebhook(SECRET, ID, TS, view);
    expect(h).toEqual(signed());
    expect(() => verifyWebhook(SECRET, h, view, NOW)).not.toThrow();
    expect(() => verifyWebhook(SECRET, h, BODY, NOW)).not.toThrow();
  });

  it('works with a non-whsec secret (its UTF-8 bytes)', () => {
    const h = signWebhook('plain secret ✓', ID, TS, BODY);
    expect(() => verifyWebhook('plain secret ✓', h, BODY, NOW)).not.toThrow();
  });

  it('reads the clock by default', () => {
    const now = Math.floor(Date.now() / 1000);
    expect(() => verifyWebhook(SECRET, signWebhook(SECRET, ID, now, BODY), BODY)).not.toThrow();
    expect(rejection(signWebhook(SECRET, ID, now - 3600, BODY), BODY, {})).toMatch(/too old/);
  });

  it('rejects an id or timestamp it cannot put in a header', () => {
    expect(failure(() => signWebhook(SECRET, '', TS, BODY))?.code).toBe('INVALID_PARAMETER');
    expect(failure(() => signWebhook(SECRET, 'a\r\nb', TS, BODY))?.code).toBe('INVALID_PARAMETER');
    expect(failure(() => signWebhook(SECRET, ID, 1.5, BODY))?.code).toBe('INVALID_PARAMETER');
    expect(failure(() => signWebhook(SECRET, ID, -1, BODY))?.code).toBe('INVALID_PARAMETER');
  });
});

describe('known answers', () => {
  it('matches an HMAC computed independently with node:crypto', () => {
    const key = Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64');
    const expected = createHmac('sha256', key).update(`${ID}.${TS}.${BODY}`).digest('base64');
    expect(signed()['webhook-signature']).toBe(`v1,${expected}`);
  });

  it('matches the Standard Webhooks reference test vector', () => {
    expect(signed()['webhook-signature']).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('matches an independent HMAC for a UTF-8 secret and a non-ASCII body', () => {
    const body = 'Grüße, 世界';
    const expected = createHmac('sha256', Buffer.from('s3cret', 'utf8')).update(Buffer.from(`id1.42.${body}`, 'utf8')).digest('base64');
    expect(signWebhook('s3cret', 'id1', 42, body)['webhook-signature']).toBe(`v1,${expected}`);
  });
});

describe('verifyWebhook: break one field per test', () => {
  it('rejects a changed id', () => {
    expect(rejection({ ...signed(), 'webhook-id': `${ID}x` })).toMatch(/no v1 signature matches/);
  });

  it('rejects a changed timestamp (still within tolerance)', () => {
    expect(rejection({ ...signed(), 'webhook-timestamp': String(TS + 1) })).toMatch(/no v1 signature matches/);
  });

  it('rejects a body changed in one byte', () => {
    const bytes = Buffer.from(BODY, 'utf8');
    bytes.writeUInt8((bytes.at(-2) ?? 0) ^ 1, bytes.length - 2);
    expect(rejection(signed(), bytes)).toMatch(/no v1 signature matches/);
  });

  it('rejects a wrong secret', () => {
    expect(rejection(signed(), BODY, NOW, 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).toMatch(/no v1 signature matches/);
    expect(rejection(signed(), BODY, NOW, 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).toMatch(/no v1 signature matches/);
  });

  it.each(['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const)('rejects a missing %s header', (name) => {
    const h: Record<string, string | undefined> = { ...signed() };
    delete h[name];
    expect(rejection(h)).toMatch(new RegExp(`missing ${name} header`));
    expect(rejection({ ...h, [name]: undefined })).toMatch(new RegExp(`missing ${name} header`));
    expect(rejection({ ...h, [name]: [] })).toMatch(new RegExp(`missing ${name} header`));
  });

  it('rejects an empty id or timestamp as missing', () => {
    expect(rejection({ ...signed(), 'webhook-id': '' })).toMatch(/missing webhook-id/);
    expect(rejection({ ...signed(), 'webhook-timestamp': '' })).toMatch(/missing webhook-timestamp/);
  });

  it('rejects a signature header without "v1,"', () => {
    const sig = sigOf(signed());
    expect(rejection({ ...signed(), 'webhook-signature': sig })).toMatch(/no v1 signature/);
    expect(rejection({ ...signed(), 'webhook-signature': `v1${sig}` })).toMatch(/no v1 signature/);
    expect(rejection({ ...signed(), 'webhook-signature': `V1,${sig}` })).toMatch(/no v1 signature/);
  });

  it('rejects a v1 signature that is not base64 of 32 bytes', () => {
    const sig = sigOf(signed());
    expect(rejection({ ...signed(), 'webhook-signature': 'v1,not*base64!' })).toMatch(/malformed v1 signature/);
    expect(rejection({ ...signed(), 'webhook-signature': `v1,${sig.slice(0, 20)}` })).toMatch(/malformed v1 signature/);
    expect(rejection({ ...signed(), 'webhook-signature': 'v1,' })).toMatch(/malformed v1 signature/);
    expect(rejection({ ...signed(), 'webhook-signature': `v1,${sig}AAAA` })).toMatch(/malformed v1 signature/);
  });

  it('rejects an empty signature header', () => {
    expect(rejection({ ...signed(), 'webhook-signature': '' })).toMatch(/webhook-signature header is empty/);
    expect(rejection({ ...signed(), 'webhook-signature': '   ' })).toMatch(/webhook-signature header is empty/);
  });

  it('rejects a timestamp too old, accepts one just within tolerance', () => {
    expect(rejection(signed(), BODY, { nowSec: TS + 301 })).toMatch(/too old/);
    expect(() => verifyWebhook(SECRET, signed(), BODY, { nowSec: TS + 300 })).not.toThrow();
    expect(rejection(signed(), BODY, { nowSec: TS + 11, toleranceSec: 10 })).toMatch(/too old/);
  });

  it('rejects a timestamp too new, accepts one just within tolerance', () => {
    expect(rejection(signed(), BODY, { nowSec: TS - 301 })).toMatch(/too new/);
    expect(() => verifyWebhook(SECRET, signed(), BODY, { nowSec: TS - 300 })).not.toThrow();
    expect(rejection(signed(), BODY, { nowSec: TS - 0.5, toleranceSec: 0 })).toMatch(/too new/);
  });

  it.each(['abc', '1614265330.5', '-1614265330', '1e9', ' 1614265330', '0x60372bf2', '1234567890123456'])(
    'rejects a timestamp that is not a number: %j',
    (ts) => {
      expect(rejection({ ...signed(), 'webhook-timestamp': ts })).toMatch(/not a whole number/);
    },
  );

  it('accepts several signatures where only the second is right', () => {
    const other = signWebhook('whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', ID, TS, BODY)['webhook-signature'];
    const h = { ...signed(), 'webhook-signature': `${other} ${signed()['webhook-signature']}` };
    expect(() => verifyWebhook(SECRET, h, BODY, NOW)).not.toThrow();
  });

  it('accepts a right signature after a malformed one, and extra spaces', () => {
    const h = { ...signed(), 'webhook-signature': `v1,@@  ${signed()['webhook-signature']} ` };
    expect(() => verifyWebhook(SECRET, h, BODY, NOW)).not.toThrow();
  });

  it('ignores a v2-prefixed signature even when its value is right', () => {
    const sig = sigOf(signed());
    expect(rejection({ ...signed(), 'webhook-signature': `v2,${sig}` })).toMatch(/no v1 signature/);
    expect(() => verifyWebhook(SECRET, { ...signed(), 'webhook-signature': `v2,xyz v1,${sig}` }, BODY, NOW)).not.toThrow();
  });

  it('looks headers up case-insensitively and takes the first of an array value', () => {
    const h = signed();
    const mixed: Record<string, string | readonly string[]> = {
      'Webhook-Id': h['webhook-id'],
      'WEBHOOK-TIMESTAMP': [h['webhook-timestamp'], '0'],
      'webhook-Signature': [h['webhook-signature']],
    };
    expect(() => verifyWebhook(SECRET, mixed, BODY, NOW)).not.toThrow();
    expect(rejection({ ...mixed, 'WEBHOOK-TIMESTAMP': ['0', h['webhook-timestamp']] })).toMatch(/too old/);
  });

  it('rejects bad options as INVALID_PARAMETER', () => {
    expect(failure(() => verifyWebhook(SECRET, signed(), BODY, { nowSec: TS, toleranceSec: -1 }))?.code).toBe('INVALID_PARAMETER');
    expect(failure(() => verifyWebhook(SECRET, signed(), BODY, { nowSec: Number.NaN }))?.code).toBe('INVALID_PARAMETER');
  });
});

describe('secretBytes', () => {
  it('decodes whsec_ secrets from base64', () => {
    expect(secretBytes('whsec_aGVsbG8=')).toEqual(Buffer.from('hello'));
    expect(secretBytes('whsec_aGVsbG8')).toEqual(Buffer.from('hello'));
    expect(secretBytes(SECRET)).toEqual(Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'));
    expect(secretBytes(SECRET)).toHaveLength(24);
  });

  it('uses the UTF-8 bytes of any other string', () => {
    expect(secretBytes('aGVsbG8=')).toEqual(Buffer.from('aGVsbG8=', 'utf8'));
    expect(secretBytes('Whsec_aGVsbG8=')).toEqual(Buffer.from('Whsec_aGVsbG8=', 'utf8'));
    expect(secretBytes('ü')).toEqual(Buffer.from([0xc3, 0xbc]));
  });

  it.each(['', 'whsec_', 'whsec_not base64!', 'whsec_a', 'whsec_aGVsbG8=='])('rejects %j as CONFIG_INVALID', (s) => {
    expect(failure(() => secretBytes(s))?.code).toBe('CONFIG_INVALID');
  });

  it('makes sign and verify fail on an empty secret as CONFIG_INVALID', () => {
    expect(failure(() => signWebhook('', ID, TS, BODY))?.code).toBe('CONFIG_INVALID');
    expect(failure(() => verifyWebhook('', signed(), BODY, NOW))?.code).toBe('CONFIG_INVALID');
  });
});
