/**
 * The agent REST API (JSON) under `/agent/api`. Bearer tokens from `POST /agent/api/login`.
 * Errors are `{ error: { code, message } }` with the status of the error code.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ParleyError, publicAdvice, toParleyError } from '../errors.ts';
import { readBody } from '../http/body.ts';
import { clientKey } from '../http/client-key.ts';
import { RateLimiter } from '../http/rate-limit.ts';
import { sendDownload, sendJson } from '../http/respond.ts';
import type { AgentAccount, AgentDirectory } from './agent-directory.ts';
import { summarize, type AgentOps, type AgentView } from './agent-ops.ts';
import { decodeSegmentOrNotFound } from '../http/request-url.ts';

export const AGENT_API_PREFIX = '/agent/api/';
const MAX_AGENT_BODY = 256 * 1024;

export interface AgentApiOptions {
  readonly directory: AgentDirectory;
  readonly ops: AgentOps;
  /** Told of every failed request (for the log). */
  readonly onError?: (err: ParleyError) => void;
}

export function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  return m?.[1];
}

async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const buf = await readBody(req, MAX_AGENT_BODY);
  if (buf.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch {
    throw new ParleyError('INVALID_PARAMETER', 'The body is not valid JSON.');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ParleyError('INVALID_PARAMETER', 'The body must be a JSON object.');
  return v as Record<string, unknown>;
}

function str(body: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) {
    if (required) throw new ParleyError('MISSING_PARAMETER', `${key} is required.`);
    return undefined;
  }
  if (typeof v !== 'string') throw new ParleyError('INVALID_PARAMETER', `${key} must be a string.`);
  if (v.length > 65536) throw new ParleyError('MESSAGE_TOO_LONG', `${key} is too long.`);
  return v;
}

export function viewJson(v: AgentView, from = v.from ?? 1) {
  const first = v.events[0]?.index ?? 1;
  return { chat: summarize(v.session), events: from <= first ? v.events : v.events.slice(from - first) };
}

/** Wrong passwords per client address: 10 in a row, then one every 5 s (password guessing). */
const LOGIN_FAILURES = { rate: 0.2, burst: 10 };

export function createAgentApi(o: AgentApiOptions) {
  const failedLogins = new RateLimiter(LOGIN_FAILURES.rate, LOGIN_FAILURES.burst);
  return async function handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    try {
      const parts = path.slice(AGENT_API_PREFIX.length).split('/');
      const method = req.method ?? 'GET';
      if (parts[0] === 'login' && parts.length === 1) {
        if (method !== 'POST') throw notAllowed('POST');
        const body = await jsonBody(req);
        // Counted per client (an IPv6 client by its /64), not per address it can change at will.
        const address = clientKey(req.socket.remoteAddress ?? '');
        if (!failedLogins.allows(address, Date.now())) throw new ParleyError('RATE_LIMITED', 'Too many failed sign-ins from this address; retry later.');
        let t: ReturnType<AgentDirectory['signIn']>;
        try {
          t = o.directory.signIn(str(body, 'agentId', true) ?? '', str(body, 'password', true) ?? '');
        } catch (err) {
          if (err instanceof ParleyError && err.code !== 'MISSING_PARAMETER' && err.code !== 'INVALID_PARAMETER') failedLogins.take(address, Date.now());
          throw err;
        }
        const a = o.directory.account(t.agentId);
        return sendJson(res, 200, { token: t.token, expiresAt: t.expiresAt, agent: publicAgent(a) });
      }
      const token = bearer(req);
      const agent = o.directory.verify(token);
      if (parts[0] === 'logout' && parts.length === 1 && method === 'POST') {
        o.directory.signOut(token ?? '');
        return sendJson(res, 200, { ok: true });
      }
      if (parts[0] === 'me' && parts.length === 1 && method === 'GET') {
        return sendJson(res, 200, { agent: publicAgent(agent) });
      }
      if (parts[0] === 'agents' && parts.length === 1 && method === 'GET') {
        return sendJson(res, 200, { agents: o.directory.list().map((a) => ({ ...publicAgent(a), activeChats: o.ops.activeChatCount(a.agentId), online: o.directory.isOnline(a.agentId) })) });
      }
      if (parts[0] === 'history' && parts.length === 1 && method === 'GET') {
        const limit = Number(query.get('limit') ?? '50');
        if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new ParleyError('INVALID_PARAMETER', 'limit must be an integer 1..500.');
        return sendJson(res, 200, { chats: await o.ops.history(limit) });
      }
      if (parts[0] !== 'chats') throw new ParleyError('NOT_FOUND');
      if (parts.length === 1) {
        if (method !== 'GET') throw notAllowed('GET');
        return sendJson(res, 200, await o.ops.overview(agent));
      }
      const chatId = decodeSegmentOrNotFound(parts[1] ?? '');
      if (parts.length === 2) {
        if (method !== 'GET') throw notAllowed('GET');
        const from = Number(query.get('from') ?? '1');
        if (!Number.isInteger(from) || from < 0) throw new ParleyError('INVALID_PARAMETER', 'from must be a non-negative integer.');
        return sendJson(res, 200, viewJson(await o.ops.transcript(agent, chatId, from), from));
      }
      if (parts.length === 4 && parts[2] === 'files' && method === 'GET') {
        const { meta, bytes } = await o.ops.file(agent, chatId, decodeSegmentOrNotFound(parts[3] ?? ''));
        return sendDownload(res, meta, bytes);
      }
      if (parts.length !== 3) throw new ParleyError('NOT_FOUND');
      if (method !== 'POST') throw notAllowed('POST');
      const body = await jsonBody(req);
      return sendJson(res, 200, viewJson(await action(o.ops, agent, chatId, parts[2] ?? '', body)));
    } catch (e) {
      const err = toParleyError(e);
      o.onError?.(err);
      const allow = err.details?.['allow'];
      sendJson(res, err.spec.http, { error: { code: err.code, message: publicAdvice(err) } }, typeof allow === 'string' ? { allow } : {});
    }
  };
}

/** 405 for a resource that takes only `method`, with the `allow` header. */
function notAllowed(method: 'GET' | 'POST'): ParleyError {
  return new ParleyError('METHOD_NOT_ALLOWED', `Use ${method} for this agent API resource.`, { details: { allow: method } });
}

function action(ops: AgentOps, agent: AgentAccount, chatId: string, name: string, body: Record<string, unknown>): Promise<AgentView> {
  switch (name) {
    case 'accept':
      return ops.accept(agent, chatId);
    case 'send':
      return ops.send(agent, chatId, str(body, 'text', true) ?? '', str(body, 'messageType', false));
    case 'typing': {
      const typing = body['typing'];
      if (typeof typing !== 'boolean') throw new ParleyError('INVALID_PARAMETER', 'typing must be true or false.');
      return ops.typing(agent, chatId, typing, str(body, 'text', false));
    }
    case 'leave':
      return ops.leave(agent, chatId);
    case 'hold':
      return ops.hold(agent, chatId);
    case 'resume':
      return ops.accept(agent, chatId);
    case 'transfer':
      return ops.transfer(agent, chatId, str(body, 'toAgentId', false));
    case 'close':
      return ops.close(agent, chatId);
    default:
      throw new ParleyError('NOT_FOUND');
  }
}

export function publicAgent(a: AgentAccount) {
  return { agentId: a.agentId, name: a.name, maxChats: a.maxChats };
}
