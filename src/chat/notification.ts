/**
 * Flex-push notifications, pure: which events a subscribed client is notified of, what a notification
 * carries, and how its delivery state moves (send, resend until acknowledged, give up). The engine in
 * src/push/ does the I/O and feeds outcomes back through these functions.
 */
import type { PushSubscription } from './push-subscription.ts';
import { CLIENT_PARTICIPANT_ID, type ChatEvent, type Session } from './types.ts';

/** Values of `flex-push-content`. */
export type FlexPushToken = 'app-dbid' | 'secure-key' | 'session-id' | 'user-id';

/** The tokens a receiver needs to acknowledge by a refresh, as chosen by `flex-push-content`. */
export interface PushTokens {
  readonly chatId?: string;
  readonly userId?: string;
  readonly secureKey?: string;
  readonly alias?: string;
}

export type NotificationState = 'pending' | 'delivered' | 'acked' | 'failed';

export interface Notification {
  readonly id: string;
  readonly chatId: string;
  readonly serviceName: string;
  readonly createdAt: number;
  readonly subscription: PushSubscription;
  readonly events: readonly ChatEvent[];
  readonly chatEnded: boolean;
  readonly nextPosition: number;
  readonly tokens: PushTokens;
  /** Extra fields for a notification that is not a transcript event (shutdown advice). */
  readonly extra?: Readonly<Record<string, string>>;
  readonly state: NotificationState;
  /** POSTs tried, successful or not. */
  readonly attempts: number;
  /** POSTs answered 2xx. */
  readonly sends: number;
  /** Failed POSTs since the last success. */
  readonly failures: number;
  /** When to try next; null = parked (no gateway node) until the session's next activity or a node joins, at most until `deliveryWindowEnd`. */
  readonly nextAttemptAt: number | null;
  readonly lastError?: string;
  readonly finishedAt?: number;
}

export type DeliveryOutcome =
  | { readonly kind: 'delivered' }
  | { readonly kind: 'retry'; readonly reason: string; readonly retryAfterMs?: number }
  | { readonly kind: 'gone'; readonly reason: string };

export interface ResendPolicy {
  readonly resendDelayMs: number;
  readonly resendAttempts: number;
  /** Delay before retrying after `failures` consecutive failed POSTs (backoff with jitter). */
  readonly backoffMs: (failures: number) => number;
}

export function tokensFor(s: Session, content: readonly string[]): PushTokens {
  const t: { -readonly [K in keyof PushTokens]: PushTokens[K] } = {};
  if (content.includes('session-id')) t.chatId = s.chatId;
  if (content.includes('user-id')) t.userId = s.userId;
  if (content.includes('secure-key')) t.secureKey = s.secureKey;
  if (content.includes('app-dbid')) t.alias = s.alias;
  return t;
}

/**
 * The events of a change that the subscribed client is told about: everything other participants do;
 * of the client's own activity only its leaving (the abandon), and only with GCTI_GMS_NotifyRequestor.
 */
export function notifiableEvents(sub: PushSubscription, events: readonly ChatEvent[]): ChatEvent[] {
  return events.filter(
    (e) => e.from.participantId !== CLIENT_PARTICIPANT_ID || (sub.notifyRequestor && e.type === 'ParticipantLeft'),
  );
}

/** The notification a committed change raises, or undefined. */
export function notificationFor(
  s: Session,
  events: readonly ChatEvent[],
  opts: { readonly id: string; readonly now: number; readonly content: readonly string[] },
): Notification | undefined {
  if (s.push === undefined || !s.push.active) return undefined;
  const notified = notifiableEvents(s.push.subscription, events);
  if (notified.length === 0) return undefined;
  return buildNotification(s as Session & { push: NonNullable<Session['push']> }, notified, opts);
}

/**
 * The shutdown advice of a planned stop (shutdown-notify-flex-push): a ParticipantLeft of participantId 1
 * with quit-reason-advice=reconnect. Not a transcript event: it carries the last index, so no client takes
 * it for a new one. Undefined for a session without an active subscription.
 */
export function shutdownAdvice(s: Session, opts: { readonly id: string; readonly now: number; readonly content: readonly string[] }): Notification | undefined {
  if (s.push === undefined || !s.push.active || s.state === 'ended') return undefined;
  const client = s.participants.find((p) => p.participantId === CLIENT_PARTICIPANT_ID);
  if (client === undefined) return undefined;
  const event: ChatEvent = {
    from: { nickname: client.nickname, participantId: client.participantId, type: client.type },
    index: s.lastIndex,
    type: 'ParticipantLeft',
    utcTime: opts.now,
    userData: { 'quit-reason-advice': 'reconnect' },
  };
  return buildNotification(s as Session & { push: NonNullable<Session['push']> }, [event], opts);
}

function buildNotification(
  s: Session & { push: NonNullable<Session['push']> },
  events: readonly ChatEvent[],
  opts: { readonly id: string; readonly now: number; readonly content: readonly string[] },
): Notification {
  return {
    id: opts.id,
    chatId: s.chatId,
    serviceName: s.serviceName,
    createdAt: opts.now,
    subscription: s.push.subscription,
    events,
    chatEnded: s.state === 'ended',
    nextPosition: s.lastIndex + 1,
    tokens: tokensFor(s, opts.content),
    state: 'pending',
    attempts: 0,
    sends: 0,
    failures: 0,
    nextAttemptAt: opts.now,
    // Present from the start, though undefined (JSON leaves them out): the transitions below are spreads
    // (`{ ...n, lastError, finishedAt }`), and in Node 20's V8 a spread followed by a property the source
    // lacks gives every resulting object a hidden class of its own. That was a map and a descriptor array
    // in the old generation per push (tens of MB between two major GCs at 5,000 pushes/s); with every
    // property present, all notifications share one.
    lastError: undefined,
    finishedAt: undefined,
  };
}

/**
 * The notifications worth storing: those that asked for reliable delivery. Without GCTI_GMS_PushResend a
 * notification is tried once and never resubmitted (the seeds), so a restart has nothing to resend.
 */
export function durable(outbox: readonly Notification[]): readonly Notification[] {
  return outbox.some((n) => !n.subscription.resend) ? outbox.filter((n) => n.subscription.resend) : outbox;
}

export function isFinal(n: Notification): boolean {
  return n.state === 'acked' || n.state === 'failed' || (n.state === 'delivered' && !n.subscription.resend);
}

function fail(n: Notification, now: number, reason: string): Notification {
  return { ...n, state: 'failed', nextAttemptAt: null, lastError: reason, finishedAt: now };
}

/**
 * Called when a notification is due. Either it should be POSTed now ('send'), or its resends are used up
 * without an acknowledgement and it has failed.
 */
export function beforeAttempt(n: Notification, now: number, p: ResendPolicy): Notification | 'send' {
  if (n.subscription.resend && n.sends > p.resendAttempts) {
    return fail(n, now, `not acknowledged after ${p.resendAttempts} resends`);
  }
  return 'send';
}

/**
 * After a POST. Without GCTI_GMS_PushResend there is exactly one attempt (the seeds: no resubmission).
 * With it, a delivered notification is resent every resend delay until acknowledged; a failed POST is
 * retried with backoff (capped at the resend delay) until delay × (attempts + 1) after creation.
 */
export function afterAttempt(n: Notification, outcome: DeliveryOutcome, now: number, p: ResendPolicy): Notification {
  const tried = { ...n, attempts: n.attempts + 1 };
  if (outcome.kind === 'gone') return fail(tried, now, outcome.reason);
  if (outcome.kind === 'delivered') {
    const sent = { ...tried, sends: n.sends + 1, failures: 0 };
    if (!n.subscription.resend) return { ...sent, state: 'delivered', nextAttemptAt: null, finishedAt: now };
    return { ...sent, state: 'delivered', nextAttemptAt: now + p.resendDelayMs };
  }
  const failed = { ...tried, failures: n.failures + 1, lastError: outcome.reason };
  if (!n.subscription.resend) return fail(failed, now, outcome.reason);
  const deadline = deliveryWindowEnd(n, p);
  // The backoff is capped at the resend delay; a receiver's Retry-After (429/503) is honoured as it is.
  const wait = Math.max(Math.min(p.backoffMs(failed.failures), p.resendDelayMs), outcome.retryAfterMs ?? 0);
  if (now + wait > deadline) return fail(failed, now, `undeliverable: ${outcome.reason}`);
  return { ...failed, nextAttemptAt: now + wait };
}

/** No gateway node in the session's group: wait for the session's next activity. */
export function park(n: Notification, reason: string): Notification {
  return { ...n, nextAttemptAt: null, lastError: reason };
}

/**
 * The end of a notification's delivery window, flex-push-resend-delay × (flex-push-resend-attempts + 1)
 * after it was created: a reliable one's failed POSTs are retried until then, and a parked one (no
 * gateway node) waits until then.
 */
export function deliveryWindowEnd(n: Notification, p: ResendPolicy): number {
  return n.createdAt + p.resendDelayMs * (p.resendAttempts + 1);
}

/** A parked notification whose wait is over has failed (no gateway node came); any other is unchanged. */
export function expireParked(n: Notification, now: number, p: ResendPolicy): Notification {
  if (n.nextAttemptAt !== null || isFinal(n) || now < deliveryWindowEnd(n, p)) return n;
  return fail(n, now, n.lastError ?? 'no gms node found in group');
}

/** The session's next activity, or a gateway node joining the group: parked notifications are due again. */
export function unpark(n: Notification, now: number): Notification {
  return n.nextAttemptAt === null && !isFinal(n) ? { ...n, nextAttemptAt: now } : n;
}

/** A refresh with the session's tokens acknowledges every notification not yet final. */
export function acknowledge(n: Notification, now: number): Notification {
  return isFinal(n) ? n : { ...n, state: 'acked', nextAttemptAt: null, finishedAt: now };
}
