/** multipart/form-data with at most one file part, the file held in memory up to a size limit. */
import type { IncomingMessage } from 'node:http';
import busboy from 'busboy';
import { ParleyError } from '../errors.ts';
import { FormBuilder, MAX_FIELDS, type Form } from './form.ts';

export interface UploadedFile {
  readonly fileName: string;
  readonly contentType: string;
  readonly bytes: Buffer;
}

export interface MultipartLimits {
  readonly maxFieldLength: number;
  readonly maxFileSize: number;
  readonly maxBodySize: number;
}

export function parseMultipart(req: IncomingMessage, limits: MultipartLimits): Promise<{ form: Form; file?: UploadedFile }> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        // Browsers send UTF-8 file names; busboy would read them as latin1.
        defParamCharset: 'utf8',
        limits: {
          fieldSize: limits.maxFieldLength * 4 + 1,
          // One byte more than allowed, so that a file of exactly the limit is accepted and checkUploadSize decides.
          fileSize: limits.maxFileSize + 1,
          files: 1,
          fields: MAX_FIELDS,
          parts: MAX_FIELDS + 1,
        },
      });
    } catch (err) {
      reject(new ParleyError('INVALID_PARAMETER', 'The multipart body is malformed.', { cause: err }));
      return;
    }
    const form = new FormBuilder(limits.maxFieldLength);
    let file: UploadedFile | undefined;
    let failure: ParleyError | undefined;
    let received = 0;
    const fail = (e: ParleyError) => {
      if (failure === undefined) failure = e;
    };

    // busboy reports a part without a name as undefined, whatever its type says.
    bb.on('field', (rawName: string | undefined, value, info) => {
      const name = rawName ?? '';
      if (name === '') return fail(new ParleyError('INVALID_PARAMETER', 'A multipart part has no name.'));
      if (info.valueTruncated) return fail(new ParleyError('MESSAGE_TOO_LONG', `Field "${name.slice(0, 64)}" is too long.`));
      try {
        form.add(name, value);
      } catch (e) {
        fail(e as ParleyError);
      }
    });
    bb.on('file', (rawName: string | undefined, stream, info) => {
      const name = rawName ?? '';
      // A file stream that breaks (the body ends inside the part) must not become an uncaught error.
      stream.on('error', () => fail(new ParleyError('INVALID_PARAMETER', 'The multipart body ends inside the file part.')));
      if (name !== 'file') {
        stream.resume();
        return fail(new ParleyError('INVALID_PARAMETER', `Unexpected file part "${name.slice(0, 64)}"; the file part is named "file".`));
      }
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('limit', () => {
        chunks.length = 0;
        fail(new ParleyError('FILE_TOO_LARGE', `The file exceeds upload-max-file-size (${limits.maxFileSize} bytes).`));
      });
      stream.on('close', () => {
        if (failure === undefined) {
          file = { fileName: info.filename || 'file', contentType: info.mimeType || 'application/octet-stream', bytes: Buffer.concat(chunks) };
        }
      });
    });
    bb.on('filesLimit', () => fail(new ParleyError('INVALID_PARAMETER', 'Send one file per upload.')));
    bb.on('fieldsLimit', () => fail(new ParleyError('INVALID_PARAMETER', `A request carries at most ${MAX_FIELDS} fields (userData keys included).`)));
    bb.on('error', (err) => {
      req.unpipe(bb);
      req.resume();
      reject(failure ?? new ParleyError('INVALID_PARAMETER', 'The multipart body is malformed.', { cause: err }));
    });
    bb.on('close', () => {
      if (failure !== undefined) reject(failure);
      else resolve(file === undefined ? { form: form.build() } : { form: form.build(), file });
    });
    req.on('data', (c: Buffer) => {
      received += c.length;
      if (received > limits.maxBodySize && failure === undefined) {
        fail(new ParleyError('BODY_TOO_LARGE', `The body exceeds ${limits.maxBodySize} bytes.`));
        req.unpipe(bb);
        req.resume();
        reject(failure);
      }
    });
    req.pipe(bb);
  });
}
