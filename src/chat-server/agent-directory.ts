/** Agents from the config, their sign-in and bearer tokens. */
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

export class AgentDirectory {
  private readonly tokens = new Map<string, AgentToken>();

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
    const t: AgentToken = { token: this.ids.token(), agentId, expiresAt: this.clock.now() + AGENT_TOKEN_TTL_MS };
    this.tokens.set(t.token, t);
    return t;
  }

  /** The agent a bearer token belongs to, or AGENT_AUTH_FAILED when unknown or expired. */
  verify(token: string | undefined): AgentAccount {
    const t = token === undefined ? undefined : this.tokens.get(token);
    if (t === undefined) throw new ParleyError('AGENT_AUTH_FAILED');
    if (t.expiresAt <= this.clock.now()) {
      this.tokens.delete(t.token);
      throw new ParleyError('AGENT_AUTH_FAILED', 'The agent token expired; sign in again.');
    }
    return this.account(t.agentId);
  }

  signOut(token: string): void {
    this.tokens.delete(token);
  }

  list(): AgentAccount[] {
    return [...this.accounts.values()];
  }

  /** Signed in: holds a token that has not expired. */
  isOnline(agentId: string): boolean {
    const now = this.clock.now();
    for (const t of this.tokens.values()) if (t.agentId === agentId && t.expiresAt > now) return true;
    return false;
  }
}
