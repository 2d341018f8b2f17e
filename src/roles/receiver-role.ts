/** Builds the receiver role (token cache, gateway client, receiver, health watch, HTTP surface). */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { Config } from '../config/catalogue.ts';
import type { Logger } from '../log.ts';
import { GatewayClient } from '../receiver/gateway-client.ts';
import { HealthWatch } from '../receiver/health-watch.ts';
import { checkRate, rateLimitsFrom } from '../gateway/chat-api.ts';
import { createReceiverHttp } from '../receiver/receiver-http.ts';
import { Receiver } from '../receiver/receiver.ts';
import { TokenCache } from '../receiver/token-cache.ts';

export interface ReceiverRole {
  readonly receiver: Receiver;
  readonly health: HealthWatch;
  readonly http: ReturnType<typeof createReceiverHttp>;
  close(): Promise<void>;
}

export function createReceiverRole(
  config: Config,
  opts: { gatewayUrl: string; healthUrls: readonly string[]; clock: Clock; log: Logger; random?: () => number; autoRun?: boolean },
): ReceiverRole {
  const rc = config.receiver;
  const log = opts.log.child({ component: 'receiver' });
  const cache = new TokenCache(rc.storePath, () => opts.clock.now());
  const gateway = new GatewayClient(opts.gatewayUrl, rc.service, { timeoutMs: 10_000, apiKey: config.http.apiKey });
  const receiver = new Receiver(
    cache,
    gateway,
    opts.clock,
    {
      nodeGroup: rc.nodeGroup,
      pingIntervalMs: rc.pingIntervalMs,
      endedRetentionMs: rc.endedRetentionMs,
      restoreConcurrency: rc.restoreConcurrency,
      random: opts.random ?? Math.random,
      newToken: () => randomBytes(24).toString('base64url'),
      newDeviceId: () => `parley-${randomBytes(12).toString('base64url')}`,
    },
    log,
  );
  const health = new HealthWatch(opts.healthUrls, { failures: rc.healthFailures }, (alias) => void receiver.restoreNode(alias), log);
  const limits = rateLimitsFrom(config.http, () => opts.clock.now());
  const http = createReceiverHttp({
    receiver,
    signingSecret: rc.signingSecret,
    maxFileSize: config.fileTransfer.uploadMaxFileSize,
    log,
    limitClient: (address) => checkRate(limits, address, undefined),
    livenessMs: config.http.wsPingIntervalMs,
  });
  if (opts.autoRun ?? true) {
    receiver.run();
    health.run(rc.healthIntervalMs);
  }
  return {
    receiver,
    health,
    http,
    async close() {
      receiver.stop();
      health.stop();
      http.close();
      await gateway.close();
      cache.close();
    },
  };
}
