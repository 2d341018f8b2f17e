/** The Chat API v2 reply: one shape for every operation, success or failure (wire facts §1.4). */
import type { ClientReply } from '../chat-server/client-ops.ts';
import type { ReplyMessage } from '../chat/types.ts';
import { type ParleyError, publicAdvice } from '../errors.ts';

export interface Envelope {
  readonly statusCode: 0 | 1 | 2;
  readonly alias?: string;
  readonly chatEnded: boolean;
  readonly chatId?: string;
  readonly messages: readonly ReplyMessage[];
  readonly nextPosition?: number;
  readonly userId?: string;
  readonly secureKey?: string;
  readonly userData?: Readonly<Record<string, string>>;
  readonly errors?: ReadonlyArray<{ readonly code: number; readonly advice: string }>;
}

export function okEnvelope(r: ClientReply): Envelope {
  const s = r.session;
  return {
    statusCode: 0,
    alias: s.alias,
    chatEnded: s.state === 'ended',
    chatId: s.chatId,
    messages: r.messages,
    nextPosition: r.nextPosition,
    userId: s.userId,
    secureKey: s.secureKey,
    ...(r.userData === undefined ? {} : { userData: r.userData }),
  };
}

/** An error reply. It echoes the chatId asked for but never tokens or transcript. */
export function errorEnvelope(err: ParleyError, ctx: { chatId?: string | undefined; alias?: string | undefined }): Envelope {
  return {
    statusCode: err.spec.statusCode,
    ...(ctx.alias === undefined ? {} : { alias: ctx.alias }),
    chatEnded: err.code === 'CHAT_ENDED',
    ...(ctx.chatId === undefined ? {} : { chatId: ctx.chatId }),
    messages: [],
    errors: [{ code: err.spec.wire, advice: publicAdvice(err) }],
  };
}
