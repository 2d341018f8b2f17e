/**
 * One chat server node: live sessions over the store, the push engine and its gateway registry, the
 * session timers, client and agent operations, admission limits and KPIs. No HTTP here: `src/app.ts`
 * (all roles in one process) and `src/roles/chat-server.ts` (a cluster node) put routes in front of it.
 */
import type { Clock } from '../clock.ts';
import { notificationFor, shutdownAdvice, type Notification } from '../chat/notification.ts';
import type { ChatEvent, Session } from '../chat/types.ts';
import type { Config } from '../config/catalogue.ts';
import type { IdSource } from '../ids.ts';
import type { Logger } from '../log.ts';
import { createMetrics, type Metrics } from '../metrics.ts';
import { PushEngine } from '../push/engine.ts';
import { GatewayRegistry } from '../push/gateway-registry.ts';
import { backoffDelayMs, DEFAULT_BACKOFF } from '../push/retry-policy.ts';
import type { Store } from '../store/port.ts';
import { AgentDirectory } from './agent-directory.ts';
import { AgentOps } from './agent-ops.ts';
import { ClientOps } from './client-ops.ts';
import { Kpi } from './kpi.ts';
import { Admission } from './limits.ts';
import { LiveSessions } from './live-sessions.ts';
import { SessionTimers } from './session-timers.ts';

export interface NodeDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly ids: IdSource;
  readonly log: Logger;
  /** Randomness of the backoff jitter; tests pass a fixed one. */
  readonly random?: () => number;
  /** false: engines do not tick by themselves (tests call tick() after moving the clock). */
  readonly autoRun?: boolean;
}

export interface NodeOptions {
  /** In a cluster: is another node alive (from the node directory)? Single node: only itself. */
  readonly isAlive?: (owner: string) => Promise<boolean>;
  /** In a cluster: this node's ownership lease (its heartbeats reach the store; see cluster/lease.ts). */
  readonly lease?: { valid(): boolean; lapses(): number };
  /** Which open sessions to load at start: this node's ('owned', cluster) or all ('all', single node). */
  readonly loadScope: 'owned' | 'all';
}

export interface ChatNode {
  readonly alias: string;
  readonly sessions: LiveSessions;
  readonly push: PushEngine;
  readonly timers: SessionTimers;
  readonly registry: GatewayRegistry;
  readonly metrics: Metrics;
  readonly client: ClientOps;
  readonly agentOps: AgentOps;
  readonly agents: AgentDirectory;
  readonly kpi: Kpi;
  readonly admission: Admission;
  /** Planned shutdown: the reconnect advice to every push-subscribed session; resolves when sent (at most 5 s). */
  notifyShutdown(): Promise<number>;
  close(): Promise<void>;
}

export async function buildChatNode(config: Config, deps: NodeDeps, opts: NodeOptions): Promise<ChatNode> {
  const alias = config.node.appDbid;
  const s = config.settings;
  const metrics = createMetrics();
  const registry = new GatewayRegistry();
  const random = deps.random ?? Math.random;
  // Presence decides where a woken chat goes (timers, client operations) and whether a transfer can go.
  const agents = new AgentDirectory(config.agents, deps.clock, deps.ids);
  const agentOnline = (id: string): boolean => agents.isOnline(id);
  const push = new PushEngine({
    store: deps.store,
    clock: deps.clock,
    registry,
    policy: {
      resendDelayMs: s.flexPushResendDelayMs,
      resendAttempts: s.flexPushResendAttempts,
      backoffMs: (failures) => backoffDelayMs(failures, DEFAULT_BACKOFF, random),
    },
    maxInFlight: config.push.maxConcurrency,
    log: deps.log.child({ component: 'push' }),
    metrics,
  });
  const outboxFor = (session: Session, events: readonly ChatEvent[]) => {
    if (!s.flexPushEnabled) return [];
    const n = notificationFor(session, events, { id: deps.ids.notificationId(), now: deps.clock.now(), content: s.flexPushContent });
    return n === undefined ? [] : [n];
  };
  let timers: SessionTimers | undefined;
  let admission: Admission | undefined;
  const sessions = new LiveSessions(deps.store, alias, outboxFor, {
    isAlive: opts.isAlive ?? (async (owner) => owner === alias),
    ...(opts.lease === undefined ? {} : { lease: opts.lease }),
    restore(session, from) {
      deps.log.info({ chatId: session.chatId, from, to: alias }, 'session restored');
      // Client-side restoration re-acknowledges push at once (the request itself); an agent-side one waits
      // for the client unless session-restore-push-send.
      if (session.push?.active === true && !s.sessionRestorePushSend) return { ...session, push: { ...session.push, active: false } };
      return session;
    },
    onRestored(session) {
      admission?.observe();
      timers?.track(session);
      // Only a push-subscribed session can have an outbox to take over.
      if (session.push !== undefined) void push.loadFor(session.chatId);
    },
    // The new owner sends the session's pushes now (it loaded them with the session): this node stops.
    onLost: (chatId) => push.forget(chatId),
  });
  timers = new SessionTimers(
    sessions,
    deps.clock,
    {
      idle: {
        async: { alertMs: s.asyncIdleAlertMs, closeMs: s.asyncIdleCloseMs, notices: s.asyncIdleNotices },
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
        agentOnline,
      },
      flexDisconnectMs: s.flexDisconnectTimeoutMs,
      flexPushMs: s.flexPushTimeoutMs,
    },
    deps.log.child({ component: 'timers' }),
  );
  const t = timers;
  admission = new Admission(
    { sessions: s.limitForSessions, flexUsers: s.limitForFlexUsers, restorePercent: s.limitsRestoreThreshold },
    () => sessions.counts(),
  );
  sessions.subscribe((session, events, outbox) => {
    admission.observe();
    push.add(outbox);
    if (events.length > 0) t.changed(session);
    for (const e of events) if (e.type === 'Message') metrics.chatMessages.inc({ from: e.from.type });
    if (session.state === 'ended') push.chatEnded(session.chatId);
  });
  // A cluster node starting again under its app dbid takes a new epoch for what it owns (see renewOwnership).
  if (opts.loadScope === 'owned') await deps.store.renewOwnership(alias);
  await sessions.loadOpen(opts.loadScope, (session) => t.track(session));
  // A node restarted at its limit knows it is full before the first change.
  admission.observe();
  await push.load(opts.loadScope === 'owned' ? alias : undefined);

  const client = new ClientOps({
    sessions,
    clock: deps.clock,
    ids: deps.ids,
    alias,
    fileLimits: config.fileTransfer,
    push: { enabled: s.flexPushEnabled, onJoin: s.flexPushOnJoin },
    asyncServices: new Set([...config.services.values()].filter((x) => x.asyncMode).map((x) => x.name)),
    lastAgentMs: config.routing.lastAgentTimeoutMs,
    agentOnline,
    admit: (withPush) => admission.admit(withPush),
    hooks: {
      created: (session) => {
        t.track(session);
        metrics.chatSessionsCreated.inc();
      },
      requested: (chatId) => {
        t.requested(chatId);
        push.activity(chatId);
      },
      refreshed: (chatId) => push.acknowledge(chatId),
      resumed: (session) => t.track(session),
    },
  });
  const agentOps = new AgentOps(sessions, deps.clock, {
    transferMs: config.routing.lastAgentTimeoutMs,
    agentExists: (id) => config.agents.has(id),
    agentOnline,
  });
  // An agent who goes offline no longer holds the chats routed to them (woken, transferred).
  agents.onOffline((agentId) => {
    void agentOps.releaseRoutedTo(agentId).then(({ released, failed }) => {
      if (released + failed > 0) deps.log.info({ agentId, released, failed }, 'agent offline: routed chats offered to anyone');
    });
  });
  const kpi = new Kpi({ alias, clock: deps.clock, metrics, sessions, push, store: deps.store });
  if (deps.autoRun ?? true) {
    push.run();
    t.run();
    kpi.run();
  }

  async function notifyShutdown(): Promise<number> {
    const now = deps.clock.now();
    const deadline = Date.now() + 5000;
    const advice: Notification[] = [];
    let batch: Notification[] = [];
    const advise = (session: Session) => {
      const n = shutdownAdvice(session, { id: deps.ids.notificationId(), now, content: s.flexPushContent });
      if (n !== undefined) batch.push(n);
    };
    const send = () => {
      push.add(batch);
      advice.push(...batch);
      batch = [];
    };
    for (const { session } of sessions.all()) advise(session);
    send();
    // Dormant subscribed sessions parked out of memory too: read from the store (in the first half of the
    // time there is) and sent as they are read.
    for await (const session of sessions.parkedSubscribed(Date.now() + 2500)) {
      advise(session);
      if (batch.length >= 64) send();
    }
    send();
    while (Date.now() < deadline && advice.some((a) => push.attemptsOf(a.id, a.chatId) === 0)) {
      await push.tick();
      // Parked advice (no gateway node yet) keeps attempts at 0: wait on timers, not microtasks, so that
      // the event loop goes on (a gateway node can connect meanwhile and the advice is then sent).
      if (advice.some((a) => push.attemptsOf(a.id, a.chatId) === 0)) await new Promise((r) => setTimeout(r, 10));
    }
    return advice.length;
  }

  return {
    alias,
    sessions,
    push,
    timers: t,
    registry,
    metrics,
    client,
    agentOps,
    agents,
    kpi,
    admission,
    notifyShutdown,
    async close() {
      t.stop();
      kpi.stop();
      await push.stop();
    },
  };
}
