/** Reads a Chat API v2 request body in any accepted encoding. */
import type { IncomingMessage } from 'node:http';
import { ParleyError } from '../errors.ts';
import { readBody } from '../http/body.ts';
import { EMPTY_FORM, parseJson, parseUrlEncoded, type Form } from '../http/form.ts';
import { parseMultipart, type UploadedFile } from '../http/multipart.ts';

export interface FormLimits {
  readonly maxBodySize: number;
  readonly maxFieldLength: number;
  readonly maxFileSize: number;
}

/**
 * Accepts form-urlencoded and multipart/form-data (the documented encodings), and, to be liberal, JSON,
 * text/plain (what a browser `fetch` with a string body sends) and no content type at all.
 */
export async function readForm(req: IncomingMessage, limits: FormLimits): Promise<{ form: Form; file?: UploadedFile }> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === 'multipart/form-data') {
    return parseMultipart(req, limits);
  }
  if (type === '' || type === 'application/x-www-form-urlencoded' || type === 'text/plain') {
    const body = await readBody(req, limits.maxBodySize);
    return { form: body.length === 0 ? EMPTY_FORM : parseUrlEncoded(body, limits.maxFieldLength) };
  }
  if (type === 'application/json') {
    return { form: parseJson(await readBody(req, limits.maxBodySize), limits.maxFieldLength) };
  }
  req.resume();
  throw new ParleyError('UNSUPPORTED_MEDIA_TYPE', `Content type "${type.slice(0, 100)}" is not supported; send application/x-www-form-urlencoded or multipart/form-data.`);
}
