/**
 * Agents from the config, their sign-in and bearer tokens, and whether each is online: at a desk with a
 * live WebSocket, or, for a token used without a desk (an integration on the agent API), seen within
 * `API_PRESENCE_MS`. A signed-in token alone does not make an agent online: a desk tab closed without
 * signing out keeps its token for 12 hours.
 */
import type { Clock } from '../clock.ts';
import { constantTimeEqual } from '../chat/secure-compare.ts';
import { ParleyError } from '../errors.ts';
import type { IdSource } from '../ids.ts';

export interface AgentAccount {
  readonly agentId: string;
  readonly name: string;
  readonly password: string;
  readonly maxChats: number;
}

export interface AgentToken {
  readonly token: string;
  readonly agentId: string;
  readonly expiresAt: number;
}

export const AGENT_TOKEN_TTL_MS = 12 * 3600 * 1000;
/** A token that never opened a desk socket counts as online this long after its last request. */
export const API_PRESENCE_MS = 2 * 60 * 1000;

/** A signed-in token with its presence: its open desk sockets, whether it ever had one, its last use. */
interface HeldToken extends AgentToken {
  desks: number;
  hadDesk: boolean;
  lastSeen: number;
}

export class AgentDirectory {
  private readonly tokens = new Map<string, HeldToken>();

  constructor(
    private readonly accounts: ReadonlyMap<string, AgentAccount>,
    private readonly clock: Clock,
    private readonly ids: IdSource,
  ) {}

  account(agentId: string): AgentAccount {
    const a = this.accounts.get(agentId);
    if (a === undefined) throw new ParleyError('AGENT_AUTH_FAILED');
    return a;
  }

  signIn(agentId: string, password: string): AgentToken {
    const a = this.accounts.get(agentId);
    // Compare against something even for an unknown agent, so timing does not tell which agents exist.
    const ok = constantTimeEqual(password, a?.password ?? '\u0000'.repeat(password.length + 1));
    if (a === undefined || !ok) throw new ParleyError('AGENT_AUTH_FAILED');
    const now = this.clock.now();
    const t: AgentToken = { token: this.ids.token(), agentId, expiresAt: now + AGENT_TOKEN_TTL_MS };
    this.tokens.set(t.token, { ...t, desks: 0, hadDesk: false, lastSeen: now });
    return t;
  }

  /** The agent a bearer token belongs to, or AGENT_AUTH_FAILED when unknown or expired. */
  verify(token: string | undefined): AgentAccount {
    const t = token === undefined ? undefined : this.tokens.get(token);
    if (t === undefined) throw new ParleyError('AGENT_AUTH_FAILED');
    const now = this.clock.now();
    if (t.expiresAt <= now) {
      this.signOut(t.token);
      throw new ParleyError('AGENT_AUTH_FAILED', 'The agent token expired; sign in again.');
    }
    t.lastSeen = now;
    return this.account(t.agentId);
  }

  signOut(token: string): void {
    this.tokens.delete(token);
  }

  /** A desk WebSocket authenticated with this token (call once per socket). */
  deskOpened(token: string): void {
    const t = this.tokens.get(token);
    if (t === undefined) return;
    t.desks++;
    t.hadDesk = true;
  }

  /** A desk WebSocket of this token closed (its tab closed, its network went, or it was dropped). */
  deskClosed(token: string): void {
    const t = this.tokens.get(token);
    if (t !== undefined && t.desks > 0) t.desks--;
  }

  list(): AgentAccount[] {
    return [...this.accounts.values()];
  }

  /**
   * Online: holds a token that has not expired and either has a desk socket open now, or never had one and
   * was used within API_PRESENCE_MS. A token whose desk closed is offline until a desk connects again.
   */
  isOnline(agentId: string): boolean {
    const now = this.clock.now();
    for (const t of this.tokens.values()) {
      if (t.agentId !== agentId || t.expiresAt <= now) continue;
      if (t.desks > 0 || (!t.hadDesk && now - t.lastSeen < API_PRESENCE_MS)) return true;
    }
    return false;
  }
}
