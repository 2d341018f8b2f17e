import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyError } from '../errors.ts';
import { parseMultipart } from './multipart.ts';

/** A server that parses each request with parseMultipart and answers the form (or the error code) as JSON. */
let server: Server;
let url: string;
beforeAll(async () => {
  server = createServer((req, res) => {
    parseMultipart(req, { maxFieldLength: 1000, maxFileSize: 1000, maxBodySize: 10_000_000 }).then(
      ({ form, file }) => res.end(JSON.stringify({ fields: Object.fromEntries(form.fields), userData: form.userData, file: file?.fileName })),
      (err: unknown) => res.end(JSON.stringify({ error: err instanceof ParleyError ? err.code : String(err) })),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

async function post(fd: FormData): Promise<{ fields?: Record<string, string>; userData?: Record<string, string>; error?: string }> {
  return (await (await fetch(url, { method: 'POST', body: fd })).json()) as never;
}

describe('parseMultipart', () => {
  it('keeps a part name of any length up to the userData key limit (256 characters, UTF-8), not cut at 100 bytes', async () => {
    const key = 'ключ-'.repeat(51).slice(0, 256);
    const fd = new FormData();
    fd.set(`userData[${key}]`, 'v');
    fd.set(`a-plain-field-name-${'x'.repeat(150)}`, 'w');
    const r = await post(fd);
    expect(r.userData).toEqual({ [key]: 'v' });
    expect(r.fields?.[`a-plain-field-name-${'x'.repeat(150)}`]).toBe('w');
  });

  it('takes 1000 fields, userData keys included, and refuses 1001 with INVALID_PARAMETER', async () => {
    const fd = new FormData();
    for (let i = 0; i < 500; i++) fd.append(`f${i}`, 'x');
    for (let i = 0; i < 500; i++) fd.append(`userData[k${i}]`, 'x');
    const ok = await post(fd);
    expect(Object.keys(ok.userData ?? {})).toHaveLength(500);
    fd.append('one', 'more');
    expect(await post(fd)).toEqual({ error: 'INVALID_PARAMETER' });
  });
});
