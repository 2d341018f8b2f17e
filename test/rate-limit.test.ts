/** Rate limits of the Chat API over real HTTP, on a manual clock. */
import { afterEach, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.ts';
import { ChatClient, postForm, SERVICE, startTestServer, type TestServer } from './helpers.ts';

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

it('limits requests per chat session with 429, statusCode 1, until tokens come back', async () => {
  const clock = new ManualClock(Date.now());
  srv = await startTestServer('', { PARLEY_HTTP_RATE_LIMIT_PER_SESSION: '2' }, { clock, autoPush: false });
  const c = new ChatClient(srv.url);
  await c.start();
  const codes: number[] = [];
  for (let i = 0; i < 5; i++) codes.push((await c.op('refresh')).status);
  expect(codes).toEqual([200, 200, 200, 200, 429]);
  const limited = await c.op('refresh');
  expect(limited.body).toMatchObject({ statusCode: 1, errors: [{ code: 123 }] });
  // When to come back: a bucket refills within a second.
  expect(limited.headers.get('retry-after')).toBe('1');
  expect(limited.body.messages).toEqual([]);
  clock.advance(500);
  expect((await c.op('refresh')).status).toBe(200);
  // Another session is not affected.
  const other = new ChatClient(srv.url);
  await other.start();
  expect((await other.op('refresh')).status).toBe(200);
});

it('a caller who knows only the chatId cannot use up the session bucket of its customer', async () => {
  const clock = new ManualClock(Date.now());
  srv = await startTestServer('', { PARLEY_HTTP_RATE_LIMIT_PER_SESSION: '2' }, { clock, autoPush: false });
  const c = new ChatClient(srv.url);
  await c.start();
  const url = `${srv.url}/genesys/2/chat/${SERVICE}/${c.chatId}/refresh`;
  const wrong: number[] = [];
  for (let i = 0; i < 6; i++) wrong.push((await postForm(url, { secureKey: 'not-the-key', userId: c.userId, alias: c.alias })).status);
  // Refused for the key (403), then limited in a bucket of their own (429): never the customer's.
  expect(wrong).toEqual([403, 403, 403, 403, 429, 429]);
  expect((await c.op('refresh')).status).toBe(200);
});

it('limits requests per client address unless the address is exempt', async () => {
  const clock = new ManualClock(Date.now());
  srv = await startTestServer('', { PARLEY_HTTP_RATE_LIMIT_PER_CLIENT: '3' }, { clock, autoPush: false });
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push((await new ChatClient(srv.url).start()).status);
  expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
  await srv.close();
  srv = await startTestServer('', { PARLEY_HTTP_RATE_LIMIT_PER_CLIENT: '3', PARLEY_HTTP_RATE_LIMIT_EXEMPT: '127.0.0.1' }, { clock, autoPush: false });
  for (let i = 0; i < 8; i++) expect((await new ChatClient(srv.url).start()).status).toBe(200);
});
