/**
 * Push subscription through Request Chat (or updateData) userData, as the seeds define it:
 * mandatory GCTI_Chat_PushSubscribe=true, GCTI_GMS_NodeGroup, GCTI_GMS_PushDeviceId,
 * GCTI_GMS_PushDeviceType=customhttp; optional GCTI_GMS_PushIncludePayload, GCTI_GMS_NotifyRequestor,
 * GCTI_GMS_PushProvider, GCTI_GMS_PushDebug, GCTI_GMS_PushResend. Pure.
 */
import { ParleyError } from '../errors.ts';

export const PUSH_KEYS = {
  subscribe: 'GCTI_Chat_PushSubscribe',
  nodeGroup: 'GCTI_GMS_NodeGroup',
  deviceId: 'GCTI_GMS_PushDeviceId',
  deviceType: 'GCTI_GMS_PushDeviceType',
  includePayload: 'GCTI_GMS_PushIncludePayload',
  notifyRequestor: 'GCTI_GMS_NotifyRequestor',
  provider: 'GCTI_GMS_PushProvider',
  debug: 'GCTI_GMS_PushDebug',
  resend: 'GCTI_GMS_PushResend',
} as const;

/** Device types GMS knows; Parley delivers customhttp. */
export const SUPPORTED_DEVICE_TYPES = ['customhttp'] as const;

export interface PushSubscription {
  readonly nodeGroup: string;
  readonly deviceId: string;
  readonly deviceType: 'customhttp';
  /** undefined = the gateway's push_notification_include_payload decides. */
  readonly includePayload?: boolean;
  readonly notifyRequestor: boolean;
  /** Named provider section of the gateway ([push.provider.<name>]); undefined = the default. */
  readonly provider?: string;
  readonly debug: boolean;
  readonly resend: boolean;
}

const MAX_ID = 256;

/** Genesys userData booleans: "true"/"false", also 1/0 and yes/no, any case. */
function flag(userData: Readonly<Record<string, string>>, key: string): boolean | undefined {
  const v = userData[key];
  if (v === undefined) return undefined;
  const t = v.trim().toLowerCase();
  if (t === 'true' || t === '1' || t === 'yes') return true;
  if (t === 'false' || t === '0' || t === 'no' || t === '') return false;
  throw new ParleyError('INVALID_PARAMETER', `userData[${key}] must be true or false.`);
}

function text(userData: Readonly<Record<string, string>>, key: string, required: boolean): string | undefined {
  const v = userData[key]?.trim();
  if (v === undefined || v === '') {
    if (required) throw new ParleyError('MISSING_PARAMETER', `userData[${key}] is required for push notifications.`);
    return undefined;
  }
  if (v.length > MAX_ID || /[\u0000-\u001f]/.test(v)) throw new ParleyError('INVALID_PARAMETER', `userData[${key}] is too long or has control characters.`);
  return v;
}

/**
 * The subscription the userData asks for, undefined when it asks for none, or a clear error when it asks
 * for one but leaves out a mandatory key or names an unknown device type.
 */
export function parseSubscription(userData: Readonly<Record<string, string>>): PushSubscription | undefined {
  if (flag(userData, PUSH_KEYS.subscribe) !== true) return undefined;
  const nodeGroup = text(userData, PUSH_KEYS.nodeGroup, true) as string;
  const deviceId = text(userData, PUSH_KEYS.deviceId, true) as string;
  const deviceType = (text(userData, PUSH_KEYS.deviceType, true) as string).toLowerCase();
  if (!(SUPPORTED_DEVICE_TYPES as readonly string[]).includes(deviceType)) {
    throw new ParleyError('INVALID_PARAMETER', `userData[${PUSH_KEYS.deviceType}]="${deviceType.slice(0, 40)}" is not supported; use customhttp.`);
  }
  const includePayload = flag(userData, PUSH_KEYS.includePayload);
  const provider = text(userData, PUSH_KEYS.provider, false);
  return {
    nodeGroup,
    deviceId,
    deviceType: 'customhttp',
    ...(includePayload === undefined ? {} : { includePayload }),
    notifyRequestor: flag(userData, PUSH_KEYS.notifyRequestor) ?? false,
    ...(provider === undefined ? {} : { provider }),
    debug: flag(userData, PUSH_KEYS.debug) ?? false,
    resend: flag(userData, PUSH_KEYS.resend) ?? false,
  };
}

/** True when the userData touches any push key (then it must form a valid subscription). */
export function mentionsPush(userData: Readonly<Record<string, string>>): boolean {
  return Object.values(PUSH_KEYS).some((k) => userData[k] !== undefined);
}
