/**
 * The notification-receiver-app + custom-chat-app (mid-layer form): browsers talk only to the receiver;
 * the receiver talks Chat API v2 to the gateway and receives its customhttp pushes.
 *
 * - Start: Request Chat with push subscription userData (device id per session, include payload, resend),
 *   tokens cached durably; the browser gets its own token, never the secureKey.
 * - Push: events go to the session's browsers at once (from the payload), then a refresh with the cached
 *   tokens acknowledges the push and fetches anything missed. Refreshes of one session never overlap; a
 *   push during a refresh makes one more refresh afterwards.
 * - Never short-polls: one rare ping refresh per session every ping-interval, spread out evenly; a failed
 *   refresh (gateway down) is retried with backoff, so an acknowledgement is never lost.
 * - HA: `restoreNode(alias)` pings every cached session of a chat server node that restarted, with bounded
 *   concurrency. The shutdown advice (a ParticipantLeft of participantId 1 with quit-reason-advice=reconnect)
 *   arrives as a push, which is always followed by a refresh: that refresh restores the session elsewhere.
 */
import type { Clock } from '../clock.ts';
import type { ChatEvent } from '../chat/types.ts';
import { ERROR_CODES, ERRORS, ParleyError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { DueIndex } from '../lib/due-index.ts';
import { LogThrottle } from '../log-throttle.ts';
import type { CachedSession, TokenCache } from './token-cache.ts';
import type { ChatReply, GatewayClient } from './gateway-client.ts';

export interface ReceiverSettings {
  readonly nodeGroup: string;
  readonly pingIntervalMs: number;
  /** How long an ended chat stays in the cache ([receiver] ended-retention). */
  readonly endedRetentionMs: number;
  readonly restoreConcurrency: number;
  /** Random in [0,1): spreads the first pings; injected for tests. */
  readonly random: () => number;
  readonly newToken: () => string;
  readonly newDeviceId: () => string;
}

/** What a browser connection can be sent. */
export interface BrowserLink {
  send(frame: unknown): void;
}

export interface PushBodyIn {
  readonly deviceId?: unknown;
  readonly notificationId?: unknown;
  readonly type?: unknown;
  readonly data?: { readonly messages?: unknown; readonly chatEnded?: unknown; readonly nextPosition?: unknown };
}

const RETRY_MS = [1000, 2000, 5000, 10_000, 30_000, 60_000];
const DEDUPE = 10_000;

/** A transcript event, checked in shape: pushes are input from the network and may hold anything. */
function isEvent(m: unknown): m is ChatEvent {
  if (typeof m !== 'object' || m === null) return false;
  const e = m as { index?: unknown; type?: unknown; from?: unknown };
  if (typeof e.index !== 'number' || !Number.isInteger(e.index) || typeof e.type !== 'string') return false;
  const from = e.from as { participantId?: unknown } | null | undefined;
  return typeof from === 'object' && from !== null && typeof from.participantId === 'number';
}

/** The shutdown advice of a chat server: the client's own ParticipantLeft with quit-reason-advice=reconnect. */
export function isReconnectAdvice(e: ChatEvent): boolean {
  return e.type === 'ParticipantLeft' && e.from.participantId === 1 && e.userData?.['quit-reason-advice'] === 'reconnect';
}

/** How often ended chats past their retention are deleted from the cache. */
const PURGE_EVERY_MS = 3_600_000;

/** Pushes kept for a chat whose Request Chat reply has not come yet (a handful at most in practice). */
const MAX_EARLY_PUSHES = 32;

export class Receiver {
  private readonly browsers = new Map<string, Set<BrowserLink>>();
  private readonly refreshing = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly failureLogs = new LogThrottle();
  private readonly pings = new DueIndex();
  private readonly seenPushes = new Set<string>();
  /**
   * Devices of chats being started: a push may arrive before the Request Chat reply does (flex-push-on-join
   * notifies at once). Such pushes wait here and are handled once the session is cached, instead of being
   * refused as from an unknown device (410, which would end them for good).
   */
  private readonly starting = new Map<string, PushBodyIn[]>();
  /**
   * Sessions just started whose browser is not attached yet; true once something was pushed meanwhile
   * (sent to nobody): the browser then gets it with a refresh as soon as it is attached (`opened`).
   */
  private readonly opening = new Map<string, boolean>();
  /** Per session: the next event index the browsers have not been sent yet. */
  private readonly delivered = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  /** When ended chats past their retention are deleted next (the first tick does it). */
  private nextPurgeAt = 0;

  constructor(
    private readonly cache: TokenCache,
    private readonly gateway: GatewayClient,
    private readonly clock: Clock,
    private readonly settings: ReceiverSettings,
    private readonly log: Logger,
  ) {
    // Pings that came due while the receiver was down are spread over one interval, not all sent at once.
    const now = clock.now();
    for (const s of cache.all()) {
      if (s.nextPingAt > now) this.pings.push(s.nextPingAt, s.browserToken);
      else this.schedulePing(s, this.firstPingAt(now));
    }
  }

  run(tickMs = 250): void {
    this.timer = setInterval(() => void this.tick(), tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  get sessions(): number {
    return this.cache.size;
  }

  /** Starts a chat for a browser. */
  async start(input: { nickname: string; subject?: string; emailAddress?: string }): Promise<{ session: CachedSession; events: readonly ChatEvent[] }> {
    const deviceId = this.settings.newDeviceId();
    this.starting.set(deviceId, []);
    let reply: Awaited<ReturnType<GatewayClient['requestChat']>>;
    let early: PushBodyIn[] = [];
    try {
      reply = await this.requestChatFor(deviceId, input);
    } finally {
      early = this.starting.get(deviceId) ?? [];
      this.starting.delete(deviceId);
    }
    if (reply.statusCode !== 0 || reply.chatId === undefined || reply.secureKey === undefined) throw replyError(reply);
    const now = this.clock.now();
    const session: CachedSession = {
      browserToken: this.settings.newToken(),
      deviceId,
      serviceName: this.gateway.service,
      chatId: reply.chatId,
      userId: reply.userId ?? '',
      secureKey: reply.secureKey,
      alias: reply.alias ?? '',
      nickname: input.nickname,
      createdAt: now,
      nextPosition: reply.nextPosition ?? 1,
      ended: reply.chatEnded,
      nextPingAt: this.firstPingAt(now),
    };
    this.cache.put(session);
    this.pings.push(session.nextPingAt, session.browserToken);
    this.opening.set(session.browserToken, false);
    // Pushes that came before the reply: acknowledged now (their events are in the reply's transcript too).
    for (const body of early) this.onPush(body);
    return { session, events: reply.messages.filter(isEvent) };
  }

  private requestChatFor(deviceId: string, input: { nickname: string; subject?: string; emailAddress?: string }) {
    return this.gateway.requestChat({
      nickname: input.nickname,
      subject: input.subject ?? '',
      emailAddress: input.emailAddress ?? '',
      'userData[GCTI_Chat_PushSubscribe]': 'true',
      'userData[GCTI_GMS_NodeGroup]': this.settings.nodeGroup,
      'userData[GCTI_GMS_PushDeviceId]': deviceId,
      'userData[GCTI_GMS_PushDeviceType]': 'customhttp',
      'userData[GCTI_GMS_PushIncludePayload]': 'true',
      'userData[GCTI_GMS_PushResend]': 'true',
      'userData[GCTI_Chat_AsyncMode]': 'true',
    });
  }

  /** The browser of a session just started is attached (or gone): what was pushed meanwhile is fetched for it. */
  opened(token: string): void {
    const missed = this.opening.get(token) === true;
    this.opening.delete(token);
    if (missed && this.browsers.has(token)) void this.refresh(token);
  }

  /** The session of a browser token, or AGENT-free ACCESS_DENIED (a browser cannot claim another's). */
  session(token: string): CachedSession {
    const s = this.cache.byBrowserToken(token) ?? this.cache.endedByBrowserToken(token);
    if (s === undefined) throw new ParleyError('ACCESS_DENIED', 'Unknown chat session token.');
    return s;
  }

  attach(token: string, link: BrowserLink): () => void {
    let set = this.browsers.get(token);
    if (set === undefined) this.browsers.set(token, (set = new Set()));
    set.add(link);
    return () => {
      set.delete(link);
      if (set.size === 0) {
        this.browsers.delete(token);
        // No browser shows this chat now: the next one catches up from its own position.
        this.delivered.delete(token);
      }
    };
  }

  /** Events from `from` on, for a browser that (re)connects: read from the gateway (a refresh). */
  async catchUp(token: string, from: number): Promise<{ events: readonly ChatEvent[]; chatEnded: boolean; nextPosition: number }> {
    const s = this.session(token);
    // Also for an ended chat: the last words before the end may not have reached this browser yet.
    const reply = await this.call(s, 'refresh', { transcriptPosition: Math.max(1, from) });
    // What is new to every tab of the session goes to all of them (the resuming one drops what its
    // catch-up already showed); the position of the others is not moved past what they were sent.
    this.deliver(token, reply.messages.filter(isEvent), reply.chatEnded);
    const fresh = this.absorb(s.browserToken, reply);
    return { events: reply.messages.filter(isEvent).filter((e) => !isReconnectAdvice(e)), chatEnded: fresh?.ended ?? true, nextPosition: reply.nextPosition ?? s.nextPosition };
  }

  /**
   * A Chat API operation for the browser (send, startTyping, stopTyping, disconnect, file/limits, ...). The
   * reply carries the events from the browsers' position on, so they see their own messages too.
   */
  async operate(token: string, operation: string, fields: Record<string, string> = {}): Promise<ChatReply> {
    const s = this.session(token);
    if (s.ended && operation !== 'file/limits') throw new ParleyError('CHAT_ENDED');
    const reply = await this.call(s, operation, { transcriptPosition: this.nextToDeliver(token, s), ...fields });
    this.deliver(token, reply.messages.filter(isEvent), reply.chatEnded);
    this.absorb(token, reply);
    return reply;
  }

  /** Uploads a browser's file into the chat; the transcript shows it through the usual delivery. */
  async upload(token: string, file: { fileName: string; contentType: string; bytes: Buffer }, description?: string): Promise<ChatReply> {
    const s = this.session(token);
    if (s.ended) throw new ParleyError('CHAT_ENDED');
    const { reply } = await this.gateway.upload(s, file, description, this.nextToDeliver(token, s));
    if (reply.statusCode !== 0) throw replyError(reply);
    this.deliver(token, reply.messages.filter(isEvent), reply.chatEnded);
    this.absorb(token, reply);
    return reply;
  }

  async download(token: string, fileId: string): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
    return this.gateway.download(this.session(token), fileId);
  }

  /** A customhttp POST from the gateway. Unknown devices and duplicates are ignored (answered 200). */
  onPush(body: PushBodyIn): 'ok' | 'unknown-device' | 'duplicate' {
    const deviceId = typeof body.deviceId === 'string' ? body.deviceId : '';
    const s = this.cache.byDeviceId(deviceId);
    if (s === undefined) {
      const early = this.starting.get(deviceId);
      if (early === undefined) return 'unknown-device';
      if (early.length < MAX_EARLY_PUSHES) early.push(body);
      return 'ok';
    }
    const id = typeof body.notificationId === 'string' ? body.notificationId : undefined;
    const attempt = typeof (body as { attempt?: unknown }).attempt === 'number' ? (body as { attempt: number }).attempt : 1;
    // A resend of a notification seen before still needs an acknowledgement (the first one may have been
    // lost), but its events are not delivered twice.
    const duplicate = id !== undefined && this.seenPushes.has(id);
    if (id !== undefined && !duplicate) this.rememberPush(id);
    if (!duplicate) {
      const events = Array.isArray(body.data?.messages) ? (body.data.messages as unknown[]).filter(isEvent) : [];
      this.deliver(s.browserToken, events, body.data?.chatEnded === true);
    }
    this.refresh(s.browserToken);
    return duplicate && attempt > 1 ? 'duplicate' : 'ok';
  }

  /** Pings every cached session of a chat server node that restarted or stopped answering. */
  async restoreNode(alias: string): Promise<number> {
    const targets = this.cache.onNode(alias);
    this.log.warn({ alias, sessions: targets.length }, 'chat server node restarted or unreachable: restoring its sessions');
    let next = 0;
    const worker = async () => {
      while (next < targets.length) {
        const s = targets[next++] as CachedSession;
        await this.refresh(s.browserToken);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.settings.restoreConcurrency, targets.length) }, worker));
    return targets.length;
  }

  /** Due pings (and ack retries). Resolves when they are done; tests call it after moving a clock. */
  async tick(): Promise<void> {
    const now = this.clock.now();
    if (now >= this.nextPurgeAt) {
      this.nextPurgeAt = now + PURGE_EVERY_MS;
      const purged = this.cache.purgeEnded(now - this.settings.endedRetentionMs);
      if (purged > 0) this.log.info({ purged }, 'ended chats past [receiver] ended-retention deleted from the token cache');
    }
    const due = this.pings.popDue(now, 5000);
    const work: Array<Promise<void>> = [];
    const seen = new Set<string>();
    for (const { at, key } of due) {
      const s = this.cache.byBrowserToken(key);
      // Two entries for one ping time (a push and a ping ending in the same ms): one refresh.
      if (s === undefined || s.nextPingAt !== at || seen.has(key)) continue;
      seen.add(key);
      work.push(this.refresh(key));
    }
    await Promise.all(work);
  }

  /**
   * Refreshes a session now (acknowledging its pushes) unless a refresh is running, in which case one more
   * runs after it. Resolves when the session is up to date.
   */
  refresh(token: string): Promise<void> {
    const running = this.refreshing.get(token);
    if (running !== undefined) {
      this.again.add(token);
      return running;
    }
    const run = (async () => {
      do {
        this.again.delete(token);
        await this.refreshOnce(token);
      } while (this.again.has(token));
    })().finally(() => this.refreshing.delete(token));
    this.refreshing.set(token, run);
    return run;
  }

  private async refreshOnce(token: string): Promise<void> {
    const s = this.cache.byBrowserToken(token);
    if (s === undefined) return;
    try {
      const reply = await this.call(s, 'refresh', { transcriptPosition: this.nextToDeliver(token, s) });
      this.failures.delete(token);
      const events = reply.messages.filter(isEvent);
      this.deliver(token, events, reply.chatEnded);
      const after = this.absorb(token, reply);
      if (after !== undefined && !after.ended) this.schedulePing(after, this.clock.now() + this.settings.pingIntervalMs);
    } catch (err) {
      // The chat server does not know the chat (gone from its store): no retry will help.
      if (err instanceof ParleyError && err.code === 'UNKNOWN_CHAT') {
        this.log.warn({ chatId: s.chatId }, 'chat unknown to the chat server: dropped');
        this.end(s);
        return;
      }
      const n = (this.failures.get(token) ?? 0) + 1;
      this.failures.set(token, n);
      const wait = RETRY_MS[Math.min(n, RETRY_MS.length) - 1] ?? 60_000;
      // A gateway outage fails every cached session's ping: one line per cause every 10 s, with a count.
      this.failureLogs.log((err as Error).message, (extra) =>
        this.log.warn({ chatId: s.chatId, failures: n, retryInMs: wait, err: (err as Error).message, ...extra }, 'refresh failed; retrying'),
      );
      // Re-read: the failure may have been the chat's end, which removed it from the running sessions.
      const current = this.cache.byBrowserToken(token);
      if (current !== undefined && !current.ended) this.schedulePing(current, this.clock.now() + wait);
    }
  }

  private async call(s: CachedSession, operation: string, fields: Record<string, string | number>): Promise<ChatReply> {
    const reply = await this.gateway.operate(s, operation, fields);
    if (reply.statusCode !== 0 && reply.chatEnded) {
      // The last words before the end (the agent's closing message) may not have been shown yet: a refresh
      // of an ended chat still answers its transcript.
      const token = s.browserToken;
      const last = await this.gateway.operate(s, 'refresh', { transcriptPosition: this.nextToDeliver(token, s) }).catch(() => undefined);
      if (last?.statusCode === 0) this.deliver(token, last.messages.filter(isEvent), true);
      this.end(this.cache.byBrowserToken(token) ?? s);
    }
    if (reply.statusCode !== 0) throw replyError(reply);
    return reply;
  }

  /** The chat is over: cached as ended, the browsers told, its per-chat state dropped. */
  private end(s: CachedSession): void {
    const token = s.browserToken;
    if (!s.ended) this.cache.put({ ...s, ended: true });
    const next = this.nextToDeliver(token, s);
    this.broadcast(token, { type: 'events', events: [], chatEnded: true, nextPosition: next });
    this.delivered.delete(token);
    this.failures.delete(token);
  }

  /** Takes the reply's alias (restoration may move the session) and position; returns the cached state. */
  private absorb(token: string, reply: ChatReply, advance = true): CachedSession | undefined {
    const s = this.cache.byBrowserToken(token);
    if (s === undefined) return undefined;
    const next: CachedSession = {
      ...s,
      alias: reply.alias ?? s.alias,
      nextPosition: advance ? Math.max(s.nextPosition, reply.nextPosition ?? s.nextPosition) : s.nextPosition,
      ended: s.ended || reply.chatEnded,
    };
    if (next.alias !== s.alias || next.nextPosition !== s.nextPosition || next.ended !== s.ended) this.cache.put(next);
    return next;
  }

  private nextToDeliver(token: string, s: CachedSession): number {
    return this.delivered.get(token) ?? s.nextPosition;
  }

  /**
   * Sends the browsers the events that continue what they have, in index order and without gaps: an event
   * after a gap waits for the refresh that fills it. The shutdown advice is not shown to the customer.
   */
  private deliver(token: string, events: readonly ChatEvent[], chatEnded: boolean): void {
    const s = this.cache.byBrowserToken(token) ?? this.cache.endedByBrowserToken(token);
    if (s === undefined) return;
    // No browser shows the chat: nothing is sent, and nothing counted as sent (the next browser catches
    // up from its own position; a starting one gets what came meanwhile with its first refresh).
    if (!this.browsers.has(token)) {
      if (this.opening.has(token) && events.some((e) => e.index >= s.nextPosition)) this.opening.set(token, true);
      return;
    }
    let next = this.nextToDeliver(token, s);
    const fresh: ChatEvent[] = [];
    let gap = false;
    // The reconnect advice is not a transcript event (it repeats the last index): never count it.
    for (const e of events.filter((x) => !isReconnectAdvice(x)).sort((a, b) => a.index - b.index)) {
      if (e.index < next) continue;
      if (e.index > next) {
        gap = true;
        break;
      }
      next++;
      fresh.push(e);
    }
    this.delivered.set(token, next);
    // The end is announced only once the events before it were sent (the refresh fills the gap).
    const ended = chatEnded && !gap;
    if (fresh.length > 0 || ended) this.broadcast(token, { type: 'events', events: fresh, chatEnded: ended, nextPosition: next });
  }

  private broadcast(token: string, frame: unknown): void {
    for (const b of this.browsers.get(token) ?? []) b.send(frame);
  }

  /** A ping at a random point of the next interval: 100K sessions at 30 min make about 55 pings/s, evenly, not bursts. */
  private firstPingAt(now: number): number {
    return now + Math.floor(this.settings.random() * this.settings.pingIntervalMs) + 1;
  }

  private schedulePing(s: CachedSession, at: number): void {
    this.cache.put({ ...s, nextPingAt: at });
    this.pings.push(at, s.browserToken);
  }

  private rememberPush(id: string): void {
    this.seenPushes.add(id);
    if (this.seenPushes.size > DEDUPE) {
      const oldest = this.seenPushes.values().next().value;
      if (oldest !== undefined) this.seenPushes.delete(oldest);
    }
  }
}

/** The gateway's error as a ParleyError with the same code (found by its wire code). */
function replyError(reply: ChatReply): ParleyError {
  const first = reply.errors?.[0];
  const advice = first?.advice ?? 'The chat server refused the request.';
  const code = first === undefined ? undefined : ERROR_CODES.find((c) => ERRORS[c].wire === first.code);
  return new ParleyError(code ?? (reply.chatEnded ? 'CHAT_ENDED' : reply.statusCode === 1 ? 'UNAVAILABLE' : 'INVALID_PARAMETER'), advice);
}
