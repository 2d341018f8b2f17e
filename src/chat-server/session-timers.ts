/**
 * The timers of a chat server node: idle control (async idle alert/close, [inactivity-control]), the
 * disconnect of a client that stopped sending requests (flex-disconnect-timeout, or flex-push-timeout
 * for a push-subscribed client), and the end of a chat's routing to its last agent.
 *
 * One due-time index drives them all, with at most one live entry per (kind, session); an entry that
 * comes due re-derives the deadline from the stored session (activity may have moved it) and either acts
 * or schedules itself again. Idle deadlines are derived from stored state, so a restart keeps them; the
 * client's last request time is kept in memory only (a restart gives every client a fresh timeout).
 */
import type { Clock } from '../clock.ts';
import { applyIdleAction, nextIdleAction, type IdleSettings } from '../chat/idle-control.ts';
import { clientDisconnect } from '../chat/session.ts';
import type { Session } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { LogThrottle } from '../log-throttle.ts';
import { DueIndex } from '../lib/due-index.ts';
import type { LiveSessions } from './live-sessions.ts';

export interface SessionTimerSettings {
  readonly idle: IdleSettings;
  readonly flexDisconnectMs: number;
  readonly flexPushMs: number;
}

type Kind = 'idle' | 'disconnect' | 'route';

const TICK_MS = 250;
const BATCH = 10_000;

const KINDS: readonly Kind[] = ['idle', 'disconnect', 'route'];

export class SessionTimers {
  /** One due-time index per kind, keyed by the chat id itself (no string built per entry). */
  private readonly index: Record<Kind, DueIndex> = { idle: new DueIndex(), disconnect: new DueIndex(), route: new DueIndex() };
  /** The time of the live index entry per kind and chat. */
  private readonly scheduled: Record<Kind, Map<string, number>> = { idle: new Map(), disconnect: new Map(), route: new Map() };
  private readonly lastRequest = new Map<string, number>();
  private readonly failures = new LogThrottle();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sessions: LiveSessions,
    private readonly clock: Clock,
    private readonly settings: SessionTimerSettings,
    private readonly log: Logger,
  ) {}

  run(): void {
    // One round at a time: a round still working through a burst of deadlines (after downtime) is not
    // joined by more rounds every 250 ms.
    let ticking = false;
    this.timer = setInterval(() => {
      if (ticking) return;
      ticking = true;
      void this.tick().finally(() => {
        ticking = false;
      });
    }, TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  /** Entries in the due-time indexes, stale ones included (they are dropped when they come due). */
  get heapSize(): number {
    return this.index.idle.size + this.index.disconnect.size + this.index.route.size;
  }

  get pending(): number {
    return this.scheduled.idle.size + this.scheduled.disconnect.size + this.scheduled.route.size;
  }

  /** A session is (re)loaded or created: the client's timeout starts now; idle and routing deadlines are derived. */
  track(s: Session): void {
    if (s.state === 'ended') return;
    this.lastRequest.set(s.chatId, this.clock.now());
    this.ensure('disconnect', s.chatId, this.clock.now() + this.disconnectAfter(s));
    this.changed(s);
  }

  /** A committed change of the session: its idle and routing deadlines may have moved. */
  changed(s: Session): void {
    if (s.state === 'ended') {
      this.lastRequest.delete(s.chatId);
      return;
    }
    const idle = nextIdleAction(s, this.settings.idle);
    if (idle !== undefined) this.ensure('idle', s.chatId, idle.at);
    if (s.routing !== undefined) this.ensure('route', s.chatId, s.routing.until);
  }

  /** A request of the client: its disconnect timeout starts again. */
  requested(chatId: string): void {
    const now = this.clock.now();
    this.lastRequest.set(chatId, now);
    // The timeout that applies may have got shorter (a push subscription acknowledged by this request,
    // with a flex-push-timeout below flex-disconnect-timeout): the check moves earlier then.
    const s = this.sessions.peek(chatId);
    if (s !== undefined && s.state !== 'ended') this.ensure('disconnect', chatId, now + this.disconnectAfter(s));
  }

  /** Acts on everything due; resolves when done. Tests call it after moving a manual clock. */
  async tick(): Promise<void> {
    const now = this.clock.now();
    for (const kind of KINDS) {
      const scheduled = this.scheduled[kind];
      for (const { at, key: chatId } of this.index[kind].popDue(now, BATCH)) {
        if (scheduled.get(chatId) !== at) continue; // superseded by an earlier entry
        scheduled.delete(chatId);
        try {
          await this.fire(kind, chatId, now);
        } catch (err) {
          // Another node restored the session: its timers are that node's now.
          if (err instanceof ParleyError && err.code === 'NOT_OWNER') {
            this.lastRequest.delete(chatId);
            continue;
          }
          // A store outage fails every due timer: one line per cause every 10 s, not one per chat every 5 s.
          this.failures.log(`${kind} ${(err as Error).message}`, (extra) =>
            this.log.warn({ err, chatId, kind, ...extra }, 'session timer failed; retrying in 5 s'),
          );
          this.ensure(kind, chatId, now + 5000);
        }
      }
    }
  }

  private async fire(kind: Kind, chatId: string, now: number): Promise<void> {
    await this.sessions.serial(chatId, async (entry) => {
      const s = entry.session;
      if (s.state === 'ended') return;
      if (kind === 'route') {
        if (s.state !== 'waiting' || s.routing === undefined) return;
        // Routed again since this entry was made: wait for the new deadline.
        if (s.routing.until > now) return this.ensure('route', chatId, s.routing.until);
        this.sessions.announce(s);
        return;
      }
      if (kind === 'disconnect') {
        const due = (this.lastRequest.get(chatId) ?? now) + this.disconnectAfter(s);
        if (due > now) return this.ensure('disconnect', chatId, due);
        await this.sessions.commit(entry, clientDisconnect(s, now));
        this.log.info({ chatId }, 'client disconnected: no request within the flex timeout');
        return;
      }
      const next = nextIdleAction(s, this.settings.idle);
      if (next === undefined) return;
      if (next.at > now) return this.ensure('idle', chatId, next.at);
      await this.sessions.commit(entry, applyIdleAction(s, next.action, this.settings.idle, now));
      // The next stage (a stage with an empty message changes the session without an event to announce it).
      this.changed(entry.session);
    });
  }

  private disconnectAfter(s: Session): number {
    return s.push?.active === true ? this.settings.flexPushMs : this.settings.flexDisconnectMs;
  }

  /** Schedules `kind` for the chat at `at` unless an earlier check is already scheduled. */
  private ensure(kind: Kind, chatId: string, at: number): void {
    const scheduled = this.scheduled[kind];
    const cur = scheduled.get(chatId);
    if (cur !== undefined && cur <= at) return;
    scheduled.set(chatId, at);
    this.index[kind].push(at, chatId);
  }
}
