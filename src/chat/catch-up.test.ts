import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { catchUp, onlyEventFieldsChanged } from './catch-up.ts';
import { hold, transfer, wake } from './routing.ts';
import { agentClose, agentJoin, agentLeave, openSession, readReceipt, rememberRequest, say, systemNotice, updateData, updateNickname } from './session.ts';
import type { Change, ChatEvent, Session } from './types.ts';

const T0 = 1_700_000_000_000;
const opened = openSession({ chatId: 'c1', serviceName: 'svc', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Jane', asyncMode: true }, T0);

/** One domain operation on a session (undefined when it does not apply in the session's state). */
type Op = (s: Session, now: number) => Change;

const OPS: Record<string, Op> = {
  clientMessage: (s, now) => say(s, 1, 'Message', { text: 'hi' }, now),
  clientTyping: (s, now) => say(s, 1, 'TypingStarted', {}, now),
  clientTypingStopped: (s, now) => say(s, 1, 'TypingStopped', {}, now),
  clientCustom: (s, now) => say(s, 1, 'CustomNotice', { text: 'x' }, now),
  clientPushUrl: (s, now) => say(s, 1, 'PushUrl', { text: 'https://example.com' }, now),
  agentMessage: (s, now) => say(s, s.participants.find((p) => p.agentId === 'alice' && p.leftAt === undefined)?.participantId ?? -1, 'Message', { text: 'hello' }, now),
  join: (s, now) => agentJoin(s, { agentId: 'alice', nickname: 'Alice' }, now),
  leave: (s, now) => agentLeave(s, 'alice', now),
  hold: (s, now) => hold(s, 'alice', now),
  wake: (s, now) => wake(s, 60_000, now, () => true),
  transfer: (s, now) => transfer(s, 'alice', undefined, 30_000, now),
  nickname: (s, now) => updateNickname(s, 1, 'Janet', now),
  data: (s, now) => updateData(s, { k: String(now) }, now),
  notice: (s, now) => systemNotice(s, 'idle', 'async-idle', now),
  receipt: (s, now) => readReceipt(s, s.lastIndex, now),
  retriedMessage: (s, now) => rememberRequest(say(s, 1, 'Message', { text: 'again' }, now), `r-${now}`),
  close: (s, now) => agentClose(s, 'alice', now),
};

function tryOp(name: string, s: Session, now: number): Change | undefined {
  try {
    return (OPS[name] as Op)(s, now);
  } catch {
    return undefined;
  }
}

describe('catchUp and onlyEventFieldsChanged', () => {
  it('a message of an active chat changes only what its event implies', () => {
    const joined = agentJoin(opened.session, { agentId: 'alice', nickname: 'Alice' }, T0 + 10).session;
    const c = say(joined, 2, 'Message', { text: 'hello' }, T0 + 20);
    expect(onlyEventFieldsChanged(joined, c.session, c.events)).toBe(true);
    expect(catchUp(joined, c.events)).toEqual(c.session);
  });

  it('every kind of event a participant says in an active chat is event-only', () => {
    const joined = agentJoin(opened.session, { agentId: 'alice', nickname: 'Alice' }, T0 + 10).session;
    for (const type of ['Message', 'TypingStarted', 'TypingStopped', 'CustomNotice', 'PushUrl', 'Notice'] as const) {
      for (const pid of [1, 2]) {
        const c = say(joined, pid, type, { text: 'x' }, T0 + 20);
        expect(onlyEventFieldsChanged(joined, c.session, c.events), `${type} from ${pid}`).toBe(true);
        expect(catchUp(joined, c.events)).toEqual(c.session);
      }
    }
  });

  it('changes that touch anything else are written whole', () => {
    const s = opened.session;
    const cases: Array<[string, Change]> = [
      ['a join', agentJoin(s, { agentId: 'alice', nickname: 'Alice' }, T0 + 1)],
      ['userData', updateData(s, { a: 'b' }, T0 + 1)],
      ['a read receipt (no event)', readReceipt(s, 1, T0 + 1)],
      ['a request id', rememberRequest(say(s, 1, 'Message', { text: 'x' }, T0 + 1), 'r1')],
      ['a nickname', updateNickname(s, 1, 'Janet', T0 + 1)],
    ];
    for (const [what, c] of cases) expect(onlyEventFieldsChanged(s, c.session, c.events), what).toBe(false);
  });

  it('a dormant session is always written whole (it is listed and parked from its document)', () => {
    const joined = agentJoin(opened.session, { agentId: 'alice', nickname: 'Alice' }, T0 + 10).session;
    const dormant = hold(joined, 'alice', T0 + 20).session;
    expect(dormant.state).toBe('dormant');
    const n = systemNotice(dormant, 'idle', 'async-idle', T0 + 30);
    expect(onlyEventFieldsChanged(dormant, n.session, n.events)).toBe(false);
  });

  it('catchUp ignores events the document already has and leaves an up-to-date session as it is', () => {
    const c = say(opened.session, 1, 'Message', { text: 'x' }, T0 + 5);
    expect(catchUp(c.session, [...opened.events, ...c.events])).toBe(c.session);
  });

  it('property: a document left as it was by every event-only change, caught up with the transcript, is the session', () => {
    const names = Object.keys(OPS);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...names), fc.integer({ min: 0, max: 5_000 })), { maxLength: 40 }), (steps) => {
        let live: Session = opened.session;
        let doc: Session = opened.session;
        const transcript: ChatEvent[] = [...opened.events];
        let now = T0;
        for (const [name, dt] of steps) {
          now += dt;
          const c = tryOp(name, live, now);
          if (c === undefined) continue;
          // What LiveSessions.commit decides, and what the SQLite store then does with the document.
          if (!onlyEventFieldsChanged(live, c.session, c.events)) doc = c.session;
          transcript.push(...c.events);
          live = c.session;
          expect(catchUp(doc, transcript)).toEqual(live);
        }
      }),
      { numRuns: 300 },
    );
  });
});
