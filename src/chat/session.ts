/**
 * The pure chat session core: every operation takes a session and returns the new session plus the events
 * it appended. No I/O, no clock, no randomness: `now` and generated ids come in as arguments.
 */
import { ParleyError } from '../errors.ts';
import {
  CLIENT_PARTICIPANT_ID,
  type ActivityTimes,
  type Change,
  type ChatEvent,
  type EventType,
  type FileMeta,
  type Participant,
  type Party,
  type PushState,
  type Session,
} from './types.ts';

export interface OpenSessionInput {
  readonly chatId: string;
  readonly serviceName: string;
  readonly secureKey: string;
  readonly userId: string;
  readonly alias: string;
  readonly nickname?: string;
  readonly firstName?: string;
  readonly lastName?: string;
  readonly subject?: string;
  readonly emailAddress?: string;
  readonly text?: string;
  readonly userData?: Readonly<Record<string, string>>;
  readonly push?: PushState;
  readonly asyncMode?: boolean;
}

/** The chat server itself, author of idle-control notices (not a participant of the chat). */
export const SYSTEM_PARTY: Party = { nickname: 'system', participantId: 0, type: 'External' };

/** Which activity kind an event is; undefined for the chat server's own notices. */
export function activityKind(e: ChatEvent): keyof ActivityTimes | undefined {
  if (e.from.participantId === SYSTEM_PARTY.participantId) return undefined;
  switch (e.type) {
    case 'Message':
    case 'ParticipantJoined':
    case 'ParticipantLeft':
      return 'base';
    case 'PushUrl':
    case 'FileUploaded':
    case 'FileDeleted':
      return 'major';
    case 'CustomNotice':
      return 'custom';
    case 'TypingStarted':
      return 'typing';
    case 'TypingStopped':
    case 'NicknameUpdated':
      return 'other';
    case 'Notice':
      return undefined;
  }
}

export const NO_ACTIVITY: ActivityTimes = { base: 0, major: 0, custom: 0, typing: 0, other: 0 };

/** A session stored by an older Parley gets the fields added since, with neutral values. */
export function upgradeSession(s: Session): Session {
  const stored = s as Partial<Session> & Session;
  return {
    ...s,
    asyncMode: stored.asyncMode ?? false,
    activity: stored.activity ?? { ...NO_ACTIVITY, base: s.updatedAt },
  };
}

export interface EventFields {
  readonly text?: string;
  readonly messageType?: string;
  readonly userData?: Readonly<Record<string, string>>;
}

function party(p: Participant): Party {
  return { nickname: p.nickname, participantId: p.participantId, type: p.type };
}

/** Builds one event with the given index. */
function makeEvent(index: number, from: Party, type: EventType, now: number, fields: EventFields = {}): ChatEvent {
  const ev: { -readonly [K in keyof ChatEvent]: ChatEvent[K] } = { from, index, type, utcTime: now };
  if (fields.text !== undefined) ev.text = fields.text;
  if (fields.messageType !== undefined && fields.messageType !== '') ev.messageType = fields.messageType;
  if (fields.userData !== undefined) ev.userData = fields.userData;
  return ev;
}

/** Appends events built from specs to the session, in order. */
function append(
  s: Session,
  now: number,
  specs: ReadonlyArray<{ from: Party; type: EventType; fields?: EventFields }>,
  patch: Partial<Session> = {},
): Change {
  const events = specs.map((spec, i) => makeEvent(s.lastIndex + 1 + i, spec.from, spec.type, now, spec.fields));
  return { session: withEvents({ ...s, ...patch, updatedAt: now }, events), events };
}

/**
 * The session after events of its transcript that come after its `lastIndex`: their last index, the time of
 * the last one, and the activity each one is. `append` applies new events this way, and a loader folds in
 * the events a stored document lags behind (chat/catch-up.ts) the same way.
 */
export function withEvents(s: Session, events: readonly ChatEvent[]): Session {
  let lastIndex = s.lastIndex;
  let updatedAt = s.updatedAt;
  let activity = s.activity;
  for (const ev of events) {
    if (ev.index <= lastIndex) continue;
    lastIndex = ev.index;
    updatedAt = ev.utcTime;
    const kind = activityKind(ev);
    if (kind !== undefined) activity = { ...activity, [kind]: ev.utcTime };
  }
  return lastIndex === s.lastIndex ? s : { ...s, lastIndex, updatedAt, activity };
}

export function clientOf(s: Session): Participant {
  const c = s.participants.find((p) => p.participantId === CLIENT_PARTICIPANT_ID);
  if (c === undefined) throw new ParleyError('INTERNAL', `session ${s.chatId} has no client participant`);
  return c;
}

export function activeAgents(s: Session): Participant[] {
  return s.participants.filter((p) => p.type === 'Agent' && p.leftAt === undefined);
}

export function displayName(input: Pick<OpenSessionInput, 'nickname' | 'firstName' | 'lastName'>): string {
  const nick = input.nickname?.trim() ?? '';
  if (nick !== '') return nick;
  const first = input.firstName?.trim() ?? '';
  const last = input.lastName?.trim() ?? '';
  if (first !== '' && last !== '') return `${first} ${last}`;
  throw new ParleyError('MISSING_PARAMETER', 'Supply nickname, or both firstName and lastName.');
}

/** Request Chat: the session with the client joined (participantId 1) and the optional first message. */
export function openSession(input: OpenSessionInput, now: number): Change {
  const nickname = displayName(input);
  const client: Participant = { participantId: CLIENT_PARTICIPANT_ID, type: 'Client', nickname, joinedAt: now };
  const base: Session = {
    chatId: input.chatId,
    serviceName: input.serviceName,
    secureKey: input.secureKey,
    userId: input.userId,
    alias: input.alias,
    state: 'waiting',
    createdAt: now,
    updatedAt: now,
    queuedAt: now,
    subject: input.subject?.trim() ?? '',
    emailAddress: input.emailAddress?.trim() ?? '',
    firstName: input.firstName?.trim() ?? '',
    lastName: input.lastName?.trim() ?? '',
    userData: boundedUserData({ ...input.userData }),
    participants: [client],
    nextParticipantId: CLIENT_PARTICIPANT_ID + 1,
    lastIndex: 0,
    files: [],
    clientReadPosition: 0,
    ...(input.push === undefined ? {} : { push: input.push }),
    asyncMode: input.asyncMode ?? false,
    activity: NO_ACTIVITY,
  };
  const specs: Array<{ from: Party; type: EventType; fields?: EventFields }> = [
    { from: party(client), type: 'ParticipantJoined' },
  ];
  const text = input.text ?? '';
  if (text !== '') specs.push({ from: party(client), type: 'Message', fields: { text } });
  return append(base, now, specs);
}

export function assertOpen(s: Session): void {
  if (s.state === 'ended') throw new ParleyError('CHAT_ENDED');
}

function participant(s: Session, participantId: number): Participant {
  const p = s.participants.find((x) => x.participantId === participantId);
  if (p === undefined) throw new ParleyError('INTERNAL', `no participant ${participantId} in ${s.chatId}`);
  return p;
}

/** A message, notice or typing event from a participant still in the chat. */
export function say(
  s: Session,
  participantId: number,
  type: 'Message' | 'CustomNotice' | 'TypingStarted' | 'TypingStopped' | 'PushUrl' | 'Notice',
  fields: EventFields,
  now: number,
): Change {
  assertOpen(s);
  const p = participant(s, participantId);
  if (p.leftAt !== undefined) throw new ParleyError('AGENT_NOT_IN_CHAT', 'This participant left the chat.');
  return append(s, now, [{ from: party(p), type, fields }]);
}

export function updateNickname(s: Session, participantId: number, nickname: string, now: number): Change {
  assertOpen(s);
  const trimmed = nickname.trim();
  if (trimmed === '') throw new ParleyError('MISSING_PARAMETER', 'nickname is required.');
  const participants = s.participants.map((p) => (p.participantId === participantId ? { ...p, nickname: trimmed } : p));
  const next = { ...s, participants };
  return append(next, now, [
    { from: party(participant(next, participantId)), type: 'NicknameUpdated', fields: { text: trimmed } },
  ]);
}

/** Update Data: userData merged into the session; no transcript event. */
export function updateData(s: Session, userData: Readonly<Record<string, string>>, now: number): Change {
  assertOpen(s);
  return { session: { ...s, userData: boundedUserData({ ...s.userData, ...userData }), updatedAt: now }, events: [] };
}

/** The most userData a session keeps (keys and values, in UTF-16 code units); every write rewrites it. */
export const MAX_USER_DATA = 64 * 1024;

/** userData within MAX_USER_DATA, or INVALID_PARAMETER (nothing is stored): a session cannot grow without bound. */
export function boundedUserData(d: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  let size = 0;
  for (const [k, v] of Object.entries(d)) size += k.length + v.length;
  if (size > MAX_USER_DATA) throw new ParleyError('INVALID_PARAMETER', `userData may hold at most ${MAX_USER_DATA} characters in all.`);
  return d;
}

const RECENT_REQUESTS = 32;

/** Was a request with this idempotency key applied to the session already? */
export function alreadyApplied(s: Session, requestId: string | undefined): boolean {
  return requestId !== undefined && (s.recentRequests ?? []).includes(requestId);
}

/** Records the idempotency key of a request in the change it made (the last 32 are kept). */
export function rememberRequest(c: Change, requestId: string | undefined): Change {
  if (requestId === undefined) return c;
  const recent = [...(c.session.recentRequests ?? []), requestId].slice(-RECENT_REQUESTS);
  return { session: { ...c.session, recentRequests: recent }, events: c.events };
}

/** A push subscription on a running session (updateData with the push keys); no transcript event. */
export function subscribe(s: Session, push: PushState, now: number): Change {
  assertOpen(s);
  return { session: { ...s, push, updatedAt: now }, events: [] };
}

/** The subscription is acknowledged (without flex-push-on-join: at the first request after Request Chat). */
export function activatePush(s: Session, now: number): Change {
  if (s.push === undefined || s.push.active) return { session: s, events: [] };
  return { session: { ...s, push: { ...s.push, active: true }, updatedAt: now }, events: [] };
}

export function readReceipt(s: Session, position: number, now: number): Change {
  const clientReadPosition = Math.min(Math.max(position, s.clientReadPosition), s.lastIndex + 1);
  return { session: { ...s, clientReadPosition, updatedAt: now }, events: [] };
}

/** The client leaves: ParticipantLeft of participantId 1, and the chat ends. */
export function clientDisconnect(s: Session, now: number): Change {
  if (s.state === 'ended') return { session: s, events: [] };
  const client = clientOf(s);
  const participants = s.participants.map((p) => (p.leftAt === undefined ? { ...p, leftAt: now } : p));
  // An ended chat is in no workbin and routed to nobody (a dormant chat the customer leaves included).
  const { workbin: _w, routing: _r, ...rest } = s;
  return append(rest, now, [{ from: party(client), type: 'ParticipantLeft' }], {
    participants,
    state: 'ended',
    endedAt: now,
  });
}

export function agentJoin(
  s: Session,
  agent: { agentId: string; nickname: string },
  now: number,
): Change {
  assertOpen(s);
  const already = activeAgents(s).find((p) => p.agentId === agent.agentId);
  if (already !== undefined) return { session: s, events: [] };
  const p: Participant = {
    participantId: s.nextParticipantId,
    type: 'Agent',
    nickname: agent.nickname,
    agentId: agent.agentId,
    joinedAt: now,
  };
  const { routing: _routing, workbin: _workbin, ...rest } = s;
  return append(rest, now, [{ from: party(p), type: 'ParticipantJoined' }], {
    participants: [...s.participants, p],
    nextParticipantId: s.nextParticipantId + 1,
    state: 'active',
    lastAgentId: agent.agentId,
  });
}

/** The agent's active participant record, or AGENT_NOT_IN_CHAT. */
export function agentParticipant(s: Session, agentId: string): Participant {
  const p = activeAgents(s).find((x) => x.agentId === agentId);
  if (p === undefined) throw new ParleyError('AGENT_NOT_IN_CHAT');
  return p;
}

/** The agent leaves; with no agent left the chat waits for another. */
export function agentLeave(s: Session, agentId: string, now: number): Change {
  assertOpen(s);
  const p = agentParticipant(s, agentId);
  const participants = s.participants.map((x) => (x.participantId === p.participantId ? { ...x, leftAt: now } : x));
  const remaining = participants.filter((x) => x.type === 'Agent' && x.leftAt === undefined);
  return append(s, now, [{ from: party(p), type: 'ParticipantLeft' }], {
    participants,
    state: remaining.length > 0 ? 'active' : 'waiting',
    ...(remaining.length > 0 ? {} : { queuedAt: now }),
    lastAgentId: agentId,
  });
}

/** A notice of the chat server itself (idle control); `messageType` names it (IDLE_CONTROL_ALERT, ...). */
export function systemNotice(s: Session, text: string, messageType: string, now: number, patch: Partial<Session> = {}): Change {
  return append(s, now, [{ from: SYSTEM_PARTY, type: 'Notice', fields: { text, messageType } }], patch);
}

/** The chat server closes the chat (idle close): every participant leaves, the chat ends. */
export function serverClose(s: Session, now: number): Change {
  if (s.state === 'ended') return { session: s, events: [] };
  const leaving = s.participants.filter((p) => p.leftAt === undefined && p.type !== 'Client');
  const participants = s.participants.map((x) => (x.leftAt === undefined ? { ...x, leftAt: now } : x));
  const { workbin: _w, routing: _r, ...rest } = s;
  return append(
    rest,
    now,
    [...leaving, clientOf(s)].map((p) => ({ from: party(p), type: 'ParticipantLeft' as const })),
    { participants, state: 'ended', endedAt: now },
  );
}

/** The agent closes the chat: every agent leaves, then the client sees chatEnded. */
export function agentClose(s: Session, agentId: string, now: number): Change {
  assertOpen(s);
  const closer = agentParticipant(s, agentId);
  const leaving = activeAgents(s).sort((a, b) => (a.participantId === closer.participantId ? 1 : b.participantId === closer.participantId ? -1 : 0));
  const participants = s.participants.map((x) => (x.leftAt === undefined && x.type !== 'Client' ? { ...x, leftAt: now } : x));
  const { workbin: _w, routing: _r, ...rest } = s;
  return append(
    rest,
    now,
    leaving.map((p) => ({ from: party(p), type: 'ParticipantLeft' as const })),
    { participants, state: 'ended', endedAt: now },
  );
}

export function fileEventData(f: FileMeta): Record<string, string> {
  const d: Record<string, string> = {
    'file-id': f.fileId,
    'file-name': f.name,
    'file-size': String(f.size),
    'file-type': f.contentType,
  };
  if (f.description !== undefined) d['file-description'] = f.description;
  return d;
}

export function addFile(s: Session, f: FileMeta, now: number): Change {
  assertOpen(s);
  const p = participant(s, f.uploadedBy);
  return append(s, now, [{ from: party(p), type: 'FileUploaded', fields: { userData: fileEventData(f) } }], {
    files: [...s.files, f],
  });
}

export function findFile(s: Session, fileId: string): FileMeta {
  const f = s.files.find((x) => x.fileId === fileId && !x.deleted);
  if (f === undefined) throw new ParleyError('UNKNOWN_FILE');
  return f;
}

export function deleteFile(s: Session, participantId: number, fileId: string, now: number): Change {
  assertOpen(s);
  const f = findFile(s, fileId);
  const p = participant(s, participantId);
  return append(
    s,
    now,
    [{ from: party(p), type: 'FileDeleted', fields: { userData: { 'file-id': f.fileId, 'file-name': f.name } } }],
    { files: s.files.map((x) => (x.fileId === fileId ? { ...x, deleted: true } : x)) },
  );
}

/** The ids of the files `after` marks deleted that `before` did not (their bytes go from the store). */
export function filesDeleted(before: Session, after: Session): string[] {
  if (after.files === before.files) return [];
  const was = new Map(before.files.map((f) => [f.fileId, f.deleted]));
  return after.files.filter((f) => f.deleted && was.get(f.fileId) === false).map((f) => f.fileId);
}

export function countDownload(s: Session, fileId: string, now: number): Change {
  return {
    session: { ...s, files: s.files.map((x) => (x.fileId === fileId ? { ...x, downloads: x.downloads + 1 } : x)), updatedAt: now },
    events: [],
  };
}
