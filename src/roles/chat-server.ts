/**
 * `parley chat-server`: one chat server node of a cluster on a shared store. It registers itself (app dbid =
 * alias, pid, URL) with a heartbeat, loads the sessions it owns, restores sessions of dead nodes on demand
 * (compare-and-set), serves gateways through the internal API and notification sockets, and shuts down
 * in order on SIGTERM.
 */
import { buildApp, type App } from '../app.ts';
import { systemClock, type Clock } from '../clock.ts';
import { OwnershipLease } from '../cluster/lease.ts';
import { NodeDirectory } from '../cluster/node-directory.ts';
import { probingIsAlive } from '../cluster/owner-probe.ts';
import type { Config } from '../config/catalogue.ts';
import { createRandomIds } from '../ids.ts';
import type { Logger } from '../log.ts';
import { openStore } from '../store/open.ts';
import { listen } from './listen.ts';

export interface RunningNode {
  readonly app: App;
  readonly url: string;
  /** Planned shutdown: leave the registry, advise push clients to reconnect, finish, close. */
  shutdown(): Promise<void>;
  close(): Promise<void>;
}

export async function startChatServer(config: Config, opts: { log: Logger; clock?: Clock }): Promise<RunningNode> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log.child({ role: 'chat-server', app_dbid: config.node.appDbid });
  const store = await openStore(config);
  const directory = new NodeDirectory(store, clock, { deadAfterMs: config.node.deadAfterMs, pollMs: 1000 }, log);
  await directory.refresh();
  directory.run();
  const lease = OwnershipLease.forCluster(clock, config.node.deadAfterMs, config.node.heartbeatIntervalMs);
  let lapsed = false;
  const watchedLease = {
    valid(): boolean {
      const valid = lease.valid();
      if (!valid && !lapsed) log.warn({ leaseMs: lease.leaseMs }, 'ownership lease lapsed (no heartbeat reached the store): sessions are checked against the store before use');
      if (valid && lapsed) log.info({ leaseMs: lease.leaseMs }, 'ownership lease renewed');
      lapsed = !valid;
      return valid;
    },
    lapses: () => lease.lapses(),
  };
  const app = await buildApp(
    config,
    { store, clock, ids: createRandomIds(), log },
    { mode: 'node', loadScope: 'owned', isAlive: probingIsAlive(directory), lease: watchedLease },
  );
  const http = await listen(config.http, app.handle, app.upgrade);
  const url = config.node.url === '' ? http.url : config.node.url;
  const me = config.node.appDbid;
  const registeredAt = clock.now();
  await store.registerNode({ appDbid: me, pid: process.pid, url, startedAt: app.node.kpi.startedAt, heartbeatAt: registeredAt });
  lease.renewed(registeredAt);
  const beat = setInterval(() => {
    const at = clock.now();
    store.heartbeat(me, at).then(
      (registered) => {
        // Without its registry row this node is unknown to its peers, i.e. dead to them: no renewal.
        if (registered) lease.renewed(at);
        else log.warn({ appDbid: me }, 'heartbeat found no registration of this node: its sessions may be restored elsewhere');
      },
      (err: unknown) => log.warn({ err: (err as Error).message }, 'heartbeat failed'),
    );
  }, config.node.heartbeatIntervalMs);
  beat.unref();
  log.info({ url, pid: process.pid }, 'chat server node registered');

  let closed = false;
  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    clearInterval(beat);
    directory.stop();
    await http.close();
    await app.close();
  }

  return {
    app,
    url,
    async shutdown() {
      app.accepting = false;
      clearInterval(beat);
      // Leave the registry first, so that gateways and nodes restore this node's sessions elsewhere at once.
      await store.removeNode(me).catch(() => undefined);
      if (config.settings.shutdownNotifyFlexPush === 1) {
        const n = await app.node.notifyShutdown();
        log.info({ notified: n }, 'shutdown: reconnect advice sent to push-subscribed sessions');
      }
      await close();
    },
    close,
  };
}
