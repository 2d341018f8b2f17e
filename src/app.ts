/**
 * buildApp: wires every role of one process (chat server node, gateway, agent API) over one store and
 * returns an HTTP handler. It never listens; `roles/start.ts` does.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AgentDirectory } from './chat-server/agent-directory.ts';
import { AGENT_API_PREFIX, createAgentApi } from './chat-server/agent-api.ts';
import { AgentOps } from './chat-server/agent-ops.ts';
import { createAgentStream } from './chat-server/agent-stream.ts';
import { ClientOps } from './chat-server/client-ops.ts';
import { LiveSessions } from './chat-server/live-sessions.ts';
import { SessionTimers } from './chat-server/session-timers.ts';
import { notificationFor } from './chat/notification.ts';
import type { ChatEvent, Session } from './chat/types.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config/catalogue.ts';
import { ParleyError } from './errors.ts';
import { CHAT_API_PREFIX, createChatApi } from './gateway/chat-api.ts';
import { createCustomHttpNode } from './gateway/customhttp.ts';
import { handleCors } from './http/cors.ts';
import { buildPage, servePage } from './web/assets.ts';
import { sendJson } from './http/respond.ts';
import type { IdSource } from './ids.ts';
import type { Logger } from './log.ts';
import { counterValue, createMetrics, type Metrics } from './metrics.ts';
import { PushEngine } from './push/engine.ts';
import { GatewayRegistry } from './push/gateway-registry.ts';
import { HttpDelivery } from './push/http-delivery.ts';
import { backoffDelayMs, DEFAULT_BACKOFF } from './push/retry-policy.ts';
import { parseAllowList } from './push/ssrf.ts';
import type { Store } from './store/port.ts';

export interface AppDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly ids: IdSource;
  readonly log: Logger;
  /** Randomness of the backoff jitter; tests pass a fixed one. */
  readonly random?: () => number;
  /** false: the push engine does not tick by itself (tests call `push.tick()` after moving the clock). */
  readonly autoPush?: boolean;
}

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
  readonly sessions: LiveSessions;
  readonly push: PushEngine;
  readonly timers: SessionTimers;
  readonly registry: GatewayRegistry;
  readonly metrics: Metrics;
  close(): Promise<void>;
}

export async function buildApp(config: Config, deps: AppDeps): Promise<App> {
  const alias = config.node.appDbid;
  const metrics = createMetrics();
  const registry = new GatewayRegistry();
  const random = deps.random ?? Math.random;
  const push = new PushEngine({
    store: deps.store,
    clock: deps.clock,
    registry,
    policy: {
      resendDelayMs: config.settings.flexPushResendDelayMs,
      resendAttempts: config.settings.flexPushResendAttempts,
      backoffMs: (failures) => backoffDelayMs(failures, DEFAULT_BACKOFF, random),
    },
    maxInFlight: config.push.maxConcurrency,
    log: deps.log.child({ component: 'push' }),
    metrics,
  });
  const outboxFor = (session: Session, events: readonly ChatEvent[]) => {
    if (!config.settings.flexPushEnabled) return [];
    const n = notificationFor(session, events, { id: deps.ids.notificationId(), now: deps.clock.now(), content: config.settings.flexPushContent });
    return n === undefined ? [] : [n];
  };
  const sessions = new LiveSessions(deps.store, alias, outboxFor);
  const timers = new SessionTimers(
    sessions,
    deps.clock,
    {
      idle: {
        async: {
          alertMs: config.settings.asyncIdleAlertMs,
          closeMs: config.settings.asyncIdleCloseMs,
          notices: config.settings.asyncIdleNotices,
        },
        inactivity: {
          enabled: config.inactivity.enabled,
          notices: config.inactivity.includeNotices,
          alertMs: config.inactivity.timeoutAlertMs,
          alert2Ms: config.inactivity.timeoutAlert2Ms,
          closeMs: config.inactivity.timeoutCloseMs,
          messageAlert: config.inactivity.messageAlert,
          messageAlert2: config.inactivity.messageAlert2,
          messageClose: config.inactivity.messageClose,
        },
        lastAgentMs: config.routing.lastAgentTimeoutMs,
      },
      flexDisconnectMs: config.settings.flexDisconnectTimeoutMs,
      flexPushMs: config.settings.flexPushTimeoutMs,
    },
    deps.log.child({ component: 'timers' }),
  );
  sessions.subscribe((session, events, outbox) => {
    push.add(outbox);
    if (events.length > 0) timers.changed(session);
    for (const e of events) if (e.type === 'Message') metrics.chatMessages.inc({ from: e.from.type });
  });
  await sessions.loadOpen();
  for (const { session } of sessions.all()) timers.track(session);
  await push.load();

  // The gateway of this process joins its node group, as GMS does with enable_notification_mode=true.
  let delivery: HttpDelivery | undefined;
  if (config.chat.enableNotificationMode) {
    delivery = new HttpDelivery({
      timeoutMs: config.push.requestTimeoutMs,
      connectionsPerOrigin: config.push.maxConcurrency,
      allow: parseAllowList(config.push.allowedNetworks),
    });
    registry.register(
      createCustomHttpNode({ nodeId: `gms-${alias}`, config, delivery, clock: deps.clock, log: deps.log.child({ component: 'customhttp' }) }),
    );
  }
  if (deps.autoPush ?? true) {
    push.run();
    timers.run();
  }

  const client = new ClientOps({
    sessions,
    clock: deps.clock,
    ids: deps.ids,
    alias,
    fileLimits: config.fileTransfer,
    push: { enabled: config.settings.flexPushEnabled, onJoin: config.settings.flexPushOnJoin },
    asyncServices: new Set([...config.services.values()].filter((s) => s.asyncMode).map((s) => s.name)),
    lastAgentMs: config.routing.lastAgentTimeoutMs,
    hooks: {
      created: (session) => {
        timers.track(session);
        metrics.chatSessionsCreated.inc();
      },
      requested: (chatId) => {
        timers.requested(chatId);
        push.activity(chatId);
      },
      refreshed: (chatId) => push.acknowledge(chatId),
    },
  });
  const directory = new AgentDirectory(config.agents, deps.clock, deps.ids);
  const agentOps = new AgentOps(sessions, deps.clock, {
    transferMs: config.routing.lastAgentTimeoutMs,
    agentExists: (id) => config.agents.has(id),
  });
  const chatApi = createChatApi({
    node: client,
    services: new Set(config.services.keys()),
    apiKey: config.http.apiKey,
    limits: {
      maxBodySize: config.http.maxBodySize,
      maxFieldLength: config.http.maxFieldLength,
      maxFileSize: config.fileTransfer.uploadMaxFileSize,
    },
    onError: (err) => {
      if (err.spec.http >= 500) deps.log.error({ err, code: err.code, cause: err.cause }, 'chat api request failed');
    },
  });
  const agentApi = createAgentApi({ directory, ops: agentOps });
  const agentStream = createAgentStream({ clock: deps.clock, directory, ops: agentOps, sessions });
  const cors = config.http.corsAllowedOrigins;
  const desk = await buildPage('desk');
  const customer = config.receiver.enabled ? await buildPage('customer') : undefined;
  const mounts: Mount[] = [];

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path.startsWith(CHAT_API_PREFIX)) {
      if (handleCors(req, res, cors)) return;
      void chatApi(req, res, path, url.searchParams);
      return;
    }
    if (path.startsWith(AGENT_API_PREFIX)) {
      void agentApi(req, res, path, url.searchParams);
      return;
    }
    for (const m of mounts) {
      if (path.startsWith(m.prefix)) {
        m.handle(req, res, path, url.searchParams);
        return;
      }
    }
    if (path === '/' && req.method === 'GET') {
      res.writeHead(302, { location: customer === undefined ? '/desk/' : '/chat/' });
      res.end();
      return;
    }
    if (path === '/chat' && customer !== undefined) {
      res.writeHead(301, { location: '/chat/' });
      res.end();
      return;
    }
    if (customer !== undefined && path.startsWith('/chat/') && (req.method === 'GET' || req.method === 'HEAD') && servePage(customer, path.slice('/chat/'.length), req, res)) {
      return;
    }
    if (path === '/desk') {
      res.writeHead(301, { location: '/desk/' });
      res.end();
      return;
    }
    if (path.startsWith('/desk/') && (req.method === 'GET' || req.method === 'HEAD') && servePage(desk, path.slice('/desk/'.length), req, res)) {
      return;
    }
    if (path === '/health' && req.method === 'GET') {
      void health().then((body) => sendJson(res, 200, body));
      return;
    }
    if (path === '/metrics' && req.method === 'GET') {
      void metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
      });
      return;
    }
    req.resume();
    const err = new ParleyError('NOT_FOUND');
    sendJson(res, 404, { error: { code: err.code, message: err.message } });
  }

  async function health() {
    const n = metrics.pushNotifications;
    return {
      status: 'ok',
      app_dbid: alias,
      process_os_pid: process.pid,
      sessions: sessions.size,
      push: {
        outbox_depth: push.depth,
        gateway_nodes: registry.size,
        created: await counterValue(n, { event: 'created' }),
        delivered: await counterValue(n, { event: 'delivered' }),
        acked: await counterValue(n, { event: 'acked' }),
        failed: await counterValue(n, { event: 'failed' }),
      },
    };
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === `${AGENT_API_PREFIX}ws`) return agentStream.handleUpgrade(req, socket, head);
    for (const m of mounts) if (path.startsWith(m.prefix) && m.upgrade?.(req, socket, head) === true) return;
    socket.destroy();
  }

  return {
    handle,
    upgrade,
    mount: (m) => void mounts.push(m),
    sessions,
    push,
    timers,
    registry,
    metrics,
    async close() {
      agentStream.close();
      timers.stop();
      await push.stop();
      await delivery?.close();
      await deps.store.close();
    },
  };
}
