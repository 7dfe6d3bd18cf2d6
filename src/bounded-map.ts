/**
 * A Map bounded by a number of entries and by an estimate of the bytes they take, for the caches
 * that keep policies in memory (a hostile domain can serve a 64 KiB policy: ten thousand entries
 * must not cost 640 MiB). The oldest entries (by when they were last set) are evicted first.
 */
export class BoundedMap<K, V> {
  private readonly entries = new Map<K, { readonly value: V; readonly bytes: number }>();
  private bytes = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number = Number.POSITIVE_INFINITY,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    return this.entries.get(key)?.value;
  }

  /**
   * Stores `value` as the newest entry, then evicts the oldest until both bounds hold. An entry
   * larger than the byte bound on its own is not kept (and replaces nothing): returns false.
   */
  set(key: K, value: V, bytes = 0): boolean {
    this.delete(key);
    if (this.maxEntries <= 0 || bytes > this.maxBytes) return false;
    // A Map iterates in insertion order: the first keys are the oldest entries.
    this.entries.set(key, { value, bytes });
    this.bytes += bytes;
    while (this.entries.size > this.maxEntries || this.bytes > this.maxBytes) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.delete(oldest.value);
    }
    return true;
  }

  /**
   * Replaces the value of an entry already held, keeping its place and its byte estimate (for a
   * change that does not change its size). False when `key` is not held.
   */
  replace(key: K, value: V): boolean {
    const e = this.entries.get(key);
    if (e === undefined) return false;
    this.entries.set(key, { value, bytes: e.bytes });
    return true;
  }

  delete(key: K): boolean {
    const e = this.entries.get(key);
    if (e === undefined) return false;
    this.entries.delete(key);
    this.bytes -= e.bytes;
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}
