/**
 * The JSON a customhttp POST carries (docs/push.md). GMS documents `{deviceId, message}`; with the payload
 * included it adds the chat events "the same as with CometD notifications", here a `data` object in the
 * Chat API v2 reply shape with the flex-push-content tokens. Pure.
 */
import type { Notification } from '../chat/notification.ts';
import type { ChatEvent } from '../chat/types.ts';

export interface PushBody {
  readonly deviceId: string;
  readonly message: string;
  /** `push-url` when the session asked for reliable delivery (GCTI_GMS_PushResend), else the event type. */
  readonly type: string;
  /** Stable across resends; the receiver ignores duplicates by it. */
  readonly notificationId: string;
  /** 1 for the first POST, then 2, 3, ... for resends and retries. */
  readonly attempt: number;
  readonly data?: PushData;
}

export interface PushData {
  readonly statusCode: 0;
  readonly chatEnded: boolean;
  readonly nextPosition: number;
  readonly messages: readonly ChatEvent[];
  readonly chatId?: string;
  readonly userId?: string;
  readonly secureKey?: string;
  readonly alias?: string;
}

export function pushType(n: Notification): string {
  if (n.subscription.resend) return 'push-url';
  return n.events[n.events.length - 1]?.type ?? 'Notice';
}

export function pushBody(n: Notification, message: string, includePayload: boolean): PushBody {
  const type = pushType(n);
  const attempt = n.attempts + 1;
  if (!includePayload) return { deviceId: n.subscription.deviceId, message, type, notificationId: n.id, attempt };
  // Written out, not `{ ...base, data }`: a spread followed by a new property gives every body a hidden class
  // of its own in Node 20's V8 (see buildNotification in chat/notification.ts).
  return {
    deviceId: n.subscription.deviceId,
    message,
    type,
    notificationId: n.id,
    attempt,
    data: { statusCode: 0, chatEnded: n.chatEnded, nextPosition: n.nextPosition, messages: n.events, ...n.tokens },
  };
}
