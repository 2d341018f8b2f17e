/** [client-file-transfer] limits: the checks before an upload or download, and the limits reply. Pure. */
import { ParleyError } from '../errors.ts';
import { activeAgents } from './session.ts';
import { CLIENT_PARTICIPANT_ID, type FileMeta, type Session } from './types.ts';

export interface FileLimits {
  readonly uploadMaxTotalSize: number;
  readonly uploadMaxFileSize: number;
  readonly uploadMaxFiles: number;
  /** Lower-case extensions without dot; empty = any type. */
  readonly uploadFileTypes: readonly string[];
  /** How many times the client may download one file; 0 = no limit. */
  readonly downloadAttempts: number;
  readonly uploadNeedAgent: boolean;
  /** Who may delete a file: the client its own uploads (`own`), any file (`any`), or nobody (`none`). */
  readonly deleteFile: 'own' | 'any' | 'none';
}

function clientUploads(s: Session): FileMeta[] {
  return s.files.filter((f) => f.uploadedBy === CLIENT_PARTICIPANT_ID);
}

export function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1).toLowerCase();
}

/** The client's usage of its allowance; uploads count even when deleted later (they were allowed). */
export function usage(s: Session): { files: number; totalSize: number; maxDownloads: number } {
  const mine = clientUploads(s);
  let maxDownloads = 0;
  for (const f of s.files) maxDownloads = Math.max(maxDownloads, f.downloads);
  return { files: mine.length, totalSize: mine.reduce((n, f) => n + f.size, 0), maxDownloads };
}

/** userData of the `file-client-cfg-get` Notice, with the same keys as a real GMS (wire facts §1.3). */
export function limitsUserData(limits: FileLimits, s: Session): Record<string, string> {
  const u = usage(s);
  return {
    'download-attempts': String(limits.downloadAttempts),
    'upload-max-files': String(limits.uploadMaxFiles),
    'delete-file': limits.deleteFile,
    'upload-max-file-size': String(limits.uploadMaxFileSize),
    'used-download-attempts': String(u.maxDownloads),
    'used-upload-max-total-size': String(u.totalSize),
    'upload-need-agent': String(limits.uploadNeedAgent),
    'used-upload-max-files': String(u.files),
    'upload-max-total-size': String(limits.uploadMaxTotalSize),
    'upload-file-types': limits.uploadFileTypes.join(':'),
  };
}

/** Checks what can be known before the bytes arrive: count, type, agent presence. */
/** Longest file name taken, in characters. */
export const MAX_FILE_NAME = 255;

export function checkUploadAllowed(limits: FileLimits, s: Session, fileName: string): void {
  // A file system's limit; a longer name would also make the download's content-disposition header huge.
  if ([...fileName].length > MAX_FILE_NAME) throw new ParleyError('INVALID_PARAMETER', `The file name is longer than ${MAX_FILE_NAME} characters.`);
  if (limits.uploadNeedAgent && activeAgents(s).length === 0) throw new ParleyError('FILE_UPLOAD_NOT_ALLOWED');
  const u = usage(s);
  if (u.files >= limits.uploadMaxFiles) {
    throw new ParleyError('FILE_LIMIT_REACHED', `At most ${limits.uploadMaxFiles} files may be uploaded per chat.`);
  }
  if (limits.uploadFileTypes.length > 0 && !limits.uploadFileTypes.includes(extensionOf(fileName))) {
    throw new ParleyError(
      'FILE_TYPE_FORBIDDEN',
      `File type "${extensionOf(fileName) || '(none)'}" is not allowed; allowed: ${limits.uploadFileTypes.join(', ')}.`,
    );
  }
}

/** Checks the size once the bytes are known. */
export function checkUploadSize(limits: FileLimits, s: Session, size: number): void {
  if (size > limits.uploadMaxFileSize) {
    throw new ParleyError('FILE_TOO_LARGE', `The file exceeds upload-max-file-size (${limits.uploadMaxFileSize} bytes).`);
  }
  if (usage(s).totalSize + size > limits.uploadMaxTotalSize) {
    throw new ParleyError('FILE_LIMIT_REACHED', `The files exceed upload-max-total-size (${limits.uploadMaxTotalSize} bytes).`);
  }
}

export function checkDownload(limits: FileLimits, f: FileMeta): void {
  if (limits.downloadAttempts > 0 && f.downloads >= limits.downloadAttempts) throw new ParleyError('DOWNLOAD_LIMIT_REACHED');
}

export function checkDelete(limits: FileLimits, f: FileMeta, participantId: number): void {
  if (limits.deleteFile === 'none' || (limits.deleteFile === 'own' && f.uploadedBy !== participantId)) {
    throw new ParleyError('ACCESS_DENIED', 'This participant may not delete this file (delete-file).');
  }
}
