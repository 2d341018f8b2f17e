/**
 * Cross-field rules: checks that involve more than one option. Each rule is reported under one
 * option and runs only when that option and every option it `uses` has a valid value.
 */
import { secretBytes } from '../push/signing.ts';
import type { Config } from './catalogue.ts';

export interface CrossFieldRule {
  /** Where the problem is reported. */
  readonly section: string;
  readonly key: string;
  /** Other options the rule reads, as [section, key]. */
  readonly uses: ReadonlyArray<readonly [string, string]>;
  /** The problem message, or undefined when the rule holds. */
  readonly check: (c: Config) => string | undefined;
}

/** Bytes a multipart request needs besides the file itself. */
export const MULTIPART_OVERHEAD = 65536;

export const CROSS_FIELD_RULES: readonly CrossFieldRule[] = [
  {
    section: 'http',
    key: 'max-body-size',
    uses: [['client-file-transfer', 'upload-max-file-size']],
    check: (c) => {
      const need = c.fileTransfer.uploadMaxFileSize + MULTIPART_OVERHEAD;
      return c.http.maxBodySize >= need
        ? undefined
        : `must be at least upload-max-file-size + ${MULTIPART_OVERHEAD} = ${need}, got ${c.http.maxBodySize}`;
    },
  },
  {
    section: 'client-file-transfer',
    key: 'upload-max-file-size',
    uses: [['client-file-transfer', 'upload-max-total-size']],
    check: (c) =>
      c.fileTransfer.uploadMaxFileSize <= c.fileTransfer.uploadMaxTotalSize
        ? undefined
        : `must not exceed upload-max-total-size (${c.fileTransfer.uploadMaxTotalSize}), got ${c.fileTransfer.uploadMaxFileSize}`,
  },
  {
    section: 'push',
    key: 'customhttp.url',
    uses: [
      ['push', 'pushEnabled'],
      ['receiver', 'enabled'],
    ],
    // Empty with the receiver enabled: `parley start` POSTs to its own receiver (customhttp.ts).
    check: (c) =>
      c.push.pushEnabled.includes('customhttp') && c.push.customhttpUrl === '' && !c.receiver.enabled
        ? 'is required when pushEnabled includes customhttp (unless [receiver] enabled: then empty = this process\u2019s own receiver)'
        : undefined,
  },
  {
    // Peers judge a node dead when its heartbeat has not moved for dead-after: with heartbeats as slow as
    // that, a live node would be judged dead between two of them (and its ownership lease would be empty).
    section: 'node',
    key: 'heartbeat-interval',
    uses: [['node', 'dead-after']],
    check: (c) =>
      c.node.heartbeatIntervalMs < c.node.deadAfterMs
        ? undefined
        : `must be less than dead-after (${c.node.deadAfterMs / 1000} s), got ${c.node.heartbeatIntervalMs / 1000} s`,
  },
  // A whsec_ secret that does not decode would make every push fail to sign (or every push fail to verify).
  ...(['push', 'receiver'] as const).map(
    (section): CrossFieldRule => ({
      section,
      key: 'signing-secret',
      uses: [],
      check: (c) => {
        const secret = section === 'push' ? c.push.signingSecret : c.receiver.signingSecret;
        if (secret === '') return undefined;
        try {
          secretBytes(secret);
          return undefined;
        } catch (err) {
          return (err as Error).message;
        }
      },
    }),
  ),
  {
    section: 'store',
    key: 'url',
    uses: [['store', 'type']],
    check: (c) => (c.store.type === 'postgres' && c.store.url === '' ? 'is required when type = postgres' : undefined),
  },
];
