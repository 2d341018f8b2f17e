/**
 * Sessions survive restarts: the same chatId/secureKey continue where they stopped, with the full
 * transcript. One test restarts in-process; the other kills the real `parley start` process with SIGKILL,
 * so every event that was acknowledged to a client must have been committed before its reply.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient, BASE_INI, ChatClient, startTestServer, type TestServer } from './helpers.ts';
import { startChild } from './receiver-helpers.ts';

describe('restart in process', () => {
  let srv: TestServer | undefined;
  afterEach(async () => {
    await srv?.close();
  });

  it('continues a chat with the same tokens, agent and transcript', async () => {
    srv = await startTestServer();
    const c = new ChatClient(srv.url);
    await c.start();
    const waiting = new ChatClient(srv.url);
    await waiting.start({ nickname: 'Still waiting' });
    const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
    await alice.login();
    await alice.accept(c.chatId);
    await c.op('send', { message: 'before restart' });
    await alice.send(c.chatId, 'agent before restart');

    await srv.restart();

    const after = new ChatClient(srv.url);
    Object.assign(after, { chatId: c.chatId, userId: c.userId, secureKey: c.secureKey, alias: c.alias });
    const r = await after.op('refresh');
    expect(r.body).toMatchObject({ statusCode: 0, chatEnded: false, nextPosition: 5, alias: '117' });
    expect(r.body.messages.map((m: { type: string }) => m.type)).toEqual(['ParticipantJoined', 'ParticipantJoined', 'Message', 'Message']);

    // Agent tokens do not survive a restart; the agent signs in again and is still in the chat.
    const again = new AgentClient(srv.url, 'alice', 'alice-secret');
    await again.login();
    const overview = (await again.overview()).body;
    expect(overview.mine.map((x: { chatId: string }) => x.chatId)).toEqual([c.chatId]);
    expect(overview.waiting.map((x: { chatId: string }) => x.chatId)).toContain(waiting.chatId);
    expect((await again.send(c.chatId, 'agent after restart')).status).toBe(200);

    const s = await after.op('send', { message: 'after restart', transcriptPosition: 5 });
    expect(s.body.messages.map((m: { index: number; text: string }) => `${m.index}:${m.text}`)).toEqual(['5:agent after restart', '6:after restart']);
  });
});

describe('restart of the real process after SIGKILL', () => {
  let dir = '';
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every acknowledged message', async () => {
    dir = mkdtempSync(join(tmpdir(), 'parley-kill-'));
    const ini = join(dir, 'parley.ini');
    writeFileSync(ini, BASE_INI.replace('[http]', `[store]\npath = ${join(dir, 'parley.db')}\n[http]`));

    const first = await startChild(ini);
    child = first.proc;
    const c = new ChatClient(first.url);
    await c.start();
    // Fire many sends at once so that several land in one group commit, then kill at once.
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => c.op('send', { message: `m${i}` })));
    expect(replies.every((r) => r.body.statusCode === 0)).toBe(true);
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));

    const second = await startChild(ini);
    child = second.proc;
    const after = new ChatClient(second.url);
    Object.assign(after, { chatId: c.chatId, userId: c.userId, secureKey: c.secureKey, alias: c.alias });
    const r = await after.op('refresh');
    const texts = r.body.messages.filter((m: { type: string }) => m.type === 'Message').map((m: { text: string }) => m.text);
    expect(texts.sort()).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`).sort());
    expect(r.body.messages.map((m: { index: number }) => m.index)).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
    const more = await after.op('send', { message: 'after the crash', transcriptPosition: 52 });
    expect(more.body.messages).toEqual([expect.objectContaining({ index: 52, text: 'after the crash' })]);
  });
});
