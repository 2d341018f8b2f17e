/**
 * The one error type of Parley, with a closed set of codes.
 *
 * Every code has an HTTP status, a Chat API v2 numeric `errors[].code`, the API `statusCode`
 * (1 = retry may succeed, 2 = it will not) and a default advice text. `docs/errors.md` lists them all;
 * `errors.test.ts` keeps that document in step with this table.
 */
export type ErrorCode =
  | 'MISSING_PARAMETER'
  | 'INVALID_PARAMETER'
  | 'UNKNOWN_SERVICE'
  | 'UNKNOWN_CHAT'
  | 'ACCESS_DENIED'
  | 'CHAT_ENDED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'BODY_TOO_LARGE'
  | 'MESSAGE_TOO_LONG'
  | 'FILE_TOO_LARGE'
  | 'FILE_TYPE_FORBIDDEN'
  | 'FILE_LIMIT_REACHED'
  | 'UNKNOWN_FILE'
  | 'DOWNLOAD_LIMIT_REACHED'
  | 'FILE_UPLOAD_NOT_ALLOWED'
  | 'API_KEY_REQUIRED'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'AGENT_AUTH_FAILED'
  | 'AGENT_NOT_IN_CHAT'
  | 'AGENT_CAPACITY'
  | 'AGENT_UNAVAILABLE'
  | 'CHAT_ALREADY_TAKEN'
  | 'PUSH_TARGET_FORBIDDEN'
  | 'SIGNATURE_INVALID'
  | 'NOT_OWNER'
  | 'RATE_LIMITED'
  | 'UNAVAILABLE'
  | 'CONFIG_INVALID'
  | 'INTERNAL';

export interface ErrorSpec {
  /** HTTP status of the reply. */
  readonly http: number;
  /** Numeric code in Chat API v2 `errors[].code`. */
  readonly wire: number;
  /** Chat API v2 `statusCode`: 1 = the client may retry, 2 = retrying will not help. */
  readonly statusCode: 1 | 2;
  /** Default advice; a thrower may give a more precise one. */
  readonly advice: string;
}

export const ERRORS: Readonly<Record<ErrorCode, ErrorSpec>> = {
  MISSING_PARAMETER: { http: 400, wire: 101, statusCode: 2, advice: 'A required parameter is missing.' },
  INVALID_PARAMETER: { http: 400, wire: 102, statusCode: 2, advice: 'A parameter has an invalid value.' },
  UNKNOWN_SERVICE: { http: 404, wire: 103, statusCode: 2, advice: 'No chat service of this name is configured.' },
  UNKNOWN_CHAT: { http: 404, wire: 104, statusCode: 2, advice: 'No chat session with this chatId exists.' },
  ACCESS_DENIED: { http: 403, wire: 105, statusCode: 2, advice: 'The secureKey or userId does not match this chat session.' },
  CHAT_ENDED: { http: 400, wire: 106, statusCode: 2, advice: 'The chat session has ended.' },
  UNSUPPORTED_MEDIA_TYPE: { http: 415, wire: 107, statusCode: 2, advice: 'Send application/x-www-form-urlencoded or multipart/form-data.' },
  BODY_TOO_LARGE: { http: 413, wire: 108, statusCode: 2, advice: 'The request body is larger than the server accepts.' },
  MESSAGE_TOO_LONG: { http: 413, wire: 109, statusCode: 2, advice: 'A field is longer than the server accepts.' },
  FILE_TOO_LARGE: { http: 413, wire: 110, statusCode: 2, advice: 'The file is larger than upload-max-file-size.' },
  FILE_TYPE_FORBIDDEN: { http: 415, wire: 111, statusCode: 2, advice: 'This file type is not in upload-file-types.' },
  FILE_LIMIT_REACHED: { http: 400, wire: 112, statusCode: 2, advice: 'The session reached upload-max-files or upload-max-total-size.' },
  UNKNOWN_FILE: { http: 404, wire: 113, statusCode: 2, advice: 'No file with this fileId exists in this chat session.' },
  DOWNLOAD_LIMIT_REACHED: { http: 400, wire: 114, statusCode: 2, advice: 'The file was downloaded download-attempts times already.' },
  FILE_UPLOAD_NOT_ALLOWED: { http: 400, wire: 115, statusCode: 1, advice: 'Uploads need an agent in the chat (upload-need-agent).' },
  API_KEY_REQUIRED: { http: 401, wire: 116, statusCode: 2, advice: 'A valid apikey or x-api-key header is required.' },
  NOT_FOUND: { http: 404, wire: 117, statusCode: 2, advice: 'No such resource.' },
  METHOD_NOT_ALLOWED: { http: 405, wire: 118, statusCode: 2, advice: 'Chat API v2 operations use POST.' },
  AGENT_AUTH_FAILED: { http: 401, wire: 119, statusCode: 2, advice: 'Unknown agent, wrong password, or expired token.' },
  AGENT_NOT_IN_CHAT: { http: 403, wire: 120, statusCode: 2, advice: 'The agent is not a participant of this chat.' },
  AGENT_CAPACITY: { http: 409, wire: 121, statusCode: 1, advice: 'The agent handles max-chats chats already.' },
  AGENT_UNAVAILABLE: { http: 409, wire: 129, statusCode: 1, advice: 'The agent is not online; transfer to another agent or to the queue.' },
  CHAT_ALREADY_TAKEN: { http: 409, wire: 122, statusCode: 2, advice: 'Another agent accepted this chat first.' },
  PUSH_TARGET_FORBIDDEN: { http: 400, wire: 126, statusCode: 2, advice: 'The push target is not an allowed http(s) address ([push] allowed-networks).' },
  SIGNATURE_INVALID: { http: 401, wire: 127, statusCode: 2, advice: 'The webhook signature is missing, malformed, stale or wrong.' },
  NOT_OWNER: { http: 409, wire: 128, statusCode: 1, advice: 'Another chat server node owns this session now; retry.' },
  RATE_LIMITED: { http: 429, wire: 123, statusCode: 1, advice: 'Too many requests; retry later.' },
  UNAVAILABLE: { http: 503, wire: 124, statusCode: 1, advice: 'The service is temporarily unavailable; retry later.' },
  CONFIG_INVALID: { http: 500, wire: 125, statusCode: 2, advice: 'The configuration is invalid.' },
  INTERNAL: { http: 500, wire: 249, statusCode: 2, advice: 'Media server was not able to execute request.' },
};

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

export class ParleyError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ERRORS[code].advice, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ParleyError';
    this.code = code;
    this.details = options?.details;
  }

  get spec(): ErrorSpec {
    return ERRORS[this.code];
  }
}

/** Wraps anything that is not a ParleyError as INTERNAL, keeping the cause. */
export function toParleyError(err: unknown): ParleyError {
  if (err instanceof ParleyError) return err;
  return new ParleyError('INTERNAL', undefined, { cause: err });
}

/** The advice shown to a client: an INTERNAL error's message may hold internals, so it gets the generic advice. */
export function publicAdvice(err: ParleyError): string {
  return err.spec.http >= 500 && err.code === 'INTERNAL' ? err.spec.advice : err.message;
}
