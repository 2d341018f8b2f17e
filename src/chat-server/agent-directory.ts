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
/**
 * Most tokens one agent holds at once (desk tabs, devices, integrations). A sign-in beyond it ends the
 * agent's oldest token (expired or not), so that a script signing in again and again cannot fill the
 * memory with tokens that live 12 hours: the directory holds at most this many per configured agent.
 */
export const MAX_TOKENS_PER_AGENT = 32;
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
  /** Each agent's tokens, oldest first (at most MAX_TOKENS_PER_AGENT). */
  private readonly byAgent = new Map<string, HeldToken[]>();
  private readonly offlineListeners: Array<(agentId: string) => void> = [];

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
    let held = this.byAgent.get(agentId);
    if (held === undefined) this.byAgent.set(agentId, (held = []));
    const t: HeldToken = { token: this.ids.token(), agentId, expiresAt: now + AGENT_TOKEN_TTL_MS, desks: 0, hadDesk: false, lastSeen: now };
    this.tokens.set(t.token, t);
    held.push(t);
    // The new token is in first, so the agent stays online while the oldest go.
    while (held.length > MAX_TOKENS_PER_AGENT) this.signOut((held[0] as HeldToken).token);
    return { token: t.token, agentId, expiresAt: t.expiresAt };
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
    const t = this.tokens.get(token);
    if (t === undefined) return;
    this.watch(t.agentId, () => {
      this.tokens.delete(token);
      const held = this.byAgent.get(t.agentId) ?? [];
      held.splice(held.indexOf(t), 1);
    });
  }

  /**
   * Calls `fn` each time an agent who was online is no longer because of a sign-out or a desk closing.
   * (A token expiring, or an API-only token's presence lapsing, happens with time and calls nothing.)
   */
  onOffline(fn: (agentId: string) => void): void {
    this.offlineListeners.push(fn);
  }

  private watch(agentId: string, change: () => void): void {
    const was = this.isOnline(agentId);
    change();
    if (was && !this.isOnline(agentId)) for (const fn of this.offlineListeners) fn(agentId);
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
    if (t !== undefined && t.desks > 0) this.watch(t.agentId, () => t.desks--);
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
    for (const t of this.byAgent.get(agentId) ?? []) {
      if (t.expiresAt <= now) continue;
      if (t.desks > 0 || (!t.hadDesk && now - t.lastSeen < API_PRESENCE_MS)) return true;
    }
    return false;
  }
}
