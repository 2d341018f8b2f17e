import { describe, expect, it } from 'vitest';
import { ParleyError, type ErrorCode } from '../errors.ts';
import { canTake, hold, offeredTo, releaseRouting, transfer, wake } from './routing.ts';
import { agentJoin, openSession, type OpenSessionInput } from './session.ts';
import type { Session } from './types.ts';

const T0 = 1_700_000_000_000;
const ALICE = { agentId: 'alice', nickname: 'Alice' };
const BOB = { agentId: 'bob', nickname: 'Bob' };

const INPUT: OpenSessionInput = {
  chatId: 'chat-r',
  serviceName: 'async-support',
  secureKey: 'sk-r',
  userId: 'user-r',
  alias: '117',
  nickname: 'Jane',
  asyncMode: true,
};

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function codeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ParleyError);
    return (err as ParleyError).code;
  }
  throw new Error('expected a ParleyError, nothing was thrown');
}

/** A frozen fresh session (async by default). */
function fresh(extra: Partial<OpenSessionInput> = {}): Session {
  return deepFreeze(openSession({ ...INPUT, ...extra }, T0).session);
}

/** Alice joined at T0 + 10. */
function withAlice(extra: Partial<OpenSessionInput> = {}): Session {
  return deepFreeze(agentJoin(fresh(extra), ALICE, T0 + 10).session);
}

/** Alice put it on hold at T0 + 20. */
function dormant(): Session {
  return deepFreeze(hold(withAlice(), 'alice', T0 + 20).session);
}

describe('offeredTo', () => {
  it('offers an unrouted waiting chat to anyone', () => {
    const s = fresh();
    expect(offeredTo(s, 'alice', T0)).toBe(true);
    expect(offeredTo(s, 'bob', T0)).toBe(true);
  });

  it('offers only waiting chats', () => {
    expect(offeredTo(withAlice(), 'bob', T0 + 20)).toBe(false);
    expect(offeredTo(withAlice(), 'alice', T0 + 20)).toBe(false);
    expect(offeredTo(dormant(), 'alice', T0 + 30)).toBe(false);
    expect(offeredTo(deepFreeze({ ...fresh(), state: 'ended' }), 'bob', T0)).toBe(false);
  });

  it('offers a routed chat only to its agent before `until`, to anyone at and after it', () => {
    const s = deepFreeze({ ...fresh(), routing: { agentId: 'alice', until: T0 + 1000 } });
    expect(offeredTo(s, 'alice', T0 + 500)).toBe(true);
    expect(offeredTo(s, 'bob', T0 + 500)).toBe(false);
    expect(offeredTo(s, 'bob', T0 + 999)).toBe(false);
    expect(offeredTo(s, 'bob', T0 + 1000)).toBe(true);
    expect(offeredTo(s, 'bob', T0 + 5000)).toBe(true);
    expect(offeredTo(s, 'alice', T0 + 5000)).toBe(true);
  });
});

describe('hold', () => {
  it('is for async chats only', () => {
    const regular = deepFreeze(agentJoin(fresh({ asyncMode: false }), ALICE, T0 + 10).session);
    expect(codeOf(() => hold(regular, 'alice', T0 + 20))).toBe('INVALID_PARAMETER');
  });

  it('refuses while another agent is still in the chat', () => {
    const two = deepFreeze(agentJoin(withAlice(), BOB, T0 + 15).session);
    expect(codeOf(() => hold(two, 'alice', T0 + 20))).toBe('INVALID_PARAMETER');
  });

  it('refuses an agent who is not in the chat, and an ended chat', () => {
    expect(codeOf(() => hold(withAlice(), 'bob', T0 + 20))).toBe('AGENT_NOT_IN_CHAT');
    expect(codeOf(() => hold(deepFreeze({ ...withAlice(), state: 'ended' }), 'alice', T0 + 20))).toBe('CHAT_ENDED');
  });

  it("puts the chat in the agent's workbin: the agent leaves, the chat sleeps, nobody is offered it", () => {
    const { session, events } = hold(withAlice(), 'alice', T0 + 20);
    expect(events).toEqual([
      { from: { nickname: 'Alice', participantId: 2, type: 'Agent' }, index: 3, type: 'ParticipantLeft', utcTime: T0 + 20 },
    ]);
    expect(session.state).toBe('dormant');
    expect(session.workbin).toEqual({ agentId: 'alice', since: T0 + 20 });
    expect(session.routing).toBeUndefined();
    expect('routing' in session).toBe(false);
    expect(session.lastAgentId).toBe('alice');
    expect(session.participants.find((p) => p.agentId === 'alice')?.leftAt).toBe(T0 + 20);
    for (const agent of ['alice', 'bob']) {
      expect(offeredTo(session, agent, T0 + 20)).toBe(false);
      expect(offeredTo(session, agent, T0 + 10_000_000)).toBe(false);
    }
  });

  it('clears a routing left on the session', () => {
    const routed = deepFreeze({ ...withAlice(), routing: { agentId: 'bob', until: T0 + 1000 } });
    expect(hold(routed, 'alice', T0 + 20).session.routing).toBeUndefined();
  });
});

/** Every agent online. */
const ONLINE = (): boolean => true;

describe('wake', () => {
  it('sends a dormant chat back to the queue, routed to the workbin agent for lastAgentMs', () => {
    const { session, events } = wake(dormant(), 60_000, T0 + 100, ONLINE);
    expect(events).toEqual([]);
    expect(session.state).toBe('waiting');
    expect(session.workbin).toBeUndefined();
    expect(session.routing).toEqual({ agentId: 'alice', until: T0 + 100 + 60_000 });
    expect(session.updatedAt).toBe(T0 + 100);
    expect(offeredTo(session, 'alice', T0 + 100)).toBe(true);
    expect(offeredTo(session, 'bob', T0 + 100 + 59_999)).toBe(false);
    expect(offeredTo(session, 'bob', T0 + 100 + 60_000)).toBe(true);
  });

  it('with lastAgentMs 0 the woken chat goes to anyone', () => {
    const { session } = wake(dormant(), 0, T0 + 100, ONLINE);
    expect(session.state).toBe('waiting');
    expect(session.routing).toBeUndefined();
    expect(session.workbin).toBeUndefined();
    expect(offeredTo(session, 'bob', T0 + 100)).toBe(true);
  });

  it('goes to anyone at once when the workbin agent is not online (asked about that agent)', () => {
    const asked: string[] = [];
    const { session } = wake(dormant(), 60_000, T0 + 100, (agentId) => {
      asked.push(agentId);
      return false;
    });
    expect(asked).toEqual(['alice']);
    expect(session.state).toBe('waiting');
    expect(session.routing).toBeUndefined();
    expect(offeredTo(session, 'bob', T0 + 100)).toBe(true);
  });

  it('falls back to lastAgentId when there is no workbin', () => {
    const { workbin: _w, ...noWorkbin } = dormant();
    const { session } = wake(deepFreeze(noWorkbin), 1000, T0 + 100, ONLINE);
    expect(session.routing).toEqual({ agentId: 'alice', until: T0 + 1100 });
  });

  it('leaves a session that is not dormant unchanged', () => {
    for (const s of [fresh(), withAlice(), deepFreeze({ ...withAlice(), state: 'ended' as const })]) {
      const c = wake(s, 60_000, T0 + 100, ONLINE);
      expect(c.session).toBe(s);
      expect(c.events).toEqual([]);
    }
  });
});

describe('canTake', () => {
  it('a dormant chat only from the own workbin', () => {
    const s = dormant();
    expect(canTake(s, 'alice', T0 + 30)).toBe(true);
    expect(canTake(s, 'bob', T0 + 30)).toBe(false);
    expect(canTake(s, 'bob', T0 + 10_000_000)).toBe(false);
  });

  it('a waiting chat when offered', () => {
    const routed = deepFreeze({ ...fresh(), routing: { agentId: 'alice', until: T0 + 1000 } });
    expect(canTake(routed, 'alice', T0 + 1)).toBe(true);
    expect(canTake(routed, 'bob', T0 + 1)).toBe(false);
    expect(canTake(routed, 'bob', T0 + 1000)).toBe(true);
    expect(canTake(fresh(), 'bob', T0)).toBe(true);
  });

  it('not an active or ended chat', () => {
    expect(canTake(withAlice(), 'bob', T0 + 20)).toBe(false);
    expect(canTake(deepFreeze({ ...fresh(), state: 'ended' }), 'bob', T0)).toBe(false);
  });
});

describe('transfer', () => {
  it('to an agent: the sender leaves, the chat waits routed to the target for the timeout', () => {
    const { session, events } = transfer(withAlice(), 'alice', 'bob', 30_000, T0 + 50);
    expect(events).toEqual([
      { from: { nickname: 'Alice', participantId: 2, type: 'Agent' }, index: 3, type: 'ParticipantLeft', utcTime: T0 + 50 },
    ]);
    expect(session.state).toBe('waiting');
    expect(session.routing).toEqual({ agentId: 'bob', until: T0 + 50 + 30_000 });
    expect(session.lastAgentId).toBe('alice');
    expect(offeredTo(session, 'bob', T0 + 51)).toBe(true);
    expect(offeredTo(session, 'alice', T0 + 51)).toBe(false);
    expect(offeredTo(session, 'carol', T0 + 50 + 30_000)).toBe(true);
  });

  it('a zero timeout (last-agent-timeout = 0) does not route: anyone may take it at once', () => {
    const { session } = transfer(withAlice(), 'alice', 'bob', 0, T0 + 50);
    expect(session.routing).toBeUndefined();
    expect(offeredTo(session, 'carol', T0 + 50)).toBe(true);
  });

  it('to the queue: unrouted', () => {
    const { session } = transfer(withAlice(), 'alice', undefined, 30_000, T0 + 50);
    expect(session.state).toBe('waiting');
    expect(session.routing).toBeUndefined();
    expect(offeredTo(session, 'carol', T0 + 50)).toBe(true);
  });

  it('to the queue replaces an earlier routing', () => {
    const routed = deepFreeze({ ...withAlice(), routing: { agentId: 'bob', until: T0 + 1000 } });
    expect(transfer(routed, 'alice', undefined, 30_000, T0 + 50).session.routing).toBeUndefined();
  });

  it('works for regular chats too', () => {
    const regular = deepFreeze(agentJoin(fresh({ asyncMode: false }), ALICE, T0 + 10).session);
    expect(transfer(regular, 'alice', 'bob', 1000, T0 + 50).session.routing).toEqual({ agentId: 'bob', until: T0 + 1050 });
  });

  it('to itself is INVALID_PARAMETER', () => {
    expect(codeOf(() => transfer(withAlice(), 'alice', 'alice', 30_000, T0 + 50))).toBe('INVALID_PARAMETER');
  });

  it('by an agent not in the chat is AGENT_NOT_IN_CHAT', () => {
    expect(codeOf(() => transfer(withAlice(), 'bob', 'carol', 30_000, T0 + 50))).toBe('AGENT_NOT_IN_CHAT');
    expect(codeOf(() => transfer(fresh(), 'bob', undefined, 30_000, T0 + 50))).toBe('AGENT_NOT_IN_CHAT');
    const left = deepFreeze(transfer(withAlice(), 'alice', undefined, 0, T0 + 50).session);
    expect(codeOf(() => transfer(left, 'alice', 'bob', 30_000, T0 + 60))).toBe('AGENT_NOT_IN_CHAT');
  });

  it('of an ended chat is CHAT_ENDED', () => {
    expect(codeOf(() => transfer(deepFreeze({ ...withAlice(), state: 'ended' }), 'alice', 'bob', 1, T0 + 50))).toBe('CHAT_ENDED');
  });

  it('with two agents in the chat: the sender leaves, the chat stays active and unrouted', () => {
    const two = deepFreeze(agentJoin(withAlice(), BOB, T0 + 15).session);
    const { session, events } = transfer(two, 'alice', 'carol', 30_000, T0 + 50);
    expect(events.map((e) => [e.type, e.from.participantId])).toEqual([['ParticipantLeft', 2]]);
    expect(session.state).toBe('active');
    expect(session.routing).toBeUndefined();
    expect(session.participants.filter((p) => p.type === 'Agent' && p.leftAt === undefined).map((p) => p.agentId)).toEqual(['bob']);
  });
});

describe('agentJoin after routing and dormancy', () => {
  it('taking a routed chat clears the routing and records lastAgentId', () => {
    const routed = deepFreeze(transfer(withAlice(), 'alice', 'bob', 30_000, T0 + 50).session);
    const { session } = agentJoin(routed, BOB, T0 + 60);
    expect(session.state).toBe('active');
    expect('routing' in session).toBe(false);
    expect(session.lastAgentId).toBe('bob');
  });

  it('taking a chat from the workbin clears the workbin', () => {
    const { session } = agentJoin(dormant(), ALICE, T0 + 60);
    expect(session.state).toBe('active');
    expect('workbin' in session).toBe(false);
    expect('routing' in session).toBe(false);
    expect(session.lastAgentId).toBe('alice');
  });
});

describe('purity', () => {
  it('never mutates its input (every input is deeply frozen)', () => {
    // Frozen inputs make any mutation throw in strict mode; also compare against a snapshot.
    const inputs = [fresh(), withAlice(), dormant(), deepFreeze(agentJoin(withAlice(), BOB, T0 + 15).session)];
    const snapshots = inputs.map((s) => JSON.stringify(s));
    for (const s of inputs) {
      offeredTo(s, 'alice', T0 + 100);
      canTake(s, 'alice', T0 + 100);
      wake(s, 1000, T0 + 100, ONLINE);
      for (const fn of [
        () => hold(s, 'alice', T0 + 100),
        () => transfer(s, 'alice', 'bob', 1000, T0 + 100),
        () => transfer(s, 'alice', undefined, 1000, T0 + 100),
      ]) {
        try {
          fn();
        } catch (err) {
          expect(err).toBeInstanceOf(ParleyError);
        }
      }
    }
    expect(inputs.map((s) => JSON.stringify(s))).toEqual(snapshots);
  });
});

describe('releaseRouting', () => {
  it('offers a chat routed to the agent to anyone from now on', () => {
    const woken = wake(dormant(), 60_000, T0 + 100, ONLINE).session;
    const { session, events } = releaseRouting(woken, 'alice', T0 + 200);
    expect(events).toEqual([]);
    expect(session.routing).toBeUndefined();
    expect(session.state).toBe('waiting');
    expect(offeredTo(session, 'bob', T0 + 200)).toBe(true);
  });

  it('leaves a chat routed to another agent, one whose routing already ended, and one not waiting as they are', () => {
    const woken = wake(dormant(), 60_000, T0 + 100, ONLINE).session;
    expect(releaseRouting(woken, 'bob', T0 + 200).session).toBe(woken);
    expect(releaseRouting(woken, 'alice', T0 + 100 + 60_000).session).toBe(woken);
    for (const s of [fresh(), withAlice(), dormant()]) expect(releaseRouting(s, 'alice', T0 + 200).session).toBe(s);
  });
});
