/** The README's curl tour works as written: run it against a live server (its port swapped in). */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers.ts';

const run = promisify(execFile);
let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(async () => {
  await srv.close();
});

function tourScript(): string {
  const readme = readFileSync('README.md', 'utf8');
  const tour = readme.slice(readme.indexOf('## A tour with curl'));
  const m = /```sh\n([\s\S]*?)```/.exec(tour);
  if (m?.[1] === undefined) throw new Error('README has no tour block');
  return m[1];
}

it('runs the README tour without an error reply', async () => {
  const script = tourScript().replaceAll('http://127.0.0.1:8080', srv.url);
  const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', script], { timeout: 30_000 });
  const replies = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const chatReplies = replies.filter((r) => 'statusCode' in r);
  expect(chatReplies.length).toBe(6);
  expect(chatReplies.every((r) => r['statusCode'] === 0)).toBe(true);
  expect(replies.some((r) => 'error' in r)).toBe(false);
  const refresh = chatReplies[2] as { messages: Array<{ type: string; text?: string }> };
  expect(refresh.messages.map((m) => m.type)).toEqual(['ParticipantJoined', 'Message']);
  expect(refresh.messages[1]?.text).toBe('Hi Ann, how can I help?');
  expect(chatReplies[5]).toMatchObject({ chatEnded: true });
});
