import { describe, expect, it } from 'vitest';
import { ParleyError, type ErrorCode } from '../errors.ts';
import {
  checkDelete,
  checkDownload,
  checkUploadAllowed,
  checkUploadSize,
  extensionOf,
  limitsUserData,
  usage,
  type FileLimits,
} from './file-limits.ts';
import { addFile, agentJoin, agentLeave, deleteFile, openSession } from './session.ts';
import type { FileMeta, Session } from './types.ts';

const T0 = 1_700_000_000_000;

const LIMITS: FileLimits = {
  uploadMaxTotalSize: 100_000,
  uploadMaxFileSize: 40_000,
  uploadMaxFiles: 3,
  uploadFileTypes: ['txt', 'png', 'pdf'],
  downloadAttempts: 2,
  uploadNeedAgent: false,
  deleteFile: 'own',
};

function limits(over: Partial<FileLimits> = {}): FileLimits {
  return { ...LIMITS, ...over };
}

function fresh(): Session {
  return openSession(
    { chatId: 'c', serviceName: 'svc', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Jane' },
    T0,
  ).session;
}

function withAgent(): Session {
  return agentJoin(fresh(), { agentId: 'alice', nickname: 'Alice' }, T0 + 1).session;
}

let nextId = 0;
function file(over: Partial<FileMeta> = {}): FileMeta {
  nextId += 1;
  return {
    fileId: `f-${nextId}`,
    name: 'a.txt',
    contentType: 'text/plain',
    size: 100,
    uploadedBy: 1,
    uploadedAt: T0,
    downloads: 0,
    deleted: false,
    ...over,
  };
}

function withFiles(s: Session, files: FileMeta[]): Session {
  return files.reduce((cur, f) => addFile(cur, f, T0 + 2).session, s);
}

function codeOf(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ParleyError);
    return (err as ParleyError).code;
  }
  return undefined;
}

describe('extensionOf', () => {
  it.each([
    ['a.txt', 'txt'],
    ['A.TXT', 'txt'],
    ['archive.tar.gz', 'gz'],
    ['README', ''],
    ['trailing.', ''],
    ['.hidden', 'hidden'],
  ])('%j → %j', (name, ext) => {
    expect(extensionOf(name)).toBe(ext);
  });
});

describe('usage', () => {
  it('is zero for a chat without files', () => {
    expect(usage(fresh())).toEqual({ files: 0, totalSize: 0, maxDownloads: 0 });
  });

  it("counts only the client's uploads, deleted ones included", () => {
    let s = withFiles(withAgent(), [
      file({ fileId: 'c1', size: 100 }),
      file({ fileId: 'c2', size: 250 }),
      file({ fileId: 'a1', size: 9999, uploadedBy: 2 }),
    ]);
    s = deleteFile(s, 1, 'c1', T0 + 3).session;
    expect(usage(s)).toMatchObject({ files: 2, totalSize: 350 });
  });

  it('reports the highest download count of any file', () => {
    const s = withFiles(withAgent(), [
      file({ downloads: 1 }),
      file({ downloads: 3, uploadedBy: 2 }),
      file({ downloads: 2 }),
    ]);
    expect(usage(s).maxDownloads).toBe(3);
  });
});

describe('limitsUserData', () => {
  const KEYS = [
    'download-attempts',
    'upload-max-files',
    'delete-file',
    'upload-max-file-size',
    'used-download-attempts',
    'used-upload-max-total-size',
    'upload-need-agent',
    'used-upload-max-files',
    'upload-max-total-size',
    'upload-file-types',
  ];

  it('has exactly the 10 GMS keys, all with string values', () => {
    const u = limitsUserData(LIMITS, fresh());
    expect(Object.keys(u).sort()).toEqual([...KEYS].sort());
    expect(Object.keys(u)).toHaveLength(10);
    for (const v of Object.values(u)) expect(typeof v).toBe('string');
  });

  it('reports the limits and the usage', () => {
    const s = withFiles(fresh(), [file({ size: 300, downloads: 1 }), file({ size: 200 })]);
    expect(limitsUserData(LIMITS, s)).toEqual({
      'download-attempts': '2',
      'upload-max-files': '3',
      'delete-file': 'own',
      'upload-max-file-size': '40000',
      'used-download-attempts': '1',
      'used-upload-max-total-size': '500',
      'upload-need-agent': 'false',
      'used-upload-max-files': '2',
      'upload-max-total-size': '100000',
      'upload-file-types': 'txt:png:pdf',
    });
  });

  it("joins the types with ':' and gives '' for any type", () => {
    expect(limitsUserData(limits({ uploadFileTypes: ['jpg'] }), fresh())['upload-file-types']).toBe('jpg');
    expect(limitsUserData(limits({ uploadFileTypes: [] }), fresh())['upload-file-types']).toBe('');
  });

  it("writes upload-need-agent as 'true'/'false' and delete-file as given", () => {
    const u = limitsUserData(limits({ uploadNeedAgent: true, deleteFile: 'none' }), fresh());
    expect(u['upload-need-agent']).toBe('true');
    expect(u['delete-file']).toBe('none');
  });
});

describe('checkUploadAllowed', () => {
  it('takes a name of 255 characters (counted as characters, not UTF-16 units) and refuses a longer one with INVALID_PARAMETER', () => {
    const s = fresh();
    expect(() => checkUploadAllowed(LIMITS, s, `${'😀'.repeat(251)}.txt`)).not.toThrow();
    expect(codeOf(() => checkUploadAllowed(LIMITS, s, `${'a'.repeat(252)}.txt`))).toBe('INVALID_PARAMETER');
  });

  it('allows an upload under the count limit', () => {
    const s = withFiles(fresh(), [file(), file()]);
    expect(() => checkUploadAllowed(LIMITS, s, 'c.txt')).not.toThrow();
  });

  it('refuses with FILE_LIMIT_REACHED once upload-max-files are uploaded', () => {
    const s = withFiles(fresh(), [file(), file(), file()]);
    expect(codeOf(() => checkUploadAllowed(LIMITS, s, 'd.txt'))).toBe('FILE_LIMIT_REACHED');
  });

  it('counts deleted uploads against the limit', () => {
    let s = withFiles(fresh(), [file({ fileId: 'x1' }), file({ fileId: 'x2' }), file({ fileId: 'x3' })]);
    s = deleteFile(s, 1, 'x1', T0 + 3).session;
    expect(codeOf(() => checkUploadAllowed(LIMITS, s, 'd.txt'))).toBe('FILE_LIMIT_REACHED');
  });

  it("does not count the agent's uploads", () => {
    const s = withFiles(withAgent(), [file(), file(), file({ uploadedBy: 2 }), file({ uploadedBy: 2 })]);
    expect(() => checkUploadAllowed(LIMITS, s, 'd.txt')).not.toThrow();
  });

  it('checks the type by extension, case-insensitively', () => {
    const s = fresh();
    for (const name of ['a.txt', 'B.PNG', 'scan.Pdf', 'x.y.pdf']) {
      expect(codeOf(() => checkUploadAllowed(LIMITS, s, name))).toBeUndefined();
    }
    for (const name of ['a.exe', 'pdf', 'a.pdf.exe', 'a.txtx']) {
      expect(codeOf(() => checkUploadAllowed(LIMITS, s, name))).toBe('FILE_TYPE_FORBIDDEN');
    }
  });

  it('refuses a name without extension when types are restricted', () => {
    expect(codeOf(() => checkUploadAllowed(LIMITS, fresh(), 'README'))).toBe('FILE_TYPE_FORBIDDEN');
    expect(codeOf(() => checkUploadAllowed(LIMITS, fresh(), 'trailing.'))).toBe('FILE_TYPE_FORBIDDEN');
  });

  it('allows any type, even no extension, when the type list is empty', () => {
    const any = limits({ uploadFileTypes: [] });
    for (const name of ['a.exe', 'README', 'x.ANYTHING']) {
      expect(codeOf(() => checkUploadAllowed(any, fresh(), name))).toBeUndefined();
    }
  });

  it('with upload-need-agent refuses without an agent (FILE_UPLOAD_NOT_ALLOWED) and allows with one', () => {
    const need = limits({ uploadNeedAgent: true });
    expect(codeOf(() => checkUploadAllowed(need, fresh(), 'a.txt'))).toBe('FILE_UPLOAD_NOT_ALLOWED');
    expect(codeOf(() => checkUploadAllowed(need, withAgent(), 'a.txt'))).toBeUndefined();
  });

  it('with upload-need-agent refuses again once the agent left', () => {
    const s = agentLeave(withAgent(), 'alice', T0 + 5).session;
    expect(codeOf(() => checkUploadAllowed(limits({ uploadNeedAgent: true }), s, 'a.txt'))).toBe('FILE_UPLOAD_NOT_ALLOWED');
  });

  it('without upload-need-agent allows an upload with no agent', () => {
    expect(codeOf(() => checkUploadAllowed(LIMITS, fresh(), 'a.txt'))).toBeUndefined();
  });
});

describe('checkUploadSize', () => {
  it('allows a file of exactly upload-max-file-size', () => {
    expect(() => checkUploadSize(LIMITS, fresh(), 40_000)).not.toThrow();
  });

  it('refuses a file one byte over upload-max-file-size with FILE_TOO_LARGE', () => {
    expect(codeOf(() => checkUploadSize(LIMITS, fresh(), 40_001))).toBe('FILE_TOO_LARGE');
  });

  it('allows an empty file', () => {
    expect(() => checkUploadSize(LIMITS, fresh(), 0)).not.toThrow();
  });

  it('allows reaching upload-max-total-size exactly', () => {
    const s = withFiles(fresh(), [file({ size: 40_000 }), file({ size: 30_000 })]);
    expect(() => checkUploadSize(LIMITS, s, 30_000)).not.toThrow();
  });

  it('refuses going one byte over upload-max-total-size with FILE_LIMIT_REACHED', () => {
    const s = withFiles(fresh(), [file({ size: 40_000 }), file({ size: 30_000 })]);
    expect(codeOf(() => checkUploadSize(LIMITS, s, 30_001))).toBe('FILE_LIMIT_REACHED');
  });

  it("does not count the agent's uploads in the total", () => {
    const s = withFiles(withAgent(), [file({ size: 40_000, uploadedBy: 2 }), file({ size: 40_000, uploadedBy: 2 })]);
    expect(() => checkUploadSize(LIMITS, s, 40_000)).not.toThrow();
  });
});

describe('checkDownload', () => {
  it('allows downloads below download-attempts and refuses at the limit', () => {
    expect(() => checkDownload(LIMITS, file({ downloads: 0 }))).not.toThrow();
    expect(() => checkDownload(LIMITS, file({ downloads: 1 }))).not.toThrow();
    expect(codeOf(() => checkDownload(LIMITS, file({ downloads: 2 })))).toBe('DOWNLOAD_LIMIT_REACHED');
    expect(codeOf(() => checkDownload(LIMITS, file({ downloads: 7 })))).toBe('DOWNLOAD_LIMIT_REACHED');
  });

  it('never refuses when download-attempts is 0 (unlimited)', () => {
    const unlimited = limits({ downloadAttempts: 0 });
    for (const downloads of [0, 1, 1000, 1_000_000]) {
      expect(() => checkDownload(unlimited, file({ downloads }))).not.toThrow();
    }
  });
});

describe('checkDelete', () => {
  const mine = file({ uploadedBy: 1 });
  const agents = file({ uploadedBy: 2 });

  it("'own' lets a participant delete its own upload only", () => {
    const own = limits({ deleteFile: 'own' });
    expect(() => checkDelete(own, mine, 1)).not.toThrow();
    expect(codeOf(() => checkDelete(own, agents, 1))).toBe('ACCESS_DENIED');
    expect(() => checkDelete(own, agents, 2)).not.toThrow();
    expect(codeOf(() => checkDelete(own, mine, 2))).toBe('ACCESS_DENIED');
  });

  it("'any' lets anyone delete any file", () => {
    const any = limits({ deleteFile: 'any' });
    expect(() => checkDelete(any, mine, 1)).not.toThrow();
    expect(() => checkDelete(any, agents, 1)).not.toThrow();
  });

  it("'none' lets nobody delete, not even the uploader", () => {
    const none = limits({ deleteFile: 'none' });
    expect(codeOf(() => checkDelete(none, mine, 1))).toBe('ACCESS_DENIED');
    expect(codeOf(() => checkDelete(none, agents, 2))).toBe('ACCESS_DENIED');
  });
});
