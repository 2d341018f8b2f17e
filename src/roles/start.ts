/** `parley start`: every role in one process on the embedded store. */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { buildApp, type App } from '../app.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Config } from '../config/catalogue.ts';
import { createRandomIds, type IdSource } from '../ids.ts';
import type { Logger } from '../log.ts';
import { RECEIVER_PREFIX } from '../receiver/receiver-http.ts';
import { configInvalid } from '../config/problems.ts';
import { openStore } from '../store/open.ts';
import { listen } from './listen.ts';
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

/**
 * Pushes from this process to its own receiver (`[push] customhttp.url` empty) are signed, whatever the
 * file says: a secret set on one side is used on the other, and with none a random one is drawn for the
 * process. Otherwise anyone who can reach `/receiver/push` could show a browser forged chat events.
 */
export function signOwnPushes(config: Config, randomSecret: () => string = () => `whsec_${randomBytes(32).toString('base64')}`): Config {
  if (!config.receiver.enabled || config.push.customhttpUrl !== '') return config;
  if (config.push.signingSecret !== '' && config.receiver.signingSecret !== '') {
    // Signed with one, verified with the other: every push to this very receiver would be refused.
    if (config.push.signingSecret === config.receiver.signingSecret) return config;
    throw configInvalid([
      {
        file: 'config',
        section: 'receiver',
        key: 'signing-secret',
        message: 'differs from [push] signing-secret, and [push] customhttp.url is empty (pushes go to this receiver): set one of them, or the same in both',
      },
    ]);
  }
  const secret = config.push.signingSecret || config.receiver.signingSecret || randomSecret();
  return { ...config, push: { ...config.push, signingSecret: secret }, receiver: { ...config.receiver, signingSecret: secret } };
}

export async function startAll(fileConfig: Config, opts: StartOptions): Promise<Running> {
  const config = signOwnPushes(fileConfig);
  // The customer page starts its chats in [receiver] service: without that service no chat could open.
  if (config.receiver.enabled && !config.services.has(config.receiver.service)) {
    throw configInvalid([
      {
        file: 'config',
        section: 'receiver',
        key: 'service',
        message: `names no [chat.<name>] section ("${config.receiver.service}"; configured: ${[...config.services.keys()].join(', ')})`,
      },
    ]);
  }
  const store = await openStore(config);
  // With [push] customhttp.url empty, pushes go to this process's own receiver, wherever it listens.
  let ownReceiver: string | undefined;
  const app = await buildApp(config, {
    store,
    clock: opts.clock ?? systemClock,
    ids: opts.ids ?? createRandomIds(),
    log: opts.log,
    ...(opts.random === undefined ? {} : { random: opts.random }),
    ...(opts.autoPush === undefined ? {} : { autoRun: opts.autoPush }),
  }, { ownReceiver: () => ownReceiver });
  const http = await listen(config.http, app.handle, app.upgrade);
  if (config.receiver.enabled) ownReceiver = `${http.url}${RECEIVER_PREFIX}push`;
  const { server, url } = http;
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
      await http.close();
      await receiver?.close();
      await app.close();
    },
  };
}
