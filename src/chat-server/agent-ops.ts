/**
 * What an agent can do on a chat server node: see the chats offered to it, its own chats and its workbin;
 * accept, talk, hold (async chats sleep in the workbin), resume, transfer, leave, close; read the contact
 * history.
 */
import type { Clock } from '../clock.ts';
import { canTake, hold, offeredTo, releaseRouting, transfer } from '../chat/routing.ts';
import * as core from '../chat/session.ts';
import type { ChatSummary } from '../chat/summary.ts';
import type { Change, ChatEvent, FileMeta, Session } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import type { AgentAccount } from './agent-directory.ts';
import type { LiveSessions } from './live-sessions.ts';

/** When a waiting chat joined the queue (sessions stored before `queuedAt` existed: when they opened). */
function queuedAt(s: Session): number {
  return s.queuedAt ?? s.createdAt;
}

export function summarize(s: Session): ChatSummary {
  return {
    chatId: s.chatId,
    serviceName: s.serviceName,
    state: s.state,
    nickname: core.clientOf(s).nickname,
    subject: s.subject,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
    lastIndex: s.lastIndex,
    agents: core.activeAgents(s).map((p) => p.agentId ?? ''),
    asyncMode: s.asyncMode,
    ...(s.state === 'waiting' ? { queuedAt: queuedAt(s) } : {}),
    ...(s.workbin === undefined ? {} : { workbinAgentId: s.workbin.agentId }),
    ...(s.routing === undefined ? {} : { routedTo: s.routing.agentId, routedUntil: s.routing.until }),
  };
}

export interface AgentView {
  readonly session: Session;
  readonly events: readonly ChatEvent[];
  /** The first index the reply carries (1 = the whole transcript). */
  readonly from?: number;
}

export interface Overview {
  /** Waiting chats offered to this agent, longest waiting first. */
  readonly waiting: ChatSummary[];
  /** Chats the agent is in. */
  readonly mine: ChatSummary[];
  /** The agent's dormant (on hold) chats. */
  readonly workbin: ChatSummary[];
}

export interface AgentOpsOptions {
  /** How long a transferred chat is offered only to its target agent. */
  readonly transferMs: number;
  readonly agentExists: (agentId: string) => boolean;
  /** Is the agent online (at a desk, see agent-directory.ts)? A transfer goes only to an agent who is. */
  readonly agentOnline: (agentId: string) => boolean;
}

export function isIn(s: Session, agentId: string): boolean {
  return core.activeAgents(s).some((p) => p.agentId === agentId);
}

export class AgentOps {
  /** Accepts in progress per agent: counted against max-chats before the awaited store write. */
  private readonly reserved = new Map<string, number>();

  constructor(
    private readonly sessions: LiveSessions,
    private readonly clock: Clock,
    private readonly opts: AgentOpsOptions,
  ) {}

  /** The queue and the agent's chats from memory; the workbin from the store (dormant chats are parked). */
  async overview(agent: AgentAccount): Promise<Overview> {
    const now = this.clock.now();
    const o: Overview = { waiting: [], mine: [], workbin: (await this.sessions.workbin(agent.agentId)).map(summarize) };
    for (const { session: s } of this.sessions.all()) {
      if (offeredTo(s, agent.agentId, now)) o.waiting.push(summarize(s));
      else if (s.state === 'active' && isIn(s, agent.agentId)) o.mine.push(summarize(s));
    }
    // Longest waiting first: by when each chat joined the queue, not by its last activity.
    o.waiting.sort((a, b) => (a.queuedAt ?? a.createdAt) - (b.queuedAt ?? b.createdAt));
    return o;
  }

  activeChatCount(agentId: string): number {
    let n = 0;
    for (const { session } of this.sessions.all()) if (session.state === 'active' && isIn(session, agentId)) n++;
    return n;
  }

  /**
   * Takes a chat: a waiting one offered to the agent, or a dormant one from the agent's own workbin (resume).
   * Of two agents taking the same chat at once exactly one wins.
   */
  accept(agent: AgentAccount, chatId: string): Promise<AgentView> {
    return this.sessions.serial(chatId, async (entry) => {
      const s = entry.session;
      core.assertOpen(s);
      // The transcript so far is read before the join is written: a failed read changes nothing.
      const earlier = await this.sessions.transcript(entry, 1);
      if (isIn(s, agent.agentId)) return { session: s, events: earlier };
      if (!canTake(s, agent.agentId, this.clock.now())) {
        throw new ParleyError('CHAT_ALREADY_TAKEN', s.state === 'dormant' ? 'The chat is in another agent\u2019s workbin.' : undefined);
      }
      // Accepts of different chats run concurrently; the reservation makes the capacity check and the
      // claim one synchronous step, so concurrent accepts cannot exceed max-chats.
      const reserved = this.reserved.get(agent.agentId) ?? 0;
      if (this.activeChatCount(agent.agentId) + reserved >= agent.maxChats) throw new ParleyError('AGENT_CAPACITY');
      this.reserved.set(agent.agentId, reserved + 1);
      const join = core.agentJoin(s, { agentId: agent.agentId, nickname: agent.name }, this.clock.now());
      try {
        await this.sessions.commit(entry, join);
      } finally {
        const left = (this.reserved.get(agent.agentId) ?? 1) - 1;
        if (left === 0) this.reserved.delete(agent.agentId);
        else this.reserved.set(agent.agentId, left);
      }
      return { session: entry.session, events: [...earlier, ...join.events] };
    });
  }

  send(agent: AgentAccount, chatId: string, text: string, messageType?: string): Promise<AgentView> {
    if (text.trim() === '') return Promise.reject(new ParleyError('MISSING_PARAMETER', 'text is required.'));
    return this.act(agent, chatId, (s, pid, now) => core.say(s, pid, 'Message', { text, messageType }, now));
  }

  typing(agent: AgentAccount, chatId: string, typing: boolean, text?: string): Promise<AgentView> {
    return this.act(agent, chatId, (s, pid, now) => core.say(s, pid, typing ? 'TypingStarted' : 'TypingStopped', { text }, now));
  }

  leave(agent: AgentAccount, chatId: string): Promise<AgentView> {
    return this.act(agent, chatId, (s, _pid, now) => core.agentLeave(s, agent.agentId, now));
  }

  close(agent: AgentAccount, chatId: string): Promise<AgentView> {
    return this.act(agent, chatId, (s, _pid, now) => core.agentClose(s, agent.agentId, now));
  }

  /** Puts an async chat on hold: the agent leaves and the chat sleeps in the agent's workbin. */
  hold(agent: AgentAccount, chatId: string): Promise<AgentView> {
    return this.act(agent, chatId, (s, _pid, now) => hold(s, agent.agentId, now));
  }

  /** Hands the chat to another agent, or back to the queue when `toAgentId` is undefined. */
  transfer(agent: AgentAccount, chatId: string, toAgentId: string | undefined): Promise<AgentView> {
    if (toAgentId !== undefined && !this.opts.agentExists(toAgentId)) {
      return Promise.reject(new ParleyError('INVALID_PARAMETER', `No agent "${toAgentId.slice(0, 64)}".`));
    }
    return this.act(agent, chatId, (s, _pid, now) => {
      // The chat, the caller and the target are checked first: their errors win over the target's presence.
      const change = transfer(s, agent.agentId, toAgentId, this.opts.transferMs, now);
      // Offered only to that agent for [routing] last-agent-timeout, the chat would wait that long for nobody.
      if (toAgentId !== undefined && !this.opts.agentOnline(toAgentId)) {
        throw new ParleyError('AGENT_UNAVAILABLE', `Agent "${toAgentId.slice(0, 64)}" is not online; transfer to another agent or to the queue.`);
      }
      return change;
    });
  }

  /**
   * The transcript of a chat: one the agent is in or is offered, or any dormant or ended chat (contact
   * history). Another agent's live chat stays private.
   */
  async transcript(agent: AgentAccount, chatId: string, from = 1): Promise<AgentView> {
    // In the session's queue like any operation: a dormant chat read from the history is parked again after.
    return this.sessions.serial(chatId, async (entry) => {
      this.assertReadable(agent, entry.session);
      return { session: entry.session, events: await this.sessions.transcript(entry, from), from };
    });
  }

  /** A file of a chat the agent may read (as `transcript`); agents' downloads are not counted. */
  async file(agent: AgentAccount, chatId: string, fileId: string): Promise<{ meta: FileMeta; bytes: Buffer }> {
    const session = await this.sessions.serial(chatId, async (entry) => {
      this.assertReadable(agent, entry.session);
      return entry.session;
    });
    const meta = core.findFile(session, fileId);
    const bytes = await this.sessions.readFile(chatId, fileId);
    if (bytes === undefined) throw new ParleyError('UNKNOWN_FILE');
    return { meta, bytes };
  }

  /** Contact history: the most recent dormant and ended chats. */
  async history(limit: number): Promise<ChatSummary[]> {
    return (await this.sessions.recent(['dormant', 'ended'], limit)).map(summarize);
  }

  private act(agent: AgentAccount, chatId: string, fn: (s: Session, participantId: number, now: number) => Change): Promise<AgentView> {
    return this.sessions.serial(chatId, async (entry) => {
      core.assertOpen(entry.session);
      const p = core.agentParticipant(entry.session, agent.agentId);
      // The reply carries only what this action appended: the desk has the rest (and syncs any gap).
      const from = entry.session.lastIndex + 1;
      const change = fn(entry.session, p.participantId, this.clock.now());
      await this.sessions.commit(entry, change);
      return { session: entry.session, events: change.events, from };
    });
  }

  /**
   * The agent went offline: every waiting chat routed to that agent (woken, transferred) is offered to
   * anyone at once. Each release is a stored change, so the desks hear of it and a restored session keeps
   * it. One that fails (the store) keeps its routing until its deadline, as before; they are counted.
   */
  async releaseRoutedTo(agentId: string): Promise<{ released: number; failed: number }> {
    const now = this.clock.now();
    // The chats the release would change now (it checks again in each chat's queue).
    const routed: string[] = [];
    for (const e of this.sessions.all()) if (releaseRouting(e.session, agentId, now).session !== e.session) routed.push(e.session.chatId);
    const results = await Promise.allSettled(
      routed.map((chatId) =>
        this.sessions.serial(chatId, async (entry) => {
          const change = releaseRouting(entry.session, agentId, this.clock.now());
          if (change.session === entry.session) return false;
          await this.sessions.commit(entry, change);
          return true;
        }),
      ),
    );
    return {
      released: results.filter((r) => r.status === 'fulfilled' && r.value).length,
      failed: results.filter((r) => r.status === 'rejected').length,
    };
  }

  /** An agent reads a chat it is in or is offered, or any dormant or ended chat (contact history). */
  private assertReadable(agent: AgentAccount, s: Session): void {
    const readable = s.state === 'ended' || s.state === 'dormant' || isIn(s, agent.agentId) || offeredTo(s, agent.agentId, this.clock.now());
    if (!readable) throw new ParleyError('AGENT_NOT_IN_CHAT');
  }
}
