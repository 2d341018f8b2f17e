/**
 * A call of the internal node API as received: JSON from a gateway, maybe of another version (a rolling
 * upgrade) or broken. `parseNodeCall` checks every field the node reads and keeps only those, or refuses
 * the call with INVALID_PARAMETER naming the first bad field, so that no malformed call reaches the chat
 * code (where it would fail as an internal error, or set what a customer may not set, such as `push`).
 * Pure.
 */
import type { Position } from '../chat/transcript.ts';
import { ParleyError } from '../errors.ts';
import type { ClientIdentity, ClientOperation, RequestChatInput, RetryKey } from './client-ops.ts';

export interface UploadCallFile {
  readonly fileName: string;
  readonly contentType: string;
  readonly base64: string;
  readonly description?: string;
}

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
      readonly file: UploadCallFile;
      readonly position: Position;
    }
  | { readonly call: 'download'; readonly chatId: string; readonly serviceName: string; readonly identity: ClientIdentity; readonly fileId: string };

type Obj = Readonly<Record<string, unknown>>;

function bad(field: string, why = 'is missing or malformed'): ParleyError {
  return new ParleyError('INVALID_PARAMETER', `Bad internal call: ${field} ${why}.`);
}

function obj(v: unknown, field: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(field, 'must be an object');
  return v as Obj;
}

function str(o: Obj, key: string, field = key): string {
  const v = Object.hasOwn(o, key) ? o[key] : undefined;
  if (typeof v !== 'string') throw bad(field, 'must be a string');
  return v;
}

/** An optional string: absent, null or a string. */
function optStr(o: Obj, key: string, field = key): string | undefined {
  const v = Object.hasOwn(o, key) ? o[key] : undefined;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(field, 'must be a string');
  return v;
}

function stringMap(v: unknown, field: string): Readonly<Record<string, string>> {
  const o = obj(v, field);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(o)) {
    if (typeof x !== 'string') throw bad(`${field}.${k.slice(0, 64)}`, 'must be a string');
    out[k] = x;
  }
  return out;
}

/** Only what sets `a` keys that are present (exactOptionalPropertyTypes: no `key: undefined`). */
function defined<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

function position(v: unknown): Position {
  if (v === 'all' || v === 'none') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw bad('position', 'must be "all", "none" or a whole number from 0');
}

function identity(v: unknown): ClientIdentity {
  const o = obj(v, 'identity');
  return defined({
    secureKey: optStr(o, 'secureKey', 'identity.secureKey'),
    userId: optStr(o, 'userId', 'identity.userId'),
    alias: optStr(o, 'alias', 'identity.alias'),
    requestId: optStr(o, 'requestId', 'identity.requestId'),
  });
}

function requestChatInput(v: unknown): RequestChatInput {
  const o = obj(v, 'input');
  const userData = Object.hasOwn(o, 'userData') && o['userData'] !== undefined && o['userData'] !== null ? stringMap(o['userData'], 'input.userData') : undefined;
  return defined({
    nickname: optStr(o, 'nickname', 'input.nickname'),
    firstName: optStr(o, 'firstName', 'input.firstName'),
    lastName: optStr(o, 'lastName', 'input.lastName'),
    subject: optStr(o, 'subject', 'input.subject'),
    emailAddress: optStr(o, 'emailAddress', 'input.emailAddress'),
    text: optStr(o, 'text', 'input.text'),
    userData,
  });
}

const KEY = /^[0-9A-Za-z-]{1,64}$/;

function retryKey(v: unknown): RetryKey | undefined {
  if (v === undefined || v === null) return undefined;
  const o = obj(v, 'retryKey');
  const chatId = str(o, 'chatId', 'retryKey.chatId');
  const requestId = str(o, 'requestId', 'retryKey.requestId');
  if (!KEY.test(chatId) || !KEY.test(requestId)) throw bad('retryKey', 'must be 1-64 letters, digits or dashes');
  return { chatId, requestId };
}

function operation(v: unknown): ClientOperation {
  const o = obj(v, 'op');
  const kind = str(o, 'op', 'op.op');
  const f = (key: string) => str(o, key, `op.${key}`);
  const of = (key: string) => optStr(o, key, `op.${key}`);
  switch (kind) {
    case 'send':
      return { op: 'send', message: f('message'), messageType: of('messageType') };
    case 'refresh':
    case 'disconnect':
    case 'fileLimits':
      return { op: kind };
    case 'startTyping':
    case 'stopTyping':
      return { op: kind, message: of('message') };
    case 'pushUrl':
      return { op: 'pushUrl', pushUrl: f('pushUrl') };
    case 'updateNickname':
      return { op: 'updateNickname', nickname: f('nickname') };
    case 'updateData':
      return { op: 'updateData', userData: stringMap(o['userData'], 'op.userData') };
    case 'customNotice':
      return { op: 'customNotice', message: f('message'), messageType: of('messageType') };
    case 'readReceipt': {
      const p = o['position'];
      if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < 0) throw bad('op.position', 'must be a whole number from 0');
      return { op: 'readReceipt', position: p };
    }
    case 'fileDelete':
      return { op: 'fileDelete', fileId: f('fileId') };
    default:
      throw bad('op.op', 'names no operation');
  }
}

function uploadFile(v: unknown): UploadCallFile {
  const o = obj(v, 'file');
  return defined({
    fileName: str(o, 'fileName', 'file.fileName'),
    contentType: str(o, 'contentType', 'file.contentType'),
    base64: str(o, 'base64', 'file.base64'),
    description: optStr(o, 'description', 'file.description'),
  });
}

/** The call in a request body (its text), checked; throws INVALID_PARAMETER. */
export function parseNodeCall(text: string): NodeCall {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ParleyError('INVALID_PARAMETER', 'Bad internal call: the body is not JSON.');
  }
  const o = obj(v, 'the call');
  const kind = Object.hasOwn(o, 'call') ? o['call'] : undefined;
  switch (kind) {
    case 'requestChat': {
      const key = retryKey(o['retryKey']);
      return { call: 'requestChat', serviceName: str(o, 'serviceName'), input: requestChatInput(o['input']), ...(key === undefined ? {} : { retryKey: key }) };
    }
    case 'perform':
      return { call: 'perform', chatId: str(o, 'chatId'), serviceName: str(o, 'serviceName'), identity: identity(o['identity']), op: operation(o['op']), position: position(o['position']) };
    case 'upload':
      return { call: 'upload', chatId: str(o, 'chatId'), serviceName: str(o, 'serviceName'), identity: identity(o['identity']), file: uploadFile(o['file']), position: position(o['position']) };
    case 'download':
      return { call: 'download', chatId: str(o, 'chatId'), serviceName: str(o, 'serviceName'), identity: identity(o['identity']), fileId: str(o, 'fileId') };
    default:
      throw bad('call', 'names no call (requestChat, perform, upload, download)');
  }
}
