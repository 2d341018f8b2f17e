/**
 * Token buckets by key (a client address, a chat session): `rate` tokens per second up to `burst`. Pure:
 * the time comes in as an argument. Idle buckets are dropped once more than `maxKeys` exist, oldest first,
 * so memory stays bounded under a flood of distinct keys.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxKeys = 100_000,
  ) {}

  /** Takes one token; false when the key is over its rate. A rate of 0 means no limit. */
  take(key: string, now: number): boolean {
    if (this.rate <= 0) return true;
    const b = this.buckets.get(key);
    let tokens = this.burst;
    if (b !== undefined) {
      tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
      this.buckets.delete(key); // re-inserted below: the map stays ordered by last use
    } else if (this.buckets.size >= this.maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    if (tokens < 1) {
      this.buckets.set(key, { tokens, at: now });
      return false;
    }
    this.buckets.set(key, { tokens: tokens - 1, at: now });
    return true;
  }

  /** Whether `take` would succeed now, without taking anything. */
  allows(key: string, now: number): boolean {
    if (this.rate <= 0) return true;
    const b = this.buckets.get(key);
    return b === undefined || Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate) >= 1;
  }

  get size(): number {
    return this.buckets.size;
  }
}
