/**
 * The option catalogue: every section and option of the one INI file, with Genesys names.
 * Adding an option is one declaration here (plus its row in docs/configuration.md, which
 * `docs.test.ts` enforces); `Config` is derived from these declarations.
 */
import type {

  FieldName,
  FixedSection,
  GroupValues,
  Option,
  Simplify,
  TemplateSection,
} from './types.ts';

const NAME = /^[A-Za-z0-9_-]+$/;
const NAME_DOC = "letters, digits, '-' and '_'";

/**
 * A push target: an http(s) URL without user:password@ (the credentials would never be sent, so every POST
 * would be refused by the receiver); pushes are authenticated with [push] signing-secret.
 */
const PUSH_URL = /^https?:\/\/[^\s/?#@]+(?:[/?#]\S*)?$/;
const PUSH_URL_DOC = 'an http(s) URL without user:password@ (authenticate pushes with signing-secret)';

export const FIXED_SECTIONS = {
  node: {
    group: 'node',
    doc: 'This Parley node.',
    options: {
      'app-dbid': {
        type: 'string', default: '117', required: true, pattern: /^[0-9]+$/, patternDoc: 'digits only',
        doc: "The chat server's application DBID; it is also the chat server alias in the wire protocol.",
      },
      url: {
        type: 'string', default: '', pattern: /^(https?:\/\/\S+)?$/, patternDoc: 'an http(s) URL or empty',
        doc: 'URL at which gateways reach this chat server node; empty = the address it listens on.',
      },
      'internal-token': {
        type: 'string', default: '', secret: true,
        doc: 'Shared secret between gateways and chat server nodes for the internal API; empty = none (loopback only!).',
      },
      'heartbeat-interval': { type: 'seconds', default: 2, min: 1, max: 60, doc: 'How often a chat server node renews its registration.' },
      'dead-after': {
        type: 'seconds', default: 10, min: 2, max: 600,
        doc: "A node whose heartbeat has not moved for this long (on the observer's clock) is dead; its sessions are restored elsewhere.",
      },
    },
  },
  http: {
    group: 'http',
    doc: 'The HTTP listener of the GMS gateway (Chat API v2) and the agent API.',
    options: {
      host: { type: 'string', default: '127.0.0.1', required: true, doc: 'Address to listen on.' },
      port: { type: 'int', default: 8080, min: 0, max: 65535, doc: 'TCP port to listen on; 0 picks any free port.' },
      'api-key': {
        type: 'string', default: '', secret: true,
        doc: 'API key clients must send in the apikey or x-api-key header; empty = no key required.',
      },
      'cors-allowed-origins': {
        type: 'list', default: [], itemPattern: /^(\*|[a-z][a-z0-9+.-]*:\/\/[^\s/]+)$/,
        itemDoc: 'an origin such as http://host:port, or *',
        doc: 'Origins allowed to call the API from a browser; * allows any; empty = no CORS headers.',
      },
      'max-body-size': {
        type: 'int', default: 10485760, min: 1024, max: 1073741824,
        doc: 'Largest request body in bytes; must be at least upload-max-file-size + 65536.',
      },
      'rate-limit-per-client': {
        type: 'int', default: 0, min: 0, max: 1000000,
        doc: 'Chat API requests per second one client address may make (bursts of twice that); 0 = no limit. Over it: 429, statusCode 1.',
      },
      'rate-limit-per-session': {
        type: 'int', default: 0, min: 0, max: 1000000,
        doc: 'Chat API requests per second on one chat session (bursts of twice that); 0 = no limit.',
      },
      'rate-limit-exempt': {
        type: 'list', default: [], itemPattern: /^[0-9a-f:.]+$/, itemDoc: 'an IP address',
        doc: 'Client addresses not limited per client (a trusted receiver or proxy); sessions are still limited.',
      },
      'max-field-length': {
        type: 'int', default: 65536, min: 1, max: 10485760,
        doc: 'Longest text field (message, nickname, ...) in characters.',
      },
      'max-connections': {
        type: 'int', default: 10000, min: 0, max: 1000000,
        doc: 'Open TCP connections the listener accepts at once (keep-alive and WebSocket included); one more is closed at once. 0 = no cap.',
      },
      'ws-ping-interval': {
        type: 'seconds', default: 10, min: 1, max: 300,
        doc: 'WebSockets (desk, customer tab, node links) are pinged this often; one that missed the previous pong is closed (a peer gone without closing, an idle proxy timeout).',
      },
    },
  },
  store: {
    group: 'store',
    doc: 'Where chat sessions, transcripts and files are kept.',
    options: {
      type: {
        type: 'enum', values: ['sqlite', 'postgres'], default: 'sqlite',
        doc: 'Storage engine: the embedded SQLite file, or PostgreSQL shared by several nodes (HA).',
      },
      path: { type: 'string', default: './data/parley.db', required: true, doc: 'SQLite database file.' },
      url: {
        type: 'string', default: '', secret: true, pattern: /^(postgres(ql)?:\/\/\S+)?$/, patternDoc: 'a postgres:// URL or empty',
        doc: 'PostgreSQL connection URL (type = postgres), e.g. postgres://parley@127.0.0.1:5432/parley.',
      },
      'pool-size': { type: 'int', default: 16, min: 1, max: 1000, doc: 'PostgreSQL connections per process.' },
      synchronous: {
        type: 'enum', values: ['normal', 'full'], default: 'normal',
        doc: 'SQLite synchronous mode: full also survives power loss, normal only process crashes.',
      },
    },
  },
  'client-file-transfer': {
    group: 'fileTransfer',
    doc: 'File transfer limits for the chat client (the Genesys GMS section of the same name).',
    options: {
      'upload-max-total-size': {
        type: 'int', default: 5242880, min: 0, max: 1073741823,
        doc: 'Total bytes the client may upload in one chat.',
      },
      'upload-max-file-size': {
        type: 'int', default: 2097152, min: 0, max: 1073741823,
        doc: 'Largest single upload in bytes; at most upload-max-total-size.',
      },
      'upload-max-files': { type: 'int', default: 3, min: 0, max: 1000, doc: 'Files the client may upload in one chat.' },
      'upload-file-types': {
        type: 'list', separators: ':,', lowerCase: true, stripLeadingDots: true,
        default: ['bmp', 'csv', 'doc', 'docx', 'gif', 'jpeg', 'jpg', 'pdf', 'png', 'txt', 'xls', 'xlsx', 'zip'],
        itemPattern: /^[a-z0-9_-]+$/, itemDoc: 'a file extension',
        doc: "Allowed file extensions, ':' or ',' separated, case and leading dots ignored; empty = any type.",
      },
      'download-attempts': {
        type: 'int', default: 10, min: 0, max: 1000,
        doc: 'How many times the client may download one file; 0 = unlimited.',
      },
      'upload-need-agent': { type: 'bool', default: false, doc: 'Uploads are refused until an agent has joined the chat.' },
      'delete-file': {
        type: 'enum', values: ['own', 'any', 'none'], default: 'own',
        doc: 'Which files the client may delete: its own uploads, any file, or none.',
      },
    },
  },
  settings: {
    group: 'settings',
    doc: 'Chat Server options (the Genesys [settings] section): flex-push notifications.',
    options: {
      'flex-push-enabled': {
        type: 'bool', default: true,
        doc: 'Push notifications for subscribed (flex) clients. Genesys default NOT FOUND; Parley enables them.',
      },
      'flex-push-on-join': {
        type: 'bool', default: false,
        doc: 'Acknowledge the push subscription while the session is created (Request Chat); otherwise at the first request after it.',
      },
      'flex-push-content': {
        type: 'list', default: ['session-id', 'user-id'], lowerCase: true,
        itemPattern: /^(app-dbid|secure-key|session-id|user-id)$/, itemDoc: 'app-dbid, secure-key, session-id or user-id',
        doc: 'Tokens a notification carries so the receiver can acknowledge it: alias, secureKey, chatId, userId.',
      },
      'flex-push-resend-delay': {
        type: 'seconds', default: 15, min: 1, max: 86400,
        doc: 'Seconds between resends of a notification that asked for reliable delivery and is not yet acknowledged.',
      },
      'flex-push-resend-attempts': {
        type: 'int', default: 5, min: 0, max: 1000,
        doc: 'Resends of an unacknowledged notification before it is recorded as failed. Genesys default NOT FOUND; Parley uses 5.',
      },
      'flex-disconnect-timeout': {
        type: 'seconds', default: 45, min: 1, max: 1728000,
        doc: 'A web client without push that sends no request for this long is disconnected (inactivity = no protocol requests).',
      },
      'flex-push-timeout': {
        type: 'seconds', default: 86400, min: 1, max: 1728000,
        doc: 'Used instead of flex-disconnect-timeout for a push-subscribed client. Genesys default NOT FOUND; Parley uses 86400.',
      },
      'async-idle-alert': {
        type: 'seconds', default: 86400, min: 1, max: 1728000,
        doc: 'Async chats: after this long without qualifying activity, the alert notice; a dormant chat wakes up.',
      },
      'async-idle-close': {
        type: 'seconds', default: 3600, min: 1, max: 1728000,
        doc: 'Async chats: this long after the alert without qualifying activity, the close notice and the chat ends.',
      },
      'limit-for-sessions': {
        type: 'int', default: 1000, min: 0, max: 10000000,
        doc: 'Most open chat sessions this node handles; over it, Request Chat is refused with statusCode 1 (the gateway tries another node).',
      },
      'limit-for-flex-users': {
        type: 'int', default: 1001, min: 0, max: 10000000,
        doc: 'Most push-subscribed (flex) sessions this node handles; over it, new sessions are refused like limit-for-sessions.',
      },
      'limits-restore-threshold': {
        type: 'int', default: 80, min: 0, max: 100,
        doc: 'After a limit was reached, new sessions are taken again once the figure drops below this percentage of the limit.',
      },
      'shutdown-notify-flex-push': {
        type: 'int', default: 0, min: 0, max: 1,
        doc: 'With 1, a planned shutdown (SIGTERM) sends every push-subscribed session a ParticipantLeft of participantId 1 with quit-reason-advice=reconnect.',
      },
      'session-restore-push-send': {
        type: 'bool', default: false,
        doc: 'Push notifications resume at once after a session restoration started by the agent side; otherwise at the client\u2019s next request.',
      },
      'async-idle-notices': {
        type: 'enum', values: ['none', 'major', 'major2', 'typing', 'all'], default: 'major',
        doc: 'Which notices count as async activity: none, major (push URL, files), major2 (+ custom), typing (+ typing on), all.',
      },
    },
  },
  'inactivity-control': {
    group: 'inactivity',
    doc: 'Inactivity control of regular (not async) chats (the Genesys [inactivity-control] section).',
    options: {
      enabled: { type: 'bool', default: false, doc: 'Enables inactivity control of regular chat sessions.' },
      'include-notices': {
        type: 'enum', values: ['none', 'major', 'major2', 'typing', 'all'], default: 'major',
        doc: 'Which notices count as activity, as async-idle-notices.',
      },
      'timeout-alert': { type: 'seconds', default: 255, min: 1, max: 86400, doc: 'Inactivity before the first alert notice.' },
      'timeout-alert2': { type: 'seconds', default: 0, min: 0, max: 86400, doc: 'Time after the first alert before the second; 0 = no second alert.' },
      'timeout-close': { type: 'seconds', default: 45, min: 1, max: 86400, doc: 'Time after the last alert before the close notice and the end of the chat.' },
      'message-alert': {
        type: 'string', default: 'Chat session will be closed soon due to inactivity of chat participants.',
        doc: 'Text of the (first) alert notice; also used by async-idle-alert. Empty = no notice (the stage still counts).',
      },
      'message-alert2': {
        type: 'string', default: 'Chat session will be closed very soon due to inactivity of chat participants.',
        doc: 'Text of the second alert notice. Empty = no notice (the stage still counts).',
      },
      'message-close': {
        type: 'string', default: 'Chat session closed due to inactivity of chat participants.',
        doc: 'Text of the close notice; also used by async-idle-close. Empty = no notice (the chat still closes).',
      },
    },
  },
  routing: {
    group: 'routing',
    doc: 'How waiting chats reach agents (Parley; Genesys does this in the routing workflow).',
    options: {
      'last-agent-timeout': {
        type: 'seconds', default: 600, min: 0, max: 86400,
        doc: 'A woken or transferred chat is offered only to its last (or target) agent for this long, then to anyone; 0 = anyone at once. A chat woken while its last agent is not online goes to anyone at once.',
      },
    },
  },
  chat: {
    group: 'chat',
    doc: 'GMS chat options (the Genesys [chat] section).',
    options: {
      enable_notification_mode: {
        type: 'bool', default: false,
        doc: 'The gateway keeps a connection to the chat server and relays its notifications; without it no gateway node is found for push.',
      },
      push_notification_include_payload: {
        type: 'bool', default: false,
        doc: 'customhttp notifications carry the chat events and the flex-push-content tokens (a service or session may override).',
      },
    },
  },
  push: {
    group: 'push',
    doc: 'GMS push options (the Genesys [push] section) plus Parley delivery options.',
    options: {
      pushEnabled: {
        type: 'list', default: ['comet'], lowerCase: true,
        itemPattern: /^(android|gcm|ios|httpcb|orscb|customhttp|fcm|comet)$/, itemDoc: 'a GMS push type',
        doc: 'Enabled push types; Parley delivers customhttp. Without customhttp, notifications are dropped and logged, as in GMS.',
      },
      'customhttp.url': {
        type: 'string', default: '', pattern: PUSH_URL, patternDoc: PUSH_URL_DOC,
        doc: 'Where customhttp notifications are POSTed; required when pushEnabled has customhttp, except with [receiver] enabled: empty = the receiver of this process (parley start), on whatever port it listens.',
      },
      'customhttp.message': { type: 'string', default: '', doc: 'The message field of every customhttp notification.' },
      'debug.customhttp.url': {
        type: 'string', default: '', pattern: PUSH_URL, patternDoc: PUSH_URL_DOC,
        doc: 'URL used instead when the session asked for debug (GCTI_GMS_PushDebug); empty = customhttp.url.',
      },
      'debug.customhttp.message': { type: 'string', default: '', doc: 'Message used instead when the session asked for debug; empty = customhttp.message.' },
      'signing-secret': {
        type: 'string', default: '', secret: true,
        doc: 'When set, every POST carries Standard Webhooks headers signed with it (whsec_<base64> or any text).',
      },
      'allowed-networks': {
        type: 'list', default: ['public'], lowerCase: true,
        itemPattern: /^(public|loopback|private|[0-9a-f:.]+(\/[0-9]{1,3})?)$/, itemDoc: 'public, loopback, private, an address or a CIDR',
        doc: 'Push targets must resolve only into these networks (SSRF guard).',
      },
      'request-timeout': { type: 'seconds', default: 10, min: 1, max: 300, doc: 'Timeout of one POST to the receiver.' },
      'max-concurrency': { type: 'int', default: 256, min: 1, max: 10000, doc: 'POSTs in flight at once per chat server node (also the connections per receiver origin).' },
    },
  },
  receiver: {
    group: 'receiver',
    doc: 'The notification receiver and customer chat app (mid-layer between browsers and the gateway).',
    options: {
      enabled: { type: 'bool', default: true, doc: 'parley start runs the receiver and serves the customer page at /chat/.' },
      'gateway-url': {
        type: 'string', default: '', pattern: /^(https?:\/\/\S+)?$/, patternDoc: 'an http(s) URL or empty',
        doc: 'Base URL of the gateway the receiver calls; empty = this process (parley start).',
      },
      service: {
        type: 'string', default: 'customer-support', required: true, pattern: NAME, patternDoc: NAME_DOC,
        doc: 'The chat service the customer page starts chats in.',
      },
      'node-group': {
        type: 'string', default: 'gms-cluster', required: true, pattern: NAME, patternDoc: NAME_DOC,
        doc: 'GCTI_GMS_NodeGroup of the push subscriptions the receiver makes.',
      },
      'store-path': { type: 'string', default: './data/receiver.db', required: true, doc: 'SQLite file of the token cache.' },
      'ping-interval': {
        type: 'seconds', default: 1800, min: 1, max: 86400,
        doc: 'Rare ping refresh per session, spread out evenly, to catch missed notifications (never short polling).',
      },
      'ended-retention': {
        type: 'seconds', default: 604800, min: 60, max: 31536000,
        doc: 'How long an ended chat stays in the token cache, so that a browser coming back can still read its transcript; older ones are deleted (checked every hour).',
      },
      'health-urls': {
        type: 'list', default: [], itemPattern: /^https?:\/\/\S+$/, itemDoc: 'an http(s) URL',
        doc: 'Health endpoints of the chat server nodes to watch; empty = this process (parley start).',
      },
      'health-interval': { type: 'seconds', default: 5, min: 1, max: 3600, doc: 'How often each health endpoint is polled.' },
      'health-failures': {
        type: 'int', default: 3, min: 1, max: 100,
        doc: 'Failed polls in a row after which a node counts as down and its sessions are pinged.',
      },
      'restore-concurrency': { type: 'int', default: 16, min: 1, max: 1000, doc: 'Restoration pings in flight at once.' },
      'signing-secret': {
        type: 'string', default: '', secret: true,
        doc: 'Verify the Standard Webhooks signature of every push with this secret (the gateway\u2019s [push] signing-secret).',
      },
    },
  },
  gateway: {
    group: 'gateway',
    doc: 'This gateway (GMS) node.',
    options: {
      'node-group': {
        type: 'string', default: 'gms-cluster', required: true, pattern: NAME, patternDoc: NAME_DOC,
        doc: 'The GMS cluster this gateway belongs to; sessions name it in GCTI_GMS_NodeGroup.',
      },
    },
  },
} as const satisfies Readonly<Record<string, FixedSection>>;

export const TEMPLATE_SECTIONS = {
  chat: {
    group: 'services',
    doc: `One chat service per section; the Chat API v2 URL names it (/genesys/2/chat/<name>). Names: ${NAME_DOC}.`,
    idField: 'name',
    idLabel: '<name>',
    minCount: 1,
    options: {
      description: { type: 'string', default: '', doc: 'What the service is for (shown to agents).' },
      push_notification_include_payload: {
        type: 'enum', values: ['inherit', 'true', 'false'], default: 'inherit',
        doc: 'Overrides [chat] push_notification_include_payload for this service.',
      },
      'async-mode': {
        type: 'bool', default: false,
        doc: 'Every chat of this service is async (as if Request Chat sent userData[GCTI_Chat_AsyncMode]=true).',
      },
    },
  },
  agent: {
    group: 'agents',
    doc: `One agent per section; the id is the agent's login. Ids: ${NAME_DOC}.`,
    idField: 'agentId',
    idLabel: '<id>',
    minCount: 0,
    options: {
      name: { type: 'string', default: '', defaultFromId: true, doc: 'Display name shown to the customer.' },
      password: {
        type: 'string', default: '', required: true, minLength: 8, secret: true,
        doc: 'Agent login password, at least 8 characters.',
      },
      'max-chats': { type: 'int', default: 3, min: 1, max: 100, doc: 'How many chats the agent handles at once.' },
    },
  },
  push: {
    group: 'pushProviders',
    doc: `A named push provider, chosen by a session with GCTI_GMS_PushProvider. Names: ${NAME_DOC}.`,
    idField: 'name',
    idLabel: '<provider>',
    minCount: 0,
    options: {
      'customhttp.url': {
        type: 'string', default: '', required: true, pattern: PUSH_URL, patternDoc: PUSH_URL_DOC,
        doc: 'Where this provider POSTs.',
      },
      'customhttp.message': { type: 'string', default: '', doc: 'The message field for this provider.' },
      'debug.customhttp.url': { type: 'string', default: '', pattern: PUSH_URL, patternDoc: PUSH_URL_DOC, doc: 'Debug URL for this provider; empty = its customhttp.url.' },
      'debug.customhttp.message': { type: 'string', default: '', doc: 'Debug message for this provider; empty = its customhttp.message.' },
    },
  },
} as const satisfies Readonly<Record<string, TemplateSection>>;

/** Section ids of `[prefix.<id>]` sections must match this. */
export const SECTION_ID_PATTERN = NAME;
export const SECTION_ID_DOC = NAME_DOC;

type Fixed = typeof FIXED_SECTIONS;
type Templates = typeof TEMPLATE_SECTIONS;

type TemplateEntry<T extends TemplateSection> = Simplify<
  { readonly [F in T['idField']]: string } & GroupValues<T['options']>
>;

/** The validated, deep-frozen configuration. */
export type Config = Simplify<
  { readonly file: string } & {
    readonly [S in keyof Fixed as Fixed[S]['group']]: Simplify<GroupValues<Fixed[S]['options']>>;
  } & {
    readonly [P in keyof Templates as Templates[P]['group']]: ReadonlyMap<string, TemplateEntry<Templates[P]>>;
  }
>;

export type NodeConfig = Config['node'];
export type HttpConfig = Config['http'];
export type StoreConfig = Config['store'];
export type ServiceConfig = TemplateEntry<Templates['chat']>;
export type AgentConfig = TemplateEntry<Templates['agent']>;

// Runtime views of the declarations, loosely typed for iteration.

export const fixedSections: ReadonlyMap<string, FixedSection> = new Map(Object.entries(FIXED_SECTIONS));
export const templateSections: ReadonlyMap<string, TemplateSection> = new Map(Object.entries(TEMPLATE_SECTIONS));

/** The `Config` field of an option: camelCase key, plus `Ms` for seconds. Mirrors `FieldName`. */
export function fieldName<K extends string, O extends Option>(key: K, option: O): FieldName<K, O> {
  const camel = key.replace(/[-._]([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase());
  return (option.type === 'seconds' ? `${camel}Ms` : camel) as FieldName<K, O>;
}

/** `PARLEY_<SECTION>_<KEY>`, upper-cased, every non-alphanumeric character as `_`. */
export function envVarName(section: string, key: string): string {
  return `PARLEY_${section}_${key}`.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** Display name of a template family, e.g. `chat.<name>`. */
export function templateDisplayName(prefix: string, t: TemplateSection): string {
  return `${prefix}.${t.idLabel}`;
}

export interface CatalogueEntry {
  /** `http`, or `agent.<id>` for a template family. */
  readonly section: string;
  readonly key: string;
  readonly option: Option;
}

/** Every option, in catalogue order. */
export function catalogueEntries(): CatalogueEntry[] {
  const out: CatalogueEntry[] = [];
  for (const [section, s] of fixedSections) {
    for (const [key, option] of Object.entries(s.options)) out.push({ section, key, option });
  }
  for (const [prefix, t] of templateSections) {
    for (const [key, option] of Object.entries(t.options)) out.push({ section: templateDisplayName(prefix, t), key, option });
  }
  return out;
}
