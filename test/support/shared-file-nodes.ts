/**
 * Chat server nodes in the test process (buildChatNode, no HTTP of their own, engines ticked by hand) over
 * one SQLite file in a temp dir, with a manual clock and a set of the app dbids taken for alive: the set-up
 * of the HA, restore, routing and limits tests. `close()` stops and removes all of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildChatNode, type ChatNode } from '../../src/chat-server/node.ts';
import { ManualClock } from '../../src/clock.ts';
import { parseConfig } from '../../src/config/load.ts';
import { createRandomIds } from '../../src/ids.ts';
import { silentLogger } from '../../src/log.ts';
import type { Store } from '../../src/store/port.ts';
import { openSqliteStore } from '../../src/store/sqlite.ts';
import { BASE_INI } from '../helpers.ts';

export interface NodeOptions {
  /** INI text after test/helpers.ts BASE_INI. */
  readonly extraIni?: string;
  /** Default: the cluster's clock. */
  readonly clock?: ManualClock;
  /** Wraps the node's store (fault injection). */
  readonly wrap?: (s: Store) => Store;
  /** Randomness of the push backoff jitter (default: Math.random). */
  readonly random?: () => number;
}

export class SharedFileNodes {
  readonly dir = mkdtempSync(join(tmpdir(), 'parley-nodes-'));
  readonly clock = new ManualClock();
  readonly alive: Set<string>;
  private readonly stores: Store[] = [];
  private readonly nodes: ChatNode[] = [];
  private readonly servers: Server[] = [];
  private readonly closers: Array<() => Promise<unknown>> = [];

  constructor(alive: Iterable<string> = []) {
    this.alive = new Set(alive);
  }

  /** A store instance of its own on the shared SQLite file (or on another file of the dir). */
  openStore(name = 'parley.db'): Store {
    const s = openSqliteStore({ path: join(this.dir, name), synchronous: 'normal' });
    this.stores.push(s);
    return s;
  }

  async node(appDbid: string, o: NodeOptions = {}): Promise<ChatNode> {
    const config = parseConfig(BASE_INI + (o.extraIni ?? ''), 'test.ini', { PARLEY_NODE_APP_DBID: appDbid, PARLEY_STORE_PATH: join(this.dir, 'unused.db') });
    const store = this.openStore();
    const node = await buildChatNode(
      config,
      {
        store: o.wrap === undefined ? store : o.wrap(store),
        clock: o.clock ?? this.clock,
        ids: createRandomIds(),
        log: silentLogger,
        autoRun: false,
        ...(o.random === undefined ? {} : { random: o.random }),
      },
      { loadScope: 'owned', isAlive: async (owner) => this.alive.has(owner) },
    );
    this.nodes.push(node);
    return node;
  }

  /** Stops a node (its store instance stays open until close()). */
  async stop(node: ChatNode): Promise<void> {
    const i = this.nodes.indexOf(node);
    if (i >= 0) this.nodes.splice(i, 1);
    await node.close();
  }

  /** An HTTP server on 127.0.0.1 port 0, closed by close(); answers its base URL. */
  async listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
    const server = createServer(handler);
    this.servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Something to close before the nodes (a gateway link). */
  onClose(fn: () => Promise<unknown>): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    await Promise.all(this.closers.splice(0).map((f) => f()));
    for (const s of this.servers) s.closeAllConnections();
    await Promise.all(this.servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    for (const n of this.nodes.splice(0)) await n.close();
    for (const s of this.stores.splice(0)) await s.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
