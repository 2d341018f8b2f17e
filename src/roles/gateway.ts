/**
 * `parley gateway`: a GMS node of a cluster. Chat API v2 for customers, routed by alias to the chat server
 * nodes registered in the shared store (restoring on a live node when the alias is dead); with
 * enable_notification_mode it keeps a notification socket to every node and delivers their flex-push
 * notifications through its customhttp provider.
 */
import { failureLogger } from '../http/failure-log.ts';
import { hostname } from 'node:os';
import { systemClock, type Clock } from '../clock.ts';
import { NodeDirectory } from '../cluster/node-directory.ts';
import type { Config } from '../config/catalogue.ts';
import { ParleyError } from '../errors.ts';
import { CHAT_API_PREFIX, createChatApi, rateLimitsFrom } from '../gateway/chat-api.ts';
import { createCustomHttpNode } from '../gateway/customhttp.ts';
import { NotificationLinks } from '../gateway/notification-link.ts';
import { RemoteNodeLink } from '../gateway/remote-node-link.ts';
import { handleCors } from '../http/cors.ts';
import { sendJson } from '../http/respond.ts';
import type { Logger } from '../log.ts';
import { createMetrics, sendMetrics } from '../metrics.ts';
import { HttpDelivery } from '../push/http-delivery.ts';
import { parseAllowList } from '../push/ssrf.ts';
import { openStore } from '../store/open.ts';
import { listen } from './listen.ts';
import { answerBadTarget, requestUrl } from '../http/request-url.ts';

export async function startGateway(config: Config, opts: { log: Logger; clock?: Clock }) {
  const clock = opts.clock ?? systemClock;
  const log = opts.log.child({ role: 'gateway' });
  const store = await openStore(config);
  const directory = new NodeDirectory(store, clock, { deadAfterMs: config.node.deadAfterMs, pollMs: 1000 }, log);
  await directory.refresh();
  directory.run();
  const link = new RemoteNodeLink(directory, { token: config.node.internalToken, timeoutMs: 15_000 });
  const metrics = createMetrics({ chatSeries: false });
  const chatApi = createChatApi({
    node: link,
    rateLimits: rateLimitsFrom(config.http, () => clock.now()),
    services: new Set(config.services.keys()),
    apiKey: config.http.apiKey,
    limits: { maxBodySize: config.http.maxBodySize, maxFieldLength: config.http.maxFieldLength, maxFileSize: config.fileTransfer.uploadMaxFileSize },
    onError: failureLogger(log, 'chat api request failed'),
  });
  const gatewayId = `gms-${hostname()}-${process.pid}`;
  let delivery: HttpDelivery | undefined;
  let links: NotificationLinks | undefined;
  if (config.chat.enableNotificationMode) {
    delivery = new HttpDelivery({ timeoutMs: config.push.requestTimeoutMs, connectionsPerOrigin: config.push.maxConcurrency, allow: parseAllowList(config.push.allowedNetworks) });
    const provider = createCustomHttpNode({ nodeId: gatewayId, config, delivery, clock, log: log.child({ component: 'customhttp' }) });
    links = new NotificationLinks(directory, provider, { token: config.node.internalToken, nodeId: gatewayId, livenessMs: config.http.wsPingIntervalMs }, log);
    links.run();
  }
  const http = await listen(config.http, (req, res) => {
    const url = requestUrl(req);
    if (url === undefined) return answerBadTarget(req, res);
    if (url.pathname.startsWith(CHAT_API_PREFIX)) {
      if (handleCors(req, res, config.http.corsAllowedOrigins)) return;
      return void chatApi(req, res, url.pathname, url.searchParams);
    }
    if (url.pathname === '/health' && req.method === 'GET') {
      const nodes = directory.live().map((n) => ({ app_dbid: n.appDbid, pid: n.pid, url: n.url }));
      return sendJson(res, 200, { status: 'ok', role: 'gateway', gateway_id: gatewayId, node_group: config.gateway.nodeGroup, nodes, notification_links: links?.connected ?? 0 });
    }
    if (url.pathname === '/metrics' && req.method === 'GET') return sendMetrics(res, metrics);
    req.resume();
    const err = new ParleyError('NOT_FOUND');
    sendJson(res, 404, { error: { code: err.code, message: err.message } });
  });
  log.info({ url: http.url, gatewayId }, 'gateway listening');
  return {
    url: http.url,
    directory,
    async close() {
      links?.stop();
      directory.stop();
      await http.close();
      await link.close();
      await delivery?.close();
      await store.close();
    },
  };
}
