import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { createRandomIds } from '../ids.ts';
import { AGENT_TOKEN_TTL_MS, API_PRESENCE_MS, AgentDirectory, MAX_TOKENS_PER_AGENT, type AgentAccount } from './agent-directory.ts';

const ACCOUNTS = new Map<string, AgentAccount>([
  ['alice', { agentId: 'alice', name: 'Alice', password: 'alice-secret', maxChats: 3 }],
  ['bob', { agentId: 'bob', name: 'Bob', password: 'bob-secret', maxChats: 3 }],
]);

function directory(): { dir: AgentDirectory; clock: ManualClock } {
  const clock = new ManualClock();
  return { dir: new AgentDirectory(ACCOUNTS, clock, createRandomIds()), clock };
}

describe('agent presence', () => {
  it('is offline before signing in and after signing out', () => {
    const { dir } = directory();
    expect(dir.isOnline('alice')).toBe(false);
    const t = dir.signIn('alice', 'alice-secret');
    expect(dir.isOnline('alice')).toBe(true);
    dir.signOut(t.token);
    expect(dir.isOnline('alice')).toBe(false);
  });

  it('keeps an agent at a desk online as long as the desk socket is open, however long it is quiet', () => {
    const { dir, clock } = directory();
    const t = dir.signIn('alice', 'alice-secret');
    dir.deskOpened(t.token);
    clock.advance(AGENT_TOKEN_TTL_MS - 1000);
    expect(dir.isOnline('alice')).toBe(true);
  });

  it('takes an agent offline at once when the desk closes without signing out, and back online when a desk connects', () => {
    const { dir } = directory();
    const t = dir.signIn('alice', 'alice-secret');
    dir.deskOpened(t.token);
    dir.deskClosed(t.token);
    // The token is still valid (the API accepts it), but nobody is at a desk.
    expect(dir.verify(t.token).agentId).toBe('alice');
    expect(dir.isOnline('alice')).toBe(false);
    dir.deskOpened(t.token);
    expect(dir.isOnline('alice')).toBe(true);
  });

  it('counts every open desk of a token: one of two tabs closing leaves the agent online', () => {
    const { dir } = directory();
    const t = dir.signIn('alice', 'alice-secret');
    dir.deskOpened(t.token);
    dir.deskOpened(t.token);
    dir.deskClosed(t.token);
    expect(dir.isOnline('alice')).toBe(true);
    dir.deskClosed(t.token);
    dir.deskClosed(t.token);
    expect(dir.isOnline('alice')).toBe(false);
    dir.deskOpened(t.token);
    expect(dir.isOnline('alice')).toBe(true);
  });

  it('keeps a token without a desk (an API integration) online for API_PRESENCE_MS after each request', () => {
    const { dir, clock } = directory();
    const t = dir.signIn('bob', 'bob-secret');
    clock.advance(API_PRESENCE_MS - 1);
    expect(dir.isOnline('bob')).toBe(true);
    dir.verify(t.token);
    clock.advance(API_PRESENCE_MS - 1);
    expect(dir.isOnline('bob')).toBe(true);
    clock.advance(1);
    expect(dir.isOnline('bob')).toBe(false);
    dir.verify(t.token);
    expect(dir.isOnline('bob')).toBe(true);
  });

  it('is offline once the token expired, desk or not', () => {
    const { dir, clock } = directory();
    const t = dir.signIn('alice', 'alice-secret');
    dir.deskOpened(t.token);
    clock.advance(AGENT_TOKEN_TTL_MS);
    expect(dir.isOnline('alice')).toBe(false);
  });

  it('ignores desk events of unknown or signed-out tokens', () => {
    const { dir } = directory();
    dir.deskOpened('nope');
    dir.deskClosed('nope');
    const t = dir.signIn('alice', 'alice-secret');
    dir.deskOpened(t.token);
    dir.signOut(t.token);
    dir.deskClosed(t.token);
    expect(dir.isOnline('alice')).toBe(false);
    expect(dir.isOnline('bob')).toBe(false);
  });
});

describe('agent tokens', () => {
  it('end the oldest token of an agent who signs in more than MAX_TOKENS_PER_AGENT times; others keep theirs', () => {
    const { dir } = directory();
    const bob = dir.signIn('bob', 'bob-secret');
    const first = dir.signIn('alice', 'alice-secret');
    const second = dir.signIn('alice', 'alice-secret');
    for (let i = 2; i < MAX_TOKENS_PER_AGENT; i++) dir.signIn('alice', 'alice-secret');
    expect(dir.verify(first.token).agentId).toBe('alice');
    const newest = dir.signIn('alice', 'alice-secret');
    expect(() => dir.verify(first.token)).toThrow(expect.objectContaining({ code: 'AGENT_AUTH_FAILED' }));
    expect(dir.verify(second.token).agentId).toBe('alice');
    expect(dir.verify(newest.token).agentId).toBe('alice');
    expect(dir.verify(bob.token).agentId).toBe('bob');
  });

  it('keep presence right when a token with an open desk is ended by the cap', () => {
    const { dir } = directory();
    const desk = dir.signIn('alice', 'alice-secret');
    dir.deskOpened(desk.token);
    for (let i = 0; i < MAX_TOKENS_PER_AGENT; i++) dir.signIn('alice', 'alice-secret');
    // The desk's token is gone; the newest tokens were used for nothing but signing in (API presence).
    expect(() => dir.verify(desk.token)).toThrow(expect.objectContaining({ code: 'AGENT_AUTH_FAILED' }));
    dir.deskClosed(desk.token);
    expect(dir.isOnline('alice')).toBe(true);
  });
});

describe('onOffline', () => {
  it('tells when the last desk of an agent closes, or an online agent signs out; not while another desk or token keeps them online', () => {
    const { dir } = directory();
    const offline: string[] = [];
    dir.onOffline((id) => offline.push(id));
    const a = dir.signIn('alice', 'alice-secret');
    dir.deskOpened(a.token);
    dir.deskOpened(a.token);
    dir.deskClosed(a.token);
    expect(offline).toEqual([]);
    dir.deskClosed(a.token);
    expect(offline).toEqual(['alice']);
    // Signing out a token that was already offline (its desk closed) tells nothing more.
    dir.signOut(a.token);
    expect(offline).toEqual(['alice']);
    const b1 = dir.signIn('bob', 'bob-secret');
    const b2 = dir.signIn('bob', 'bob-secret');
    dir.signOut(b1.token);
    expect(offline).toEqual(['alice']);
    dir.signOut(b2.token);
    expect(offline).toEqual(['alice', 'bob']);
  });

  it('tells nothing when a sign-in beyond the cap ends the token of the desk the agent is at', () => {
    const { dir } = directory();
    const offline: string[] = [];
    dir.onOffline((id) => offline.push(id));
    const desk = dir.signIn('alice', 'alice-secret');
    dir.deskOpened(desk.token);
    for (let i = 0; i < MAX_TOKENS_PER_AGENT; i++) dir.signIn('alice', 'alice-secret');
    expect(dir.isOnline('alice')).toBe(true);
    expect(offline).toEqual([]);
  });
});
