/**
 * A due-time index: a binary min-heap of (time, key). One timer drives many deadlines, so a million
 * dormant sessions cost a million small heap entries, not a million `setTimeout`s. Entries are never
 * removed early: the owner re-checks a key when it comes due and ignores stale entries (lazy deletion).
 */
export interface DueEntry<K = string> {
  readonly at: number;
  readonly key: K;
}

export class DueIndex<K = string> {
  private readonly heap: Array<DueEntry<K>> = [];

  get size(): number {
    return this.heap.length;
  }

  /** The earliest time, or undefined when empty. */
  peek(): number | undefined {
    return this.heap[0]?.at;
  }

  push(at: number, key: K): void {
    const h = this.heap;
    h.push({ at, key });
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((h[parent] as DueEntry<K>).at <= at) break;
      h[i] = h[parent] as DueEntry<K>;
      i = parent;
    }
    h[i] = { at, key };
  }

  /** Removes and returns every entry with at <= now, earliest first. */
  popDue(now: number, limit = Infinity): Array<DueEntry<K>> {
    const out: Array<DueEntry<K>> = [];
    while (out.length < limit && this.heap.length > 0 && (this.heap[0] as DueEntry<K>).at <= now) out.push(this.pop());
    return out;
  }

  private pop(): DueEntry<K> {
    const h = this.heap;
    const top = h[0] as DueEntry<K>;
    const last = h.pop() as DueEntry<K>;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        let mAt = last.at;
        if (l < h.length && (h[l] as DueEntry<K>).at < mAt) {
          m = l;
          mAt = (h[l] as DueEntry<K>).at;
        }
        if (r < h.length && (h[r] as DueEntry<K>).at < mAt) m = r;
        if (m === i) break;
        h[i] = h[m] as DueEntry<K>;
        i = m;
      }
      h[i] = last;
    }
    return top;
  }
}
