/**
 * Chat API v2 routes: `POST /genesys/2/chat/{serviceName}[/{chatId}/{operation}]`.
 * Handlers only translate: read the form, call the node link, write the envelope.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClientIdentity, ClientOperation } from '../chat-server/client-ops.ts';
import { parsePosition, type Position } from '../chat/transcript.ts';
import { constantTimeEqual } from '../chat/secure-compare.ts';
import { clientKey } from '../http/client-key.ts';
import { ParleyError, toParleyError } from '../errors.ts';
import type { Form } from '../http/form.ts';
import { headerValue } from '../http/headers.ts';
import { RateLimiter } from '../http/rate-limit.ts';
import { sendDownload, sendJson } from '../http/respond.ts';
import { errorEnvelope, okEnvelope } from './envelope.ts';
import type { NodeLink } from './node-link.ts';
import { readForm, type FormLimits } from './read-form.ts';
import { decodeSegment } from '../http/request-url.ts';

export const CHAT_API_PREFIX = '/genesys/2/chat/';

/** The [http] rate limits as limiters (bursts of twice the rate). */
export function rateLimitsFrom(http: { rateLimitPerClient: number; rateLimitPerSession: number; rateLimitExempt: readonly string[] }, now: () => number): ChatApiRateLimits {
  return {
    perClient: new RateLimiter(http.rateLimitPerClient, http.rateLimitPerClient * 2),
    perSession: new RateLimiter(http.rateLimitPerSession, http.rateLimitPerSession * 2),
    exempt: new Set(http.rateLimitExempt),
    now,
  };
}

export interface ChatApiRateLimits {
  readonly perClient: RateLimiter;
  readonly perSession: RateLimiter;
  readonly exempt: ReadonlySet<string>;
  readonly now: () => number;
}

export interface ChatApiOptions {
  readonly node: NodeLink;
  readonly rateLimits?: ChatApiRateLimits;
  readonly services: ReadonlySet<string>;
  readonly apiKey: string;
  readonly limits: FormLimits;
  readonly onError?: (err: ParleyError) => void;
}

/** Operations whose path is `{chatId}/{name}` and whose fields map to a ClientOperation. */
const SIMPLE_OPS = new Set([
  'send',
  'refresh',
  'startTyping',
  'stopTyping',
  'disconnect',
  'pushUrl',
  'updateNickname',
  'updateData',
  'customNotice',
  'readReceipt',
]);

type Route =
  | { kind: 'request'; service: string }
  | { kind: 'op'; service: string; chatId: string; name: string }
  | { kind: 'upload'; service: string; chatId: string }
  | { kind: 'limits'; service: string; chatId: string }
  | { kind: 'download' | 'delete'; service: string; chatId: string; fileId: string };

export function parseRoute(path: string): Route | undefined {
  const parts = path.slice(CHAT_API_PREFIX.length).split('/').map(decodeSegment);
  if (parts.some((p) => p === undefined || p === '')) return undefined;
  const [service, chatId, a, b, c] = parts as string[];
  if (service === undefined) return undefined;
  if (parts.length === 1) return { kind: 'request', service };
  if (chatId === undefined || a === undefined) return undefined;
  if (parts.length === 3 && a === 'file') return { kind: 'upload', service, chatId };
  if (parts.length === 3 && SIMPLE_OPS.has(a)) return { kind: 'op', service, chatId, name: a };
  if (parts.length === 4 && a === 'file' && b === 'limits') return { kind: 'limits', service, chatId };
  if (parts.length === 5 && a === 'file' && b !== undefined && (c === 'download' || c === 'delete')) {
    return { kind: c, service, chatId, fileId: b };
  }
  return undefined;
}

export function createChatApi(o: ChatApiOptions) {
  return async function handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    let chatId: string | undefined;
    let alias: string | undefined;
    try {
      const route = parseRoute(path);
      if (route === undefined) throw new ParleyError('NOT_FOUND', 'No Chat API v2 operation at this path.');
      if (route.kind !== 'request') chatId = route.chatId;
      checkRate(o.rateLimits, req.socket.remoteAddress ?? '', undefined);
      const isDownload = route.kind === 'download';
      if (req.method !== 'POST' && !(isDownload && req.method === 'GET')) throw new ParleyError('METHOD_NOT_ALLOWED');
      checkApiKey(req, o.apiKey);
      if (!o.services.has(route.service)) throw new ParleyError('UNKNOWN_SERVICE', `No chat service "${route.service.slice(0, 100)}" is configured.`);

      const { form, file } = req.method === 'GET' ? { form: formFromQuery(query), file: undefined } : await readForm(req, o.limits);
      alias = form.fields.get('alias');
      const id = identity(form);
      // The session's bucket is the one of whoever holds its key: a caller who only knows the chatId cannot
      // drain it for the customer (a wrong key fills a bucket of its own, and is refused anyway).
      if (chatId !== undefined) checkRate(o.rateLimits, undefined, `${chatId}\n${id.secureKey ?? ''}`);

      switch (route.kind) {
        case 'request': {
          const r = await o.node.requestChat(route.service, {
            nickname: form.fields.get('nickname'),
            firstName: form.fields.get('firstName'),
            lastName: form.fields.get('lastName'),
            subject: form.fields.get('subject'),
            emailAddress: form.fields.get('emailAddress'),
            text: form.fields.get('text'),
            userData: form.userData,
          });
          return sendJson(res, 200, okEnvelope(r));
        }
        case 'op': {
          const op = toOperation(route.name, form);
          // readReceipt's transcriptPosition is the read position, not a request for events.
          const pos = op.op === 'readReceipt' ? 'none' : position(form, op.op === 'refresh' ? 'all' : 'none');
          const r = await o.node.perform(route.chatId, route.service, id, op, pos);
          return sendJson(res, 200, okEnvelope(r));
        }
        case 'limits': {
          const r = await o.node.perform(route.chatId, route.service, id, { op: 'fileLimits' }, 'none');
          return sendJson(res, 200, okEnvelope(r));
        }
        case 'delete': {
          const r = await o.node.perform(route.chatId, route.service, id, { op: 'fileDelete', fileId: route.fileId }, position(form, 'none'));
          return sendJson(res, 200, okEnvelope(r));
        }
        case 'upload': {
          if (file === undefined) throw new ParleyError('MISSING_PARAMETER', 'The multipart part "file" is required.');
          const r = await o.node.upload(
            route.chatId,
            route.service,
            id,
            { ...file, description: form.userData['file-description'] },
            position(form, 'none'),
          );
          return sendJson(res, 200, okEnvelope(r));
        }
        case 'download': {
          const { meta, bytes } = await o.node.download(route.chatId, route.service, id, route.fileId);
          return sendDownload(res, meta, bytes);
        }
      }
    } catch (e) {
      const err = toParleyError(e);
      o.onError?.(err);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const headers: Record<string, string> =
        err.code === 'BODY_TOO_LARGE' || err.code === 'FILE_TOO_LARGE'
          ? { connection: 'close' }
          : // A bucket refills one token per 1/rate s: a second is always enough for the next request.
            err.code === 'RATE_LIMITED'
            ? { 'retry-after': '1' }
            : {};
      sendJson(res, err.spec.http, errorEnvelope(err, { chatId, alias }), headers);
    }
  };
}

/** The per-client bucket of an address and the per-session bucket of a key; RATE_LIMITED when one is empty. */
export function checkRate(r: ChatApiRateLimits | undefined, client: string | undefined, sessionKey: string | undefined): void {
  if (r === undefined) return;
  const now = r.now();
  if (client !== undefined) {
    const address = client.startsWith('::ffff:') ? client.slice(7) : client;
    if (!r.exempt.has(address) && !r.perClient.take(clientKey(address), now)) throw new ParleyError('RATE_LIMITED', 'Too many requests from this client; retry later.');
  }
  if (sessionKey !== undefined && !r.perSession.take(sessionKey, now)) throw new ParleyError('RATE_LIMITED', 'Too many requests on this chat session; retry later.');
}

function checkApiKey(req: IncomingMessage, apiKey: string): void {
  if (apiKey === '') return;
  const given = headerValue(req.headers, 'apikey') ?? headerValue(req.headers, 'x-api-key') ?? '';
  if (!constantTimeEqual(given, apiKey)) throw new ParleyError('API_KEY_REQUIRED');
}

function identity(form: Form): ClientIdentity {
  return { secureKey: form.fields.get('secureKey'), userId: form.fields.get('userId'), alias: form.fields.get('alias') };
}

function position(form: Form, fallback: 'all' | 'none'): Position {
  const p = parsePosition(form.fields.get('transcriptPosition'), fallback);
  if (p === 'invalid') throw new ParleyError('INVALID_PARAMETER', 'transcriptPosition must be a non-negative integer.');
  return p;
}

function required(form: Form, name: string): string {
  const v = form.fields.get(name);
  if (v === undefined || v.trim() === '') throw new ParleyError('MISSING_PARAMETER', `${name} is required.`);
  return v;
}

function toOperation(name: string, form: Form): ClientOperation {
  const f = form.fields;
  switch (name) {
    case 'send':
      return { op: 'send', message: required(form, 'message'), messageType: f.get('messageType') };
    case 'refresh':
      return { op: 'refresh' };
    case 'startTyping':
    case 'stopTyping':
      return { op: name, message: f.get('message') };
    case 'disconnect':
      return { op: 'disconnect' };
    case 'pushUrl':
      return { op: 'pushUrl', pushUrl: required(form, 'pushUrl') };
    case 'updateNickname':
      return { op: 'updateNickname', nickname: required(form, 'nickname') };
    case 'updateData':
      return { op: 'updateData', userData: form.userData };
    case 'customNotice':
      return { op: 'customNotice', message: f.get('message') ?? '', messageType: f.get('messageType') };
    case 'readReceipt': {
      const p = parsePosition(required(form, 'transcriptPosition'), 'none');
      if (typeof p !== 'number') throw new ParleyError('INVALID_PARAMETER', 'transcriptPosition must be a non-negative integer.');
      return { op: 'readReceipt', position: p };
    }
    default:
      throw new ParleyError('NOT_FOUND');
  }
}

function formFromQuery(q: URLSearchParams): Form {
  const fields = new Map<string, string>();
  for (const [k, v] of q) if (!fields.has(k)) fields.set(k, v);
  return { fields, userData: {} };
}
