import { describe, expect, it } from 'vitest';
import { activitySince, applyIdleAction, nextIdleAction, type IdleSettings, type NoticeFilter } from './idle-control.ts';
import { hold } from './routing.ts';
import {
  addFile,
  agentJoin,
  deleteFile,
  NO_ACTIVITY,
  openSession,
  say,
  SYSTEM_PARTY,
  systemNotice,
  updateNickname,
  type OpenSessionInput,
} from './session.ts';
import type { Change, FileMeta, Session } from './types.ts';

const T0 = 1_700_000_000_000; // 2023-11-14T22:13:20.000Z
const SEC = 1000;

const CFG: IdleSettings = {
  async: { alertMs: 3600 * SEC, closeMs: 600 * SEC, notices: 'major' },
  inactivity: {
    enabled: true,
    notices: 'major',
    alertMs: 255 * SEC,
    alert2Ms: 30 * SEC,
    closeMs: 45 * SEC,
    messageAlert: 'Chat session will be closed soon due to inactivity of chat participants.',
    messageAlert2: 'Chat session will be closed very soon due to inactivity of chat participants.',
    messageClose: 'Chat session closed due to inactivity of chat participants.',
  },
  lastAgentMs: 120 * SEC,
  agentOnline: () => true,
};

function withCfg(patch: { async?: Partial<IdleSettings['async']>; inactivity?: Partial<IdleSettings['inactivity']>; lastAgentMs?: number }): IdleSettings {
  return {
    async: { ...CFG.async, ...patch.async },
    inactivity: { ...CFG.inactivity, ...patch.inactivity },
    lastAgentMs: patch.lastAgentMs ?? CFG.lastAgentMs,
    agentOnline: CFG.agentOnline,
  };
}

const INPUT: OpenSessionInput = {
  chatId: 'chat-idle',
  serviceName: 'support',
  secureKey: 'sk-idle',
  userId: 'user-idle',
  alias: '117',
  nickname: 'Jane',
  userData: { GCTI_LanguageCode: 'en' },
};

const ALICE = { agentId: 'alice', nickname: 'Alice' };

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function open(asyncMode: boolean, now = T0): Session {
  return deepFreeze(openSession({ ...INPUT, asyncMode }, now).session);
}

const FILE: FileMeta = {
  fileId: 'f-1',
  name: 'a.pdf',
  contentType: 'application/pdf',
  size: 10,
  uploadedBy: 1,
  uploadedAt: T0,
  downloads: 0,
  deleted: false,
};

/** An async chat that Alice took at T0 + 10 and put on hold at `heldAt`. */
function dormantAsync(heldAt = T0 + 20): Session {
  const joined = agentJoin(open(true), ALICE, T0 + 10).session;
  return deepFreeze(hold(joined, 'alice', heldAt).session);
}

describe('activitySince', () => {
  const at = T0 + 5000;
  const FILTERS: readonly NoticeFilter[] = ['none', 'major', 'major2', 'typing', 'all'];
  /** Each kind of participant activity, and the filters under which it counts. */
  const CASES: ReadonlyArray<[string, (s: Session) => Change, readonly NoticeFilter[]]> = [
    ['Message', (s) => say(s, 1, 'Message', { text: 'hi' }, at), FILTERS],
    ['ParticipantJoined (agent)', (s) => agentJoin(s, ALICE, at), FILTERS],
    ['PushUrl', (s) => say(s, 1, 'PushUrl', { text: 'https://example.com/page' }, at), ['major', 'major2', 'typing', 'all']],
    ['FileUploaded', (s) => addFile(s, { ...FILE, uploadedAt: at }, at), ['major', 'major2', 'typing', 'all']],
    [
      'FileDeleted',
      (s) => deleteFile(addFile(s, FILE, T0).session, 1, 'f-1', at),
      ['major', 'major2', 'typing', 'all'],
    ],
    ['CustomNotice', (s) => say(s, 1, 'CustomNotice', { text: 'x' }, at), ['major2', 'all']],
    ['TypingStarted', (s) => say(s, 1, 'TypingStarted', {}, at), ['typing', 'all']],
    ['TypingStopped', (s) => say(s, 1, 'TypingStopped', {}, at), ['all']],
    ['NicknameUpdated', (s) => updateNickname(s, 1, 'Janet', at), ['all']],
    ['a participant Notice', (s) => say(s, 1, 'Notice', { text: 'x' }, at), []],
    ['a system notice', (s) => systemNotice(s, 'alert', 'IDLE_CONTROL_ALERT', at), []],
  ];

  for (const [label, op, counts] of CASES) {
    it.each(FILTERS)(`${label} under %s`, (filter) => {
      const s = op(open(true)).session;
      expect(activitySince(s, filter)).toBe(counts.includes(filter) ? at : T0);
    });
  }

  it('a fresh session counts from its ParticipantJoined', () => {
    for (const f of FILTERS) expect(activitySince(open(false, T0 + 7), f)).toBe(T0 + 7);
  });

  it('is never before the session began', () => {
    const s = deepFreeze({ ...open(true), activity: NO_ACTIVITY });
    for (const f of FILTERS) expect(activitySince(s, f)).toBe(T0);
  });

  it('takes the latest counting kind, not the latest event', () => {
    let s = say(open(true), 1, 'PushUrl', { text: 'u' }, T0 + 100).session;
    s = say(s, 1, 'CustomNotice', { text: 'x' }, T0 + 200).session;
    s = say(s, 1, 'TypingStopped', {}, T0 + 300).session;
    expect(activitySince(s, 'none')).toBe(T0);
    expect(activitySince(s, 'major')).toBe(T0 + 100);
    expect(activitySince(s, 'typing')).toBe(T0 + 100);
    expect(activitySince(s, 'major2')).toBe(T0 + 200);
    expect(activitySince(s, 'all')).toBe(T0 + 300);
  });
});

describe('nextIdleAction: async chats', () => {
  const { alertMs, closeMs } = CFG.async;

  it('alerts async-idle-alert after the last activity', () => {
    expect(nextIdleAction(open(true), CFG)).toEqual({ at: T0 + alertMs, action: 'alert' });
    const later = say(open(true), 1, 'Message', { text: 'hi' }, T0 + 999).session;
    expect(nextIdleAction(later, CFG)).toEqual({ at: T0 + 999 + alertMs, action: 'alert' });
  });

  it('uses async-idle-notices to pick the activity', () => {
    const custom = say(open(true), 1, 'CustomNotice', { text: 'x' }, T0 + 999).session;
    expect(nextIdleAction(custom, CFG)).toEqual({ at: T0 + alertMs, action: 'alert' });
    expect(nextIdleAction(custom, withCfg({ async: { notices: 'major2' } }))).toEqual({ at: T0 + 999 + alertMs, action: 'alert' });
  });

  it('after the alert, closes async-idle-close after it', () => {
    const alertAt = T0 + alertMs;
    const alerted = applyIdleAction(open(true), 'alert', CFG, alertAt).session;
    expect(nextIdleAction(alerted, CFG)).toEqual({ at: alertAt + closeMs, action: 'close' });
  });

  it('a late alert counts the close from when it was sent', () => {
    const sentAt = T0 + alertMs + 7000;
    const alerted = applyIdleAction(open(true), 'alert', CFG, sentAt).session;
    expect(nextIdleAction(alerted, CFG)).toEqual({ at: sentAt + closeMs, action: 'close' });
  });

  it('activity after the alert stops the close and starts a new alert timeout', () => {
    const alertAt = T0 + alertMs;
    const alerted = applyIdleAction(open(true), 'alert', CFG, alertAt).session;
    const replied = say(alerted, 1, 'Message', { text: 'still here' }, alertAt + 60 * SEC).session;
    expect(nextIdleAction(replied, CFG)).toEqual({ at: alertAt + 60 * SEC + alertMs, action: 'alert' });
  });

  it('activity in the same millisecond as the alert (after it) also resets', () => {
    const alertAt = T0 + alertMs;
    const alerted = applyIdleAction(open(true), 'alert', CFG, alertAt).session;
    const replied = say(alerted, 1, 'Message', { text: 'here' }, alertAt).session;
    expect(nextIdleAction(replied, CFG)).toEqual({ at: alertAt + alertMs, action: 'alert' });
  });

  it('activity that does not count under the filter does not stop the close', () => {
    const alertAt = T0 + alertMs;
    const alerted = applyIdleAction(open(true), 'alert', CFG, alertAt).session;
    const typed = say(alerted, 1, 'TypingStarted', {}, alertAt + 10).session;
    expect(nextIdleAction(typed, CFG)).toEqual({ at: alertAt + closeMs, action: 'close' });
  });

  it('runs whatever [inactivity-control] says', () => {
    expect(nextIdleAction(open(true), withCfg({ inactivity: { enabled: false } }))).toEqual({ at: T0 + alertMs, action: 'alert' });
  });

  it('keeps running for a dormant chat, from the hold', () => {
    const s = dormantAsync(T0 + 20);
    expect(s.state).toBe('dormant');
    expect(nextIdleAction(s, CFG)).toEqual({ at: T0 + 20 + alertMs, action: 'alert' });
  });

  it('stops when the chat ended', () => {
    expect(nextIdleAction(deepFreeze({ ...open(true), state: 'ended' }), CFG)).toBeUndefined();
    const closed = applyIdleAction(open(true), 'close', CFG, T0 + 5).session;
    expect(nextIdleAction(closed, CFG)).toBeUndefined();
  });
});

describe('nextIdleAction: regular chats ([inactivity-control])', () => {
  const { alertMs, alert2Ms, closeMs } = CFG.inactivity;

  it('alert, then alert2, then close, each from the previous stage', () => {
    let s = open(false);
    expect(nextIdleAction(s, CFG)).toEqual({ at: T0 + alertMs, action: 'alert' });
    const a1 = T0 + alertMs;
    s = applyIdleAction(s, 'alert', CFG, a1).session;
    expect(nextIdleAction(s, CFG)).toEqual({ at: a1 + alert2Ms, action: 'alert2' });
    const a2 = a1 + alert2Ms;
    s = applyIdleAction(s, 'alert2', CFG, a2).session;
    expect(nextIdleAction(s, CFG)).toEqual({ at: a2 + closeMs, action: 'close' });
    s = applyIdleAction(s, 'close', CFG, a2 + closeMs).session;
    expect(s.state).toBe('ended');
    expect(nextIdleAction(s, CFG)).toBeUndefined();
  });

  it('skips alert2 when timeout-alert2 is 0', () => {
    const cfg = withCfg({ inactivity: { alert2Ms: 0 } });
    const a1 = T0 + alertMs;
    const s = applyIdleAction(open(false), 'alert', cfg, a1).session;
    expect(nextIdleAction(s, cfg)).toEqual({ at: a1 + closeMs, action: 'close' });
  });

  it('activity after an alert starts over', () => {
    const a1 = T0 + alertMs;
    let s = applyIdleAction(open(false), 'alert', CFG, a1).session;
    s = applyIdleAction(s, 'alert2', CFG, a1 + alert2Ms).session;
    s = say(s, 1, 'Message', { text: 'back' }, a1 + alert2Ms + 5).session;
    expect(nextIdleAction(s, CFG)).toEqual({ at: a1 + alert2Ms + 5 + alertMs, action: 'alert' });
  });

  it('uses include-notices, not async-idle-notices', () => {
    const cfg = withCfg({ inactivity: { notices: 'typing' }, async: { notices: 'none' } });
    const s = say(open(false), 1, 'TypingStarted', {}, T0 + 50).session;
    expect(nextIdleAction(s, cfg)).toEqual({ at: T0 + 50 + alertMs, action: 'alert' });
  });

  it('nothing when inactivity control is disabled', () => {
    expect(nextIdleAction(open(false), withCfg({ inactivity: { enabled: false } }))).toBeUndefined();
  });

  it('nothing for an ended or a dormant regular chat', () => {
    expect(nextIdleAction(deepFreeze({ ...open(false), state: 'ended' }), CFG)).toBeUndefined();
    expect(nextIdleAction(deepFreeze({ ...open(false), state: 'dormant' }), CFG)).toBeUndefined();
  });
});

describe('applyIdleAction', () => {
  const { alertMs, closeMs } = CFG.async;

  it('async alert: one IDLE_CONTROL_ALERT notice from the chat server, and the async interaction properties', () => {
    const s = open(true);
    const now = T0 + alertMs;
    const { session, events } = applyIdleAction(s, 'alert', CFG, now);
    expect(events).toEqual([
      {
        from: SYSTEM_PARTY,
        index: s.lastIndex + 1,
        type: 'Notice',
        utcTime: now,
        text: CFG.inactivity.messageAlert,
        messageType: 'IDLE_CONTROL_ALERT',
      },
    ]);
    expect(session.lastIndex).toBe(s.lastIndex + 1);
    expect(session.userData).toEqual({
      GCTI_LanguageCode: 'en',
      GCTI_Chat_AsyncStatus: '3',
      GCTI_Chat_AsyncCheckAt: new Date(now + closeMs).toISOString(),
    });
    expect(session.userData.GCTI_Chat_AsyncCheckAt).toBe('2023-11-14T23:23:20.000Z');
    expect(session.idleAlert).toEqual({ stage: 1, at: now });
    expect(session.state).toBe('waiting');
  });

  it('the alert notice is not activity: the close comes next', () => {
    const s = open(true);
    const now = T0 + alertMs;
    const { session } = applyIdleAction(s, 'alert', CFG, now);
    expect(session.activity).toEqual(s.activity);
    for (const f of ['none', 'major', 'major2', 'typing', 'all'] as const) expect(activitySince(session, f)).toBe(T0);
    expect(nextIdleAction(session, CFG)).toEqual({ at: now + closeMs, action: 'close' });
  });

  it('async alert wakes a dormant chat, routed to the workbin agent for lastAgentMs', () => {
    const s = dormantAsync(T0 + 20);
    const now = T0 + 20 + alertMs;
    const { session, events } = applyIdleAction(s, 'alert', CFG, now);
    expect(events.map((e) => e.messageType)).toEqual(['IDLE_CONTROL_ALERT']);
    expect(session.state).toBe('waiting');
    expect(session.workbin).toBeUndefined();
    expect(session.routing).toEqual({ agentId: 'alice', until: now + CFG.lastAgentMs });
    expect(session.userData.GCTI_Chat_AsyncStatus).toBe('3');
    expect(nextIdleAction(session, CFG)).toEqual({ at: now + closeMs, action: 'close' });
  });

  it('async alert with lastAgentMs 0 wakes the chat unrouted', () => {
    const { session } = applyIdleAction(dormantAsync(), 'alert', withCfg({ lastAgentMs: 0 }), T0 + alertMs);
    expect(session.state).toBe('waiting');
    expect(session.routing).toBeUndefined();
  });

  it('async alert wakes the chat unrouted when the workbin agent is not online', () => {
    const { session } = applyIdleAction(dormantAsync(), 'alert', { ...CFG, agentOnline: (id) => id !== 'alice' }, T0 + alertMs);
    expect(session.state).toBe('waiting');
    expect(session.routing).toBeUndefined();
  });

  it('async alert leaves an active chat active', () => {
    const s = deepFreeze(agentJoin(open(true), ALICE, T0 + 10).session);
    const { session } = applyIdleAction(s, 'alert', CFG, T0 + 10 + alertMs);
    expect(session.state).toBe('active');
    expect(session.routing).toBeUndefined();
  });

  it('close: the IDLE_CONTROL_CLOSE notice, then every remaining participant leaves, the client last; the chat ends', () => {
    const s = deepFreeze(agentJoin(open(true), ALICE, T0 + 10).session);
    const alerted = applyIdleAction(s, 'alert', CFG, T0 + 10 + alertMs).session;
    const now = T0 + 10 + alertMs + closeMs;
    const { session, events } = applyIdleAction(alerted, 'close', CFG, now);
    expect(events).toEqual([
      {
        from: SYSTEM_PARTY,
        index: alerted.lastIndex + 1,
        type: 'Notice',
        utcTime: now,
        text: CFG.inactivity.messageClose,
        messageType: 'IDLE_CONTROL_CLOSE',
      },
      { from: { nickname: 'Alice', participantId: 2, type: 'Agent' }, index: alerted.lastIndex + 2, type: 'ParticipantLeft', utcTime: now },
      { from: { nickname: 'Jane', participantId: 1, type: 'Client' }, index: alerted.lastIndex + 3, type: 'ParticipantLeft', utcTime: now },
    ]);
    expect(session.state).toBe('ended');
    expect(session.endedAt).toBe(now);
    expect(session.lastIndex).toBe(alerted.lastIndex + 3);
    expect(session.participants.every((p) => p.leftAt === now)).toBe(true);
  });

  it('close of a woken chat (no agent left): only the client leaves; workbin and routing are gone', () => {
    const woken = applyIdleAction(dormantAsync(), 'alert', CFG, T0 + 20 + alertMs).session;
    const now = T0 + 20 + alertMs + closeMs;
    const { session, events } = applyIdleAction(woken, 'close', CFG, now);
    expect(events.map((e) => [e.type, e.from.participantId, e.messageType])).toEqual([
      ['Notice', 0, 'IDLE_CONTROL_CLOSE'],
      ['ParticipantLeft', 1, undefined],
    ]);
    expect(session.state).toBe('ended');
    expect(session.routing).toBeUndefined();
    expect(session.workbin).toBeUndefined();
    // Alice, who left at the hold, keeps her leftAt.
    expect(session.participants.find((p) => p.participantId === 2)?.leftAt).toBe(T0 + 20);
    expect(session.participants.find((p) => p.participantId === 1)?.leftAt).toBe(now);
  });

  it('regular alert: message-alert, no async properties', () => {
    const s = open(false);
    const now = T0 + CFG.inactivity.alertMs;
    const { session, events } = applyIdleAction(s, 'alert', CFG, now);
    expect(events).toEqual([
      { from: SYSTEM_PARTY, index: 2, type: 'Notice', utcTime: now, text: CFG.inactivity.messageAlert, messageType: 'IDLE_CONTROL_ALERT' },
    ]);
    expect(session.userData).toEqual({ GCTI_LanguageCode: 'en' });
    expect(session.idleAlert).toEqual({ stage: 1, at: now });
  });

  it('regular alert2: message-alert2, stage 2', () => {
    const a1 = T0 + CFG.inactivity.alertMs;
    const alerted = applyIdleAction(open(false), 'alert', CFG, a1).session;
    const a2 = a1 + CFG.inactivity.alert2Ms;
    const { session, events } = applyIdleAction(alerted, 'alert2', CFG, a2);
    expect(events).toEqual([
      { from: SYSTEM_PARTY, index: 3, type: 'Notice', utcTime: a2, text: CFG.inactivity.messageAlert2, messageType: 'IDLE_CONTROL_ALERT' },
    ]);
    expect(session.idleAlert).toEqual({ stage: 2, at: a2 });
  });

  it('regular close: message-close, the client leaves, the chat ends', () => {
    const s = open(false);
    const now = T0 + 1_000_000;
    const { session, events } = applyIdleAction(s, 'close', CFG, now);
    expect(events.map((e) => [e.type, e.from.participantId, e.text])).toEqual([
      ['Notice', 0, CFG.inactivity.messageClose],
      ['ParticipantLeft', 1, undefined],
    ]);
    expect(session.state).toBe('ended');
  });

  it('never mutates its input', () => {
    const inputs = [open(true), open(false), dormantAsync(), deepFreeze(agentJoin(open(true), ALICE, T0 + 10).session)];
    const before = inputs.map((s) => JSON.stringify(s));
    for (const s of inputs) for (const a of ['alert', 'alert2', 'close'] as const) applyIdleAction(s, a, CFG, T0 + 10_000_000);
    expect(inputs.map((s) => JSON.stringify(s))).toEqual(before);
  });
});
