import { createServer, type Server } from 'node:http';
import type { LookupAddress, LookupOptions } from 'node:dns';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyError } from '../errors.ts';
import { checkTarget, guardedLookup, parseAllowList, screenTarget, type NetworkAllowList, type Resolve } from './ssrf.ts';

const PUBLIC = parseAllowList(['public']);
const LOOPBACK = parseAllowList(['loopback']);
const PRIVATE = parseAllowList(['private']);

/** A resolver answering from a table, ENOTFOUND otherwise; never touches DNS. */
function fakeResolve(table: Record<string, string[]>): Resolve {
  return async (host) => {
    const list = table[host];
    if (list === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return list.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
}

describe('parseAllowList: public', () => {
  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '9.255.255.255',
    '11.0.0.0',
    '100.63.255.255',
    '100.128.0.0',
    '126.255.255.255',
    '128.0.0.0',
    '169.253.255.255',
    '169.255.0.0',
    '172.15.255.255',
    '172.32.0.0',
    '192.0.1.0',
    '192.0.3.0',
    '192.167.255.255',
    '192.169.0.0',
    '198.17.255.255',
    '198.20.0.0',
    '198.51.99.255',
    '198.51.101.0',
    '203.0.112.255',
    '203.0.114.0',
    '223.255.255.255',
    '2606:4700:4700::1111',
    '2001:4860:4860::8888',
    '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff',
    '2001:db9::',
    '3fff:1000::1',
    '::ffff:8.8.8.8',
    '::ffff:808:808',
    '[2606:4700::1]',
    '64:ff9b::8.8.8.8',
    '2002:808:808::1',
  ])('allows %s', (a) => {
    expect(PUBLIC.allows(a)).toBe(true);
  });

  it.each([
    '0.0.0.0',
    '0.255.255.255',
    '10.0.0.0',
    '10.255.255.255',
    '100.64.0.0',
    '100.127.255.255',
    '127.0.0.1',
    '127.255.255.255',
    '169.254.0.0',
    '169.254.169.254',
    '172.16.0.0',
    '172.31.255.255',
    '192.0.0.0',
    '192.0.0.255',
    '192.0.2.1',
    '192.168.0.0',
    '192.168.255.255',
    '198.18.0.0',
    '198.19.255.255',
    '198.51.100.7',
    '203.0.113.255',
    '224.0.0.1',
    '239.255.255.255',
    '240.0.0.0',
    '255.255.255.255',
    '::',
    '::1',
    '::127.0.0.1',
    'fc00::1',
    'fd12:3456::1',
    'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    'fe80::1',
    'fe80::1%eth0',
    'febf:ffff::1',
    'fec0::1',
    'ff02::1',
    'ff0e::1',
    '100::1',
    '2001:db8::1',
    '2001:db8:ffff::1',
    '2001::1',
    '2001:2::1',
    '3fff::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::FFFF:10.0.0.1',
    '::ffff:169.254.169.254',
    '64:ff9b::127.0.0.1',
    '64:ff9b::a9fe:a9fe',
    '64:ff9b:1::8.8.8.8',
    '2002:7f00:1::1',
    '2002:c0a8:101::1',
  ])('refuses %s', (a) => {
    expect(PUBLIC.allows(a)).toBe(false);
  });

  it('refuses anything that is not an IP address', () => {
    for (const a of ['', 'localhost', 'example.com', '1.2.3', '1.2.3.4.5', '256.0.0.1', '::g', '8.8.8.8/32']) expect(PUBLIC.allows(a)).toBe(false);
  });
});

describe('parseAllowList: loopback and private', () => {
  it('loopback is 127/8 and ::1 only', () => {
    for (const a of ['127.0.0.0', '127.0.0.1', '127.255.255.255', '::1', '::ffff:127.0.0.1', '[::1]']) expect(LOOPBACK.allows(a)).toBe(true);
    for (const a of ['126.255.255.255', '128.0.0.0', '::', '::2', '0.0.0.0', '10.0.0.1', '8.8.8.8', 'fe80::1']) expect(LOOPBACK.allows(a)).toBe(false);
  });

  it('private is 10/8, 172.16/12, 192.168/16 and fc00::/7', () => {
    for (const a of ['10.0.0.0', '10.255.255.255', '172.16.0.0', '172.31.255.255', '192.168.0.0', '192.168.255.255', 'fc00::', 'fdff::1', '::ffff:10.1.2.3']) {
      expect(PRIVATE.allows(a), a).toBe(true);
    }
    for (const a of ['9.255.255.255', '11.0.0.0', '172.15.255.255', '172.32.0.0', '192.167.255.255', '192.169.0.0', 'fbff::1', 'fe00::1', '127.0.0.1', '100.64.0.1']) {
      expect(PRIVATE.allows(a), a).toBe(false);
    }
  });

  it('keywords are case-insensitive and trimmed', () => {
    const l = parseAllowList([' Loopback ', 'PRIVATE']);
    expect(l.allows('127.0.0.1')).toBe(true);
    expect(l.allows('10.0.0.1')).toBe(true);
    expect(l.allows('8.8.8.8')).toBe(false);
    expect(l.description).toBe('loopback, private');
  });

  it('combines items: any item allowing the address is enough', () => {
    const l = parseAllowList(['public', 'loopback']);
    expect(l.allows('8.8.8.8')).toBe(true);
    expect(l.allows('127.0.0.1')).toBe(true);
    expect(l.allows('10.0.0.1')).toBe(false);
  });

  it('an empty list allows nothing', () => {
    const l = parseAllowList([]);
    expect(l.allows('8.8.8.8')).toBe(false);
    expect(l.allows('127.0.0.1')).toBe(false);
    expect(l.description).toBe('(nothing)');
  });
});

describe('parseAllowList: CIDRs and single addresses', () => {
  it('takes an IPv4 CIDR with exact boundaries', () => {
    const l = parseAllowList(['10.20.0.0/14']);
    for (const a of ['10.20.0.0', '10.23.255.255', '::ffff:10.21.0.1']) expect(l.allows(a), a).toBe(true);
    for (const a of ['10.19.255.255', '10.24.0.0', '10.20.0.0.1']) expect(l.allows(a), a).toBe(false);
  });

  it('takes an IPv6 CIDR with exact boundaries', () => {
    const l = parseAllowList(['2001:db8:abcd::/48']);
    expect(l.allows('2001:db8:abcd::')).toBe(true);
    expect(l.allows('2001:db8:abcd:ffff:ffff:ffff:ffff:ffff')).toBe(true);
    expect(l.allows('2001:db8:abce::')).toBe(false);
    expect(l.allows('2001:db8:abcc:ffff::1')).toBe(false);
  });

  it('takes prefix lengths that are not multiples of 8', () => {
    const l = parseAllowList(['192.168.1.128/25', 'fd00::/9']);
    expect(l.allows('192.168.1.128')).toBe(true);
    expect(l.allows('192.168.1.255')).toBe(true);
    expect(l.allows('192.168.1.127')).toBe(false);
    expect(l.allows('fd7f::1')).toBe(true);
    expect(l.allows('fd80::1')).toBe(false);
  });

  it('takes single addresses, v4 and v6', () => {
    const l = parseAllowList(['192.0.2.10', '2001:db8::10']);
    expect(l.allows('192.0.2.10')).toBe(true);
    expect(l.allows('192.0.2.11')).toBe(false);
    expect(l.allows('2001:db8::10')).toBe(true);
    expect(l.allows('2001:0db8:0000::0010')).toBe(true);
    expect(l.allows('2001:db8::11')).toBe(false);
  });

  it('0.0.0.0/0 and ::/0 allow every address of their family', () => {
    expect(parseAllowList(['0.0.0.0/0']).allows('127.0.0.1')).toBe(true);
    expect(parseAllowList(['0.0.0.0/0']).allows('::1')).toBe(false);
    expect(parseAllowList(['::/0']).allows('::1')).toBe(true);
    expect(parseAllowList(['::/0']).allows('127.0.0.1')).toBe(false);
  });

  it('judges IPv4-mapped IPv6 by its IPv4 address, on both sides', () => {
    const v4rule = parseAllowList(['203.0.113.0/24']);
    expect(v4rule.allows('::ffff:203.0.113.9')).toBe(true);
    expect(v4rule.allows('::ffff:cb00:7109')).toBe(true);
    const mappedRule = parseAllowList(['::ffff:203.0.113.0/120', '::ffff:198.51.100.1']);
    expect(mappedRule.allows('203.0.113.9')).toBe(true);
    expect(mappedRule.allows('203.0.114.9')).toBe(false);
    expect(mappedRule.allows('198.51.100.1')).toBe(true);
  });

  it('reports every invalid item together as CONFIG_INVALID', () => {
    let err: unknown;
    try {
      parseAllowList(['public', 'internet', '10.0.0.0/33', '10.0.0.1/8', '2001:db8::/129', '300.1.1.1', '', 'fe80::1%eth0', '10.0.0.0/-1', '10.0.0.0/']);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ParleyError);
    const pe = err as ParleyError;
    expect(pe.code).toBe('CONFIG_INVALID');
    for (const bad of ['"internet"', '"10.0.0.0/33"', '"10.0.0.1/8"', '"2001:db8::/129"', '"300.1.1.1"', '""', '"fe80::1%eth0"', '"10.0.0.0/-1"', '"10.0.0.0/"']) {
      expect(pe.message).toContain(bad);
    }
    expect(pe.message).not.toContain('"public"');
    expect(pe.details?.['problems']).toHaveLength(9);
  });

  it('describes itself with its items', () => {
    expect(parseAllowList(['public', '10.0.0.0/8', '::1']).description).toBe('public, 10.0.0.0/8, ::1');
  });
});

/** Calls a LookupFunction and collects what it hands to the callback. */
function callLookup(
  fn: ReturnType<typeof guardedLookup>,
  host: string,
  options: LookupOptions,
): Promise<{ err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family: number | undefined }> {
  return new Promise((done) => fn(host, options, (err, address, family) => done({ err, address, family })));
}

describe('guardedLookup', () => {
  const resolve = fakeResolve({
    mixed: ['10.0.0.5', '8.8.8.8', '127.0.0.1', '2606:4700::1', 'fe80::1', '1.1.1.1'],
    internal: ['10.0.0.5', '::1', '169.254.169.254'],
    v6only: ['2606:4700::1'],
  });
  const lookup = guardedLookup(PUBLIC, resolve);

  it('with all: true returns only the allowed addresses, in resolver order', async () => {
    const r = await callLookup(lookup, 'mixed', { all: true });
    expect(r.err).toBeNull();
    expect(r.address).toEqual([
      { address: '8.8.8.8', family: 4 },
      { address: '2606:4700::1', family: 6 },
      { address: '1.1.1.1', family: 4 },
    ]);
  });

  it('without all returns the first allowed (address, family)', async () => {
    const r = await callLookup(lookup, 'mixed', {});
    expect(r).toEqual({ err: null, address: '8.8.8.8', family: 4 });
  });

  it('honours the family asked for', async () => {
    expect(await callLookup(lookup, 'mixed', { family: 6 })).toEqual({ err: null, address: '2606:4700::1', family: 6 });
    expect((await callLookup(lookup, 'mixed', { family: 4, all: true })).address).toEqual([
      { address: '8.8.8.8', family: 4 },
      { address: '1.1.1.1', family: 4 },
    ]);
    const none = await callLookup(lookup, 'v6only', { family: 'IPv4' });
    expect(none.err?.code).toBe('EPUSHFORBIDDEN');
  });

  it.each([true, false])('fails with EPUSHFORBIDDEN naming the host when nothing is allowed (all: %s)', async (all) => {
    const r = await callLookup(lookup, 'internal', { all });
    expect(r.err).toBeInstanceOf(Error);
    expect(r.err?.code).toBe('EPUSHFORBIDDEN');
    expect(r.err?.message).toContain('internal');
    expect(r.err?.message).toContain('public');
  });

  it('passes resolver errors through', async () => {
    const r = await callLookup(lookup, 'nowhere.invalid', { all: true });
    expect(r.err?.code).toBe('ENOTFOUND');
  });

  it('checks IP-literal hosts without DNS', async () => {
    const noDns = guardedLookup(PUBLIC, () => Promise.reject(new Error('DNS must not be used')));
    expect(await callLookup(noDns, '8.8.8.8', {})).toEqual({ err: null, address: '8.8.8.8', family: 4 });
    expect((await callLookup(noDns, '::1', { all: true })).err?.code).toBe('EPUSHFORBIDDEN');
    expect((await callLookup(noDns, '127.0.0.1', {})).err?.code).toBe('EPUSHFORBIDDEN');
  });
});

describe('guardedLookup with a real connection through undici', () => {
  let server: Server;
  let port: number;

  beforeAll(async () => {
    server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  async function get(allow: NetworkAllowList): Promise<number> {
    const agent = new Agent({ connect: { lookup: guardedLookup(allow) } });
    try {
      const res = await request(`http://localhost:${port}/`, { dispatcher: agent });
      await res.body.text();
      return res.statusCode;
    } finally {
      await agent.close();
    }
  }

  it('connects to localhost when loopback is allowed', async () => {
    expect(await get(LOOPBACK)).toBe(200);
  });

  it('refuses localhost when only public is allowed', async () => {
    const err = await get(PUBLIC).then(
      () => undefined,
      (e: unknown) => e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException },
    );
    expect(err).toBeDefined();
    expect(err?.code === 'EPUSHFORBIDDEN' || err?.cause?.code === 'EPUSHFORBIDDEN').toBe(true);
  });
});

describe('checkTarget', () => {
  const resolve = fakeResolve({
    'hooks.example.com': ['93.184.216.34', '2606:2800:220:1::1'],
    'split.example.com': ['93.184.216.34', '10.0.0.5'],
    'empty.example.com': [],
    localhost: ['127.0.0.1', '::1'],
  });

  async function codeOf(url: string, allow: NetworkAllowList = PUBLIC): Promise<string | undefined> {
    try {
      await checkTarget(url, allow, resolve);
    } catch (err) {
      expect(err).toBeInstanceOf(ParleyError);
      return (err as ParleyError).code;
    }
    return undefined;
  }

  it('accepts http and https targets that resolve only to allowed addresses', async () => {
    expect(await codeOf('https://hooks.example.com/push?x=1')).toBeUndefined();
    expect(await codeOf('http://hooks.example.com:8080/push')).toBeUndefined();
    expect(await codeOf('HTTPS://HOOKS.EXAMPLE.COM/')).toBeUndefined();
    expect(await codeOf('http://8.8.8.8/')).toBeUndefined();
    expect(await codeOf('http://[2606:4700::1]:8443/')).toBeUndefined();
    expect(await codeOf('http://localhost:8080/', LOOPBACK)).toBeUndefined();
  });

  // undici (like node's net) skips `lookup` for IP-literal hosts, so checkTarget is the only guard for them.
  it.each([
    'http://127.0.0.1:1/',
    'http://[::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://0x7f.1/',
    'http://2130706433/',
    'http://0177.0.0.1/',
    'http://169.254.169.254/latest/meta-data/',
    'http://[fe80::1]/',
    'http://0.0.0.0/',
    'http://10.1.2.3/',
  ])('refuses the IP-literal target %s under public', async (url) => {
    expect(await codeOf(url)).toBe('PUSH_TARGET_FORBIDDEN');
  });

  it('refuses a host resolving to any forbidden address, or to none', async () => {
    expect(await codeOf('http://localhost:8080/')).toBe('PUSH_TARGET_FORBIDDEN');
    expect(await codeOf('http://split.example.com/')).toBe('PUSH_TARGET_FORBIDDEN');
    expect(await codeOf('http://empty.example.com/')).toBe('PUSH_TARGET_FORBIDDEN');
    expect(await codeOf('http://unknown.example.com/')).toBe('PUSH_TARGET_FORBIDDEN');
  });

  it('names the forbidden addresses in the reason', async () => {
    await expect(checkTarget('http://split.example.com/', PUBLIC, resolve)).rejects.toThrow(/10\.0\.0\.5/);
    await expect(checkTarget('http://127.0.0.1:1/', PUBLIC, resolve)).rejects.toThrow(/127\.0\.0\.1/);
  });

  it.each(['ftp://x', 'javascript:alert(1)', 'file:///etc/passwd', 'ws://hooks.example.com/', 'data:text/plain,hi'])(
    'refuses the scheme of %s',
    async (url) => {
      expect(await codeOf(url)).toBe('PUSH_TARGET_FORBIDDEN');
    },
  );

  it('refuses credentials in the URL', async () => {
    expect(await codeOf('http://user:pw@hooks.example.com/')).toBe('PUSH_TARGET_FORBIDDEN');
    expect(await codeOf('http://user@hooks.example.com/')).toBe('PUSH_TARGET_FORBIDDEN');
    expect(await codeOf('http://:pw@hooks.example.com/')).toBe('PUSH_TARGET_FORBIDDEN');
  });

  it.each(['', 'not a url', '/relative/path', 'hooks.example.com/push', 'http://'])('refuses %j as INVALID_PARAMETER', async (url) => {
    expect(await codeOf(url)).toBe('INVALID_PARAMETER');
  });
});

describe('screenTarget (the part without DNS, also used by every POST)', () => {
  it.each(['http://127.0.0.1:1/', 'http://[::1]/', 'http://0x7f.1/', 'http://169.254.169.254/latest/meta-data/', 'http://10.1.2.3/'])(
    'refuses the IP-literal target %s under public, without a lookup',
    (url) => {
      expect(() => screenTarget(url, PUBLIC)).toThrow(expect.objectContaining({ code: 'PUSH_TARGET_FORBIDDEN' }) as Error);
    },
  );

  it('passes a host name on (checked at lookup) and says whether the host was an address', () => {
    expect(screenTarget('https://hooks.example.com/push?x=1', PUBLIC)).toMatchObject({ host: 'hooks.example.com', literal: false });
    expect(screenTarget('http://[2606:4700::1]:8443/', PUBLIC)).toMatchObject({ host: '2606:4700::1', literal: true });
  });

  it('refuses other schemes and non-URLs with the same codes as checkTarget', () => {
    expect(() => screenTarget('ftp://x', PUBLIC)).toThrow(expect.objectContaining({ code: 'PUSH_TARGET_FORBIDDEN' }) as Error);
    expect(() => screenTarget('not a url', PUBLIC)).toThrow(expect.objectContaining({ code: 'INVALID_PARAMETER' }) as Error);
  });
});
