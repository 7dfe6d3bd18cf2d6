/**
 * A short-lived in-process copy of recently read records in front of a {@link PolicyStore}.
 *
 * A busy mail server asks for the same few domains thousands of times a second; reading each
 * answer from SQLite or across the network from PostgreSQL costs more than everything else the
 * daemon does for it. {@link MemoryCachedStore.recent} answers those reads from memory for at most
 * `seconds` after the record was read. A copy is kept from a domain's second read on, so that a
 * stream of domains asked for once does not churn the copies.
 *
 * What it changes, and what it does not:
 * - Only `recent()` answers from memory. `get()` always reads the store (and refreshes a copy held),
 *   so the checks that must see the newest record (before a back-off is written, before the
 *   refresher writes) still do.
 * - Writes through this object (`put`, `delete`, and the `lastUse` of `touch`) update or drop the
 *   copy at once. Writes by other processes (fleet nodes, the CLI on the same file) are seen
 *   within `seconds`: a delay of the same kind as the TXT recheck grace, and kept shorter.
 * - Memory is bounded by entries and by an estimate of bytes (a hostile domain can serve a
 *   64 KiB policy); the oldest copies go first. Records are never made weaker: an expired record
 *   is still returned as the store would return it, and the caller checks `validEnd`.
 */
import { BoundedMap } from '../bounded-map.js';
import { MtaStsError } from '../errors.js';
import type { ListOptions, PolicyRecord, PolicyStore } from './policy-store.js';

/** Options of {@link MemoryCachedStore}. */
export interface MemoryCacheOptions {
  /** How many records are kept at most. 0 disables the cache. */
  readonly entries: number;
  /** How long a copy answers `recent()` after it was read or written, in seconds. 0 disables the cache. */
  readonly seconds: number;
  /** Upper bound of the estimated bytes the copies take. Default {@link DEFAULT_MEMORY_CACHE_BYTES}. */
  readonly bytes?: number;
  /** Milliseconds since the epoch (the policy database's clock). */
  readonly now: () => number;
}

/** Default of {@link MemoryCacheOptions.bytes}: 16 MiB. */
const DEFAULT_MEMORY_CACHE_BYTES = 16 * 1024 * 1024;

interface Copy {
  readonly record: PolicyRecord;
  /** Epoch ms until which `recent()` answers from this copy. */
  readonly until: number;
}

/** Estimated bytes of a record in the V8 heap: UTF-16 strings, patterns and object headers generously. */
function estimateBytes(r: PolicyRecord): number {
  return 2 * (r.domain.length + r.policyText.length + r.recordId.length) + 160 * r.policy.mx.length + 640;
}

/** A {@link PolicyStore} with an in-process copy of recently read records; see the module comment. */
export class MemoryCachedStore implements PolicyStore {
  readonly kind: string;
  private readonly copies: BoundedMap<string, Copy>;
  /** Domains read once by `recent()` and not kept yet (oldest first), bounded like the copies. */
  private readonly seenOnce: BoundedMap<string, true>;
  private readonly ttlMs: number;
  private readonly now: () => number;
  /** Bumped by every write: a read that overlapped a write keeps no copy (it may be the older record). */
  private writes = 0;

  constructor(
    readonly inner: PolicyStore,
    options: MemoryCacheOptions,
  ) {
    for (const k of ['entries', 'seconds'] as const) {
      const v = options[k];
      if (!Number.isFinite(v) || v < 0) {
        throw new MtaStsError('ERR_MTASTS_USAGE', `memory cache ${k} must be a number ≥ 0, got ${String(v)}`);
      }
    }
    this.kind = inner.kind;
    const entries = Math.floor(options.entries);
    this.ttlMs = options.seconds * 1000;
    this.copies = new BoundedMap(entries, options.bytes ?? DEFAULT_MEMORY_CACHE_BYTES);
    this.seenOnce = new BoundedMap(entries);
    this.now = options.now;
  }

  /** How many copies are held. */
  get size(): number {
    return this.copies.size;
  }

  /**
   * The record of `domain` from memory when a copy is younger than the time to live, else from the
   * store (keeping a copy).
   */
  async recent(domain: string): Promise<PolicyRecord | undefined> {
    const c = this.copies.get(domain);
    if (c !== undefined) {
      if (this.now() < c.until) return c.record;
      return this.read(domain, true);
    }
    // A copy is kept from the second read on: a domain asked for once (a million distinct domains
    // after a restart) costs a short-lived key here instead of a record kept for seconds, which
    // would pass through the whole heap as long-lived garbage.
    if (this.seenOnce.delete(domain)) return this.read(domain, true);
    const r = await this.read(domain, false);
    if (r !== undefined && this.ttlMs > 0) this.seenOnce.set(domain, true);
    return r;
  }

  /** Reads the store, always; refreshes a copy that is held (and keeps none that is not). */
  get(domain: string): Promise<PolicyRecord | undefined> {
    return this.read(domain, false);
  }

  private async read(domain: string, keep: boolean): Promise<PolicyRecord | undefined> {
    const before = this.writes;
    const r = await this.inner.get(domain);
    if (this.writes !== before) return r;
    if (r === undefined) this.copies.delete(domain);
    else if (keep || this.copies.get(domain) !== undefined) this.keep(r);
    return r;
  }

  async put(record: PolicyRecord): Promise<boolean> {
    this.writes++;
    this.copies.delete(record.domain);
    try {
      return await this.inner.put(record);
    } finally {
      // Whether it was written or a newer record won, the next read goes to the store.
      this.writes++;
      this.copies.delete(record.domain);
    }
  }

  async touch(uses: ReadonlyArray<{ readonly domain: string; readonly lastUse: Date }>): Promise<void> {
    await this.inner.touch(uses);
    // lastUse only moves forwards; a copy follows so it is not recorded again.
    for (const u of uses) {
      const c = this.copies.get(u.domain);
      if (c !== undefined && c.record.lastUse.getTime() < u.lastUse.getTime()) {
        this.copies.replace(u.domain, { ...c, record: { ...c.record, lastUse: u.lastUse } });
      }
    }
  }

  async delete(domain: string): Promise<boolean> {
    this.writes++;
    this.copies.delete(domain);
    try {
      return await this.inner.delete(domain);
    } finally {
      this.writes++;
      this.copies.delete(domain);
    }
  }

  count(): Promise<number> {
    return this.inner.count();
  }

  list(options?: ListOptions): AsyncIterable<PolicyRecord> {
    return this.inner.list(options);
  }

  claimRefresh(
    domain: string,
    claim: { readonly owner: string; readonly now: Date; readonly leaseUntil: Date; readonly updatedBefore: Date },
  ): Promise<boolean> {
    return this.inner.claimRefresh(domain, claim);
  }

  releaseRefresh(domain: string, owner: string): Promise<void> {
    return this.inner.releaseRefresh(domain, owner);
  }

  /** The backing store's report (copies live seconds; they need no drop on a repair). */
  problem(): string | null {
    return this.inner.problem?.() ?? null;
  }

  /** Drops every copy (the store is unchanged). */
  clear(): void {
    this.copies.clear();
    this.seenOnce.clear();
  }

  async close(): Promise<void> {
    this.clear();
    await this.inner.close();
  }

  private keep(r: PolicyRecord): void {
    if (this.ttlMs === 0) return;
    this.copies.set(r.domain, { record: r, until: this.now() + this.ttlMs }, estimateBytes(r));
  }
}
