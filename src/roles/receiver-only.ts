/** `parley receiver`: the notification receiver and the customer page alone, talking to a remote gateway. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { systemClock } from '../clock.ts';
import type { Config } from '../config/catalogue.ts';
import { ParleyError } from '../errors.ts';
import { sendJson } from '../http/respond.ts';
import { createMetrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import { RECEIVER_PREFIX } from '../receiver/receiver-http.ts';
import { buildPage, servePage } from '../web/assets.ts';
import { createReceiverRole, type ReceiverRole } from './receiver-role.ts';

export async function startReceiverOnly(config: Config, log: Logger): Promise<{ url: string; server: Server; role: ReceiverRole; close(): Promise<void> }> {
  const rc = config.receiver;
  if (rc.gatewayUrl === '' || rc.healthUrls.length === 0) {
    throw new ParleyError('CONFIG_INVALID', `${config.file} [receiver]: parley receiver needs gateway-url and health-urls.`);
  }
  const role = createReceiverRole(config, { gatewayUrl: rc.gatewayUrl, healthUrls: rc.healthUrls, clock: systemClock, log });
  const page = await buildPage('customer');
  const metrics = createMetrics();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname.startsWith(RECEIVER_PREFIX)) return role.http.handle(req, res, url.pathname, url.searchParams);
    if (url.pathname === '/' || url.pathname === '/chat') {
      res.writeHead(302, { location: '/chat/' });
      return res.end();
    }
    if (url.pathname.startsWith('/chat/') && servePage(page, url.pathname.slice('/chat/'.length), req, res)) return;
    if (url.pathname === '/health') return sendJson(res, 200, { status: 'ok', role: 'receiver', sessions: role.receiver.sessions, nodes: Object.fromEntries(role.health.nodes()) });
    if (url.pathname === '/metrics') {
      void metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
      });
      return;
    }
    req.resume();
    sendJson(res, 404, { error: { code: 'NOT_FOUND', message: 'No such resource.' } });
  });
  server.on('upgrade', (req, socket, head) => {
    if (!role.http.upgrade(req, socket, head)) socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.http.port, config.http.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address}:${addr.port}`,
    server,
    role,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await role.close();
    },
  };
}
