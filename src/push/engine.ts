/**
 * The flex-push engine of a chat server node: the active part of the durable outbox in memory, attempts
 * dispatched to the session's gateway node with bounded concurrency, every state change persisted.
 *
 * Due notifications wait in a FIFO ready queue (fair: a hanging receiver cannot starve later ones); later
 * attempts wait in a due-time index. A finished POST immediately starts the next one.
 *
 * Each notification lives in a `Slot` that the queue, the index and its chat's list all point at, and the
 * chats' lists stay in their map while they empty and fill again. So no map or set is keyed by notification
 * ids: a map that takes fresh keys and drops them milliseconds later makes V8 promote what its entries point
 * at (measured in bench/README.md: about 13 times as much as an array holding the same objects as long), and
 * every promoted notification, with its events and payload, was old-generation garbage a moment later.
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
/** Chats with no notification left are dropped from the map in one go once there are this many. */
const PRUNE_EMPTY_CHATS = 1024;

/**
 * What the due index holds for a slot: emptied when the slot leaves the engine, so that a resend or parked
 * entry that is not due yet does not keep the notification (its events, its payload) alive until then.
 */
interface Ticket {
  slot: Slot | undefined;
}

/** A notification in this engine, and where it is. */
interface Slot {
  n: Notification;
  readonly ticket: Ticket;
  /** In the ready queue, not taken yet. */
  queued: boolean;
  /** Its POST is in flight. */
  running: boolean;
  /** Taken from the ready queue while its POST was in flight (a retry due at once): scheduled again after it. */
  retake: boolean;
  /** Left the engine (final, or the session moved): queue and index entries still pointing at it are skipped. */
  gone: boolean;
}

/** The notifications of one chat still active here. */
interface ChatSlots {
  readonly slots: Slot[];
  /** The chat ended: its gateway node is forgotten after its last notification. */
  ended: boolean;
}

export class PushEngine {
  private readonly byChat = new Map<string, ChatSlots>();
  /** Notifications tracked (the outbox depth). */
  private count = 0;
  /** Chats in `byChat` with no slot left (pruned in one go past PRUNE_EMPTY_CHATS). */
  private emptyChats = 0;
  /** POSTs in flight, and who waits for them all to end (stop). */
  private inFlight = 0;
  private drained: Array<() => void> = [];
  /** Slots due now, oldest first; `head` is the next to take (a cheap queue). */
  private ready: Slot[] = [];
  private head = 0;
  /** Sessions whose stored outbox is being read (loadFor), and whether the client acknowledged meanwhile. */
  private readonly loadingFor = new Map<string, { acked: boolean }>();
  /** Slots due later, by nextAttemptAt (entries are checked against the slot when popped). */
  private readonly later = new DueIndex<Ticket>();
  /**
   * Slots whose session moved away (forget) while their POST was in flight. Until it ends, the same
   * notification restored here again is not POSTed a second time, and it then takes that POST's outcome.
   */
  private leaving: Slot[] = [];
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

  /** Puts a slot where its next attempt waits: the ready queue or the index (a parked one: its expiry), or nowhere (final). */
  private schedule(slot: Slot): void {
    const n = slot.n;
    if (isFinal(n)) return;
    if (n.nextAttemptAt === null) {
      this.later.push(deliveryWindowEnd(n, this.d.policy), slot.ticket);
      return;
    }
    if (n.nextAttemptAt <= this.d.clock.now()) {
      if (!slot.queued) {
        slot.queued = true;
        this.ready.push(slot);
      }
    } else {
      this.later.push(n.nextAttemptAt, slot.ticket);
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
    while (this.inFlight > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
  }

  get depth(): number {
    return this.count;
  }

  /** Every notification still active here (checks and tests). */
  tracked(): Notification[] {
    const all: Notification[] = [];
    for (const chat of this.byChat.values()) for (const slot of chat.slots) all.push(slot.n);
    return all;
  }

  /**
   * POSTs tried for a notification still active (0 = not yet); -1 when it is final or unknown. With its
   * chat the lookup is in that chat's list; without, every chat is searched (tests).
   */
  attemptsOf(id: string, chatId?: string): number {
    const chats = chatId === undefined ? this.byChat.values() : [this.byChat.get(chatId)];
    for (const chat of chats) for (const slot of chat?.slots ?? []) if (slot.n.id === id) return slot.n.attempts;
    return -1;
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
    const have = new Set(this.byChat.get(chatId)?.slots.map((slot) => slot.n.id));
    for (const n of found) {
      if (have.has(n.id)) continue;
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
    const chat = this.byChat.get(chatId);
    if (chat === undefined || chat.slots.length === 0) return;
    const now = this.d.clock.now();
    const done: Slot[] = [];
    for (const slot of chat.slots) {
      if (isFinal(slot.n)) continue;
      slot.n = acknowledge(slot.n, now);
      this.d.metrics.pushNotifications.inc({ event: 'acked' });
      // A POST in flight finishes the acknowledged notification when it returns (see attempt()).
      if (!slot.running) done.push(slot);
    }
    for (const slot of done) this.untrack(slot);
    this.persist(done.map((slot) => slot.n));
  }

  /**
   * A chat ended: the registry forgets its gateway node once none of its notifications is active any more
   * (now, or after the last one; each attempt's pick would otherwise associate the chat with a node again).
   */
  chatEnded(chatId: string): void {
    const chat = this.byChat.get(chatId);
    if (chat !== undefined && chat.slots.length > 0) {
      chat.ended = true;
      return;
    }
    if (chat !== undefined) this.dropChat(chatId);
    this.d.registry.forget(chatId);
  }

  /**
   * The session moved to another node, which took its outbox along: its notifications leave this engine
   * without being sent or stored again (an attempt in flight finishes without a trace).
   */
  forget(chatId: string): void {
    const chat = this.byChat.get(chatId);
    if (chat === undefined) return;
    for (const slot of [...chat.slots]) {
      if (slot.running) this.leaving.push(slot);
      this.untrack(slot);
    }
  }

  /** Activity of a session: notifications parked for want of a gateway node become due again. */
  activity(chatId: string): void {
    const chat = this.byChat.get(chatId);
    if (chat !== undefined) this.unparkWhere(chat.slots, () => true);
  }

  /** A gateway node joined `group`: the notifications parked for want of one there become due again. */
  private gatewayJoined(group: string): void {
    const all: Slot[] = [];
    for (const chat of this.byChat.values()) all.push(...chat.slots);
    this.unparkWhere(all, (n) => n.subscription.nodeGroup === group);
  }

  private unparkWhere(slots: readonly Slot[], which: (n: Notification) => boolean): void {
    const now = this.d.clock.now();
    let any = false;
    for (const slot of slots) {
      const n = slot.n;
      if (!slot.gone && n.nextAttemptAt === null && !isFinal(n) && which(n)) {
        slot.n = unpark(n, now);
        this.schedule(slot);
        any = true;
      }
    }
    if (any) this.kick();
  }

  /** One round: starts every due attempt that fits the concurrency bound; resolves when they finish. */
  async tick(): Promise<void> {
    const now = this.d.clock.now();
    for (const { at, key: ticket } of this.later.popDue(now)) {
      const slot = ticket.slot;
      if (slot === undefined || slot.gone) continue;
      const n = slot.n;
      if (n.nextAttemptAt === at) this.schedule(slot);
      else if (n.nextAttemptAt === null && !slot.running) {
        // Parked, and no gateway node came in time (the chat may have ended: no activity will come).
        const expired = expireParked(n, now, this.d.policy);
        if (isFinal(expired)) this.finish(slot, expired);
      }
    }
    const started: Array<Promise<void>> = [];
    while (this.inFlight < this.d.maxInFlight && this.head < this.ready.length) {
      const slot = this.ready[this.head++] as Slot;
      slot.queued = false;
      const n = slot.n;
      if (slot.running) slot.retake = true;
      if (slot.gone || isFinal(n) || n.nextAttemptAt === null || n.nextAttemptAt > now || slot.running || this.isLeaving(n.id)) continue;
      slot.running = true;
      this.inFlight++;
      started.push(
        this.attempt(slot).finally(() => {
          slot.running = false;
          if (slot.gone) this.leaving = this.leaving.filter((l) => l !== slot);
          else if (slot.retake) this.schedule(slot);
          slot.retake = false;
          if (--this.inFlight === 0) for (const resolve of this.drained.splice(0)) resolve();
          this.kick();
        }),
      );
    }
    // Taken slots are let go at once (the queue outlives them: what it still pointed at would be kept).
    if (this.head === this.ready.length) {
      this.ready.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    if (this.emptyChats >= PRUNE_EMPTY_CHATS) this.pruneChats();
    this.d.metrics.pushOutboxDepth.set(this.count);
    await Promise.all(started);
  }

  /** Whether a POST of notification `id` is in flight for a slot that left with its session. */
  private isLeaving(id: string): boolean {
    return this.leaving.length > 0 && this.leaving.some((l) => l.running && l.n.id === id);
  }

  private async attempt(taken: Slot): Promise<void> {
    let slot = taken;
    const n = slot.n;
    const now = this.d.clock.now();
    const decision = beforeAttempt(n, now, this.d.policy);
    if (decision !== 'send') return this.finish(slot, decision);
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
      return this.update(slot, park(n, NO_GMS_NODE));
    }
    let outcome: DeliveryOutcome;
    try {
      outcome = await node.deliver(n);
    } catch (err) {
      outcome = { kind: 'retry', reason: err instanceof Error ? err.message : 'delivery failed' };
    }
    this.d.metrics.pushAttempts.inc({ result: outcome.kind });
    if (slot.gone) {
      // The session moved away meanwhile; if it came back, the notification restored here takes the outcome.
      const back = this.byChat.get(n.chatId)?.slots.find((other) => other.n.id === n.id);
      if (back === undefined) return;
      slot = back;
    }
    const current = slot.n;
    // Its first successful POST (also when the client acknowledged it meanwhile: delivered is then <= acked).
    if (outcome.kind === 'delivered' && current.sends === 0) this.d.metrics.pushNotifications.inc({ event: 'delivered' });
    // Acknowledged while the POST was in flight: the acknowledgement wins.
    if (isFinal(current)) return this.finish(slot, current);
    const next = afterAttempt(current, outcome, this.d.clock.now(), this.d.policy);
    if (isFinal(next)) return this.finish(slot, next);
    this.update(slot, next);
  }

  private finish(slot: Slot, n: Notification): void {
    if (n.state === 'failed') {
      this.d.metrics.pushNotifications.inc({ event: 'failed' });
      this.logs.log(`failed ${n.lastError ?? ''}`, (extra) =>
        this.d.log.warn(
          { chatId: n.chatId, notificationId: n.id, attempts: n.attempts, reason: n.lastError, ...extra },
          'push notification failed',
        ),
      );
    }
    slot.n = n;
    this.untrack(slot);
    this.persist([n]);
  }

  private update(slot: Slot, n: Notification): void {
    slot.n = n;
    this.schedule(slot);
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
    let chat = this.byChat.get(n.chatId);
    if (chat === undefined) this.byChat.set(n.chatId, (chat = { slots: [], ended: false }));
    else if (chat.slots.length === 0) this.emptyChats--;
    if (n.chatEnded) chat.ended = true;
    const ticket: Ticket = { slot: undefined };
    const slot: Slot = { n, ticket, queued: false, running: false, retake: false, gone: false };
    ticket.slot = slot;
    chat.slots.push(slot);
    this.count++;
    this.schedule(slot);
  }

  private untrack(slot: Slot): void {
    if (slot.gone) return;
    slot.gone = true;
    slot.ticket.slot = undefined;
    this.count--;
    const chatId = slot.n.chatId;
    const chat = this.byChat.get(chatId);
    if (chat === undefined) return;
    const i = chat.slots.indexOf(slot);
    if (i !== -1) chat.slots.splice(i, 1);
    if (chat.slots.length > 0) return;
    if (chat.ended) {
      this.dropChat(chatId);
      this.d.registry.forget(chatId);
    } else {
      // Kept while empty: a chat's next notification reuses its entry instead of adding a key again.
      this.emptyChats++;
    }
  }

  /** Removes a chat with no slot left (its entry may have been counted as empty). */
  private dropChat(chatId: string): void {
    const chat = this.byChat.get(chatId);
    if (chat === undefined || chat.slots.length > 0) return;
    this.byChat.delete(chatId);
    if (!chat.ended) this.emptyChats--;
  }

  private pruneChats(): void {
    for (const [chatId, chat] of this.byChat) if (chat.slots.length === 0) this.byChat.delete(chatId);
    this.emptyChats = 0;
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
    if (inThisTurn) queueMicrotask(this.runMicrotaskKick);
    else setImmediate(this.runImmediateKick);
  }

  // Made once, not a named closure per kick (see LiveSessions.weigh on tsx's keepNames).
  private readonly runMicrotaskKick = (): void => this.runKick('microtask');
  private readonly runImmediateKick = (): void => this.runKick('immediate');

  private runKick(pending: 'microtask' | 'immediate'): void {
    this.pendingKicks.delete(pending);
    // stop() may have come between the kick and now: it does not wait for attempts started after it.
    if (this.running) void this.tick();
  }
}
