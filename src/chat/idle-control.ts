/**
 * Idle control, pure. Async chats: `async-idle-alert` then `async-idle-close` ([settings]). Regular chats:
 * `[inactivity-control]` timeout-alert, timeout-alert2 (0 = none), timeout-close. Each timer runs from the
 * last qualifying activity (the notice filter picks which activity counts) and each stage from the
 * previous alert. Everything is derived from the stored session, so a restart loses no timer.
 */
import { wake } from './routing.ts';
import { serverClose, systemNotice } from './session.ts';
import type { Change, Session } from './types.ts';

/** async-idle-notices / include-notices. */
export type NoticeFilter = 'none' | 'major' | 'major2' | 'typing' | 'all';

export interface IdleSettings {
  readonly async: { readonly alertMs: number; readonly closeMs: number; readonly notices: NoticeFilter };
  readonly inactivity: {
    readonly enabled: boolean;
    readonly notices: NoticeFilter;
    readonly alertMs: number;
    readonly alert2Ms: number;
    readonly closeMs: number;
    readonly messageAlert: string;
    readonly messageAlert2: string;
    readonly messageClose: string;
  };
  /** How long a woken chat is offered only to its last agent. */
  readonly lastAgentMs: number;
  /** Is the agent online (a woken chat of an agent who is not goes to anyone at once)? */
  readonly agentOnline: (agentId: string) => boolean;
}

export type IdleAction = 'alert' | 'alert2' | 'close';

/** The time of the last activity that counts under the filter (never before the session began). */
export function activitySince(s: Session, filter: NoticeFilter): number {
  const a = s.activity;
  let t = Math.max(s.createdAt, a.base);
  if (filter === 'none') return t;
  t = Math.max(t, a.major);
  if (filter === 'major2' || filter === 'all') t = Math.max(t, a.custom);
  if (filter === 'typing' || filter === 'all') t = Math.max(t, a.typing);
  if (filter === 'all') t = Math.max(t, a.other);
  return t;
}

/**
 * The alert stage already reached in the current idle period (0 = none). Activity in the same millisecond
 * as the alert counts as after it: the customer's word wins over the timer.
 */
function stage(s: Session, since: number): 0 | 1 | 2 {
  return s.idleAlert !== undefined && s.idleAlert.at > since ? s.idleAlert.stage : 0;
}

/** What idle control does next to the session, and when; undefined when nothing is scheduled. */
export function nextIdleAction(s: Session, cfg: IdleSettings): { at: number; action: IdleAction } | undefined {
  if (s.state === 'ended') return undefined;
  if (s.asyncMode) {
    const since = activitySince(s, cfg.async.notices);
    if (stage(s, since) === 0) return { at: since + cfg.async.alertMs, action: 'alert' };
    return { at: (s.idleAlert?.at ?? since) + cfg.async.closeMs, action: 'close' };
  }
  const ic = cfg.inactivity;
  if (!ic.enabled || s.state === 'dormant') return undefined;
  const since = activitySince(s, ic.notices);
  const st = stage(s, since);
  const alertAt = s.idleAlert?.at ?? since;
  if (st === 0) return { at: since + ic.alertMs, action: 'alert' };
  if (st === 1 && ic.alert2Ms > 0) return { at: alertAt + ic.alert2Ms, action: 'alert2' };
  return { at: alertAt + ic.closeMs, action: 'close' };
}

/**
 * The notice of an idle-control stage, with the session's stage patch. An empty message text sends no
 * message (the Genesys [inactivity-control] message options: "If an empty string is specified, no message
 * is sent"); the stage still moves on, so the next one comes on time.
 */
function idleNotice(s: Session, text: string, messageType: string, now: number, patch: Partial<Session> = {}): Change {
  if (text === '') return { session: { ...s, ...patch, updatedAt: now }, events: [] };
  return systemNotice(s, text, messageType, now, patch);
}

/**
 * Carries out a due action. Async alert: the alert notice, interaction properties
 * GCTI_Chat_AsyncStatus=3 and GCTI_Chat_AsyncCheckAt (when the close is due, ISO 8601 UTC), and a dormant
 * chat wakes up. Close: the close notice, then everyone leaves and the chat ends.
 */
export function applyIdleAction(s: Session, action: IdleAction, cfg: IdleSettings, now: number): Change {
  const ic = cfg.inactivity;
  if (action === 'close') {
    const notice = idleNotice(s, ic.messageClose, 'IDLE_CONTROL_CLOSE', now);
    const closed = serverClose(notice.session, now);
    return { session: closed.session, events: [...notice.events, ...closed.events] };
  }
  if (action === 'alert2') {
    return idleNotice(s, ic.messageAlert2, 'IDLE_CONTROL_ALERT', now, { idleAlert: { stage: 2, at: now } });
  }
  if (!s.asyncMode) return idleNotice(s, ic.messageAlert, 'IDLE_CONTROL_ALERT', now, { idleAlert: { stage: 1, at: now } });
  const userData = {
    ...s.userData,
    GCTI_Chat_AsyncStatus: '3',
    GCTI_Chat_AsyncCheckAt: new Date(now + cfg.async.closeMs).toISOString(),
  };
  const alerted = idleNotice(s, ic.messageAlert, 'IDLE_CONTROL_ALERT', now, { idleAlert: { stage: 1, at: now }, userData });
  return { session: wake(alerted.session, cfg.lastAgentMs, now, cfg.agentOnline).session, events: alerted.events };
}
