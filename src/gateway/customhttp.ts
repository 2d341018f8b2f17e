/**
 * The gateway's customhttp push provider (the GMS role): turns a chat server notification into a POST to
 * the configured URL, the way GMS is configured: `[push] pushEnabled`, `customhttp.url`,
 * `customhttp.message`, their `debug.` variants for sessions that asked for debug, and named providers
 * `[push.<provider>]` chosen by GCTI_GMS_PushProvider.
 */
import type { Clock } from '../clock.ts';
import type { DeliveryOutcome, Notification } from '../chat/notification.ts';
import type { Config } from '../config/catalogue.ts';
import type { Logger } from '../log.ts';
import { pushBody } from '../push/body.ts';
import type { GatewayNode } from '../push/gateway-registry.ts';
import type { HttpDelivery } from '../push/http-delivery.ts';
import { classifyAttempt } from '../push/retry-policy.ts';
import { signWebhook } from '../push/signing.ts';
import { LogThrottle } from '../log-throttle.ts';

export interface CustomHttpNodeOptions {
  readonly nodeId: string;
  readonly config: Pick<Config, 'push' | 'pushProviders' | 'chat' | 'services' | 'gateway'>;
  readonly delivery: HttpDelivery;
  readonly clock: Clock;
  readonly log: Logger;
  /**
   * Where the default provider POSTs when `[push] customhttp.url` is empty: the receiver of this very
   * process (`parley start`), known once it listens.
   */
  readonly ownReceiver?: () => string | undefined;
}

interface Target {
  readonly url: string;
  readonly message: string;
}

/** The URL and message for a notification, or why there is none. */
export function targetFor(config: CustomHttpNodeOptions['config'], n: Notification, ownReceiver?: () => string | undefined): Target | string {
  const name = n.subscription.provider;
  const p = name === undefined ? config.push : config.pushProviders.get(name);
  if (p === undefined) return `unknown push provider "${name}"`;
  const debug = n.subscription.debug;
  const configured = debug && p.debugCustomhttpUrl !== '' ? p.debugCustomhttpUrl : p.customhttpUrl;
  const url = configured === '' && name === undefined ? (ownReceiver?.() ?? '') : configured;
  const message = debug && p.debugCustomhttpMessage !== '' ? p.debugCustomhttpMessage : p.customhttpMessage;
  if (url === '') return `no customhttp.url for provider "${name ?? 'default'}"`;
  return { url, message };
}

/** GCTI_GMS_PushIncludePayload of the session, else the service's option, else [chat]. */
export function includePayload(config: CustomHttpNodeOptions['config'], n: Notification): boolean {
  if (n.subscription.includePayload !== undefined) return n.subscription.includePayload;
  const perService = config.services.get(n.serviceName)?.pushNotificationIncludePayload ?? 'inherit';
  if (perService !== 'inherit') return perService === 'true';
  return config.chat.pushNotificationIncludePayload;
}

/** A push URL as logged: scheme, host and path (a query may carry a token). */
function urlForLog(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(unparsable URL)';
  }
}

export function createCustomHttpNode(o: CustomHttpNodeOptions): GatewayNode {
  const { config } = o;
  const enabled = config.push.pushEnabled.includes('customhttp');
  const secret = config.push.signingSecret;
  const logs = new LogThrottle();
  return {
    nodeId: o.nodeId,
    group: config.gateway.nodeGroup,
    async deliver(n: Notification): Promise<DeliveryOutcome> {
      if (!enabled) {
        o.log.warn(
          { chatId: n.chatId, notificationId: n.id, deviceId: n.subscription.deviceId },
          `Event was not pushed for delivery to customhttp for device ${n.subscription.deviceId}: customhttp is not in [push] pushEnabled`,
        );
        return { kind: 'gone', reason: 'customhttp not enabled' };
      }
      const target = targetFor(config, n, o.ownReceiver);
      if (typeof target === 'string') {
        o.log.warn({ chatId: n.chatId, notificationId: n.id }, target);
        return { kind: 'gone', reason: target };
      }
      const body = JSON.stringify(pushBody(n, target.message, includePayload(config, n)));
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'Parley-push/1' };
      if (secret !== '') Object.assign(headers, signWebhook(secret, n.id, Math.floor(o.clock.now() / 1000), body));
      const result = await o.delivery.post(target.url, body, headers);
      const outcome = classifyAttempt(result, o.clock.now());
      if (outcome.kind === 'delivered') return outcome;
      // Which URL failed (main, debug or a provider's), once per 10 s per URL and reason, with a count.
      const where = urlForLog(target.url);
      logs.log(`${where} ${outcome.reason}`, (extra) =>
        o.log.info(
          { chatId: n.chatId, notificationId: n.id, attempt: n.attempts + 1, url: where, outcome, ...extra },
          'customhttp push not delivered',
        ),
      );
      return outcome;
    },
  };
}
