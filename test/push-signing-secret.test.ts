/**
 * [push] signing-secret values the docs allow ("whsec_<base64> or any text") and what the pushes do.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.ts';
import { ParleyError } from '../src/errors.ts';
import { AgentClient, ChatClient, memoryLogger, startTestServer, type TestServer } from './helpers.ts';
import { pushIni, pushUserData, startFakeReceiver, type FakeReceiver } from './receiver-fixture.ts';

let srv: TestServer | undefined;
let rcv: FakeReceiver | undefined;
afterEach(async () => {
  await srv?.close();
  await rcv?.close();
  srv = undefined;
  rcv = undefined;
});

describe('[push] signing-secret', () => {
  // Regression test (this was a bug, now fixed). Was: a signing-secret starting with "whsec_" whose rest is not base64 passes config validation
  // (src/config/catalogue.ts:265-268 only types it as a string; src/config/rules.ts has no rule for it), but
  // src/push/signing.ts:34 throws CONFIG_INVALID from signWebhook on every POST
  // (src/gateway/customhttp.ts:72), so the server starts and then no notification is ever delivered (each
  // is retried/failed with "The webhook secret after "whsec_" is not valid base64."). docs/push.md
  // (Signatures) allows "whsec_<base64> or any text". Right behaviour: either refuse the value at start
  // (CONFIG_INVALID naming [push] signing-secret) or sign with it; never a running server that silently
  // fails every push.
  it('a whsec_ secret that is not base64 is refused at start, or the pushes are still delivered', async () => {
    const r = await startFakeReceiver();
    rcv = r;
    const clock = new ManualClock(Date.now());
    try {
      srv = await startTestServer(pushIni(r.url), { PARLEY_PUSH_SIGNING_SECRET: 'whsec_not*base64!' }, { clock, autoPush: false, random: () => 0, log: memoryLogger() });
    } catch (err) {
      expect(err).toBeInstanceOf(ParleyError);
      expect((err as ParleyError).code).toBe('CONFIG_INVALID');
      return;
    }
    const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
    await alice.login();
    const c = new ChatClient(srv.url);
    expect((await c.start({ nickname: 'Ann', ...pushUserData('dev-s') })).body.statusCode).toBe(0);
    await alice.accept(c.chatId);
    await srv.running.app.push.tick();
    await new Promise((res) => setTimeout(res, 100));
    expect(r.received).toHaveLength(1);
  });
});
