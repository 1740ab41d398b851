/**
 * Wall-clock deadlines by key (a sensor's idle close, a deadman check), earliest first. Moving a
 * key's deadline later, which every reading does, costs a map write and no heap work: the heap
 * keeps one entry per key at its earliest known deadline, and an entry that turns out early when it
 * comes due is pushed back to the key's real deadline. So the cost per reading is O(1) and the
 * cost of finding what is due is O(log n) per due or moved key, never a scan of every key.
 */
export class TimerQueue {
  private readonly heap: { due: number; key: string }[] = [];
  /** The real deadline of each scheduled key. */
  private readonly deadlines = new Map<string, number>();
  /** The deadline of each key's live heap entry (other entries of the key are stale). */
  private readonly queued = new Map<string, number>();

  get size(): number {
    return this.deadlines.size;
  }

  /** Sets `key`'s deadline (replacing any earlier or later one). */
  set(key: string, due: number): void {
    this.deadlines.set(key, due);
    const queued = this.queued.get(key);
    if (queued === undefined || due < queued) {
      this.queued.set(key, due);
      this.push({ due, key });
    }
  }

  /** True when `key` has a deadline. */
  has(key: string): boolean {
    return this.deadlines.has(key);
  }

  delete(key: string): void {
    this.deadlines.delete(key);
  }

  /** The earliest deadline, or undefined when nothing is scheduled. */
  next(): number | undefined {
    while (this.heap.length > 0) {
      const top = this.heap[0] as { due: number; key: string };
      const deadline = this.deadlines.get(top.key);
      if (this.queued.get(top.key) === top.due && deadline === top.due) return top.due;
      this.pop();
      if (this.queued.get(top.key) === top.due) this.requeue(top.key);
    }
    return undefined;
  }

  /** Removes and returns the keys due at `now`, in deadline order (ties by key). */
  due(now: number): string[] {
    const out: { due: number; key: string }[] = [];
    while (this.heap.length > 0 && (this.heap[0] as { due: number }).due <= now) {
      const entry = this.pop();
      if (this.queued.get(entry.key) !== entry.due) continue;
      this.queued.delete(entry.key);
      const deadline = this.deadlines.get(entry.key);
      if (deadline === undefined) continue;
      if (deadline <= now) {
        this.deadlines.delete(entry.key);
        out.push({ due: deadline, key: entry.key });
      } else this.requeue(entry.key);
    }
    return out
      .sort((a, b) => a.due - b.due || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map((e) => e.key);
  }

  private requeue(key: string): void {
    this.queued.delete(key);
    const deadline = this.deadlines.get(key);
    if (deadline === undefined) return;
    this.queued.set(key, deadline);
    this.push({ due: deadline, key });
  }

  private push(entry: { due: number; key: string }): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((h[parent] as { due: number }).due <= entry.due) break;
      h[i] = h[parent] as { due: number; key: string };
      i = parent;
    }
    h[i] = entry;
  }

  private pop(): { due: number; key: string } {
    const h = this.heap;
    const top = h[0] as { due: number; key: string };
    const last = h.pop() as { due: number; key: string };
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let smallest = i;
        let due = last.due;
        if (l < h.length && (h[l] as { due: number }).due < due) {
          smallest = l;
          due = (h[l] as { due: number }).due;
        }
        if (r < h.length && (h[r] as { due: number }).due < due) smallest = r;
        if (smallest === i) break;
        h[i] = h[smallest] as { due: number; key: string };
        i = smallest;
      }
      h[i] = last;
    }
    return top;
  }
}
