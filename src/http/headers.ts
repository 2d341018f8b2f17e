/** Header values of any header bag (node's IncomingHttpHeaders, undici's, a plain object). Pure. */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Case-insensitive lookup; an array value gives its first element. */
export function headerValue(headers: HeaderBag | undefined, name: string): string | undefined {
  if (headers === undefined) return undefined;
  const lower = name.toLowerCase();
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() !== lower) continue;
    const v = headers[key];
    const first = typeof v === 'string' ? v : v?.[0];
    if (first !== undefined) return first;
  }
  return undefined;
}
