/**
 * buildApp: the HTTP front of one process. Mode `all` (`parley start`): a chat server node, the Chat API
 * v2 gateway reaching it in process, the customhttp provider joining its node group, the agent API and
 * desk, and (mounted later) the receiver. Mode `node` (`parley chat-server`): the node with its agent API
 * and desk, reached by gateways through the internal API and notification sockets. It never listens;
 * `src/roles/` does.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AGENT_API_PREFIX, createAgentApi } from './chat-server/agent-api.ts';
import { createAgentStream } from './chat-server/agent-stream.ts';
import { createGatewaySocket } from './chat-server/gateway-socket.ts';
import { buildChatNode, type ChatNode, type NodeDeps, type NodeOptions } from './chat-server/node.ts';
import { createNodeRpc, NODE_RPC_PATH } from './chat-server/node-rpc.ts';
import type { Config } from './config/catalogue.ts';
import { ParleyError } from './errors.ts';
import { CHAT_API_PREFIX, createChatApi, parseRoute, rateLimitsFrom } from './gateway/chat-api.ts';
import { errorEnvelope } from './gateway/envelope.ts';
import { createCustomHttpNode } from './gateway/customhttp.ts';
import { handleCors } from './http/cors.ts';
import { sendJson } from './http/respond.ts';
import { sendMetrics } from './metrics.ts';
import { failureLogger } from './http/failure-log.ts';
import { HttpDelivery } from './push/http-delivery.ts';
import { parseAllowList } from './push/ssrf.ts';
import { buildPage, servePage, type Page } from './web/assets.ts';
import { answerBadTarget, requestUrl } from './http/request-url.ts';

export type AppDeps = NodeDeps;

/** Another role served by the same HTTP server (the receiver in `parley start`). */
export interface Mount {
  readonly prefix: string;
  handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): void;
  /** true when it took the upgrade. */
  upgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
}

export interface App {
  handle(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  mount(m: Mount): void;
  readonly node: ChatNode;
  /** Shortcuts to the node's parts. */
  readonly sessions: ChatNode['sessions'];
  readonly push: ChatNode['push'];
  readonly timers: ChatNode['timers'];
  readonly registry: ChatNode['registry'];
  readonly metrics: ChatNode['metrics'];
  /** false once a planned shutdown began: the node takes no more requests. */
  accepting: boolean;
  close(): Promise<void>;
}

export interface AppOptions extends Partial<NodeOptions> {
  readonly mode?: 'all' | 'node';
  /** `parley start`: this process's own receiver push URL, the default push target (see customhttp.ts). */
  readonly ownReceiver?: () => string | undefined;
}

export async function buildApp(config: Config, deps: AppDeps, opts: AppOptions = {}): Promise<App> {
  const mode = opts.mode ?? 'all';
  // The internal API and the notification socket serve gateways in other processes. Every role in one
  // process needs neither: there they are off unless a token is set (then a separate gateway may join).
  const internalOpen = mode !== 'all' || config.node.internalToken !== '';
  const node = await buildChatNode(config, deps, {
    loadScope: opts.loadScope ?? (mode === 'all' ? 'all' : 'owned'),
    ...(opts.isAlive === undefined ? {} : { isAlive: opts.isAlive }),
    ...(opts.lease === undefined ? {} : { lease: opts.lease }),
  });
  const log = deps.log;

  // In one process the gateway joins its node group directly (GMS with enable_notification_mode=true).
  let delivery: HttpDelivery | undefined;
  if (mode === 'all' && config.chat.enableNotificationMode) {
    delivery = new HttpDelivery({
      timeoutMs: config.push.requestTimeoutMs,
      connectionsPerOrigin: config.push.maxConcurrency,
      allow: parseAllowList(config.push.allowedNetworks),
    });
    node.registry.register(
      createCustomHttpNode({
        nodeId: `gms-${node.alias}`,
        config,
        delivery,
        clock: deps.clock,
        log: log.child({ component: 'customhttp' }),
        ...(opts.ownReceiver === undefined ? {} : { ownReceiver: opts.ownReceiver }),
      }),
    );
  }

  const chatApi = createChatApi({
    node: node.client,
    rateLimits: rateLimitsFrom(config.http, () => deps.clock.now()),
    services: new Set(config.services.keys()),
    apiKey: config.http.apiKey,
    limits: { maxBodySize: config.http.maxBodySize, maxFieldLength: config.http.maxFieldLength, maxFileSize: config.fileTransfer.uploadMaxFileSize },
    onError: failureLogger(log, 'chat api request failed'),
  });
  const agentApi = createAgentApi({ directory: node.agents, ops: node.agentOps, onError: failureLogger(log, 'agent api request failed') });
  const agentStream = createAgentStream({
    clock: deps.clock,
    directory: node.agents,
    ops: node.agentOps,
    sessions: node.sessions,
    livenessMs: config.http.wsPingIntervalMs,
  });
  const app = { accepting: true } as { accepting: boolean };
  const nodeRpc = createNodeRpc({
    client: node.client,
    token: config.node.internalToken,
    maxBodySize: config.http.maxBodySize * 2,
    accepting: () => app.accepting,
  });
  const gatewaySocket = createGatewaySocket({
    registry: node.registry,
    token: config.node.internalToken,
    replyTimeoutMs: config.push.requestTimeoutMs + 5000,
    log: log.child({ component: 'gateway-socket' }),
    livenessMs: config.http.wsPingIntervalMs,
  });
  const cors = config.http.corsAllowedOrigins;
  const desk = await buildPage('desk');
  const customer: Page | undefined = mode === 'all' && config.receiver.enabled ? await buildPage('customer') : undefined;
  const mounts: Mount[] = [];

  function redirect(res: ServerResponse, status: number, location: string): void {
    res.writeHead(status, { location });
    res.end();
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = requestUrl(req);
    if (url === undefined) return answerBadTarget(req, res);
    const path = url.pathname;
    const get = req.method === 'GET' || req.method === 'HEAD';
    if (path.startsWith(CHAT_API_PREFIX)) {
      if (handleCors(req, res, cors)) return;
      if (!app.accepting) {
        const route = parseRoute(path);
        const err = new ParleyError('UNAVAILABLE', 'Shutting down; retry.');
        return void sendJson(res, 503, errorEnvelope(err, { chatId: route !== undefined && 'chatId' in route ? route.chatId : undefined, alias: undefined }));
      }
      return void chatApi(req, res, path, url.searchParams);
    }
    if (path.startsWith(AGENT_API_PREFIX)) return void agentApi(req, res, path, url.searchParams);
    if (path === NODE_RPC_PATH && internalOpen) return void nodeRpc(req, res);
    for (const m of mounts) if (path.startsWith(m.prefix)) return m.handle(req, res, path, url.searchParams);
    if (path === '/' && get) return redirect(res, 302, customer === undefined ? '/desk/' : '/chat/');
    if (path === '/desk') return redirect(res, 301, '/desk/');
    if (path.startsWith('/desk/') && get && servePage(desk, path.slice('/desk/'.length), req, res)) return;
    if (customer !== undefined) {
      if (path === '/chat') return redirect(res, 301, '/chat/');
      if (path.startsWith('/chat/') && get && servePage(customer, path.slice('/chat/'.length), req, res)) return;
    }
    if (path === '/health' && get) {
      void node.kpi.health({ role: mode === 'all' ? 'all' : 'chat-server', accepting: app.accepting, gateway_nodes: node.registry.size, limits: node.admission.state() }).then((b) => sendJson(res, 200, b));
      return;
    }
    if (path === '/metrics' && get) return sendMetrics(res, node.metrics);
    req.resume();
    const err = new ParleyError('NOT_FOUND');
    sendJson(res, 404, { error: { code: err.code, message: err.message } });
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = requestUrl(req)?.pathname;
    if (path === undefined) return void socket.destroy();
    if (path === `${AGENT_API_PREFIX}ws`) return agentStream.handleUpgrade(req, socket, head);
    if (internalOpen && gatewaySocket.upgrade(req, socket, head)) return;
    for (const m of mounts) if (path.startsWith(m.prefix) && m.upgrade?.(req, socket, head) === true) return;
    socket.destroy();
  }

  return Object.assign(app, {
    handle,
    upgrade,
    mount: (m: Mount) => void mounts.push(m),
    node,
    sessions: node.sessions,
    push: node.push,
    timers: node.timers,
    registry: node.registry,
    metrics: node.metrics,
    async close() {
      agentStream.close();
      gatewaySocket.close();
      await node.close();
      await delivery?.close();
      await deps.store.close();
    },
  });
}
