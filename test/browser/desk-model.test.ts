/** The desk's DOM-free pieces: merging transcript events by index, the typing state, outgoing typing. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Transcript, offeredTo, since, typingAfter } from '../../web/desk/model.ts';
import { TypingNotifier } from '../../web/desk/typing.ts';
import type { ChatEvent, ChatSummary, Party } from '../../web/desk/types.ts';

const ann = { nickname: 'Ann', participantId: 1, type: 'Client' as const };
const alice = { nickname: 'Alice', participantId: 2, type: 'Agent' as const };
const ev = (index: number, type: ChatEvent['type'] = 'Message', from: Party = ann, text?: string): ChatEvent => ({ from, index, type, utcTime: 1000 + index, ...(text === undefined ? {} : { text }) });

describe('Transcript', () => {
  it('merges overlapping batches once each, in index order, and knows where to catch up from', () => {
    const t = new Transcript();
    expect(t.merge([ev(1), ev(2)])).toEqual({ added: [ev(1), ev(2)], appended: true });
    // A live frame after a gap: kept, and the gap is visible.
    expect(t.hasGapBefore(5)).toBe(true);
    expect(t.merge([ev(5)]).appended).toBe(true);
    expect(t.contiguous).toBe(2);
    // The catch-up overlaps what is there: only 3 and 4 are new, inserted before 5.
    const r = t.merge([ev(3), ev(4), ev(5)]);
    expect(r.added.map((e) => e.index)).toEqual([3, 4]);
    expect(r.appended).toBe(false);
    expect(t.events.map((e) => e.index)).toEqual([1, 2, 3, 4, 5]);
    expect(t.contiguous).toBe(5);
    expect(t.lastIndex).toBe(5);
    // A whole transcript again (an action's answer) adds nothing.
    expect(t.merge([ev(1), ev(2), ev(3), ev(4), ev(5)]).added).toEqual([]);
  });
});

describe('typingAfter', () => {
  it('follows the customer: started with a preview, cleared by stop, message or leaving; ignores agents', () => {
    let t = typingAfter(undefined, ev(1, 'TypingStarted', ann, 'Hel'));
    expect(t).toEqual({ participantId: 1, nickname: 'Ann', text: 'Hel' });
    expect(typingAfter(t, ev(2, 'TypingStarted', alice))).toBe(t);
    expect(typingAfter(t, ev(2, 'TypingStopped'))).toBeUndefined();
    expect(typingAfter(t, ev(2, 'Message'))).toBeUndefined();
    expect(typingAfter(t, ev(2, 'ParticipantLeft'))).toBeUndefined();
    t = typingAfter(t, ev(2, 'NicknameUpdated', { ...ann, nickname: 'Annie' }, 'Annie'));
    expect(t?.nickname).toBe('Annie');
  });
});

describe('offeredTo and since', () => {
  const s = { state: 'waiting', routedTo: 'alice', routedUntil: 5000 } as ChatSummary;
  it('offers a routed chat only to its agent until the deadline', () => {
    expect(offeredTo(s, 'alice', 1000)).toBe(true);
    expect(offeredTo(s, 'bob', 1000)).toBe(false);
    expect(offeredTo(s, 'bob', 5000)).toBe(true);
    expect(offeredTo({ ...s, state: 'active' }, 'alice', 1000)).toBe(false);
  });
  it('says how long ago', () => {
    expect([since(10_000), since(4 * 60_000), since(65 * 60_000), since(120 * 60_000), since(49 * 3600_000)]).toEqual(['just now', '4 min', '1 h 5 min', '2 h', '2 d']);
  });
});

describe('TypingNotifier', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('starts once while typing, stops after 3 s idle, on send and when the draft is emptied', async () => {
    const calls: boolean[] = [];
    const n = new TypingNotifier(async (typing) => void calls.push(typing), 3000);
    n.input('H');
    n.input('He');
    await vi.advanceTimersByTimeAsync(2000);
    n.input('Hel');
    await vi.advanceTimersByTimeAsync(2999);
    expect(calls).toEqual([true]);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toEqual([true, false]);
    n.input('Hello');
    await n.stop();
    expect(calls).toEqual([true, false, true, false]);
    await n.stop();
    n.input('x');
    n.input('  ');
    await vi.advanceTimersByTimeAsync(5000);
    expect(calls).toEqual([true, false, true, false, true, false]);
  });

  it('keeps start before stop even when the server is slow, and survives failures', async () => {
    const calls: string[] = [];
    const n = new TypingNotifier(async (typing) => {
      calls.push(`begin ${typing}`);
      await new Promise((r) => setTimeout(r, typing ? 500 : 10));
      calls.push(`end ${typing}`);
      if (typing) throw new Error('503');
    });
    n.input('a');
    const stopped = n.stop();
    await vi.advanceTimersByTimeAsync(600);
    await stopped;
    expect(calls).toEqual(['begin true', 'end true', 'begin false', 'end false']);
  });
});
