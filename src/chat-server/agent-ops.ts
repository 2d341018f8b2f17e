/** What an agent can do on a chat server node: see the queue, accept, talk, leave, close. */
import type { Clock } from '../clock.ts';
import * as core from '../chat/session.ts';
import type { Change, ChatEvent, Session, SessionState } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import type { AgentAccount } from './agent-directory.ts';
import type { LiveSessions } from './live-sessions.ts';

export interface ChatSummary {
  readonly chatId: string;
  readonly serviceName: string;
  readonly state: SessionState;
  readonly nickname: string;
  readonly subject: string;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly lastIndex: number;
  readonly agents: readonly string[];
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
  };
}

export interface AgentView {
  readonly session: Session;
  readonly events: readonly ChatEvent[];
}

export class AgentOps {
  /** Accepts in progress per agent: counted against max-chats before the awaited store write. */
  private readonly reserved = new Map<string, number>();

  constructor(
    private readonly sessions: LiveSessions,
    private readonly clock: Clock,
  ) {}

  /** Waiting chats (oldest first) and the agent's own chats. */
  overview(agent: AgentAccount): { waiting: ChatSummary[]; mine: ChatSummary[] } {
    const waiting: ChatSummary[] = [];
    const mine: ChatSummary[] = [];
    for (const { session } of this.sessions.all()) {
      if (session.state === 'waiting') waiting.push(summarize(session));
      else if (session.state === 'active' && isIn(session, agent.agentId)) mine.push(summarize(session));
    }
    waiting.sort((a, b) => a.createdAt - b.createdAt);
    return { waiting, mine };
  }

  activeChatCount(agentId: string): number {
    let n = 0;
    for (const { session } of this.sessions.all()) if (session.state === 'active' && isIn(session, agentId)) n++;
    return n;
  }

  /** Accepts a waiting chat. Of two agents accepting at once exactly one wins. */
  accept(agent: AgentAccount, chatId: string): Promise<AgentView> {
    return this.sessions.serial(chatId, async (entry) => {
      const s = entry.session;
      core.assertOpen(s);
      if (isIn(s, agent.agentId)) return { session: s, events: entry.events };
      if (s.state !== 'waiting') throw new ParleyError('CHAT_ALREADY_TAKEN');
      // Accepts of different chats run concurrently; the reservation makes the capacity check and the
      // claim one synchronous step, so concurrent accepts cannot exceed max-chats.
      const reserved = this.reserved.get(agent.agentId) ?? 0;
      if (this.activeChatCount(agent.agentId) + reserved >= agent.maxChats) throw new ParleyError('AGENT_CAPACITY');
      this.reserved.set(agent.agentId, reserved + 1);
      try {
        await this.sessions.commit(entry, core.agentJoin(s, { agentId: agent.agentId, nickname: agent.name }, this.clock.now()));
      } finally {
        const left = (this.reserved.get(agent.agentId) ?? 1) - 1;
        if (left === 0) this.reserved.delete(agent.agentId);
        else this.reserved.set(agent.agentId, left);
      }
      return { session: entry.session, events: entry.events };
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

  /** The transcript of a chat the agent is in, or of a waiting chat (to look before accepting). */
  async transcript(agent: AgentAccount, chatId: string): Promise<AgentView> {
    const entry = await this.sessions.get(chatId);
    const s = entry.session;
    if (s.state !== 'waiting' && !isIn(s, agent.agentId)) throw new ParleyError('AGENT_NOT_IN_CHAT');
    return { session: s, events: entry.events };
  }

  private act(
    agent: AgentAccount,
    chatId: string,
    fn: (s: Session, participantId: number, now: number) => Change,
  ): Promise<AgentView> {
    return this.sessions.serial(chatId, async (entry) => {
      core.assertOpen(entry.session);
      const p = core.agentParticipant(entry.session, agent.agentId);
      await this.sessions.commit(entry, fn(entry.session, p.participantId, this.clock.now()));
      return { session: entry.session, events: entry.events };
    });
  }
}

function isIn(s: Session, agentId: string): boolean {
  return core.activeAgents(s).some((p) => p.agentId === agentId);
}
