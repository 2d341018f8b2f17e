/** A store wrapped to fail on cue: writes that fail cleanly or after their commit, a slow ownership check. */
import type { ChangeRecord, Store } from '../../src/store/port.ts';

export interface Faults {
  /** The next recordChange fails before touching the store. */
  failCleanly: number;
  /** The next recordChange is committed, then reported as failed (outcome unknown to the caller). */
  failAfterCommit: number;
  /** When set, loadOwned waits for this promise first (a slow ownership check). */
  gateLoadOwned?: Promise<void>;
}

export function faulty(real: Store, f: Faults): Store {
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'recordChange') {
        return async (c: ChangeRecord) => {
          if (f.failCleanly > 0) {
            f.failCleanly--;
            throw new Error('injected: connection refused');
          }
          await target.recordChange(c);
          if (f.failAfterCommit > 0) {
            f.failAfterCommit--;
            throw new Error('injected: connection lost after COMMIT');
          }
        };
      }
      if (prop === 'loadOwned') {
        return async (chatId: string) => {
          const gate = f.gateLoadOwned;
          if (gate !== undefined) await gate;
          return target.loadOwned(chatId);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
