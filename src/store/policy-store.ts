import type { Policy } from '../rfc8461/policy.js';

/**
 * One cached policy, keyed by the domain's display name (Unicode form if it has IDN labels).
 * A failed fetch is stored as a backoff record: mode `none`, max_age 300, `backoff: true`.
 */
export interface PolicyRecord {
  readonly domain: string;
  readonly inserted: Date;
  /** When the policy expires: last update + min(max_age, 31557600) s. */
  readonly validEnd: Date;
  /** Last time the policy was fetched or its TXT id confirmed. */
  readonly lastUpdate: Date;
  readonly lastUse: Date;
  readonly backoff: boolean;
  /** The TXT record id the policy was fetched under (`''` when unknown). */
  readonly recordId: string;
  readonly policy: Policy;
  /** The exact policy text as served (formatted from `policy` when it was not fetched). */
  readonly policyText: string;
}

/**
 * The order of `list()`. `lastUse`: newest `lastUse` first, then domain (code point order), read
 * from one snapshot. `domain`: by domain (code point order), paged on the primary key without a
 * long-lived snapshot, for walks that run a long time (the refresher).
 */
export type ListOrder = 'lastUse' | 'domain';

/** Sort and filter for listing records. */
export interface ListOptions {
  /**
   * Default `lastUse`. Both orders return every record present for the whole walk exactly once,
   * while other writers (`touch`, `put`) run. `lastUse` reads one consistent snapshot: records
   * written after the walk began are not seen, and the snapshot is held until the walk ends (on a
   * SQLite file the WAL cannot be checkpointed past it; PostgreSQL keeps the old row versions). In
   * `domain` order each page is a short read: a record written or deleted meanwhile may or may not
   * be seen, in whichever version the page read.
   */
  readonly order?: ListOrder;
  /** Only records whose `lastUpdate` is before this time (for the refresher). */
  readonly updatedBefore?: Date;
  /** Only records whose `lastUse` is before this time (for purging). */
  readonly usedBefore?: Date;
  /** Only records whose `validEnd` is before this time (expired). */
  readonly validEndBefore?: Date;
  /** Rows read per round trip when streaming. Default 1000. */
  readonly pageSize?: number;
}

/**
 * Durable storage of policy records. Every implementation passes the same behavioural suite
 * (test/helpers/store-contract.ts) against a real database.
 */
export interface PolicyStore {
  /** `sqlite` or `postgres`. */
  readonly kind: string;
  /** The record of `domain`, or undefined. */
  get(domain: string): Promise<PolicyRecord | undefined>;
  /**
   * Insert or replace atomically. A write never replaces a record whose `lastUpdate` is newer
   * than the one given (returns false then).
   */
  put(record: PolicyRecord): Promise<boolean>;
  /** Sets `lastUse` for many domains in one transaction; never moves `lastUse` backwards. */
  touch(uses: ReadonlyArray<{ readonly domain: string; readonly lastUse: Date }>): Promise<void>;
  /** Deletes; true when a record was there. */
  delete(domain: string): Promise<boolean>;
  /** Number of records. */
  count(): Promise<number>;
  /**
   * All matching records in `options.order` (default newest `lastUse` first, then by domain), each
   * once, read page by page so a million records never sit in memory at once. Iterate to the end or
   * leave the loop (`break`, `return`, a throw): that ends the walk and frees what it holds; an
   * iterator abandoned half-way holds its snapshot until the store is closed.
   */
  list(options?: ListOptions): AsyncIterable<PolicyRecord>;
  /**
   * Refresher coordination (RFC-independent): atomically claims `domain` for refreshing when its
   * `lastUpdate` is still before `updatedBefore` and no other owner holds an unexpired lease.
   * Returns true when `owner` now holds the lease until `leaseUntil`. A node that dies releases
   * its claims when the lease expires. A single-node store may simply check the `lastUpdate`.
   */
  claimRefresh(
    domain: string,
    claim: { readonly owner: string; readonly now: Date; readonly leaseUntil: Date; readonly updatedBefore: Date },
  ): Promise<boolean>;
  /**
   * Ends `owner`'s lease on `domain` once its refresh is done, so that the next refresh (another
   * node's, or an explicit one) need not wait for the lease to expire. Does nothing when another
   * owner holds the lease or none does.
   */
  releaseRefresh(domain: string, owner: string): Promise<void>;
  /**
   * What the store repaired recently (a table recreated, the SQLite file deleted or replaced and
   * reopened), in one line, or null. The daemon adds it to `/healthz` as a degraded reason; a report
   * lasts an hour after the repair. Optional: a store without drift detection has none.
   */
  problem?(): string | null;
  /** Closes the database; further calls throw `ERR_MTASTSDB_CLOSED`. Idempotent. */
  close(): Promise<void>;
}
