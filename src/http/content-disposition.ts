/** `content-disposition` for a download: RFC 6266 with an ASCII fallback and the UTF-8 name. */
export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${rfc8187(name)}`;
}

/**
 * The value of an RFC 8187 ext-value: only attr-char stays as it is. encodeURIComponent also leaves
 * ' ( ) * as they are, and an apostrophe there ends the charset and language parts.
 */
function rfc8187(s: string): string {
  return encodeURIComponent(s).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
