import { describe, expect, it } from 'vitest';
import { ParleyError, type ErrorCode } from '../errors.ts';
import {
  addFile,
  agentClose,
  agentJoin,
  agentLeave,
  clientDisconnect,
  countDownload,
  deleteFile,
  findFile,
  openSession,
  readReceipt,
  say,
  updateData,
  updateNickname,
  type OpenSessionInput,
} from './session.ts';
import type { Change, ChatEvent, FileMeta, Session } from './types.ts';

const T0 = 1_700_000_000_000;

const BASE_INPUT: OpenSessionInput = {
  chatId: 'chat-1',
  serviceName: 'customer-support',
  secureKey: 'sk-123',
  userId: 'user-1',
  alias: '117',
  nickname: 'Jane',
};

function open(extra: Partial<OpenSessionInput> = {}, now = T0): Change {
  return openSession({ ...BASE_INPUT, ...extra }, now);
}

function fresh(extra: Partial<OpenSessionInput> = {}): Session {
  return open(extra).session;
}

const ALICE = { agentId: 'alice', nickname: 'Alice' };
const BOB = { agentId: 'bob', nickname: 'Bob' };

function withAgent(s: Session = fresh(), agent = ALICE, now = T0 + 10): Session {
  return agentJoin(s, agent, now).session;
}

function file(over: Partial<FileMeta> = {}): FileMeta {
  return {
    fileId: 'f-1',
    name: 'report.pdf',
    contentType: 'application/pdf',
    size: 1234,
    uploadedBy: 1,
    uploadedAt: T0 + 5,
    downloads: 0,
    deleted: false,
    ...over,
  };
}

/** Runs fn and returns the ParleyError code it throws (fails the test if it throws something else or nothing). */
function codeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ParleyError);
    return (err as ParleyError).code;
  }
  throw new Error('expected a ParleyError, nothing was thrown');
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Applies ops in turn and returns every event they appended, in order. */
function run(s: Session, ops: Array<(s: Session) => Change>): { session: Session; events: ChatEvent[] } {
  const events: ChatEvent[] = [];
  let cur = s;
  for (const op of ops) {
    const c = op(cur);
    events.push(...c.events);
    cur = c.session;
  }
  return { session: cur, events };
}

describe('openSession', () => {
  it('uses the nickname as display name', () => {
    const { session, events } = open({ nickname: '  Jane  ', firstName: 'Ignored', lastName: 'Too' });
    expect(session.participants).toEqual([{ participantId: 1, type: 'Client', nickname: 'Jane', joinedAt: T0 }]);
    expect(events).toEqual([
      { from: { nickname: 'Jane', participantId: 1, type: 'Client' }, index: 1, type: 'ParticipantJoined', utcTime: T0 },
    ]);
  });

  it('falls back to firstName + lastName when there is no nickname', () => {
    const { session, events } = open({ nickname: undefined, firstName: 'John', lastName: 'Doe' });
    expect(session.participants[0]?.nickname).toBe('John Doe');
    expect(events[0]?.from.nickname).toBe('John Doe');
    expect(session.firstName).toBe('John');
    expect(session.lastName).toBe('Doe');
  });

  it('falls back to firstName + lastName when the nickname is blank', () => {
    expect(fresh({ nickname: '   ', firstName: 'John', lastName: 'Doe' }).participants[0]?.nickname).toBe('John Doe');
  });

  it.each([
    ['no identity at all', { nickname: undefined }],
    ['only firstName', { nickname: undefined, firstName: 'John' }],
    ['only lastName', { nickname: undefined, lastName: 'Doe' }],
    ['blank nickname and blank names', { nickname: ' ', firstName: ' ', lastName: ' ' }],
  ] as const)('throws MISSING_PARAMETER with %s', (_label, extra) => {
    expect(codeOf(() => open(extra))).toBe('MISSING_PARAMETER');
  });

  it('starts waiting, with participantId 1 of type Client and nothing else', () => {
    const s = fresh();
    expect(s.state).toBe('waiting');
    expect(s.chatId).toBe('chat-1');
    expect(s.serviceName).toBe('customer-support');
    expect(s.secureKey).toBe('sk-123');
    expect(s.userId).toBe('user-1');
    expect(s.alias).toBe('117');
    expect(s.createdAt).toBe(T0);
    expect(s.updatedAt).toBe(T0);
    expect(s.endedAt).toBeUndefined();
    expect(s.participants).toHaveLength(1);
    expect(s.participants[0]).toMatchObject({ participantId: 1, type: 'Client' });
    expect(s.nextParticipantId).toBe(2);
    expect(s.lastIndex).toBe(1);
    expect(s.files).toEqual([]);
    expect(s.clientReadPosition).toBe(0);
    expect(s.subject).toBe('');
    expect(s.emailAddress).toBe('');
  });

  it('keeps subject and emailAddress', () => {
    const s = fresh({ subject: 'Billing', emailAddress: 'jane@example.com' });
    expect(s.subject).toBe('Billing');
    expect(s.emailAddress).toBe('jane@example.com');
  });

  it('turns an initial text into a Message event with index 2', () => {
    const { session, events } = open({ text: 'Hello there' });
    expect(events).toHaveLength(2);
    expect(events[1]).toEqual({
      from: { nickname: 'Jane', participantId: 1, type: 'Client' },
      index: 2,
      type: 'Message',
      utcTime: T0,
      text: 'Hello there',
    });
    expect(session.lastIndex).toBe(2);
  });

  it('adds no Message event for an empty text', () => {
    const { session, events } = open({ text: '' });
    expect(events.map((e) => e.type)).toEqual(['ParticipantJoined']);
    expect(session.lastIndex).toBe(1);
  });

  it('copies userData instead of sharing the input object', () => {
    const userData = { a: '1', 'b c': 'two' };
    const s = fresh({ userData });
    expect(s.userData).toEqual({ a: '1', 'b c': 'two' });
    expect(s.userData).not.toBe(userData);
  });

  it('gives an empty userData when none is supplied', () => {
    expect(fresh().userData).toEqual({});
  });
});

describe('transcript indices', () => {
  it('are contiguous from 1 across every kind of operation', () => {
    const start = open({ text: 'hi' });
    const f1 = file({ fileId: 'f-1' });
    const f2 = file({ fileId: 'f-2', uploadedBy: 2, name: 'agent.txt' });
    let t = T0;
    const tick = (): number => (t += 1);
    const { session, events } = run(start.session, [
      (s) => say(s, 1, 'TypingStarted', {}, tick()),
      (s) => say(s, 1, 'TypingStopped', {}, tick()),
      (s) => agentJoin(s, ALICE, tick()),
      (s) => agentJoin(s, ALICE, tick()), // no-op
      (s) => say(s, 2, 'Message', { text: 'Hello, how can I help?' }, tick()),
      (s) => updateData(s, { k: 'v' }, tick()), // no event
      (s) => readReceipt(s, 3, tick()), // no event
      (s) => say(s, 2, 'PushUrl', { text: 'https://example.com' }, tick()),
      (s) => say(s, 1, 'CustomNotice', { text: 'x', messageType: 'custom' }, tick()),
      (s) => updateNickname(s, 1, 'Janet', tick()),
      (s) => addFile(s, f1, tick()),
      (s) => addFile(s, f2, tick()),
      (s) => countDownload(s, 'f-1', tick()), // no event
      (s) => deleteFile(s, 1, 'f-1', tick()),
      (s) => agentJoin(s, BOB, tick()),
      (s) => agentLeave(s, 'bob', tick()),
      (s) => say(s, 2, 'Notice', { text: 'notice' }, tick()),
      (s) => agentClose(s, 'alice', tick()),
      (s) => clientDisconnect(s, tick()), // no-op on an ended chat
    ]);
    const all = [...start.events, ...events];
    expect(all.map((e) => e.index)).toEqual(all.map((_e, i) => i + 1));
    expect(session.lastIndex).toBe(all.length);
    expect(all.map((e) => e.type)).toEqual([
      'ParticipantJoined',
      'Message',
      'TypingStarted',
      'TypingStopped',
      'ParticipantJoined',
      'Message',
      'PushUrl',
      'CustomNotice',
      'NicknameUpdated',
      'FileUploaded',
      'FileUploaded',
      'FileDeleted',
      'ParticipantJoined',
      'ParticipantLeft',
      'Notice',
      'ParticipantLeft',
    ]);
  });

  it('continues from lastIndex when one operation appends several events', () => {
    const s = withAgent(withAgent(fresh(), ALICE), BOB); // indices 1, 2, 3
    const { events, session } = agentClose(s, 'alice', T0 + 100);
    expect(events.map((e) => e.index)).toEqual([4, 5]);
    expect(session.lastIndex).toBe(5);
  });
});

describe('say', () => {
  it('appends a Message with text from the participant', () => {
    const s = fresh();
    const { session, events } = say(s, 1, 'Message', { text: 'hello' }, T0 + 7);
    expect(events).toEqual([
      { from: { nickname: 'Jane', participantId: 1, type: 'Client' }, index: 2, type: 'Message', utcTime: T0 + 7, text: 'hello' },
    ]);
    expect(session.lastIndex).toBe(2);
    expect(session.updatedAt).toBe(T0 + 7);
  });

  it('keeps a non-empty messageType on a CustomNotice', () => {
    const { events } = say(fresh(), 1, 'CustomNotice', { text: 'payload', messageType: 'geo' }, T0 + 1);
    expect(events[0]).toMatchObject({ type: 'CustomNotice', text: 'payload', messageType: 'geo' });
  });

  it('omits an empty messageType from the event', () => {
    const { events } = say(fresh(), 1, 'Message', { text: 'x', messageType: '' }, T0 + 1);
    expect(events[0]).not.toHaveProperty('messageType');
  });

  it('omits text and messageType when none are given', () => {
    const { events } = say(fresh(), 1, 'TypingStarted', {}, T0 + 1);
    expect(events[0]).toEqual({ from: { nickname: 'Jane', participantId: 1, type: 'Client' }, index: 2, type: 'TypingStarted', utcTime: T0 + 1 });
    expect(events[0]).not.toHaveProperty('text');
    expect(events[0]).not.toHaveProperty('messageType');
  });

  it('appends TypingStarted and TypingStopped', () => {
    const r = run(fresh(), [(s) => say(s, 1, 'TypingStarted', {}, T0 + 1), (s) => say(s, 1, 'TypingStopped', {}, T0 + 2)]);
    expect(r.events.map((e) => [e.type, e.index])).toEqual([
      ['TypingStarted', 2],
      ['TypingStopped', 3],
    ]);
  });

  it('appends a PushUrl from an agent with the URL as text', () => {
    const s = withAgent();
    const { events } = say(s, 2, 'PushUrl', { text: 'https://example.com/help' }, T0 + 20);
    expect(events[0]).toEqual({
      from: { nickname: 'Alice', participantId: 2, type: 'Agent' },
      index: 3,
      type: 'PushUrl',
      utcTime: T0 + 20,
      text: 'https://example.com/help',
    });
  });

  it('refuses a participant who left', () => {
    const s = agentLeave(withAgent(), 'alice', T0 + 20).session;
    expect(codeOf(() => say(s, 2, 'Message', { text: 'still here?' }, T0 + 30))).toBe('AGENT_NOT_IN_CHAT');
  });
});

describe('updateNickname', () => {
  it('appends NicknameUpdated with the new nickname and renames the participant', () => {
    const { session, events } = updateNickname(fresh(), 1, '  Janet ', T0 + 5);
    expect(events).toEqual([
      { from: { nickname: 'Janet', participantId: 1, type: 'Client' }, index: 2, type: 'NicknameUpdated', utcTime: T0 + 5, text: 'Janet' },
    ]);
    expect(session.participants[0]?.nickname).toBe('Janet');
    expect(session.lastIndex).toBe(2);
  });

  it('makes later events carry the new nickname', () => {
    const r = run(fresh(), [(s) => updateNickname(s, 1, 'Janet', T0 + 1), (s) => say(s, 1, 'Message', { text: 'hi' }, T0 + 2)]);
    expect(r.events[1]?.from.nickname).toBe('Janet');
  });

  it('renames only the given participant', () => {
    const s = withAgent();
    const { session } = updateNickname(s, 2, 'Alice B.', T0 + 30);
    expect(session.participants.map((p) => p.nickname)).toEqual(['Jane', 'Alice B.']);
  });

  it('rejects a blank nickname with MISSING_PARAMETER', () => {
    expect(codeOf(() => updateNickname(fresh(), 1, '   ', T0 + 1))).toBe('MISSING_PARAMETER');
  });
});

describe('updateData', () => {
  it('merges userData, later values win, and adds no event', () => {
    const s = fresh({ userData: { a: '1', b: '2' } });
    const { session, events } = updateData(s, { b: 'two', c: '3' }, T0 + 9);
    expect(events).toEqual([]);
    expect(session.userData).toEqual({ a: '1', b: 'two', c: '3' });
    expect(session.lastIndex).toBe(s.lastIndex);
    expect(session.updatedAt).toBe(T0 + 9);
  });
});

describe('readReceipt', () => {
  const withMessages = (): Session =>
    run(fresh(), [(s) => say(s, 1, 'Message', { text: 'a' }, T0 + 1), (s) => say(s, 1, 'Message', { text: 'b' }, T0 + 2)])
      .session; // lastIndex 3

  it('records the position and adds no event', () => {
    const { session, events } = readReceipt(withMessages(), 2, T0 + 3);
    expect(events).toEqual([]);
    expect(session.clientReadPosition).toBe(2);
    expect(session.updatedAt).toBe(T0 + 3);
  });

  it('never goes backwards', () => {
    const s = readReceipt(withMessages(), 3, T0 + 3).session;
    expect(readReceipt(s, 1, T0 + 4).session.clientReadPosition).toBe(3);
    expect(readReceipt(s, 0, T0 + 4).session.clientReadPosition).toBe(3);
  });

  it('is capped at lastIndex + 1', () => {
    const s = withMessages();
    expect(readReceipt(s, 4, T0 + 3).session.clientReadPosition).toBe(4);
    expect(readReceipt(s, 1000, T0 + 3).session.clientReadPosition).toBe(4);
  });
});

describe('clientDisconnect', () => {
  it('appends ParticipantLeft from participantId 1 and ends the chat', () => {
    const { session, events } = clientDisconnect(fresh(), T0 + 50);
    expect(events).toEqual([
      { from: { nickname: 'Jane', participantId: 1, type: 'Client' }, index: 2, type: 'ParticipantLeft', utcTime: T0 + 50 },
    ]);
    expect(session.state).toBe('ended');
    expect(session.endedAt).toBe(T0 + 50);
    expect(session.lastIndex).toBe(2);
  });

  it('gives every participant still in the chat a leftAt, and keeps earlier ones', () => {
    const s = run(fresh(), [
      (x) => agentJoin(x, ALICE, T0 + 1),
      (x) => agentJoin(x, BOB, T0 + 2),
      (x) => agentLeave(x, 'bob', T0 + 3),
    ]).session;
    const { session } = clientDisconnect(s, T0 + 50);
    expect(session.participants.map((p) => [p.participantId, p.leftAt])).toEqual([
      [1, T0 + 50],
      [2, T0 + 50],
      [3, T0 + 3],
    ]);
  });

  it('leaves no workbin or routing on the ended chat (a dormant or routed chat the customer leaves)', () => {
    const dormant: Session = { ...fresh(), state: 'dormant', workbin: { agentId: 'alice', since: T0 + 5 } };
    const routed: Session = { ...fresh(), routing: { agentId: 'bob', until: T0 + 60_000 } };
    for (const s of [dormant, routed]) {
      const { session } = clientDisconnect(s, T0 + 50);
      expect(session.workbin).toBeUndefined();
      expect(session.routing).toBeUndefined();
    }
    const active = agentJoin({ ...fresh(), routing: { agentId: 'alice', until: T0 + 60_000 } }, ALICE, T0 + 1).session;
    expect(agentClose({ ...active, routing: { agentId: 'bob', until: T0 + 60_000 } }, 'alice', T0 + 9).session.routing).toBeUndefined();
  });

  it('is idempotent on an ended session', () => {
    const ended = clientDisconnect(fresh(), T0 + 50).session;
    const again = clientDisconnect(ended, T0 + 60);
    expect(again.events).toEqual([]);
    expect(again.session).toEqual(ended);
  });
});

describe('agentJoin', () => {
  it('adds the agent as participantId 2 and makes the chat active', () => {
    const { session, events } = agentJoin(fresh(), ALICE, T0 + 10);
    expect(events).toEqual([
      { from: { nickname: 'Alice', participantId: 2, type: 'Agent' }, index: 2, type: 'ParticipantJoined', utcTime: T0 + 10 },
    ]);
    expect(session.state).toBe('active');
    expect(session.participants[1]).toEqual({ participantId: 2, type: 'Agent', nickname: 'Alice', agentId: 'alice', joinedAt: T0 + 10 });
    expect(session.nextParticipantId).toBe(3);
  });

  it('gives a second agent participantId 3', () => {
    const { session, events } = agentJoin(withAgent(), BOB, T0 + 20);
    expect(events[0]?.from).toEqual({ nickname: 'Bob', participantId: 3, type: 'Agent' });
    expect(session.participants.map((p) => p.participantId)).toEqual([1, 2, 3]);
    expect(session.nextParticipantId).toBe(4);
  });

  it('is a no-op when the agent is already in the chat', () => {
    const s = withAgent();
    const again = agentJoin(s, ALICE, T0 + 20);
    expect(again.events).toEqual([]);
    expect(again.session).toBe(s);
  });

  it('gives a returning agent a new participantId', () => {
    const s = agentLeave(withAgent(), 'alice', T0 + 20).session;
    const { session, events } = agentJoin(s, ALICE, T0 + 30);
    expect(events[0]?.from.participantId).toBe(3);
    expect(session.state).toBe('active');
  });
});

describe('agentLeave', () => {
  it('appends ParticipantLeft and goes back to waiting when no agent remains', () => {
    const { session, events } = agentLeave(withAgent(), 'alice', T0 + 20);
    expect(events).toEqual([
      { from: { nickname: 'Alice', participantId: 2, type: 'Agent' }, index: 3, type: 'ParticipantLeft', utcTime: T0 + 20 },
    ]);
    expect(session.state).toBe('waiting');
    expect(session.participants[1]?.leftAt).toBe(T0 + 20);
    expect(session.participants[0]?.leftAt).toBeUndefined();
    expect(session.endedAt).toBeUndefined();
  });

  it('stays active while another agent remains', () => {
    const s = withAgent(withAgent(), BOB, T0 + 11);
    const { session } = agentLeave(s, 'alice', T0 + 20);
    expect(session.state).toBe('active');
  });

  it('throws AGENT_NOT_IN_CHAT for an agent who is not a member', () => {
    expect(codeOf(() => agentLeave(withAgent(), 'bob', T0 + 20))).toBe('AGENT_NOT_IN_CHAT');
    expect(codeOf(() => agentLeave(fresh(), 'alice', T0 + 20))).toBe('AGENT_NOT_IN_CHAT');
  });

  it('throws AGENT_NOT_IN_CHAT for an agent who left already', () => {
    const s = agentLeave(withAgent(), 'alice', T0 + 20).session;
    expect(codeOf(() => agentLeave(s, 'alice', T0 + 30))).toBe('AGENT_NOT_IN_CHAT');
  });
});

describe('agentClose', () => {
  it('makes every active agent leave, the closer last, and ends the chat', () => {
    const s = run(fresh(), [
      (x) => agentJoin(x, ALICE, T0 + 1),
      (x) => agentJoin(x, BOB, T0 + 2),
      (x) => agentJoin(x, { agentId: 'carol', nickname: 'Carol' }, T0 + 3),
    ]).session;
    const { session, events } = agentClose(s, 'alice', T0 + 40);
    expect(events.map((e) => [e.type, e.from.participantId])).toEqual([
      ['ParticipantLeft', 3],
      ['ParticipantLeft', 4],
      ['ParticipantLeft', 2],
    ]);
    expect(events.every((e) => e.utcTime === T0 + 40)).toBe(true);
    expect(session.state).toBe('ended');
    expect(session.endedAt).toBe(T0 + 40);
    expect(session.participants.filter((p) => p.type === 'Agent').every((p) => p.leftAt === T0 + 40)).toBe(true);
  });

  it('gives no second ParticipantLeft to an agent who left before', () => {
    const s = run(fresh(), [
      (x) => agentJoin(x, ALICE, T0 + 1),
      (x) => agentJoin(x, BOB, T0 + 2),
      (x) => agentLeave(x, 'bob', T0 + 3),
    ]).session;
    const { session, events } = agentClose(s, 'alice', T0 + 40);
    expect(events.map((e) => e.from.participantId)).toEqual([2]);
    expect(session.participants.find((p) => p.participantId === 3)?.leftAt).toBe(T0 + 3);
  });

  it('throws AGENT_NOT_IN_CHAT when the closer is not in the chat', () => {
    expect(codeOf(() => agentClose(withAgent(), 'bob', T0 + 20))).toBe('AGENT_NOT_IN_CHAT');
  });
});

describe('operations on an ended session', () => {
  const ended = (): Session => clientDisconnect(withAgent(), T0 + 50).session;
  const ops: Array<[string, (s: Session) => unknown]> = [
    ['say', (s) => say(s, 1, 'Message', { text: 'x' }, T0 + 60)],
    ['updateNickname', (s) => updateNickname(s, 1, 'New', T0 + 60)],
    ['updateData', (s) => updateData(s, { a: 'b' }, T0 + 60)],
    ['agentJoin', (s) => agentJoin(s, BOB, T0 + 60)],
    ['agentLeave', (s) => agentLeave(s, 'alice', T0 + 60)],
    ['agentClose', (s) => agentClose(s, 'alice', T0 + 60)],
    ['addFile', (s) => addFile(s, file(), T0 + 60)],
    ['deleteFile', (s) => deleteFile(s, 1, 'f-1', T0 + 60)],
  ];

  it.each(ops)('%s throws CHAT_ENDED', (_name, op) => {
    expect(codeOf(() => op(ended()))).toBe('CHAT_ENDED');
  });

  it('deleteFile throws CHAT_ENDED even for an existing file', () => {
    const s = clientDisconnect(addFile(fresh(), file(), T0 + 1).session, T0 + 50).session;
    expect(codeOf(() => deleteFile(s, 1, 'f-1', T0 + 60))).toBe('CHAT_ENDED');
  });

  it('agentClose ends the chat for later operations too', () => {
    const s = agentClose(withAgent(), 'alice', T0 + 50).session;
    expect(codeOf(() => say(s, 1, 'Message', { text: 'x' }, T0 + 60))).toBe('CHAT_ENDED');
  });
});

describe('files', () => {
  it('addFile appends FileUploaded with the file userData and keeps the file', () => {
    const f = file({ description: 'Q3 numbers' });
    const { session, events } = addFile(fresh(), f, T0 + 5);
    expect(events).toEqual([
      {
        from: { nickname: 'Jane', participantId: 1, type: 'Client' },
        index: 2,
        type: 'FileUploaded',
        utcTime: T0 + 5,
        userData: {
          'file-id': 'f-1',
          'file-name': 'report.pdf',
          'file-size': '1234',
          'file-type': 'application/pdf',
          'file-description': 'Q3 numbers',
        },
      },
    ]);
    expect(session.files).toEqual([f]);
  });

  it('addFile leaves out file-description when there is none', () => {
    const { events } = addFile(fresh(), file(), T0 + 5);
    expect(Object.keys(events[0]?.userData ?? {}).sort()).toEqual(['file-id', 'file-name', 'file-size', 'file-type']);
  });

  it('addFile attributes the event to the uploader', () => {
    const { events } = addFile(withAgent(), file({ uploadedBy: 2 }), T0 + 20);
    expect(events[0]?.from).toEqual({ nickname: 'Alice', participantId: 2, type: 'Agent' });
  });

  it('findFile finds an uploaded file and throws UNKNOWN_FILE for an unknown id', () => {
    const s = addFile(fresh(), file(), T0 + 5).session;
    expect(findFile(s, 'f-1')).toEqual(file());
    expect(codeOf(() => findFile(s, 'nope'))).toBe('UNKNOWN_FILE');
  });

  it('deleteFile appends FileDeleted and the file is no longer found', () => {
    const s = addFile(fresh(), file(), T0 + 5).session;
    const { session, events } = deleteFile(s, 1, 'f-1', T0 + 6);
    expect(events).toEqual([
      {
        from: { nickname: 'Jane', participantId: 1, type: 'Client' },
        index: 3,
        type: 'FileDeleted',
        utcTime: T0 + 6,
        userData: { 'file-id': 'f-1', 'file-name': 'report.pdf' },
      },
    ]);
    expect(session.files[0]?.deleted).toBe(true);
    expect(codeOf(() => findFile(session, 'f-1'))).toBe('UNKNOWN_FILE');
  });

  it('deleteFile of an unknown or already deleted file throws UNKNOWN_FILE', () => {
    const s = addFile(fresh(), file(), T0 + 5).session;
    expect(codeOf(() => deleteFile(s, 1, 'nope', T0 + 6))).toBe('UNKNOWN_FILE');
    const deleted = deleteFile(s, 1, 'f-1', T0 + 6).session;
    expect(codeOf(() => deleteFile(deleted, 1, 'f-1', T0 + 7))).toBe('UNKNOWN_FILE');
  });

  it('deleteFile touches only the given file', () => {
    const s = run(fresh(), [(x) => addFile(x, file(), T0 + 1), (x) => addFile(x, file({ fileId: 'f-2' }), T0 + 2)]).session;
    const { session } = deleteFile(s, 1, 'f-2', T0 + 3);
    expect(findFile(session, 'f-1').deleted).toBe(false);
    expect(session.files.map((f) => f.deleted)).toEqual([false, true]);
  });

  it('countDownload counts one download of one file and adds no event', () => {
    const s = run(fresh(), [(x) => addFile(x, file(), T0 + 1), (x) => addFile(x, file({ fileId: 'f-2' }), T0 + 2)]).session;
    const once = countDownload(s, 'f-1', T0 + 3);
    expect(once.events).toEqual([]);
    const twice = countDownload(once.session, 'f-1', T0 + 4).session;
    expect(findFile(twice, 'f-1').downloads).toBe(2);
    expect(findFile(twice, 'f-2').downloads).toBe(0);
    expect(twice.lastIndex).toBe(s.lastIndex);
    expect(twice.updatedAt).toBe(T0 + 4);
  });
});

describe('immutability', () => {
  const ops: Array<[string, () => Session, (s: Session) => unknown]> = [
    ['say', () => fresh(), (s) => say(s, 1, 'Message', { text: 'x' }, T0 + 1)],
    ['updateNickname', () => fresh(), (s) => updateNickname(s, 1, 'New', T0 + 1)],
    ['updateData', () => fresh({ userData: { a: '1' } }), (s) => updateData(s, { a: '2', b: '3' }, T0 + 1)],
    ['readReceipt', () => fresh(), (s) => readReceipt(s, 2, T0 + 1)],
    ['clientDisconnect', () => withAgent(), (s) => clientDisconnect(s, T0 + 1)],
    ['agentJoin', () => withAgent(), (s) => agentJoin(s, BOB, T0 + 1)],
    ['agentLeave', () => withAgent(withAgent(), BOB), (s) => agentLeave(s, 'alice', T0 + 1)],
    [
      'agentClose',
      () => withAgent(withAgent(withAgent(), BOB), { agentId: 'carol', nickname: 'Carol' }),
      (s) => agentClose(s, 'bob', T0 + 1),
    ],
    ['addFile', () => fresh(), (s) => addFile(s, file(), T0 + 1)],
    ['deleteFile', () => addFile(fresh(), file(), T0 + 1).session, (s) => deleteFile(s, 1, 'f-1', T0 + 2)],
    ['countDownload', () => addFile(fresh(), file(), T0 + 1).session, (s) => countDownload(s, 'f-1', T0 + 2)],
    ['findFile', () => addFile(fresh(), file(), T0 + 1).session, (s) => findFile(s, 'f-1')],
  ];

  it.each(ops)('%s does not mutate its input session', (_name, make, op) => {
    const s = make();
    const before = JSON.stringify(s);
    deepFreeze(s);
    expect(() => op(s)).not.toThrow();
    expect(JSON.stringify(s)).toBe(before);
  });

  it('openSession does not mutate its input', () => {
    const input = deepFreeze({ ...BASE_INPUT, text: 'hi', userData: { a: '1' } });
    const before = JSON.stringify(input);
    expect(() => openSession(input, T0)).not.toThrow();
    expect(JSON.stringify(input)).toBe(before);
  });
});
