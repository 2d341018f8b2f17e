import { describe, expect, expectTypeOf, it } from 'vitest';
import type { FileLimits } from '../chat/file-limits.ts';
import {
  catalogueEntries,
  envVarName,
  fieldName,
  fixedSections,
  templateSections,
  type AgentConfig,
  type Config,
  type ServiceConfig,
} from './catalogue.ts';
import { readIni } from './ini.ts';
import { parseConfig } from './load.ts';
import { closest, editDistance } from './problems.ts';
import type { GroupValues, ListOption, Option, SecondsOption } from './types.ts';
import { defaultValue, parseValue } from './values.ts';

/** The raw INI text that denotes an option's default. */
function rawDefault(o: Option): string {
  if (o.type === 'list') return o.default.join((o.separators ?? ',')[0]);
  return String(o.default);
}

const MINIMAL = '[chat.support]\n[agent.a]\npassword = 12345678\n[push.p]\ncustomhttp.url = http://127.0.0.1:9/\n';

describe('Config type derived from the catalogue', () => {
  it('has exactly the shape the rest of Parley consumes', () => {
    expectTypeOf<Config['file']>().toEqualTypeOf<string>();
    expectTypeOf<Config['node']>().toEqualTypeOf<{
      readonly appDbid: string;
      readonly url: string;
      readonly internalToken: string;
      readonly heartbeatIntervalMs: number;
      readonly deadAfterMs: number;
    }>();
    expectTypeOf<Config['http']>().toEqualTypeOf<{
      readonly host: string;
      readonly port: number;
      readonly apiKey: string;
      readonly corsAllowedOrigins: readonly string[];
      readonly maxBodySize: number;
      readonly maxFieldLength: number;
      readonly rateLimitPerClient: number;
      readonly rateLimitPerSession: number;
      readonly rateLimitExempt: readonly string[];
      readonly maxConnections: number;
      readonly wsPingIntervalMs: number;
    }>();
    expectTypeOf<Config['store']>().toEqualTypeOf<{
      readonly type: 'sqlite' | 'postgres';
      readonly path: string;
      readonly url: string;
      readonly poolSize: number;
      readonly synchronous: 'normal' | 'full';
    }>();
    expectTypeOf<Config['fileTransfer']>().toEqualTypeOf<FileLimits>();
    expectTypeOf<ServiceConfig>().toEqualTypeOf<{
      readonly name: string;
      readonly description: string;
      readonly pushNotificationIncludePayload: 'inherit' | 'true' | 'false';
      readonly asyncMode: boolean;
    }>();
    expectTypeOf<Config['settings']>().toEqualTypeOf<{
      readonly flexPushEnabled: boolean;
      readonly flexPushOnJoin: boolean;
      readonly flexPushContent: readonly string[];
      readonly flexPushResendDelayMs: number;
      readonly flexPushResendAttempts: number;
      readonly flexDisconnectTimeoutMs: number;
      readonly flexPushTimeoutMs: number;
      readonly limitForSessions: number;
      readonly limitForFlexUsers: number;
      readonly limitsRestoreThreshold: number;
      readonly shutdownNotifyFlexPush: number;
      readonly sessionRestorePushSend: boolean;
      readonly asyncIdleAlertMs: number;
      readonly asyncIdleCloseMs: number;
      readonly asyncIdleNotices: 'none' | 'major' | 'major2' | 'typing' | 'all';
    }>();
    expectTypeOf<Config['inactivity']['timeoutAlert2Ms']>().toEqualTypeOf<number>();
    expectTypeOf<Config['routing']>().toEqualTypeOf<{ readonly lastAgentTimeoutMs: number }>();
    expectTypeOf<Config['chat']>().toEqualTypeOf<{
      readonly enableNotificationMode: boolean;
      readonly pushNotificationIncludePayload: boolean;
    }>();
    expectTypeOf<Config['push']['debugCustomhttpUrl']>().toEqualTypeOf<string>();
    expectTypeOf<Config['gateway']>().toEqualTypeOf<{ readonly nodeGroup: string }>();
    expectTypeOf<Config['pushProviders']>().toEqualTypeOf<
      ReadonlyMap<string, { readonly name: string; readonly customhttpUrl: string; readonly customhttpMessage: string; readonly debugCustomhttpUrl: string; readonly debugCustomhttpMessage: string }>
    >();
    expectTypeOf<AgentConfig>().toEqualTypeOf<{
      readonly agentId: string;
      readonly name: string;
      readonly password: string;
      readonly maxChats: number;
    }>();
    expectTypeOf<Config['services']>().toEqualTypeOf<ReadonlyMap<string, ServiceConfig>>();
    expectTypeOf<Config['agents']>().toEqualTypeOf<ReadonlyMap<string, AgentConfig>>();
  });

  it('names seconds options ...Ms, in types and at run time', () => {
    const idle = { type: 'seconds', default: 30, min: 1, max: 60, doc: '' } as const satisfies SecondsOption;
    expectTypeOf<GroupValues<{ 'idle-timeout': typeof idle }>>().toEqualTypeOf<{ readonly idleTimeoutMs: number }>();
    expect(fieldName('idle-timeout', idle)).toBe('idleTimeoutMs');
    expect(fieldName('upload-max-file-size', { type: 'int', default: 0, min: 0, max: 1, doc: '' })).toBe('uploadMaxFileSize');
    const flag = { type: 'bool', default: false, doc: '' } as const;
    expect(fieldName('debug.customhttp.url', flag)).toBe('debugCustomhttpUrl');
    expect(fieldName('enable_notification_mode', flag)).toBe('enableNotificationMode');
    expect(fieldName('pushEnabled', flag)).toBe('pushEnabled');
    const typed: 'debugCustomhttpUrl' = fieldName('debug.customhttp.url', flag);
    const mixed: 'aBC' = fieldName('a.b-c', flag);
    expect([typed, mixed]).toEqual(['debugCustomhttpUrl', 'aBC']);
    expect(defaultValue(idle)).toBe(30_000);
  });

  it('maps every catalogue entry to a Config field holding its default', () => {
    const c = parseConfig(MINIMAL, 'x.ini') as unknown as Record<string, unknown>;
    for (const [section, s] of fixedSections) {
      const group = c[s.group] as Record<string, unknown>;
      expect(Object.keys(group).sort(), section).toEqual(Object.entries(s.options).map(([k, o]) => fieldName(k, o)).sort());
      for (const [key, o] of Object.entries(s.options)) expect(group[fieldName(key, o)], key).toEqual(defaultValue(o));
    }
    for (const [prefix, t] of templateSections) {
      const entries = [...(c[t.group] as Map<string, Record<string, unknown>>).values()];
      expect(entries.length, prefix).toBe(1);
      const fields = [t.idField, ...Object.entries(t.options).map(([k, o]) => fieldName(k, o))];
      expect(Object.keys(entries[0] ?? {}).sort(), prefix).toEqual([...new Set(fields)].sort());
    }
  });
});

describe('catalogue declarations', () => {
  const entries = catalogueEntries();

  it('every key is kebab-case or a GMS spelling (customhttp.url, enable_notification_mode, pushEnabled) and has a one-line doc', () => {
    for (const { section, key, option } of entries) {
      expect(key, section).toMatch(/^[a-z][a-zA-Z0-9]*([-._][a-z0-9]+)*$/);
      expect(option.doc.length, key).toBeGreaterThan(5);
      expect(option.doc, key).not.toContain('\n');
    }
  });

  it('every default is valid for its own declaration', () => {
    for (const { section, key, option } of entries) {
      if (option.type === 'string' && (option.required || option.defaultFromId) && option.default === '') continue;
      const parsed = parseValue(option, rawDefault(option));
      expect(parsed, `${section} ${key}`).toEqual({ ok: true, value: defaultValue(option) });
    }
  });

  it('enum defaults are among the values, int defaults within range', () => {
    for (const { key, option } of entries) {
      if (option.type === 'enum') expect(option.values, key).toContain(option.default);
      if (option.type === 'int' || option.type === 'seconds') {
        expect(option.default, key).toBeGreaterThanOrEqual(option.min);
        expect(option.default, key).toBeLessThanOrEqual(option.max);
      }
    }
  });

  it('env variable names are unique', () => {
    const names = [...fixedSections].flatMap(([s, d]) => Object.keys(d.options).map((k) => envVarName(s, k)));
    expect(new Set(names).size).toBe(names.length);
    expect(envVarName('client-file-transfer', 'upload-max-files')).toBe('PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_MAX_FILES');
    expect(envVarName('http', 'port')).toBe('PARLEY_HTTP_PORT');
  });
});

describe('value parsers', () => {
  const str = (extra: object = {}): Option => ({ type: 'string', default: '', doc: 'd', ...extra });
  const int: Option = { type: 'int', default: 5, min: 0, max: 10, doc: 'd' };
  const secs: Option = { type: 'seconds', default: 5, min: 1, max: 60, doc: 'd' };
  const bool: Option = { type: 'bool', default: false, doc: 'd' };
  const en: Option = { type: 'enum', values: ['own', 'any'], default: 'own', doc: 'd' };
  const types: ListOption = { type: 'list', default: [], separators: ':,', lowerCase: true, stripLeadingDots: true, itemPattern: /^[a-z0-9]+$/, doc: 'd' };

  it('string: required, min length, pattern; secrets are not echoed', () => {
    expect(parseValue(str(), '')).toEqual({ ok: true, value: '' });
    expect(parseValue(str({ required: true }), '')).toEqual({ ok: false, message: 'must not be empty' });
    expect(parseValue(str({ pattern: /^[0-9]+$/, patternDoc: 'digits only' }), '12a')).toEqual({ ok: false, message: 'must be digits only, got "12a"' });
    const short = parseValue(str({ minLength: 8, secret: true }), 'hunter2');
    expect(short).toEqual({ ok: false, message: 'must be at least 8 characters' });
    expect(parseValue(str({ secret: true, pattern: /^x$/ }), 'topsecret')).not.toMatchObject({ message: expect.stringContaining('topsecret') });
  });

  it('int: whole numbers within range only', () => {
    expect(parseValue(int, '7')).toEqual({ ok: true, value: 7 });
    expect(parseValue(int, '+0')).toEqual({ ok: true, value: 0 });
    for (const raw of ['abc', '1.5', '1e1', '0x1', '', ' ']) {
      expect(parseValue(int, raw), raw).toMatchObject({ ok: false, message: expect.stringContaining('must be a whole number') });
    }
    expect(parseValue(int, '11')).toEqual({ ok: false, message: 'must be between 0 and 10, got 11' });
    expect(parseValue(int, '-1')).toMatchObject({ ok: false });
    expect(parseValue(int, '99999999999999999999')).toMatchObject({ ok: false });
  });

  it('seconds: whole seconds in range, returned as milliseconds', () => {
    expect(parseValue(secs, '30')).toEqual({ ok: true, value: 30_000 });
    expect(parseValue(secs, '0')).toEqual({ ok: false, message: 'must be between 1 and 60 (seconds), got 0' });
    expect(parseValue(secs, '2s')).toMatchObject({ ok: false, message: expect.stringContaining('(seconds)') });
  });

  it('bool: true/false/yes/no/1/0 in any case', () => {
    for (const raw of ['true', 'TRUE', 'Yes', '1']) expect(parseValue(bool, raw), raw).toEqual({ ok: true, value: true });
    for (const raw of ['false', 'False', 'NO', '0']) expect(parseValue(bool, raw), raw).toEqual({ ok: true, value: false });
    for (const raw of ['on', 'maybe', '', '2']) expect(parseValue(bool, raw), raw).toMatchObject({ ok: false });
  });

  it('enum: exact values only', () => {
    expect(parseValue(en, 'any')).toEqual({ ok: true, value: 'any' });
    expect(parseValue(en, 'ANY')).toEqual({ ok: false, message: 'must be one of own, any, got "ANY"' });
    expect(parseValue(en, '')).toMatchObject({ ok: false });
  });

  it('list: separators, trimming, lower-casing, leading dots, item checks', () => {
    expect(parseValue(types, ' .PDF : png,.txt,, ')).toEqual({ ok: true, value: ['pdf', 'png', 'txt'] });
    expect(parseValue(types, '')).toEqual({ ok: true, value: [] });
    expect(parseValue(types, 'pdf:ex e')).toEqual({ ok: false, message: 'each item must be like /^[a-z0-9]+$/; wrong: "ex e"' });
    const origins = fixedSections.get('http')?.options['cors-allowed-origins'] as Option;
    expect(parseValue(origins, '*')).toEqual({ ok: true, value: ['*'] });
    expect(parseValue(origins, 'http://a:1, https://b.example')).toEqual({ ok: true, value: ['http://a:1', 'https://b.example'] });
    expect(parseValue(origins, 'http://a/')).toMatchObject({ ok: false });
  });
});

describe('INI reader', () => {
  it('keeps dotted section names whole, strips comments and quotes, knows lines', () => {
    const ini = readIni('\uFEFF; c\n# c\n[chat.customer-support]\r\ndescription = "Help; here"\n [ http ] \nport=1\n');
    expect(ini.problems).toEqual([]);
    expect(ini.sections.map((s) => [s.name, s.line])).toEqual([['chat.customer-support', 3], ['http', 5]]);
    expect(ini.sections[0]?.entries.get('description')).toEqual({ key: 'description', value: 'Help; here', line: 4 });
  });

  it('merges repeated sections and reports duplicate keys, bad lines and keys outside sections', () => {
    const ini = readIni('a=1\n[http]\nport=1\n[store]\n[http]\nport=2\njunk\n=3\n[bad\nx=1\n');
    expect(ini.sections.map((s) => s.name)).toEqual(['http', 'store']);
    expect(ini.problems).toEqual([
      { section: '', key: 'a', message: 'key outside any section', line: 1 },
      { section: 'http', key: 'port', message: 'duplicate key (first set on line 3)', line: 6 },
      { section: 'http', key: '', message: 'expected "key = value" (the line is not quoted: it may hold a secret)', line: 7 },
      { section: 'http', key: '', message: 'missing key before "="', line: 8 },
      { section: 'http', key: '', message: 'malformed section header "[bad"', line: 9 },
    ]);
  });
});

describe('suggestions', () => {
  it('edit distance counts a swap of neighbours as one edit', () => {
    expect(editDistance('port', 'port')).toBe(0);
    expect(editDistance('prot', 'port')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
  });

  it('suggests the closest candidate within 3 edits only', () => {
    expect(closest('upload-max-file', ['upload-max-files', 'upload-max-file-size'])).toBe('upload-max-files');
    expect(closest('Port', ['host', 'port'])).toBe('port');
    expect(closest('completely-different', ['port'])).toBeUndefined();
  });
});
