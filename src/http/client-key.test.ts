import { expect, it } from 'vitest';
import { clientKey } from './client-key.ts';

it('counts an IPv4 client by its address (mapped or not) and an IPv6 client by its /64', () => {
  expect(clientKey('192.0.2.7')).toBe('192.0.2.7');
  expect(clientKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
  expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:0db8:0001:0002::/64');
  expect(clientKey('2001:db8:1:2:ffff:ffff:ffff:fffe')).toBe(clientKey('2001:0db8:0001:0002::9'));
  expect(clientKey('2001:db8:1:3::1')).not.toBe(clientKey('2001:db8:1:2::1'));
  expect(clientKey('::1')).toBe('0000:0000:0000:0000::/64');
  expect(clientKey('')).toBe('');
});

it('counts an IPv4 client behind NAT64 (64:ff9b::/96) by its IPv4 address', () => {
  expect(clientKey('64:ff9b::c000:207')).toBe('192.0.2.7');
  expect(clientKey('64:ff9b::c000:208')).not.toBe(clientKey('64:ff9b::c000:207'));
});
