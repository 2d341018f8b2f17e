import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log.ts';
import type { ChatReply, GatewayClient } from './gateway-client.ts';
import { Receiver, type PushBodyIn } from './receiver.ts';
import { TokenCache } from './token-cache.ts';

const joined = { index: 1, type: 'ParticipantJoined', from: { nickname: 'Ann', participantId: 1, type: 'Client' }, utcTime: 1000 };

describe('Receiver: a push that arrives before the Request Chat reply', () => {
  let dir: string;
  let cache: TokenCache;
  const operations: string[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'parley-receiver-'));
    cache = new TokenCache(join(dir, 'tokens.db'));
    operations.length = 0;
  });

  afterEach(() => {
    cache.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function receiverWith(onRequestChat: (deviceId: string) => 'ok' | 'unknown-device' | 'duplicate' | void, fail = false): Receiver {
    let receiver: Receiver | undefined;
    const gateway = {
      service: 'svc',
      async requestChat(fields: Record<string, string>): Promise<ChatReply> {
        onRequestChat(fields['userData[GCTI_GMS_PushDeviceId]'] ?? '');
        if (fail) throw new Error('gateway down');
        return { statusCode: 0, chatId: 'c1', userId: 'u1', secureKey: 'k1', alias: '117', chatEnded: false, nextPosition: 2, messages: [joined as never] };
      },
      async operate(_s: unknown, operation: string): Promise<ChatReply> {
        operations.push(operation);
        return { statusCode: 0, alias: '117', chatEnded: false, nextPosition: 2, messages: [] };
      },
    } as unknown as GatewayClient;
    receiver = new Receiver(
      cache,
      gateway,
      { now: () => 1000 },
      { nodeGroup: 'g', pingIntervalMs: 1_800_000, endedRetentionMs: 7 * 86_400_000, restoreConcurrency: 4, random: () => 0.5, newToken: () => 'browser-token', newDeviceId: () => 'device-1' },
      silentLogger,
    );
    return receiver;
  }

  const push = (deviceId: string): PushBodyIn => ({ deviceId, notificationId: 'ntf-1', type: 'ParticipantJoined', data: { messages: [joined], chatEnded: false, nextPosition: 2 } });

  it('is accepted, not refused as from an unknown device, and acknowledged once the session is cached', async () => {
    let answer: string | undefined;
    let receiver: Receiver | undefined;
    receiver = receiverWith((deviceId) => {
      answer = receiver?.onPush(push(deviceId));
    });
    const { session } = await receiver.start({ nickname: 'Ann' });
    expect(answer).toBe('ok');
    expect(session.deviceId).toBe('device-1');
    // The acknowledgement is a refresh with the session's tokens.
    for (let i = 0; i < 20 && !operations.includes('refresh'); i++) await new Promise((r) => setTimeout(r, 5));
    expect(operations).toContain('refresh');
  });

  it('still refuses a push for a device nobody is starting, and forgets the device of a start that failed', async () => {
    let receiver: Receiver | undefined;
    receiver = receiverWith(() => undefined, true);
    await expect(receiver.start({ nickname: 'Ann' })).rejects.toThrow();
    expect(receiver.onPush(push('device-1'))).toBe('unknown-device');
    expect(receiver.onPush(push('someone-else'))).toBe('unknown-device');
  });
});
