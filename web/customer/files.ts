/**
 * File transfer through the receiver: the limits (`GET /receiver/file-limits`), the checks the page can
 * make before sending any byte, the upload (`POST /receiver/file`) and the download
 * (`GET /receiver/file/{id}`). Errors are thrown as FileError with a message fit for the customer.
 */
import { formatSize } from './model.ts';

export interface FileLimits {
  readonly maxFileSize: number;
  readonly maxFiles: number;
  readonly usedFiles: number;
  readonly maxTotalSize: number;
  readonly usedTotalSize: number;
  /** Lower-case extensions without the dot; empty = any type. */
  readonly types: readonly string[];
  readonly needAgent: boolean;
}

export class FileError extends Error {
  constructor(
    message: string,
    /** The server's error code: a Parley code ("DOWNLOAD_LIMIT_REACHED") or a Chat API v2 number (114). */
    readonly code?: string | number,
  ) {
    super(message);
  }
}

function num(v: string | undefined, fallback: number): number {
  const n = Number(v);
  return v === undefined || v === '' || !Number.isFinite(n) ? fallback : n;
}

/** The limits from the Chat API v2 envelope of file/limits (its userData). */
export function parseLimits(userData: Readonly<Record<string, string>>): FileLimits {
  return {
    maxFileSize: num(userData['upload-max-file-size'], Infinity),
    maxFiles: num(userData['upload-max-files'], Infinity),
    usedFiles: num(userData['used-upload-max-files'], 0),
    maxTotalSize: num(userData['upload-max-total-size'], Infinity),
    usedTotalSize: num(userData['used-upload-max-total-size'], 0),
    types: (userData['upload-file-types'] ?? '')
      .split(':')
      .map((t) => t.trim().replace(/^\./, '').toLowerCase())
      .filter((t) => t !== ''),
    needAgent: userData['upload-need-agent'] === 'true',
  };
}

export function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot + 1).toLowerCase();
}

/** Why this file cannot be sent, or undefined when it can. */
export function refusal(l: FileLimits, file: { name: string; size: number }, agentPresent: boolean): string | undefined {
  const ext = extensionOf(file.name);
  if (l.types.length > 0 && !l.types.includes(ext)) {
    return `“${file.name}” can’t be sent: only ${l.types.map((t) => `.${t}`).join(', ')} files are allowed.`;
  }
  if (file.size === 0) return `“${file.name}” is empty.`;
  if (file.size > l.maxFileSize) {
    return `“${file.name}” is too large (${formatSize(file.size)}): files can be at most ${formatSize(l.maxFileSize)}.`;
  }
  if (l.usedFiles >= l.maxFiles) return `You have already sent ${l.maxFiles} ${l.maxFiles === 1 ? 'file' : 'files'}, the most allowed in one chat.`;
  if (l.usedTotalSize + file.size > l.maxTotalSize) {
    return `“${file.name}” can’t be sent: the files of this chat may add up to ${formatSize(l.maxTotalSize)} at most.`;
  }
  if (l.needAgent && !agentPresent) return 'You can send files once an agent has joined the chat.';
  return undefined;
}

/** The `accept` attribute for the file picker: ".txt,.png,.pdf" (empty = anything). */
export function acceptList(l: FileLimits): string {
  return l.types.map((t) => `.${t}`).join(',');
}

async function errorOf(res: Response, fallback: string, prefix = ''): Promise<FileError> {
  try {
    const body = (await res.json()) as {
      error?: { code?: unknown; message?: unknown };
      errors?: Array<{ code?: unknown; advice?: unknown }>;
    };
    const m = body.error?.message ?? body.errors?.[0]?.advice;
    const code = body.error?.code ?? body.errors?.[0]?.code;
    if (typeof m === 'string' && m !== '') return new FileError(prefix + m, typeof code === 'string' || typeof code === 'number' ? code : undefined);
  } catch {
    /* not JSON */
  }
  if (res.status === 413) return new FileError('The file is too large.');
  return new FileError(fallback);
}

export async function fetchLimits(token: string): Promise<FileLimits> {
  let res: Response;
  try {
    res = await fetch(`/receiver/file-limits?session=${encodeURIComponent(token)}`, { cache: 'no-store' });
  } catch {
    throw new FileError('The file limits could not be loaded: you seem to be offline.');
  }
  if (!res.ok) throw await errorOf(res, 'The file limits could not be loaded.');
  const body = (await res.json()) as { userData?: Record<string, string> };
  return parseLimits(body.userData ?? {});
}

export async function uploadFile(token: string, file: File): Promise<void> {
  const form = new FormData();
  form.append('file', file, file.name);
  let res: Response;
  try {
    res = await fetch('/receiver/file', { method: 'POST', headers: { 'x-parley-session': token }, body: form });
  } catch {
    throw new FileError(`“${file.name}” was not sent: you seem to be offline.`);
  }
  if (!res.ok) throw await errorOf(res, `“${file.name}” was not sent (error ${res.status}).`, `“${file.name}” was not sent: `);
}

/** Fetches the file and hands it to the browser's download (an error stays on the page, not in a file). */
export async function downloadFile(token: string, fileId: string, name: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`/receiver/file/${encodeURIComponent(fileId)}?session=${encodeURIComponent(token)}`, { cache: 'no-store' });
  } catch {
    throw new FileError(`“${name}” could not be downloaded: you seem to be offline.`);
  }
  if (!res.ok) {
    const err = await errorOf(res, `“${name}” could not be downloaded (error ${res.status}).`, `“${name}” could not be downloaded: `);
    if (err.code === 'DOWNLOAD_LIMIT_REACHED' || err.code === 114) {
      throw new FileError(`“${name}” has already been downloaded as many times as allowed.`, err.code);
    }
    if (err.code === 'UNKNOWN_FILE' || err.code === 113) throw new FileError(`“${name}” is no longer available.`, err.code);
    throw err;
  }
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
