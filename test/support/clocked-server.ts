/**
 * A test server on a manual clock (push engine and timers ticked only when told), the flex timeouts out
 * of the way, and agents alice and bob signed in. `tick(ms)` moves the clock and runs the session timers;
 * after a jump of an hour or more the agents sign in again, as people would (tokens last 12 hours).
 */
import { ManualClock } from '../../src/clock.ts';
import { AgentClient, startTestServer, type TestServer } from '../helpers.ts';

const HOUR = 3_600_000;

export async function startClockedServer(env: Record<string, string> = {}, startAt = Date.now()) {
  const clock = new ManualClock(startAt);
  const srv: TestServer = await startTestServer(
    '',
    { PARLEY_SETTINGS_FLEX_DISCONNECT_TIMEOUT: '1728000', PARLEY_SETTINGS_FLEX_PUSH_TIMEOUT: '1728000', ...env },
    { clock, autoPush: false },
  );
  const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
  const bob = new AgentClient(srv.url, 'bob', 'bob-secret-1');
  await alice.login();
  await bob.login();
  const tick = async (ms: number) => {
    clock.advance(ms);
    await srv.running.app.timers.tick();
    if (ms >= HOUR) {
      await alice.login();
      await bob.login();
    }
  };
  return { srv, clock, alice, bob, tick };
}
