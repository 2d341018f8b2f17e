import type { ServerResponse } from 'node:http';
import { contentDisposition } from './content-disposition.ts';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** A file download: the raw bytes, the stored content type, `attachment` with the UTF-8 name, never sniffed or cached. */
export function sendDownload(res: ServerResponse, file: { readonly name: string; readonly contentType: string }, bytes: Buffer): void {
  res.writeHead(200, {
    'content-type': file.contentType,
    'content-length': bytes.length,
    'content-disposition': contentDisposition(file.name),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(bytes);
}
