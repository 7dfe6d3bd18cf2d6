import type { Clock } from '../clock.js';
import type { DnsResolver } from '../discovery/resolver.js';
import type { DiscoveryLimits } from './discovery-admission.js';
import type { FetchPolicyOptions, PolicyFetcher } from '../fetch/fetcher.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Domain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import type { ListOptions, PolicyRecord, PolicyStore } from '../store/policy-store.js';
import type { TlsrptResult } from './tlsrpt.js';

/** Where the policy of a {@link StsState} came from. */
export type PolicySource =
  /** Just fetched, or cached with its TXT id confirmed now or within the recheck grace. */
  | 'fresh'
  /** The cache, because the TXT check, the fetch or the answer's deadline failed (RFC 8461 §3.3, §10). */
  | 'fallback'
  /** The cache's memory of the last answer, because the store cannot be read (RFC 8461 §10). */
  | 'remembered';

/**
 * The MTA-STS state of a domain as the cache knows it now, every fallback applied: what the
 * decision (`decide`) needs and nothing more.
 */
export type StsState =
  /** A policy applies (any mode: the decision reads `none` and `testing` too). */
  | {
      readonly kind: 'policy';
      /** The policy domain, A-label form. */
      readonly domain: string;
      readonly policy: Policy;
      /** The policy text as served (rebuilt from the policy when unknown). */
      readonly policyText: string;
      readonly source: PolicySource;
    }
  /** No MTA-STS: no TXT record, a back-off after a failed fetch, or nothing valid cached. */
  | { readonly kind: 'none' }
  /**
   * No answer now (DNS failure, timeout, closing) and nothing usable cached. `storeUnreadable`:
   * the cache could not even be read, so it may hold an enforced policy.
   */
  | { readonly kind: 'temp'; readonly reason: string; readonly storeUnreadable: boolean };

/** What `MtaStsDb.get` answers. */
export interface GetOutcome {
  /** The policy to apply, or null (no MTA-STS, or a recent failed fetch: backoff). */
  readonly policy: Policy | null;
  /** True when the TXT id was just confirmed or the policy just fetched; false when served from cache without confirmation. */
  readonly fresh: boolean;
  /** RFC 8460 result data for this lookup. */
  readonly report: TlsrptResult;
  /** The stored record the answer came from (with `policyText`), when there is one. */
  readonly record?: PolicyRecord;
}

/** Options of `MtaStsDb.open`. All optional. */
export interface MtaStsDbOptions {
  /** SQLite file path (`:memory:` works). Default `<dataDir>/mtasts.db`. */
  readonly path?: string;
  /** Default `MTASTSDB_DATA_DIR` or `./data`. */
  readonly dataDir?: string;
  /** A store URL (`postgres://…`, `sqlite:/path`) or a ready store. Overrides `path`. Default env `MTASTSDB_STORE`. */
  readonly store?: string | PolicyStore;
  /** Start the periodic refresher. Default false. */
  readonly refresher?: boolean;
  /** Within this many seconds of the last successful TXT check, `get` answers from cache without DNS. Default 0. */
  readonly txtRecheckSeconds?: number;
  readonly clock?: Clock;
  readonly resolver?: DnsResolver;
  readonly fetcher?: PolicyFetcher;
  /** Used to build the default HTTPS fetcher when `fetcher` is not given. */
  readonly fetchOptions?: FetchPolicyOptions;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  /**
   * `lastUse` is written again only when the stored one is at least this many seconds old.
   * Default 60; 0 writes every hit (mox).
   */
  readonly lastUseResolutionSeconds?: number;
  /**
   * An in-process copy of recently read records, so a busy server's repeated lookups of a domain
   * do not each read the store: `seconds` is how long a copy answers (writes through this
   * database update it at once; other processes' writes are seen within `seconds`), `entries`
   * (default 10,000) and `bytes` (default 16 MiB) bound its memory. Default off: every lookup
   * reads the store, as mox does. The daemon turns it on (`memory_cache`).
   */
  readonly memoryCache?: { readonly seconds: number; readonly entries?: number; readonly bytes?: number };
  /**
   * How many domains' last answered policies `stsState` keeps in memory (first remembered, first
   * evicted) to answer while the store cannot be read. Default 10,000; 0 disables.
   */
  readonly rememberedPolicies?: number;
  /** Upper bound of the memory those policies take (estimated bytes). Default 32 MiB. */
  readonly rememberedPolicyBytes?: number;
  /** Tuning of the refresher: concurrency, lease length, batch size, node id, random source. */
  readonly refresherOptions?: RefresherOptions;
  /**
   * Caps on discoveries in flight (see `discovery-admission.ts`): in all, per registrable domain,
   * and a reserve for TXT checks of cached domains and the refresher. A discovery over a cap is
   * refused at once with `ERR_MTASTSDB_DISCOVERY_LIMIT` (a cached policy still answers). Default
   * none: no cap (the daemon sets them from `limits.*`).
   */
  readonly discoveryLimits?: DiscoveryLimits;
}

/** Tuning of the refresher. All optional. */
export interface RefresherOptions {
  /** Records refreshed at once (the pool shared by passes, refresh by name and purge). Default 4. */
  readonly concurrency?: number;
  /** Lease taken on a record before refreshing it. Default 600 s. */
  readonly leaseSeconds?: number;
  /** Records read and shuffled at a time. Default 1000. */
  readonly batchSize?: number;
  /** This node's id in leases. Default a random UUID. */
  readonly owner?: string;
  /** Random numbers in [0, 1) for the shuffle and the jitter. Default `Math.random`. */
  readonly random?: () => number;
}

/** What `purge` deletes. With neither date given: records expired now. */
export interface PurgeOptions {
  /** Delete records whose `validEnd` is before this time. */
  readonly expiredBefore?: Date;
  /** Delete records whose `lastUse` is before this time. */
  readonly unusedSince?: Date;
  readonly signal?: AbortSignal;
}

/** Counts of one refresh pass. */
export interface RefreshSummary {
  readonly checked: number;
  readonly unchanged: number;
  readonly updated: number;
  readonly failed: number;
  readonly deleted: number;
}

/** The policy database. */
export interface PolicyDatabase {
  get(domain: string | Domain, options?: { readonly signal?: AbortSignal }): Promise<GetOutcome>;
  /** Cache only, no network. Throws `ERR_MTASTSDB_NOT_FOUND` or `ERR_MTASTSDB_BACKOFF`. */
  lookup(domain: string | Domain): Promise<PolicyRecord>;
  upsert(domain: string | Domain, recordId: string, policy: Policy | null, policyText?: string): Promise<void>;
  policyRecords(): Promise<PolicyRecord[]>;
  policyRecordsStream(options?: ListOptions): AsyncIterable<PolicyRecord>;
  delete(domain: string | Domain): Promise<boolean>;
  /** Refreshes the given domains now (all due records when none given). */
  refresh(
    domains?: readonly string[],
    options?: { readonly signal?: AbortSignal; readonly onProgress?: (done: number, total: number) => void },
  ): Promise<RefreshSummary>;
  /** Deletes expired and/or unused records; returns how many (CLI `purge`). */
  purge(options?: PurgeOptions): Promise<number>;
  /** Writes a whole record as given (CLI `import`); false when the store holds a newer one. */
  importRecord(record: PolicyRecord): Promise<boolean>;
  close(): Promise<void>;
}
