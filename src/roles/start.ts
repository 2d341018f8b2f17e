/** `parley start`: every role in one process on the embedded store. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildApp, type App } from '../app.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Config } from '../config/catalogue.ts';
import { createRandomIds, type IdSource } from '../ids.ts';
import type { Logger } from '../log.ts';
import { RECEIVER_PREFIX } from '../receiver/receiver-http.ts';
import { openStore } from '../store/open.ts';
import { createReceiverRole, type ReceiverRole } from './receiver-role.ts';

export interface Running {
  readonly app: App;
  readonly receiver: ReceiverRole | undefined;
  readonly server: Server;
  /** Base URL, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  close(): Promise<void>;
}

export interface StartOptions {
  readonly log: Logger;
  readonly clock?: Clock;
  readonly ids?: IdSource;
  readonly random?: () => number;
  readonly autoPush?: boolean;
}

export async function startAll(config: Config, opts: StartOptions): Promise<Running> {
  const store = await openStore(config);
  const app = await buildApp(config, {
    store,
    clock: opts.clock ?? systemClock,
    ids: opts.ids ?? createRandomIds(),
    log: opts.log,
    ...(opts.random === undefined ? {} : { random: opts.random }),
    ...(opts.autoPush === undefined ? {} : { autoRun: opts.autoPush }),
  });
  const server = createServer({ keepAliveTimeout: 65_000 }, app.handle);
  server.on('upgrade', app.upgrade);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.http.port, config.http.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  let receiver: ReceiverRole | undefined;
  if (config.receiver.enabled) {
    const rc = config.receiver;
    receiver = createReceiverRole(config, {
      gatewayUrl: rc.gatewayUrl === '' ? url : rc.gatewayUrl,
      healthUrls: rc.healthUrls.length === 0 ? [`${url}/health`] : rc.healthUrls,
      clock: opts.clock ?? systemClock,
      log: opts.log,
      ...(opts.random === undefined ? {} : { random: opts.random }),
      ...(opts.autoPush === undefined ? {} : { autoRun: opts.autoPush }),
    });
    const r = receiver;
    app.mount({ prefix: RECEIVER_PREFIX, handle: r.http.handle, upgrade: r.http.upgrade });
  }
  return {
    app,
    receiver,
    server,
    url,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await receiver?.close();
      await app.close();
    },
  };
}
