/** The agent REST API (`/agent/api`) with the bearer token of the signed-in agent. */
import type { Agent, AgentListing, ChatSummary, ChatView, Overview } from './types.ts';

export const API = '/agent/api';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type ChatAction = 'accept' | 'resume' | 'send' | 'typing' | 'hold' | 'transfer' | 'leave' | 'close';

export class AgentApi {
  /** Told when a call answers 401: the token no longer works. */
  onUnauthorized: () => void = () => undefined;

  constructor(public token = '') {}

  static async login(agentId: string, password: string): Promise<{ token: string; expiresAt: number; agent: Agent }> {
    return (await call('POST', 'login', '', { agentId, password })) as { token: string; expiresAt: number; agent: Agent };
  }

  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    try {
      return await call(method, path, this.token, body);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) this.onUnauthorized();
      throw e;
    }
  }

  async me(): Promise<Agent> {
    return ((await this.call('GET', 'me')) as { agent: Agent }).agent;
  }

  async logout(): Promise<void> {
    await this.call('POST', 'logout', {});
  }

  async overview(): Promise<Overview> {
    return (await this.call('GET', 'chats')) as Overview;
  }

  async transcript(chatId: string, from = 1): Promise<ChatView> {
    return (await this.call('GET', `chats/${encodeURIComponent(chatId)}?from=${from}`)) as ChatView;
  }

  async act(chatId: string, action: ChatAction, body: Record<string, unknown> = {}): Promise<ChatView> {
    return (await this.call('POST', `chats/${encodeURIComponent(chatId)}/${action}`, body)) as ChatView;
  }

  async agents(): Promise<AgentListing[]> {
    return ((await this.call('GET', 'agents')) as { agents: AgentListing[] }).agents;
  }

  /** A file of a chat the agent may read, as a Blob. */
  async file(chatId: string, fileId: string): Promise<Blob> {
    let res: Response;
    try {
      res = await fetch(`${API}/chats/${encodeURIComponent(chatId)}/files/${encodeURIComponent(fileId)}`, {
        headers: { authorization: `Bearer ${this.token}` },
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'NETWORK', 'The server cannot be reached; check the connection and retry.');
    }
    if (res.ok) return res.blob();
    const err = ((await res.json().catch(() => undefined)) as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    if (res.status === 401) this.onUnauthorized();
    throw new ApiError(
      res.status,
      typeof err?.code === 'string' ? err.code : `HTTP_${res.status}`,
      typeof err?.message === 'string' ? err.message : `The server answered ${res.status}.`,
    );
  }

  async history(limit = 50): Promise<ChatSummary[]> {
    return ((await this.call('GET', `history?limit=${limit}`)) as { chats: ChatSummary[] }).chats;
  }
}

async function call(method: string, path: string, token: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token !== '') headers['authorization'] = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(`${API}/${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch {
    throw new ApiError(0, 'NETWORK', 'The server cannot be reached; check the connection and retry.');
  }
  let data: unknown;
  try {
    data = await res.json();
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const err = (data as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    throw new ApiError(
      res.status,
      typeof err?.code === 'string' ? err.code : `HTTP_${res.status}`,
      typeof err?.message === 'string' ? err.message : `The server answered ${res.status}.`,
    );
  }
  return data;
}
