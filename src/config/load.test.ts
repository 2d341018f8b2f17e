import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ParleyError } from '../errors.ts';
import type { Config } from './catalogue.ts';
import { loadConfigFile, parseConfig } from './load.ts';
import type { ConfigProblem } from './types.ts';

const SERVICE = '[chat.support]\n';
const SAMPLE = fileURLToPath(new URL('../../config/parley.ini', import.meta.url));

/** The problems of a config that must fail, and the error's message. */
function problemsOf(text: string, env: Record<string, string | undefined> = {}): { problems: ConfigProblem[]; message: string } {
  try {
    parseConfig(text, 'p.ini', env);
  } catch (err) {
    expect(err).toBeInstanceOf(ParleyError);
    const e = err as ParleyError;
    expect(e.code).toBe('CONFIG_INVALID');
    return { problems: e.details?.['problems'] as ConfigProblem[], message: e.message };
  }
  throw new Error('expected CONFIG_INVALID');
}

describe('parseConfig defaults', () => {
  it('fills every fixed section with its defaults', () => {
    const c = parseConfig(SERVICE, 'p.ini');
    expect(c.file).toBe('p.ini');
    expect(c.node).toEqual({ appDbid: '117', url: '', internalToken: '', heartbeatIntervalMs: 2000, deadAfterMs: 10000 });
    expect(c.http).toEqual({
      host: '127.0.0.1',
      port: 8080,
      apiKey: '',
      corsAllowedOrigins: [],
      maxBodySize: 10485760,
      maxFieldLength: 65536,
      rateLimitPerClient: 0,
      rateLimitPerSession: 0,
      rateLimitExempt: [],
      maxConnections: 10000,
      wsPingIntervalMs: 10000,
    });
    expect(c.store).toEqual({ type: 'sqlite', path: './data/parley.db', synchronous: 'normal', url: '', poolSize: 16 });
    expect(c.fileTransfer).toEqual({
      uploadMaxTotalSize: 5242880,
      uploadMaxFileSize: 2097152,
      uploadMaxFiles: 3,
      uploadFileTypes: ['bmp', 'csv', 'doc', 'docx', 'gif', 'jpeg', 'jpg', 'pdf', 'png', 'txt', 'xls', 'xlsx', 'zip'],
      downloadAttempts: 10,
      uploadNeedAgent: false,
      deleteFile: 'own',
    });
    expect([...c.services]).toEqual([['support', { name: 'support', description: '', pushNotificationIncludePayload: 'inherit', asyncMode: false }]]);
    expect(c.agents.size).toBe(0);
    expect(c.settings).toEqual({
      flexPushEnabled: true,
      flexPushOnJoin: false,
      flexPushContent: ['session-id', 'user-id'],
      flexPushResendDelayMs: 15000,
      flexPushResendAttempts: 5,
      flexDisconnectTimeoutMs: 45000,
      flexPushTimeoutMs: 86400000,
      limitForSessions: 1000,
      limitForFlexUsers: 1001,
      limitsRestoreThreshold: 80,
      shutdownNotifyFlexPush: 0,
      sessionRestorePushSend: false,
      asyncIdleAlertMs: 86400000,
      asyncIdleCloseMs: 3600000,
      asyncIdleNotices: 'major',
    });
    expect(c.inactivity).toEqual({
      enabled: false,
      includeNotices: 'major',
      timeoutAlertMs: 255000,
      timeoutAlert2Ms: 0,
      timeoutCloseMs: 45000,
      messageAlert: 'Chat session will be closed soon due to inactivity of chat participants.',
      messageAlert2: 'Chat session will be closed very soon due to inactivity of chat participants.',
      messageClose: 'Chat session closed due to inactivity of chat participants.',
    });
    expect(c.routing).toEqual({ lastAgentTimeoutMs: 600000 });
    expect(c.chat).toEqual({ enableNotificationMode: false, pushNotificationIncludePayload: false });
    expect(c.push).toEqual({
      pushEnabled: ['comet'],
      customhttpUrl: '',
      customhttpMessage: '',
      debugCustomhttpUrl: '',
      debugCustomhttpMessage: '',
      signingSecret: '',
      allowedNetworks: ['public'],
      requestTimeoutMs: 10000,
      maxConcurrency: 256,
    });
    expect(c.gateway).toEqual({ nodeGroup: 'gms-cluster' });
    expect(c.pushProviders.size).toBe(0);
  });

  it('parses values of every type', () => {
    const c = parseConfig(
      `${SERVICE}[http]\nport=0\ncors-allowed-origins = *\n[client-file-transfer]\nupload-file-types = .PDF, png\nupload-need-agent = YES\ndelete-file = none\n[store]\nsynchronous = full\n`,
      'p.ini',
    );
    expect(c.http.port).toBe(0);
    expect(c.http.corsAllowedOrigins).toEqual(['*']);
    expect(c.fileTransfer.uploadFileTypes).toEqual(['pdf', 'png']);
    expect(c.fileTransfer.uploadNeedAgent).toBe(true);
    expect(c.fileTransfer.deleteFile).toBe('none');
    expect(c.store.synchronous).toBe('full');
  });
});

describe('problems', () => {
  it('reports all problems together in one error, one line each', () => {
    const { problems, message } = problemsOf(`${SERVICE}[http]\nport = 70000\nhots = x\n[store]\ntype = mysql\n`);
    expect(problems).toEqual([
      { file: 'p.ini', section: 'http', key: 'port', message: 'must be between 0 and 65535, got 70000', line: 3 },
      { file: 'p.ini', section: 'http', key: 'hots', message: 'unknown key; did you mean "host"?', line: 4 },
      { file: 'p.ini', section: 'store', key: 'type', message: 'must be one of sqlite, postgres, got "mysql"', line: 6 },
    ]);
    expect(message.split('\n')).toEqual([
      'Invalid configuration (3 problems):',
      'p.ini [http] port: must be between 0 and 65535, got 70000 (line 3)',
      'p.ini [http] hots: unknown key; did you mean "host"? (line 4)',
      'p.ini [store] type: must be one of sqlite, postgres, got "mysql" (line 6)',
    ]);
  });

  it('suggests the closest key only within 3 edits', () => {
    expect(problemsOf(`${SERVICE}[client-file-transfer]\nupload-max-file = 1\n`).problems[0]?.message).toBe(
      'unknown key; did you mean "upload-max-files"?',
    );
    expect(problemsOf(`${SERVICE}[http]\nlisten-address = x\n`).problems[0]?.message).toBe('unknown key');
  });

  it('reports unknown sections, with a suggestion when close', () => {
    const { problems } = problemsOf(`${SERVICE}[htp]\nport=1\n[chats.sales]\n[frobnicator]\nlevel=debug\n`);
    expect(problems.map((p) => [p.section, p.key, p.message, p.line])).toEqual([
      ['htp', '', 'unknown section; did you mean [http]?', 2],
      ['chats.sales', '', 'unknown section; did you mean [chat.sales]?', 4],
      ['frobnicator', '', 'unknown section (known: node, http, store, client-file-transfer, settings, inactivity-control, routing, chat, push, receiver, gateway, chat.<name>, agent.<id>, push.<provider>)', 5],
    ]);
  });

  it('reports syntax problems with the file and line', () => {
    const { message } = problemsOf(`${SERVICE}[http]\nport 8080\n`);
    expect(message).toContain('p.ini [http]: expected "key = value" (the line is not quoted: it may hold a secret) (line 3)');
  });

  it('checks app-dbid is digits', () => {
    expect(problemsOf(`${SERVICE}[node]\napp-dbid = abc\n`).problems[0]?.message).toBe('must be digits only, got "abc"');
  });
});

describe('push', () => {
  it('reads the GMS push options, provider sections and the customhttp.url rule', () => {
    const c = parseConfig(
      `${SERVICE}[chat]\nenable_notification_mode=true\n[push]\npushEnabled=customhttp\ncustomhttp.url=http://127.0.0.1:9000/push\ncustomhttp.message=dummy message\n[push.AsyncSMSChat]\ncustomhttp.url=https://sms.example/push\n[settings]\nflex-push-content=app-dbid, secure-key\nflex-push-resend-delay=2\n`,
      'p.ini',
    );
    expect(c.chat.enableNotificationMode).toBe(true);
    expect(c.push.customhttpUrl).toBe('http://127.0.0.1:9000/push');
    expect(c.push.customhttpMessage).toBe('dummy message');
    expect(c.pushProviders.get('AsyncSMSChat')?.customhttpUrl).toBe('https://sms.example/push');
    expect(c.settings.flexPushContent).toEqual(['app-dbid', 'secure-key']);
    expect(c.settings.flexPushResendDelayMs).toBe(2000);
    const bad = problemsOf(`${SERVICE}[push]\npushEnabled=customhttp,telegram\n[settings]\nflex-push-content=session-id,chat-id\n`).problems;
    expect(bad.map((p) => `${p.section} ${p.key}`)).toEqual(['push pushEnabled', 'settings flex-push-content']);
    const notHttp = problemsOf(`${SERVICE}[push]\npushEnabled=customhttp\ncustomhttp.url=ftp://files.example/push\n[push.x]\ncustomhttp.url=javascript:alert(1)\n`).problems;
    expect(notHttp.map((p) => `${p.section} ${p.key}: ${p.message}`)).toEqual([
      'push customhttp.url: must be an http(s) URL without user:password@ (authenticate pushes with signing-secret), got "ftp://files.example/push"',
      'push.x customhttp.url: must be an http(s) URL without user:password@ (authenticate pushes with signing-secret), got "javascript:alert(1)"',
    ]);
    const missing = problemsOf(`${SERVICE}[push]\npushEnabled=customhttp\n[receiver]\nenabled=false\n`).problems;
    expect(missing.map((p) => `${p.section} ${p.key}: ${p.message}`)).toEqual([
      'push customhttp.url: is required when pushEnabled includes customhttp (unless [receiver] enabled: then empty = this process\u2019s own receiver)',
    ]);
    // With the receiver of this process enabled, empty means "POST to it".
    expect(parseConfig(`${SERVICE}[push]\npushEnabled=customhttp\n[receiver]\nenabled=true\n`, 'test.ini', {}).push.customhttpUrl).toBe('');
  });
});

describe('services and agents', () => {
  it('needs at least one service', () => {
    const { problems } = problemsOf('[http]\nport=1\n');
    expect(problems).toEqual([{ file: 'p.ini', section: 'chat.<name>', key: '', message: 'at least 1 [chat.<name>] section is required' }]);
  });

  it('reads services and agents, with name defaulting to the id', () => {
    const c = parseConfig(
      '[chat.sales]\ndescription = Buy things\n[chat.help_2]\n[agent.alice]\nname = Alice A.\npassword = 12345678\nmax-chats = 5\n[agent.bob]\npassword = abcdefgh\n',
      'p.ini',
    );
    expect([...c.services.keys()]).toEqual(['sales', 'help_2']);
    expect(c.services.get('sales')).toEqual({ name: 'sales', description: 'Buy things', pushNotificationIncludePayload: 'inherit', asyncMode: false });
    expect(c.agents.get('alice')).toEqual({ agentId: 'alice', name: 'Alice A.', password: '12345678', maxChats: 5 });
    expect(c.agents.get('bob')).toEqual({ agentId: 'bob', name: 'bob', password: 'abcdefgh', maxChats: 3 });
  });

  it('reports agent problems without echoing passwords', () => {
    const { problems, message } = problemsOf(
      `${SERVICE}[agent.a]\nname = A\n[agent.b]\npassword = short\nmax-chats = 0\nmax-chat = 1\n[agent.c d]\n[chat.]\n`,
    );
    expect(problems.map((p) => [p.section, p.key, p.message])).toEqual([
      ['agent.a', 'password', 'missing required value'],
      ['agent.b', 'password', 'must be at least 8 characters'],
      ['agent.b', 'max-chats', 'must be between 1 and 100, got 0'],
      ['agent.b', 'max-chat', 'unknown key; did you mean "max-chats"?'],
      ['agent.c d', '', "section must be [agent.<id>] with <id> made of letters, digits, '-' and '_'"],
      ['chat.', '', "section must be [chat.<name>] with <name> made of letters, digits, '-' and '_'"],
    ]);
    expect(message).not.toContain('short');
  });
});

describe('cross-field rules', () => {
  it('heartbeat-interval must be below dead-after (else a live node looks dead between two heartbeats)', () => {
    const { problems } = problemsOf(`${SERVICE}[node]\nheartbeat-interval = 5\ndead-after = 5\n`);
    expect(problems).toEqual([
      expect.objectContaining({ section: 'node', key: 'heartbeat-interval', message: 'must be less than dead-after (5 s), got 5 s' }),
    ]);
    expect(() => parseConfig(`${SERVICE}[node]\nheartbeat-interval = 4\ndead-after = 5\n`, 'p.ini')).not.toThrow();
  });

  it('max-body-size must cover upload-max-file-size + 65536', () => {
    const { problems } = problemsOf(`${SERVICE}[http]\nmax-body-size = 2097152\n`);
    expect(problems).toEqual([
      {
        file: 'p.ini',
        section: 'http',
        key: 'max-body-size',
        message: 'must be at least upload-max-file-size + 65536 = 2162688, got 2097152',
        line: 3,
      },
    ]);
    expect(() => parseConfig(`${SERVICE}[http]\nmax-body-size = 2162688\n`, 'p.ini')).not.toThrow();
  });

  it('upload-max-file-size must not exceed upload-max-total-size', () => {
    const { problems } = problemsOf(`${SERVICE}[client-file-transfer]\nupload-max-total-size = 1000\n`);
    expect(problems).toEqual([
      {
        file: 'p.ini',
        section: 'client-file-transfer',
        key: 'upload-max-file-size',
        message: 'must not exceed upload-max-total-size (1000), got 2097152',
      },
    ]);
  });

  it('is skipped when an input is itself invalid', () => {
    const { problems } = problemsOf(`${SERVICE}[client-file-transfer]\nupload-max-file-size = huge\nupload-max-total-size = 1\n`);
    expect(problems.map((p) => p.key)).toEqual(['upload-max-file-size']);
  });
});

describe('environment overrides', () => {
  it('override file values and defaults', () => {
    const c = parseConfig(`${SERVICE}[http]\nport = 8080\n`, 'p.ini', {
      PARLEY_HTTP_PORT: '0',
      PARLEY_STORE_PATH: '/tmp/x.db',
      PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_MAX_FILES: '5',
      PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_NEED_AGENT: 'yes',
      PARLEY_NODE_APP_DBID: undefined,
      HOME: '/root',
    });
    expect(c.http.port).toBe(0);
    expect(c.store.path).toBe('/tmp/x.db');
    expect(c.fileTransfer.uploadMaxFiles).toBe(5);
    expect(c.fileTransfer.uploadNeedAgent).toBe(true);
    expect(c.node.appDbid).toBe('117');
  });

  it('are validated, and their problems name the variable', () => {
    const { problems, message } = problemsOf(SERVICE, {
      PARLEY_HTTP_PORT: 'eighty',
      PARLEY_HTTP_PROT: '1',
      PARLEY_HTTP_MAX_BODY_SIZE: '1024',
      PARLEY_OTHER_THING: 'ignored',
    });
    expect(problems).toEqual([
      { file: 'PARLEY_HTTP_PORT', section: 'http', key: 'port', message: 'must be a whole number, got "eighty"' },
      { file: 'PARLEY_HTTP_PROT', section: 'http', key: '', message: 'unknown environment override; did you mean PARLEY_HTTP_PORT?' },
      {
        file: 'PARLEY_HTTP_MAX_BODY_SIZE',
        section: 'http',
        key: 'max-body-size',
        message: 'must be at least upload-max-file-size + 65536 = 2162688, got 1024',
      },
    ]);
    expect(message).toContain('PARLEY_HTTP_PORT [http] port: must be a whole number, got "eighty"');
  });
});

describe('result', () => {
  it('is deep-frozen, maps included', () => {
    const c: Config = parseConfig('[chat.s]\n[agent.a]\npassword=12345678\n', 'p.ini');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.http)).toBe(true);
    expect(Object.isFrozen(c.fileTransfer.uploadFileTypes)).toBe(true);
    expect(Object.isFrozen(c.agents.get('a'))).toBe(true);
    expect(() => {
      (c.http as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => (c.services as Map<string, unknown>).set('x', {})).toThrow(TypeError);
    expect(() => (c.agents as Map<string, unknown>).delete('a')).toThrow(TypeError);
    expect(() => (c.agents as Map<string, unknown>).clear()).toThrow(TypeError);
    expect(c.agents.size).toBe(1);
  });
});

describe('loadConfigFile', () => {
  it('parses the sample config/parley.ini without problems', () => {
    const c = loadConfigFile(SAMPLE, {});
    expect(c.node.appDbid).toBe('117');
    expect(c.http).toMatchObject({ host: '127.0.0.1', port: 8080, corsAllowedOrigins: ['http://127.0.0.1:8080', 'http://localhost:8080'] });
    expect(c.store.path).toBe('./data/parley.db');
    expect(c.services.get('customer-support')?.description).not.toBe('');
    expect(c.agents.get('alice')).toEqual({ agentId: 'alice', name: 'Alice', password: 'alice-secret', maxChats: 3 });
    expect(c.agents.get('bob')).toEqual({ agentId: 'bob', name: 'Bob', password: 'bob-secret', maxChats: 3 });
    expect(c.fileTransfer).toEqual(parseConfig(SERVICE, 'defaults.ini').fileTransfer);
  });

  it('reads a file and applies env overrides', () => {
    const dir = mkdtempSync(join(tmpdir(), 'parley-config-'));
    try {
      const path = join(dir, 'p.ini');
      writeFileSync(path, `${SERVICE}[http]\nport = 9000\n`);
      expect(loadConfigFile(path, { PARLEY_HTTP_PORT: '9001' }).http.port).toBe(9001);
      expect(loadConfigFile(path, {}).file).toBe(path);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a missing file as CONFIG_INVALID naming the path', () => {
    const path = join(tmpdir(), 'parley-no-such-dir', 'missing.ini');
    let caught: unknown;
    try {
      loadConfigFile(path, {});
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ParleyError);
    const e = caught as ParleyError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain(path);
    expect(e.details?.['problems']).toEqual([{ file: path, section: '', key: '', message: 'config file not found' }]);
  });
});
