/**
 * Routing and dormancy of async chats, pure: who is offered a waiting chat, putting a chat on hold into an
 * agent's workbin, waking it up (to the last agent first, for a while, then to anyone), transfers.
 */
import { ParleyError } from '../errors.ts';
import { agentLeave, agentParticipant, assertOpen } from './session.ts';
import type { Change, Session } from './types.ts';

/** Is this waiting chat offered to the agent now? A routed chat goes only to its agent until `until`. */
export function offeredTo(s: Session, agentId: string, now: number): boolean {
  if (s.state !== 'waiting') return false;
  return s.routing === undefined || s.routing.agentId === agentId || now >= s.routing.until;
}

/** The agent puts the chat on hold: the agent leaves, the chat sleeps in the agent's workbin. */
export function hold(s: Session, agentId: string, now: number): Change {
  assertOpen(s);
  if (!s.asyncMode) throw new ParleyError('INVALID_PARAMETER', 'Only async chats can be put on hold.');
  const left = agentLeave(s, agentId, now);
  if (left.session.state !== 'waiting') {
    throw new ParleyError('INVALID_PARAMETER', 'Another agent is still in the chat; leave or transfer instead.');
  }
  const { routing: _r, ...rest } = left.session;
  return { session: { ...rest, state: 'dormant', workbin: { agentId, since: now } }, events: left.events };
}

/**
 * Wakes a dormant chat (a customer message, the async idle alert): it waits in the queue, offered first to
 * the agent whose workbin held it, for `lastAgentMs`, then to anyone. When that agent is not online
 * (`online`), to anyone at once: the customer would wait `lastAgentMs` for nobody.
 */
export function wake(s: Session, lastAgentMs: number, now: number, online: (agentId: string) => boolean): Change {
  if (s.state !== 'dormant') return { session: s, events: [] };
  const agentId = s.workbin?.agentId ?? s.lastAgentId;
  const { workbin: _w, ...rest } = s;
  const routing = agentId === undefined || lastAgentMs <= 0 || !online(agentId) ? undefined : { agentId, until: now + lastAgentMs };
  return { session: { ...rest, state: 'waiting', updatedAt: now, queuedAt: now, ...(routing === undefined ? {} : { routing }) }, events: [] };
}

/**
 * The agent a waiting chat is routed to went offline: the chat is offered to anyone from now on, instead of
 * waiting the rest of its routing time for nobody. Anything else is left as it is.
 */
export function releaseRouting(s: Session, agentId: string, now: number): Change {
  if (s.state !== 'waiting' || s.routing === undefined || s.routing.agentId !== agentId || now >= s.routing.until) return { session: s, events: [] };
  const { routing: _r, ...rest } = s;
  return { session: rest, events: [] };
}

/** Can the agent take this chat: from the queue when offered, or from the own workbin. */
export function canTake(s: Session, agentId: string, now: number): boolean {
  if (s.state === 'dormant') return s.workbin?.agentId === agentId;
  return offeredTo(s, agentId, now);
}

/**
 * The agent hands the chat over: to another agent (offered only to that agent for `timeoutMs`, then to
 * anyone), or back to the queue (no target).
 */
export function transfer(s: Session, fromAgentId: string, toAgentId: string | undefined, timeoutMs: number, now: number): Change {
  assertOpen(s);
  agentParticipant(s, fromAgentId);
  if (toAgentId === fromAgentId) throw new ParleyError('INVALID_PARAMETER', 'An agent cannot transfer a chat to itself.');
  const left = agentLeave(s, fromAgentId, now);
  if (left.session.state !== 'waiting') return left;
  const { routing: _r, ...rest } = left.session;
  // With no time to wait (last-agent-timeout = 0), anyone may take it at once, as a woken chat.
  const routing = toAgentId === undefined || timeoutMs <= 0 ? undefined : { agentId: toAgentId, until: now + timeoutMs };
  return { session: { ...rest, ...(routing === undefined ? {} : { routing }) }, events: left.events };
}
