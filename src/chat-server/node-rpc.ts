/**
 * The internal API of a chat server node for gateways: `POST /internal/chat` with a JSON call, answered
 * with `{ok: ...}` or `{error: {code, message, details}}`. A shared token (`[node] internal-token`) guards it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constantTimeEqual } from '../chat/secure-compare.ts';
import { isLoopback } from '../http/loopback.ts';
import { ParleyError, toParleyError } from '../errors.ts';
import { readBody } from '../http/body.ts';
import { sendJson } from '../http/respond.ts';
import type { ClientOps } from './client-ops.ts';
import { parseNodeCall, type NodeCall } from './node-call.ts';

export const NODE_RPC_PATH = '/internal/chat';
export const NODE_TOKEN_HEADER = 'x-parley-node-token';

export type { NodeCall } from './node-call.ts';

export function createNodeRpc(o: { client: ClientOps; token: string; maxBodySize: number; accepting: () => boolean }) {
  async function run(call: NodeCall): Promise<unknown> {
    switch (call.call) {
      case 'requestChat':
        return o.client.requestChat(call.serviceName, call.input, call.retryKey);
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
      // Without a token (docs: loopback only), only this machine may call.
      if (o.token === '' && !isLoopback(req.socket.remoteAddress)) throw new ParleyError('API_KEY_REQUIRED', 'Set [node] internal-token to call nodes from other machines.');
      if (!o.accepting()) throw new ParleyError('UNAVAILABLE', 'This chat server node is shutting down.');
      const call = parseNodeCall((await readBody(req, o.maxBodySize)).toString('utf8'));
      sendJson(res, 200, { ok: await run(call) });
    } catch (e) {
      const err = toParleyError(e);
      sendJson(res, err.spec.http, { error: { code: err.code, message: err.message, ...(err.details === undefined ? {} : { details: err.details }) } });
    }
  };
}

