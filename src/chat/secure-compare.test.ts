import { describe, expect, it } from 'vitest';
import { constantTimeEqual } from './secure-compare.ts';

describe('constantTimeEqual', () => {
  it('is true for equal strings', () => {
    expect(constantTimeEqual('secret-key-123', 'secret-key-123')).toBe(true);
    expect(constantTimeEqual('a', 'a')).toBe(true);
  });

  it('is false for different strings of the same length', () => {
    expect(constantTimeEqual('secret-key-123', 'secret-key-124')).toBe(false);
    expect(constantTimeEqual('Xecret', 'secret')).toBe(false);
    expect(constantTimeEqual('abc', 'ABC')).toBe(false);
  });

  it('is false for different lengths', () => {
    expect(constantTimeEqual('abc', 'abcd')).toBe(false);
    expect(constantTimeEqual('abcd', 'abc')).toBe(false);
    expect(constantTimeEqual('x', 'yyyyyyyy')).toBe(false);
  });

  it('is false when one string repeats the other', () => {
    expect(constantTimeEqual('ab', 'abab')).toBe(false);
    expect(constantTimeEqual('aaaa', 'aa')).toBe(false);
  });

  it('handles empty strings', () => {
    expect(constantTimeEqual('', '')).toBe(true);
    expect(constantTimeEqual('', 'a')).toBe(false);
    expect(constantTimeEqual('a', '')).toBe(false);
    expect(constantTimeEqual('', '\0')).toBe(false);
  });

  it('is false when one is a prefix of the other', () => {
    expect(constantTimeEqual('secret', 'secret-key')).toBe(false);
    expect(constantTimeEqual('secret-key', 'secret')).toBe(false);
  });

  it('compares unicode correctly', () => {
    expect(constantTimeEqual('clé-😀-ключ', 'clé-😀-ключ')).toBe(true);
    expect(constantTimeEqual('clé', 'cle')).toBe(false);
    expect(constantTimeEqual('😀', '😁')).toBe(false);
    // Same UTF-16 length, different code points.
    expect(constantTimeEqual('😀', 'ab')).toBe(false);
    // Composed vs decomposed é: different strings, no normalisation.
    expect(constantTimeEqual('\u00e9', 'e\u0301')).toBe(false);
  });

  it('is false for strings differing only by a NUL', () => {
    expect(constantTimeEqual('abc\0', 'abc')).toBe(false);
    expect(constantTimeEqual('a\0c', 'abc')).toBe(false);
  });
});
