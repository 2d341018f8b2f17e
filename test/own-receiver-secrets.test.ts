/**
 * `parley start` signing the pushes to its own
 * receiver (src/roles/start.ts signOwnPushes). Real process-in-process server on port 0.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ParleyError } from '../src/errors.ts';
import { AgentClient, getHealth, startTestServer, type TestServer } from './helpers.ts';
import { Browser } from './receiver-helpers.ts';

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

const OWN_RECEIVER_INI =
  '[settings]\nflex-push-on-join = true\nflex-push-content = session-id, user-id, secure-key, app-dbid\n' +
  '[chat]\nenable_notification_mode = true\n[push]\npushEnabled = customhttp\ncustomhttp.url =\nallowed-networks = loopback\n';

describe('parley start: pushes to its own receiver with a secret set on each side', () => {
  // Regression test (this was a bug, now fixed). Was: src/roles/start.ts:39 returns the config unchanged when [push] signing-secret and [receiver]
  // signing-secret are BOTH set, even when they differ; with customhttp.url empty (pushes to this very
  // receiver) every push is then signed with one secret and verified with the other, refused 401, and no
  // browser ever gets a chat event, while the server starts without a word. docs/receiver.md: "in parley
  // start with [push] customhttp.url empty ... they are always signed: a secret set on one side is used on
  // both"; test/push-signing-secret.test.ts treats "a running server that silently fails every push" as a
  // bug. Right: refuse the two different secrets at start (CONFIG_INVALID naming them), or use one on both.
  it('two different secrets: refused at start, or the browser still gets the pushes', async () => {
    try {
      srv = await startTestServer(OWN_RECEIVER_INI, {
        PARLEY_PUSH_SIGNING_SECRET: 'push-side-secret-0123456789',
        PARLEY_RECEIVER_SIGNING_SECRET: 'receiver-side-secret-0123456789',
      });
    } catch (err) {
      expect(err).toBeInstanceOf(ParleyError);
      expect((err as ParleyError).code).toBe('CONFIG_INVALID');
      return;
    }
    const b = await Browser.open(srv.url);
    try {
      const { chatId } = await b.start();
      const agent = new AgentClient(srv.url, 'alice', 'alice-secret');
      await agent.login();
      expect((await agent.accept(chatId)).status).toBe(200);
      await b.waitForEvent((e) => e.type === 'ParticipantJoined' && e.from.type === 'Agent', 'the agent joined');
      expect((await getHealth(srv.url)).push.failed).toBe(0);
    } finally {
      b.close();
    }
  });

  it('the same secret on both sides: pushes delivered, signed', async () => {
    const secret = 'same-secret-on-both-sides-0123';
    srv = await startTestServer(OWN_RECEIVER_INI, { PARLEY_PUSH_SIGNING_SECRET: secret, PARLEY_RECEIVER_SIGNING_SECRET: secret });
    const b = await Browser.open(srv.url);
    try {
      const { chatId } = await b.start();
      const agent = new AgentClient(srv.url, 'alice', 'alice-secret');
      await agent.login();
      expect((await agent.accept(chatId)).status).toBe(200);
      await b.waitForEvent((e) => e.type === 'ParticipantJoined' && e.from.type === 'Agent', 'the agent joined');
      expect((await getHealth(srv.url)).push.failed).toBe(0);
    } finally {
      b.close();
    }
  });
});
