/** Review of configuration loading and validation against docs/configuration.md and docs/deployment.md. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ParleyError } from '../errors.ts';
import { silentLogger } from '../log.ts';
import { startAll } from '../roles/start.ts';
import { parseConfig } from './load.ts';
import type { ConfigProblem } from './types.ts';

const MIN = '[chat.customer-support]\n';

function problemsOf(text: string, env: Record<string, string | undefined> = {}): ConfigProblem[] {
  try {
    parseConfig(text, 'f.ini', env);
  } catch (err) {
    expect(err).toBeInstanceOf(ParleyError);
    expect((err as ParleyError).code).toBe('CONFIG_INVALID');
    return ((err as ParleyError).details as { problems: ConfigProblem[] }).problems;
  }
  return [];
}

describe('file format (docs/configuration.md "File format")', () => {
  it('accepts a BOM, CRLF line endings, comments, quotes and whitespace around names and values', () => {
    const text = '\uFEFF; comment\r\n# another\r\n[ http ]\r\n  port   =  "9001"  \r\nhost = \'127.0.0.1\'\r\n[chat.customer-support]\r\n';
    const c = parseConfig(text, 'f.ini');
    expect(c.http.port).toBe(9001);
    expect(c.http.host).toBe('127.0.0.1');
  });

  it('keeps an inline comment as part of the value (so an int with one is refused)', () => {
    expect(problemsOf(`[http]\nport = 8080 ; x\n${MIN}`)).toEqual([
      { file: 'f.ini', section: 'http', key: 'port', message: 'must be a whole number, got "8080 ; x"', line: 2 },
    ]);
  });

  it('merges a repeated section and reports a key set twice in it', () => {
    const p = problemsOf(`[http]\nport = 1\n[store]\n[http]\nhost = h\nport = 2\n${MIN}`);
    expect(p).toEqual([{ file: 'f.ini', section: 'http', key: 'port', message: 'duplicate key (first set on line 2)', line: 6 }]);
  });

  it('reports every problem together, naming file, section, key and line', () => {
    const p = problemsOf('[http]\nport = 70000\nhots = x\n[stor]\n[agent.bob]\n[node]\nheartbeat-interval = 0\n', {
      PARLEY_STORE_TYPE: 'mysql',
      PARLEY_HTTP_PROT: '1',
    });
    const lines = p.map((x) => `${x.file} [${x.section}] ${x.key}`);
    expect(lines).toEqual(
      expect.arrayContaining([
        'f.ini [http] port',
        'f.ini [http] hots',
        'f.ini [stor] ',
        'f.ini [agent.bob] password',
        'f.ini [node] heartbeat-interval',
        'PARLEY_STORE_TYPE [store] type',
        'PARLEY_HTTP_PROT [http] ',
        'f.ini [chat.<name>] ',
      ]),
    );
    expect(p.length).toBe(8);
  });
});

describe('option types', () => {
  it('accepts every documented bool spelling in any case, and refuses others', () => {
    for (const [raw, want] of [
      ['true', true], ['TRUE', true], ['Yes', true], ['1', true],
      ['false', false], ['False', false], ['NO', false], ['0', false],
    ] as const) {
      expect(parseConfig(`[client-file-transfer]\nupload-need-agent = ${raw}\n${MIN}`, 'f.ini').fileTransfer.uploadNeedAgent).toBe(want);
    }
    expect(problemsOf(`[client-file-transfer]\nupload-need-agent = on\n${MIN}`)).toHaveLength(1);
    expect(problemsOf(`[client-file-transfer]\nupload-need-agent =\n${MIN}`)).toHaveLength(1);
  });

  it('splits lists on the documented separators, trimming items and dropping empty ones', () => {
    const c = parseConfig(`[client-file-transfer]\nupload-file-types = .TXT: pdf,, ,png:\n[http]\ncors-allowed-origins = http://a:1 , ,*\n${MIN}`, 'f.ini');
    expect(c.fileTransfer.uploadFileTypes).toEqual(['txt', 'pdf', 'png']);
    expect(c.http.corsAllowedOrigins).toEqual(['http://a:1', '*']);
  });

  it('turns seconds into milliseconds, defaults included', () => {
    const c = parseConfig(`[node]\nheartbeat-interval = 3\n${MIN}`, 'f.ini');
    expect(c.node.heartbeatIntervalMs).toBe(3000);
    expect(c.node.deadAfterMs).toBe(10_000);
    expect(c.settings.flexPushResendDelayMs).toBe(15_000);
    expect(c.push.requestTimeoutMs).toBe(10_000);
    expect(c.receiver.healthIntervalMs).toBe(5000);
  });

  it('applies the documented defaults of a minimal file', () => {
    const c = parseConfig(MIN, 'f.ini');
    expect(c.node.appDbid).toBe('117');
    expect(c.http).toMatchObject({ host: '127.0.0.1', port: 8080, maxBodySize: 10485760, maxFieldLength: 65536 });
    expect(c.store).toMatchObject({ type: 'sqlite', path: './data/parley.db', poolSize: 16, synchronous: 'normal' });
    expect(c.settings).toMatchObject({ limitForSessions: 1000, limitForFlexUsers: 1001, limitsRestoreThreshold: 80, flexPushContent: ['session-id', 'user-id'] });
    expect(c.receiver).toMatchObject({ enabled: true, storePath: './data/receiver.db', pingIntervalMs: 1_800_000 });
  });

  it('enforces the documented cross-field rules', () => {
    expect(problemsOf(`[client-file-transfer]\nupload-max-file-size = 6000000\n${MIN}`).map((p) => p.key)).toEqual(['upload-max-file-size']);
    expect(problemsOf(`[http]\nmax-body-size = 2000000\n${MIN}`).map((p) => p.key)).toEqual(['max-body-size']);
  });
});

describe('environment overrides', () => {
  it('win over the file, are validated, and unknown ones under a section prefix are problems', () => {
    expect(parseConfig(`[http]\nport = 1\n${MIN}`, 'f.ini', { PARLEY_HTTP_PORT: ' 9002 ' }).http.port).toBe(9002);
    expect(problemsOf(MIN, { PARLEY_HTTP_PORT: '' })).toEqual([
      { file: 'PARLEY_HTTP_PORT', section: 'http', key: 'port', message: 'must be a whole number, got ""' },
    ]);
    expect(problemsOf(MIN, { PARLEY_CLIENT_FILE_TRANSFER_UPLOAD_MAXFILES: '3' })).toHaveLength(1);
    expect(problemsOf(MIN, { PARLEY_LOG_LEVEL: 'warn', HOME: '/x' })).toEqual([]);
  });

  // Regression test (this was a bug, now fixed). Was: an override that "wins over the file" does not silence the file's own invalid value. With a shared
  // cluster.ini (docs/deployment.md: "each overrides its own [node] and [http] by environment") that leaves
  // `app-dbid =` empty for every node to fill in, `PARLEY_NODE_APP_DBID=201 parley chat-server` still fails
  // with "[node] app-dbid: must not be empty". src/config/load.ts:72 (set) records the file's problem in
  // `this.problems` for good; the later successful override (applyEnv, load.ts:136 -> 70) only clears `invalid`,
  // not the recorded problem. Contradicts docs/configuration.md "An override wins over the file and is
  // validated the same way". Right: a valid override replaces the file's value, and the file value's problem
  // is dropped (the override is what is used).
  it('an override replaces an invalid file value instead of failing on it', () => {
    const c = parseConfig(`[node]\napp-dbid =\n[http]\nport =\n${MIN}`, 'cluster.ini', { PARLEY_NODE_APP_DBID: '201', PARLEY_HTTP_PORT: '8201' });
    expect(c.node.appDbid).toBe('201');
    expect(c.http.port).toBe(8201);
  });
});

describe('cross-section consistency', () => {
  // Regression test (this was a bug, now fixed: parley start refuses it). Was: [receiver] service (default customer-support) is not checked against the [chat.<name>] sections.
  // A file whose only service is [chat.sales] loads without a problem, `parley start` starts, and the
  // customer page at /chat/ (which starts chats in [receiver] service) can never open a chat: every start
  // is refused as an unknown service. src/config/rules.ts:20-86 (CROSS_FIELD_RULES) has no rule for it and
  // src/roles/start.ts:45 starts the receiver with it unchecked. Contradicts docs/configuration.md
  // "Parley checks the whole file before starting" / [receiver] service "The chat service the customer page
  // starts chats in". Right: CONFIG_INVALID naming "[receiver] service" when the receiver is enabled and
  // the service is not one of the [chat.<name>] sections.
  it('refuses a [receiver] service that names no [chat.<name>] section when parley start would run the receiver', async () => {
    const config = parseConfig('[chat.sales]\n', 'test.ini', {});
    const err = await startAll(config, { log: silentLogger }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ParleyError);
    expect((err as ParleyError).code).toBe('CONFIG_INVALID');
    const problems = (err as ParleyError).details?.['problems'] as ConfigProblem[];
    expect(problems.map((x) => `[${x.section}] ${x.key}`)).toEqual(['[receiver] service']);
    // Without the receiver (a cluster role's config), the same file is fine.
    expect(parseConfig('[chat.sales]\n[receiver]\nenabled = false\n', 'test.ini', {}).services.has('sales')).toBe(true);
  });
});

describe('docs/deployment.md', () => {
  it('its cluster.ini is valid as written, with the per-process overrides', () => {
    const doc = readFileSync(new URL('../../docs/deployment.md', import.meta.url), 'utf8');
    const m = /cat > cluster\.ini <<'INI'\n([\s\S]*?)\nINI/.exec(doc);
    expect(m?.[1]).toBeDefined();
    const c = parseConfig(m?.[1] ?? '', 'cluster.ini', { PARLEY_NODE_APP_DBID: '201', PARLEY_HTTP_PORT: '8201' });
    expect(c.node.appDbid).toBe('201');
    expect(c.store.type).toBe('postgres');
    expect(c.settings.shutdownNotifyFlexPush).toBe(1);
    expect(c.settings.flexPushContent).toEqual(['session-id', 'user-id', 'secure-key', 'app-dbid']);
    expect(c.receiver.healthUrls).toHaveLength(3);
  });
});
