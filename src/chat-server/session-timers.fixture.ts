/** Settings and shapes shared by the session timer tests (session-timers.test.ts, session-timers-faults.test.ts). */
import type { PushState } from '../chat/types.ts';
import type { Store } from '../store/port.ts';
import type { LiveSessions } from './live-sessions.ts';
import type { SessionTimers, SessionTimerSettings } from './session-timers.ts';

export const SEC = 1000;
export const MIN = 60 * SEC;

export const SETTINGS: SessionTimerSettings = {
  idle: {
    async: { alertMs: 60 * MIN, closeMs: 10 * MIN, notices: 'major' },
    inactivity: {
      enabled: false,
      notices: 'major',
      alertMs: 255 * SEC,
      alert2Ms: 0,
      closeMs: 45 * SEC,
      messageAlert: 'closing soon',
      messageAlert2: 'closing very soon',
      messageClose: 'closed',
    },
    lastAgentMs: 2 * MIN,
    agentOnline: () => true,
  },
  flexDisconnectMs: 45 * SEC,
  flexPushMs: 24 * 60 * MIN,
};

export const PUSH: PushState = {
  subscription: { nodeGroup: 'group', deviceId: 'http://127.0.0.1:9/push', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: false },
  active: true,
};

export const ALICE = { agentId: 'alice', nickname: 'Alice' };

export interface Node {
  readonly store: Store;
  readonly sessions: LiveSessions;
  readonly timers: SessionTimers;
}
