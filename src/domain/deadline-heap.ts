// An indexed binary min-heap of deadlines: each key is in the heap at most once, and moving a key's
// deadline (an agent heard again) is O(log n) in place, so the heap never holds stale entries however
// often deadlines move. WatchRegistry keeps one entry per agent that is not OFFLINE, keyed on
// last_seen + AGENT_OFFLINE_AFTER, and one timer for the earliest: finding who went silent costs
// O(log n) per agent that did, never a scan of every agent. Pure.
export class DeadlineHeap<K> {
  private readonly keys: K[] = [];
  private readonly deadlines: number[] = [];
  private readonly index = new Map<K, number>();

  get size(): number {
    return this.keys.length;
  }

  has(key: K): boolean {
    return this.index.has(key);
  }

  deadlineOf(key: K): number | undefined {
    const i = this.index.get(key);
    return i === undefined ? undefined : this.deadlines[i];
  }

  /** Adds the key, or moves its deadline. */
  set(key: K, deadline: number): void {
    const i = this.index.get(key);
    if (i === undefined) {
      const at = this.keys.length;
      this.keys.push(key);
      this.deadlines.push(deadline);
      this.index.set(key, at);
      this.up(at);
      return;
    }
    const old = this.deadlines[i]!;
    this.deadlines[i] = deadline;
    if (deadline < old) this.up(i);
    else if (deadline > old) this.down(i);
  }

  delete(key: K): boolean {
    const i = this.index.get(key);
    if (i === undefined) return false;
    this.removeAt(i);
    return true;
  }

  /** The earliest deadline, or undefined when empty. */
  peekDeadline(): number | undefined {
    return this.deadlines[0];
  }

  /** Removes and returns the key with the earliest deadline if that deadline is before `limit`. */
  popBefore(limit: number): K | undefined {
    if (this.keys.length === 0 || !(this.deadlines[0]! < limit)) return undefined;
    const key = this.keys[0]!;
    this.removeAt(0);
    return key;
  }

  clear(): void {
    this.keys.length = 0;
    this.deadlines.length = 0;
    this.index.clear();
  }

  private removeAt(i: number): void {
    const last = this.keys.length - 1;
    this.index.delete(this.keys[i]!);
    if (i !== last) {
      this.keys[i] = this.keys[last]!;
      this.deadlines[i] = this.deadlines[last]!;
      this.index.set(this.keys[i]!, i);
    }
    this.keys.pop();
    this.deadlines.pop();
    if (i < this.keys.length) {
      this.up(i);
      this.down(i);
    }
  }

  private swap(a: number, b: number): void {
    const k = this.keys[a]!;
    const d = this.deadlines[a]!;
    this.keys[a] = this.keys[b]!;
    this.deadlines[a] = this.deadlines[b]!;
    this.keys[b] = k;
    this.deadlines[b] = d;
    this.index.set(this.keys[a]!, a);
    this.index.set(k, b);
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.deadlines[parent]! <= this.deadlines[i]!) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.keys.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < n && this.deadlines[l]! < this.deadlines[min]!) min = l;
      if (r < n && this.deadlines[r]! < this.deadlines[min]!) min = r;
      if (min === i) return;
      this.swap(i, min);
      i = min;
    }
  }
}
