/** `parley receiver`: the notification receiver and the customer page alone, talking to a remote gateway. */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { systemClock } from '../clock.ts';
import type { Config } from '../config/catalogue.ts';
import { ParleyError } from '../errors.ts';
import { sendJson } from '../http/respond.ts';
import { createMetrics, sendMetrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import { RECEIVER_PREFIX } from '../receiver/receiver-http.ts';
import { buildPage, servePage } from '../web/assets.ts';
import { listen } from './listen.ts';
import { createReceiverRole, type ReceiverRole } from './receiver-role.ts';
import { answerBadTarget, requestUrl } from '../http/request-url.ts';

export async function startReceiverOnly(config: Config, log: Logger): Promise<{ url: string; server: Server; role: ReceiverRole; close(): Promise<void> }> {
  const rc = config.receiver;
  if (rc.gatewayUrl === '' || rc.healthUrls.length === 0) {
    throw new ParleyError('CONFIG_INVALID', `${config.file} [receiver]: parley receiver needs gateway-url and health-urls.`);
  }
  const role = createReceiverRole(config, { gatewayUrl: rc.gatewayUrl, healthUrls: rc.healthUrls, clock: systemClock, log });
  const page = await buildPage('customer');
  const metrics = createMetrics({ chatSeries: false });
  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = requestUrl(req);
    if (url === undefined) return answerBadTarget(req, res);
    if (url.pathname.startsWith(RECEIVER_PREFIX)) return role.http.handle(req, res, url.pathname, url.searchParams);
    if (url.pathname === '/' || url.pathname === '/chat') {
      res.writeHead(302, { location: '/chat/' });
      return void res.end();
    }
    if (url.pathname.startsWith('/chat/') && servePage(page, url.pathname.slice('/chat/'.length), req, res)) return;
    if (url.pathname === '/health') return sendJson(res, 200, { status: 'ok', role: 'receiver', sessions: role.receiver.sessions, nodes: Object.fromEntries(role.health.nodes()) });
    if (url.pathname === '/metrics') return sendMetrics(res, metrics);
    req.resume();
    sendJson(res, 404, { error: { code: 'NOT_FOUND', message: 'No such resource.' } });
  }
  const http = await listen(config.http, handle, (req, socket, head) => {
    if (!role.http.upgrade(req, socket, head)) socket.destroy();
  });
  return {
    url: http.url,
    server: http.server,
    role,
    async close() {
      await http.close();
      await role.close();
    },
  };
}
