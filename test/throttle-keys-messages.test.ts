/**
 * Log throttling and the failure log, the per-client key (IPv6 /64, NAT64), configuration messages without secrets.
 */
import { describe, expect, it } from 'vitest';
import { readIni } from '../src/config/ini.ts';
import { clientKey } from '../src/http/client-key.ts';
import { LogThrottle } from '../src/log-throttle.ts';
import { failureLogger } from '../src/http/failure-log.ts';
import { ParleyError } from '../src/errors.ts';
import type { Logger } from '../src/log.ts';

function memoryLog(): Logger & { lines: Array<{ level: string; obj: Record<string, unknown>; msg: string | undefined }> } {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string | undefined }> = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  const log = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return log;
}

describe('LogThrottle and failureLogger', () => {
  it('logs a different cause at once, the same cause once per interval with the count, and bounds its keys', () => {
    let now = 0;
    const t = new LogThrottle(10_000, () => now, 3);
    const out: string[] = [];
    for (let i = 0; i < 5; i++) t.log('a', (s) => out.push(`a${s.suppressed ?? 0}`));
    t.log('b', (s) => out.push(`b${s.suppressed ?? 0}`));
    now = 10_000;
    t.log('a', (s) => out.push(`a${s.suppressed ?? 0}`));
    expect(out).toEqual(['a0', 'b0', 'a4']);
    for (let i = 0; i < 100; i++) t.log(`k${i}`, () => undefined);
    expect((t as unknown as { last: Map<string, unknown> }).last.size).toBeLessThanOrEqual(3);
  });

  it('a 5xx INTERNAL of the Chat API is logged with its cause; a second, different bug is not hidden by the first', () => {
    const log = memoryLog();
    const onError = failureLogger(log, 'chat api request failed');
    onError(new ParleyError('INTERNAL', undefined, { cause: new TypeError('x is undefined') }));
    onError(new ParleyError('INTERNAL', undefined, { cause: new RangeError('bad length') }));
    onError(new ParleyError('INTERNAL', undefined, { cause: new TypeError('x is undefined') }));
    expect(log.lines.map((l) => l.msg)).toEqual(['chat api request failed: x is undefined', 'chat api request failed: bad length']);
    // A planned refusal and a client's error are not logged.
    onError(new ParleyError('UNAVAILABLE', 'shutting down'));
    onError(new ParleyError('MISSING_PARAMETER', 'message is required.'));
    expect(log.lines).toHaveLength(2);
  });
});

describe('clientKey', () => {
  it('keeps IPv6 zone ids, odd strings and IPv4 apart as expected', () => {
    expect(clientKey('fe80::1%eth0')).toBe(clientKey('fe80::2%eth1'));
    expect(clientKey('not an address')).toBe('not an address');
    expect(clientKey('[2001:db8::1]')).toBe('2001:0db8:0000:0000::/64');
    expect(clientKey('::ffff:10.0.0.1')).not.toBe(clientKey('::ffff:10.0.0.2'));
  });

  // Regression test (this was a bug, now fixed). Was: src/http/client-key.ts:13 keys every IPv6 address by its /64, also those that embed an IPv4
  // address (RFC 6052 NAT64 well-known prefix 64:ff9b::/96, as a SIIT-DC / NAT46 front end shows IPv4
  // customers to an IPv6-only server). Every IPv4 customer then shares ONE per-client budget and one
  // sign-in throttle ([http] per-client limits, docs/security: "counted per client"): one busy customer
  // rate-limits all. Right: an address with an embedded IPv4 (64:ff9b::/96, like ::ffff:0:0/96) is keyed
  // by that IPv4 address.
  it('two IPv4 customers seen through the NAT64 well-known prefix are two clients', () => {
    expect(clientKey('64:ff9b::c000:201')).not.toBe(clientKey('64:ff9b::c000:202'));
  });
});

describe('configuration messages', () => {
  it('a "key: value" line is named by its key only', () => {
    const r = readIni('[push]\nsigning-secret: s3cr3t-value-123\n');
    expect(r.problems[0]?.message).not.toContain('s3cr3t');
  });

  // Regression test (this was a bug, now fixed). Was: src/config/ini.ts:73 quotes up to 64 characters of a line without '=' ("only the line's first
  // word"). A secret wrapped onto its own line (or pasted alone) IS the first word, so it lands in the
  // error on stderr/logs — what commit 8c5e330 says no longer happens ("configuration errors do not quote a
  // malformed line's value"). Right: name the line by its number (and key when there is one), never quote
  // a first word of more than a few characters / a value-looking token.
  it('a secret alone on a line (wrapped from the line above) is not quoted in the error', () => {
    const secret = 'Zq8vN3kLp0Xw7Rt2Yb5Hc9Jm4Ds6Fg1';
    const r = readIni(`[push]\nsigning-secret =\n${secret}\n`);
    expect(r.problems.length).toBeGreaterThan(0);
    expect(r.problems.map((p) => p.message).join('\n')).not.toContain(secret.slice(0, 8));
  });
});
