/**
 * The internal API of a chat server node for gateways: `POST /internal/chat` with a JSON call, answered
 * with `{ok: ...}` or `{error: {code, message, details}}`. A shared token (`[node] internal-token`) guards it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constantTimeEqual } from '../chat/secure-compare.ts';
import type { Position } from '../chat/transcript.ts';
import { ParleyError, toParleyError } from '../errors.ts';
import { readBody } from '../http/body.ts';
import { sendJson } from '../http/respond.ts';
import type { ClientIdentity, ClientOperation, ClientOps, RequestChatInput, RetryKey } from './client-ops.ts';

export const NODE_RPC_PATH = '/internal/chat';
export const NODE_TOKEN_HEADER = 'x-parley-node-token';

export type NodeCall =
  | {
      readonly call: 'requestChat';
      readonly serviceName: string;
      readonly input: RequestChatInput;
      /** Set by a gateway that may send the same Request Chat again (after a timeout, to another node). */
      readonly retryKey?: RetryKey;
    }
  | { readonly call: 'perform'; readonly chatId: string; readonly serviceName: string; readonly identity: ClientIdentity; readonly op: ClientOperation; readonly position: Position }
  | {
      readonly call: 'upload';
      readonly chatId: string;
      readonly serviceName: string;
      readonly identity: ClientIdentity;
      readonly file: { fileName: string; contentType: string; base64: string; description?: string };
      readonly position: Position;
    }
  | { readonly call: 'download'; readonly chatId: string; readonly serviceName: string; readonly identity: ClientIdentity; readonly fileId: string };

export function createNodeRpc(o: { client: ClientOps; token: string; maxBodySize: number; accepting: () => boolean }) {
  async function run(call: NodeCall): Promise<unknown> {
    switch (call.call) {
      case 'requestChat':
        return o.client.requestChat(call.serviceName, call.input, retryKeyOf(call.retryKey));
      case 'perform':
        return o.client.perform(call.chatId, call.serviceName, call.identity, call.op, call.position);
      case 'upload':
        return o.client.upload(
          call.chatId,
          call.serviceName,
          call.identity,
          { fileName: call.file.fileName, contentType: call.file.contentType, bytes: Buffer.from(call.file.base64, 'base64'), description: call.file.description },
          call.position,
        );
      case 'download': {
        const d = await o.client.download(call.chatId, call.serviceName, call.identity, call.fileId);
        return { meta: d.meta, base64: d.bytes.toString('base64') };
      }
    }
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (req.method !== 'POST') throw new ParleyError('METHOD_NOT_ALLOWED');
      const given = req.headers[NODE_TOKEN_HEADER];
      if (o.token !== '' && !constantTimeEqual(typeof given === 'string' ? given : '', o.token)) throw new ParleyError('API_KEY_REQUIRED', 'Bad node token.');
      if (!o.accepting()) throw new ParleyError('UNAVAILABLE', 'This chat server node is shutting down.');
      const call = JSON.parse((await readBody(req, o.maxBodySize)).toString('utf8')) as NodeCall;
      sendJson(res, 200, { ok: await run(call) });
    } catch (e) {
      const err = toParleyError(e);
      sendJson(res, err.spec.http, { error: { code: err.code, message: err.message, ...(err.details === undefined ? {} : { details: err.details }) } });
    }
  };
}

/** A retry key as sent: both parts short strings of letters, digits and dashes, or absent. */
function retryKeyOf(v: unknown): RetryKey | undefined {
  if (v === undefined || v === null) return undefined;
  const k = v as Partial<Record<keyof RetryKey, unknown>>;
  const ok = (x: unknown): x is string => typeof x === 'string' && /^[0-9A-Za-z-]{1,64}$/.test(x);
  if (typeof v !== 'object' || !ok(k.chatId) || !ok(k.requestId)) throw new ParleyError('INVALID_PARAMETER', 'Bad retry key.');
  return { chatId: k.chatId, requestId: k.requestId };
}
