import { describe, expect, it } from 'vitest';
import { requestUrl } from './request-url.ts';

describe('requestUrl', () => {
  it('parses ordinary targets with their query', () => {
    const u = requestUrl({ url: '/genesys/2/chat/svc?x=1&y=%20' });
    expect(u?.pathname).toBe('/genesys/2/chat/svc');
    expect(u?.searchParams.get('y')).toBe(' ');
  });

  it('never throws on targets that new URL(target, base) refuses, and keeps // as a path', () => {
    for (const t of ['//', '//a b/', '//[', '//%zz/', '/%00', '///x', '/a/../b']) {
      expect(() => requestUrl({ url: t })).not.toThrow();
      expect(requestUrl({ url: t })).toBeDefined();
    }
    expect(requestUrl({ url: '//desk/' })?.pathname).toBe('//desk/');
    expect(requestUrl({ url: '//desk/' })?.host).toBe('localhost');
  });

  it('takes an absolute-form target as it is, and gives undefined for one that is no URL', () => {
    expect(requestUrl({ url: 'http://example.test/health' })?.pathname).toBe('/health');
    expect(requestUrl({ url: '*' })).toBeUndefined();
    expect(requestUrl({ url: 'http://[' })).toBeUndefined();
  });

  it('reads a missing url as /', () => {
    expect(requestUrl({})?.pathname).toBe('/');
  });
});
