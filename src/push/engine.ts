/**
 * The flex-push engine of a chat server node: the active part of the durable outbox in memory, attempts
 * dispatched to the session's gateway node with bounded concurrency, every state change persisted.
 *
 * Due notifications wait in a FIFO ready queue (fair: a hanging receiver cannot starve later ones); later
 * attempts wait in a due-time index. A finished POST immediately starts the next one.
 *
 * Time comes from the injected clock. `tick()` does one round of due work and resolves when the attempts it
 * started are finished, so tests drive resends with a manual clock; `run()` drives it in production.
 */
import type { Clock } from '../clock.ts';
import {
  acknowledge,
  afterAttempt,
  beforeAttempt,
  durable,
  expireParked,
  isFinal,
  park,
  deliveryWindowEnd,
  unpark,
  type DeliveryOutcome,
  type Notification,
  type ResendPolicy,
} from '../chat/notification.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Store } from '../store/port.ts';
import { DueIndex } from '../lib/due-index.ts';
import { LogThrottle } from '../log-throttle.ts';
import type { GatewayRegistry } from './gateway-registry.ts';

export interface PushEngineDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly registry: GatewayRegistry;
  readonly policy: ResendPolicy;
  readonly maxInFlight: number;
  readonly log: Logger;
  readonly metrics: Metrics;
}

const TICK_MS = 100;
const NO_GMS_NODE = 'no gms node found in group';

export class PushEngine {
  private readonly active = new Map<string, Notification>();
  private readonly byChat = new Map<string, Set<string>>();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Ids due now, oldest first; `head` is the next to take (a cheap queue). */
  private ready: string[] = [];
  private head = 0;
  private readonly queued = new Set<string>();
  /** Ended chats with notifications still active: their gateway node is forgotten after the last one. */
  private readonly ended = new Set<string>();
  /** Sessions whose stored outbox is being read (loadFor), and whether the client acknowledged meanwhile. */
  private readonly loadingFor = new Map<string, { acked: boolean }>();
  /** Ids due later, by nextAttemptAt (entries are checked against the notification when popped). */
  private readonly later = new DueIndex();
  private timer: NodeJS.Timeout | undefined;
  private readonly pendingKicks = new Set<'microtask' | 'immediate'>();
  /** Failures of many notifications for one cause (a receiver down) are logged once per 10 s, with a count. */
  private readonly logs = new LogThrottle();
  private running = false;

  constructor(private readonly d: PushEngineDeps) {
    d.registry.onJoin((group) => this.gatewayJoined(group));
  }

  /**
   * Loads what was not final when the process stopped (of the sessions `owner` owns, in a cluster): a
   * restart resends it. A parked one is tried again at once (a gateway node may be there now).
   */
  async load(owner?: string): Promise<void> {
    for (const n of await this.d.store.loadActiveNotifications(owner)) this.track(this.retryParked(n));
  }

  /** A parked notification loaded here is due now, unless its wait is over (it then fails at the next tick). */
  private retryParked(n: Notification): Notification {
    const now = this.d.clock.now();
    return now < deliveryWindowEnd(n, this.d.policy) ? unpark(n, now) : n;
  }

  /** Puts a notification where its next attempt waits: the ready queue or the index (a parked one: its expiry), or nowhere (final). */
  private schedule(n: Notification): void {
    if (isFinal(n)) return;
    if (n.nextAttemptAt === null) {
      this.later.push(deliveryWindowEnd(n, this.d.policy), n.id);
      return;
    }
    if (n.nextAttemptAt <= this.d.clock.now()) {
      if (!this.queued.has(n.id)) {
        this.queued.add(n.id);
        this.ready.push(n.id);
      }
    } else {
      this.later.push(n.nextAttemptAt, n.id);
    }
  }

  /** Ticks every 100 ms and at once when work arrives. */
  run(): void {
    this.running = true;
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== undefined) clearInterval(this.timer);
    await Promise.allSettled([...this.inFlight.values()]);
  }

  get depth(): number {
    return this.active.size;
  }

  /** POSTs tried for a notification still active (0 = not yet); -1 when it is final or unknown. */
  attemptsOf(id: string): number {
    return this.active.get(id)?.attempts ?? -1;
  }

  /** A session restored on this node: its outbox comes along (pushes that were due on the dead node resume here). */
  async loadFor(chatId: string): Promise<void> {
    const mark = { acked: false };
    this.loadingFor.set(chatId, mark);
    let found: Notification[];
    try {
      found = await this.d.store.loadActiveNotificationsFor(chatId);
    } finally {
      if (this.loadingFor.get(chatId) === mark) this.loadingFor.delete(chatId);
    }
    const now = this.d.clock.now();
    const done: Notification[] = [];
    for (const n of found) {
      if (this.active.has(n.id)) continue;
      // The client acknowledged while they were read (often the very request that restored the session):
      // they were all created before that refresh, so they are acknowledged too, not resent.
      if (mark.acked) done.push(acknowledge(n, now));
      // Parked on the dead node for want of a gateway node: this node may have one.
      else this.track(this.retryParked(n));
    }
    this.persist(done);
    if (found.length > done.length) this.kick();
  }

  /**
   * Notifications just committed with their change. Their POSTs start in the same turn of the event
   * loop (a microtask after the commit), not in the next one: under load a turn lasts milliseconds.
   */
  add(outbox: readonly Notification[]): void {
    for (const n of outbox) {
      this.track(n);
      this.d.metrics.pushNotifications.inc({ event: 'created' });
    }
    if (outbox.length > 0) this.kick(true);
  }

  /** A refresh with the session's tokens: every notification of the session not yet final is acknowledged. */
  acknowledge(chatId: string): void {
    const loading = this.loadingFor.get(chatId);
    if (loading !== undefined) loading.acked = true;
    const ids = this.byChat.get(chatId);
    if (ids === undefined) return;
    const now = this.d.clock.now();
    const done: Notification[] = [];
    for (const id of ids) {
      const n = this.active.get(id);
      if (n === undefined || isFinal(n)) continue;
      const acked = acknowledge(n, now);
      this.d.metrics.pushNotifications.inc({ event: 'acked' });
      // A POST in flight finishes the acknowledged notification when it returns (see attempt()).
      if (this.inFlight.has(id)) this.active.set(id, acked);
      else done.push(acked);
    }
    for (const n of done) this.untrack(n);
    this.persist(done);
  }

  /**
   * A chat ended: the registry forgets its gateway node once none of its notifications is active any more
   * (now, or after the last one; each attempt's pick would otherwise associate the chat with a node again).
   */
  chatEnded(chatId: string): void {
    if (this.byChat.has(chatId)) this.ended.add(chatId);
    else this.d.registry.forget(chatId);
  }

  /**
   * The session moved to another node, which took its outbox along: its notifications leave this engine
   * without being sent or stored again (an attempt in flight finishes without a trace).
   */
  forget(chatId: string): void {
    const ids = this.byChat.get(chatId);
    if (ids === undefined) return;
    for (const id of [...ids]) {
      const n = this.active.get(id);
      if (n !== undefined) this.untrack(n);
    }
  }

  /** Activity of a session: notifications parked for want of a gateway node become due again. */
  activity(chatId: string): void {
    const ids = this.byChat.get(chatId);
    if (ids !== undefined) this.unparkWhere(ids, () => true);
  }

  /** A gateway node joined `group`: the notifications parked for want of one there become due again. */
  private gatewayJoined(group: string): void {
    this.unparkWhere(this.active.keys(), (n) => n.subscription.nodeGroup === group);
  }

  private unparkWhere(ids: Iterable<string>, which: (n: Notification) => boolean): void {
    const now = this.d.clock.now();
    let any = false;
    for (const id of ids) {
      const n = this.active.get(id);
      if (n !== undefined && n.nextAttemptAt === null && !isFinal(n) && which(n)) {
        const due = unpark(n, now);
        this.active.set(id, due);
        this.schedule(due);
        any = true;
      }
    }
    if (any) this.kick();
  }

  /** One round: starts every due attempt that fits the concurrency bound; resolves when they finish. */
  async tick(): Promise<void> {
    const now = this.d.clock.now();
    for (const { at, key } of this.later.popDue(now)) {
      const n = this.active.get(key);
      if (n === undefined) continue;
      if (n.nextAttemptAt === at) this.schedule(n);
      else if (n.nextAttemptAt === null && !this.inFlight.has(key)) {
        // Parked, and no gateway node came in time (the chat may have ended: no activity will come).
        const expired = expireParked(n, now, this.d.policy);
        if (isFinal(expired)) this.finish(expired);
      }
    }
    const started: Array<Promise<void>> = [];
    while (this.inFlight.size < this.d.maxInFlight && this.head < this.ready.length) {
      const id = this.ready[this.head++] as string;
      this.queued.delete(id);
      const n = this.active.get(id);
      if (n === undefined || isFinal(n) || n.nextAttemptAt === null || n.nextAttemptAt > now || this.inFlight.has(id)) continue;
      const p = this.attempt(n).finally(() => {
        this.inFlight.delete(id);
        this.kick();
      });
      this.inFlight.set(id, p);
      started.push(p);
    }
    if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    this.d.metrics.pushOutboxDepth.set(this.active.size);
    await Promise.all(started);
  }

  private async attempt(n: Notification): Promise<void> {
    const now = this.d.clock.now();
    const decision = beforeAttempt(n, now, this.d.policy);
    if (decision !== 'send') return this.finish(decision);
    const node = this.d.registry.pick(n.subscription.nodeGroup, n.chatId);
    if (node === undefined) {
      // Counted and logged when the notification is parked, not again at each later try (after activity).
      if (n.lastError !== NO_GMS_NODE) {
        this.d.metrics.pushNotifications.inc({ event: 'parked' });
        const group = n.subscription.nodeGroup;
        this.logs.log(`parked ${group}`, (extra) =>
          this.d.log.warn(
            { chatId: n.chatId, notificationId: n.id, group, ...extra },
            `push-flex: could not send notification - no gms node found in group=${group}`,
          ),
        );
      }
      return this.update(park(n, NO_GMS_NODE));
    }
    let outcome: DeliveryOutcome;
    try {
      outcome = await node.deliver(n);
    } catch (err) {
      outcome = { kind: 'retry', reason: err instanceof Error ? err.message : 'delivery failed' };
    }
    this.d.metrics.pushAttempts.inc({ result: outcome.kind });
    const current = this.active.get(n.id);
    if (current === undefined) return;
    // Its first successful POST (also when the client acknowledged it meanwhile: delivered is then <= acked).
    if (outcome.kind === 'delivered' && current.sends === 0) this.d.metrics.pushNotifications.inc({ event: 'delivered' });
    // Acknowledged while the POST was in flight: the acknowledgement wins.
    if (isFinal(current)) return this.finish(current);
    const next = afterAttempt(current, outcome, this.d.clock.now(), this.d.policy);
    if (isFinal(next)) return this.finish(next);
    this.update(next);
  }

  private finish(n: Notification): void {
    if (n.state === 'failed') {
      this.d.metrics.pushNotifications.inc({ event: 'failed' });
      this.logs.log(`failed ${n.lastError ?? ''}`, (extra) =>
        this.d.log.warn(
          { chatId: n.chatId, notificationId: n.id, attempts: n.attempts, reason: n.lastError, ...extra },
          'push notification failed',
        ),
      );
    }
    this.untrack(n);
    this.persist([n]);
  }

  private update(n: Notification): void {
    this.active.set(n.id, n);
    this.schedule(n);
    this.persist([n]);
  }

  private persist(all: readonly Notification[]): void {
    const ns = durable(all);
    if (ns.length === 0) return;
    this.d.store.saveNotifications(ns).catch((err: unknown) => {
      this.d.log.error({ err, count: ns.length }, 'could not store notification state');
    });
  }

  private track(n: Notification): void {
    if (isFinal(n)) return;
    if (n.chatEnded) this.ended.add(n.chatId);
    this.active.set(n.id, n);
    let ids = this.byChat.get(n.chatId);
    if (ids === undefined) this.byChat.set(n.chatId, (ids = new Set()));
    ids.add(n.id);
    this.schedule(n);
  }

  private untrack(n: Notification): void {
    this.active.delete(n.id);
    const ids = this.byChat.get(n.chatId);
    ids?.delete(n.id);
    if (ids?.size === 0) {
      this.byChat.delete(n.chatId);
      if (this.ended.delete(n.chatId)) this.d.registry.forget(n.chatId);
    }
  }

  /**
   * A tick soon: in this turn of the event loop (a microtask, for notifications just committed) or in the
   * next one (setImmediate, after a finished POST, so that I/O goes first). At most one of each is pending.
   */
  private kick(inThisTurn = false): void {
    if (!this.running) return;
    const pending = inThisTurn ? 'microtask' : 'immediate';
    if (this.pendingKicks.has(pending)) return;
    this.pendingKicks.add(pending);
    const run = () => {
      this.pendingKicks.delete(pending);
      // stop() may have come between the kick and now: it does not wait for attempts started after it.
      if (this.running) void this.tick();
    };
    if (inThisTurn) queueMicrotask(run);
    else setImmediate(run);
  }
}
