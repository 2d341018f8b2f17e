import { describe, expect, it } from 'vitest';
import { firstWanted, parsePosition } from './transcript.ts';

describe('firstWanted', () => {
  it('carries nothing for 0 and none (transcriptPosition 0 = none, wire facts section 7)', () => {
    expect(firstWanted(0)).toBeUndefined();
    expect(firstWanted('none')).toBeUndefined();
  });

  it('carries the whole transcript for 1 and all', () => {
    expect(firstWanted(1)).toBe(1);
    expect(firstWanted('all')).toBe(1);
  });

  it('carries the events from n on for n > 1, however far past the end', () => {
    expect(firstWanted(3)).toBe(3);
    expect(firstWanted(999_999_999_999_999)).toBe(999_999_999_999_999);
  });
});

describe('parsePosition', () => {
  const fallbacks = ['all', 'none'] as const;

  it.each(fallbacks)('absent gives the fallback (%s)', (fb) => {
    expect(parsePosition(undefined, fb)).toBe(fb);
  });

  it.each(fallbacks)("'' gives the fallback (%s)", (fb) => {
    expect(parsePosition('', fb)).toBe(fb);
  });

  it.each(fallbacks)('whitespace only gives the fallback (%s)', (fb) => {
    expect(parsePosition('   ', fb)).toBe(fb);
  });

  it.each(fallbacks)("' 3 ' is trimmed to 3 (fallback %s)", (fb) => {
    expect(parsePosition(' 3 ', fb)).toBe(3);
  });

  it.each(fallbacks)("'0' is 0, not the fallback (fallback %s)", (fb) => {
    expect(parsePosition('0', fb)).toBe(0);
  });

  it.each(fallbacks)("'1' is 1 (fallback %s)", (fb) => {
    expect(parsePosition('1', fb)).toBe(1);
  });

  it.each(fallbacks)('a 15-digit number is accepted (fallback %s)', (fb) => {
    expect(parsePosition('999999999999999', fb)).toBe(999_999_999_999_999);
  });

  const invalid = ['-1', '1.5', 'abc', '1e3', '1234567890123456', '+3', '0x10', '3a', '1 2', 'Infinity', 'NaN', '٣'];
  for (const fb of fallbacks) {
    it.each(invalid)(`%j is invalid (fallback ${fb})`, (raw) => {
      expect(parsePosition(raw, fb)).toBe('invalid');
    });
  }
});
