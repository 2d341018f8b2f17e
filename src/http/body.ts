/** Reads a request body into memory, refusing more than `limit` bytes. */
import type { IncomingMessage } from 'node:http';
import { ParleyError } from '../errors.ts';

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(new ParleyError('BODY_TOO_LARGE', `The body exceeds ${limit} bytes.`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new ParleyError('BODY_TOO_LARGE', `The body exceeds ${limit} bytes.`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    });
    req.on('error', (err) => {
      if (!failed) reject(new ParleyError('INVALID_PARAMETER', 'The request body could not be read.', { cause: err }));
    });
  });
}
