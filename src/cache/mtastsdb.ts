/**
 * The policy database: a durable MTA-STS policy cache with the semantics of mox's `mtastsdb`
 * package (`Get`, `lookup`, `Upsert`, `PolicyRecords`, the refresher), on any {@link PolicyStore}.
 *
 * The cache is what protects delivery once a policy has been seen: an attacker who later strips the
 * TXT record, makes DNS fail or blocks the HTTPS fetch only gets the cached policy back (RFC 8461
 * §3.3, §10). See {@link MtaStsDb.get} for the rules.
 */
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { lookupRecord } from '../discovery/lookup-record.js';
import { createNodeResolver } from '../discovery/node-resolver.js';
import type { DnsResolver } from '../discovery/resolver.js';
import { isMtaStsError, MtaStsError } from '../errors.js';
import { createHttpsFetcher } from '../fetch/https-fetcher.js';
import type { FetchedPolicy, PolicyFetcher } from '../fetch/fetcher.js';
import { silentLogger, type Logger } from '../logger.js';
import { noopMetrics, type FetchResult, type GetResult, type Metrics } from '../metrics/metrics.js';
import { Domain, parseDomain } from '../rfc8461/domain.js';
import { BACKOFF_SECONDS } from '../rfc8461/limits.js';
import { effectiveMaxAgeSeconds, formatPolicy, type Policy } from '../rfc8461/policy.js';
import type { StsRecord } from '../rfc8461/record.js';
import { MemoryCachedStore } from '../store/memory-cached-store.js';
import { openStore } from '../store/open-store.js';
import type { ListOptions, PolicyRecord, PolicyStore } from '../store/policy-store.js';
import { Refresher } from './refresher.js';
import { deadline, shareSignal, type Deadline } from './deadline.js';
import { SingleFlight } from './single-flight.js';
import { backoffDetails, failureDetails, noPolicyResult, policyResult, stsFailureResult } from './tlsrpt-report.js';
import type { GetOutcome, MtaStsDbOptions, PolicyDatabase, PurgeOptions, RefreshSummary } from './types.js';

/** Bound of a discovery (TXT lookup and policy fetch) for a domain not cached: mox's one minute. */
export const DISCOVERY_TIMEOUT_MS = 60_000;
/** Bound of the TXT check of a cached policy: mox's 30 s. */
export const TXT_CHECK_TIMEOUT_MS = 30_000;
/** Bound of the fetch of a policy announced by a new TXT id (the fetcher's own default is 60 s too). */
export const REFETCH_TIMEOUT_MS = 60_000;
/** Deferred `lastUse` writes are flushed after at most this long… */
export const USE_FLUSH_MS = 1000;
/** …or once this many domains are waiting. */
export const USE_FLUSH_ENTRIES = 1000;
/**
 * Default resolution of `lastUse`: a hit within this many seconds of the stored `lastUse` is not
 * written again. `lastUse` serves the 180-day eviction and the listing order, for which a minute is
 * precise enough; writing it on every hit would make every lookup a random row write (measured:
 * 25–50 µs per row in SQLite, more than the lookup itself).
 */
export const DEFAULT_LAST_USE_RESOLUTION_SECONDS = 60;
/** Default of `memoryCache.entries`. */
export const DEFAULT_MEMORY_CACHE_ENTRIES = 10_000;
/** With this many uses waiting, a lookup that adds one waits for the flush in progress. */
const USE_BACKPRESSURE_ENTRIES = 10 * USE_FLUSH_ENTRIES;
/** If the store keeps refusing `lastUse` writes, at most this many wait in memory. */
const MAX_PENDING_USES = 100_000;

/** Per-call options of {@link MtaStsDb.get}. */
export interface GetOptions {
  /** Ends this caller's wait (`ERR_MTASTS_ABORTED`); shared work for other callers carries on. */
  readonly signal?: AbortSignal;
  /** The resolver for this call's TXT lookup (the module API's `get(resolver, domain)`). */
  readonly resolver?: DnsResolver;
}

/**
 * RFC 8461 §3.3 and mox: after a failed fetch the domain is treated as not doing MTA-STS for five
 * minutes. Stored as a policy in mode `none` with max_age 300 and `backoff: true`.
 */
const BACKOFF_POLICY: Policy = Object.freeze({
  version: 'STSv1',
  mode: 'none',
  mx: Object.freeze([]),
  maxAgeSeconds: BACKOFF_SECONDS,
  extensions: Object.freeze([]),
}) as Policy;

/** What one shared network step produced, with the metric label for it. */
interface Flown {
  readonly outcome: GetOutcome;
  readonly result: GetResult;
}

/**
 * RFC 8461 §3.3 and §10: a failure (DNS, fetch, another node's write) leaves a valid cached policy
 * in force; report the failure with it.
 */
function fallbackToCached(d: Domain, cached: PolicyRecord, err: unknown, enforcing: boolean): Flown {
  return {
    outcome: {
      policy: cached.policy,
      fresh: false,
      report: policyResult(d, cached.policy, cached.policyText, [failureDetails(err, enforcing)]),
      record: cached,
    },
    result: 'ok',
  };
}

/**
 * A policy answered from the cache within the TXT recheck grace: the daemon's every warm answer.
 * The TLSRPT result is built when first read (most callers never read it).
 */
class GraceOutcome implements GetOutcome {
  readonly fresh = true;
  #report: GetOutcome['report'] | undefined;

  constructor(
    private readonly domain: Domain,
    readonly record: PolicyRecord,
  ) {}

  get policy(): Policy {
    return this.record.policy;
  }

  get report(): GetOutcome['report'] {
    this.#report ??= policyResult(this.domain, this.record.policy, this.record.policyText);
    return this.#report;
  }

  toJSON(): GetOutcome {
    return { policy: this.policy, fresh: this.fresh, report: this.report, record: this.record };
  }
}

function toDomain(domain: string | Domain): Domain {
  return domain instanceof Domain ? domain : parseDomain(domain);
}

function fetchResult(err: unknown): FetchResult {
  if (isMtaStsError(err, 'ERR_MTASTS_NO_POLICY')) return 'no_policy';
  if (isMtaStsError(err, 'ERR_MTASTS_POLICY_SYNTAX')) return 'invalid';
  return 'error';
}

/** A failed fetch that means "back off" (RFC 8461 §3.3), as opposed to a bug or bad usage. */
function isFetchFailure(err: unknown): boolean {
  return isMtaStsError(err, 'ERR_MTASTS_NO_POLICY', 'ERR_MTASTS_POLICY_FETCH', 'ERR_MTASTS_POLICY_SYNTAX');
}

function textOf(policy: Policy): string {
  try {
    return formatPolicy(policy);
  } catch {
    return '';
  }
}

/**
 * The MTA-STS policy database. Open with {@link MtaStsDb.open}; close with {@link MtaStsDb.close}.
 *
 * Decisions where mox or the issue left room (each also noted at the code):
 * - `lastUse` writes are deferred: a hit records the time in memory and a batch is written with
 *   `store.touch` every second, every 1000 domains, before listing or purging, and on `close()`.
 *   A hit within `lastUseResolutionSeconds` (default 60) of the stored `lastUse` is not recorded
 *   again (0 records every hit, as mox does).
 * - `upsert` keeps `inserted` of the record it overwrites (it is when the domain was first seen).
 * - With `txtRecheckSeconds` > 0, a get within that many seconds of `lastUpdate` answers from the
 *   cache with `fresh: true` (the id was confirmed that recently), and a get that confirms the TXT
 *   id records it (`lastUpdate` = now, validity extended by max_age, as the refresher does).
 *   With the default 0 (mox) every get checks the TXT record and a confirmation writes nothing.
 * - Discovery answers (no record, back-off stored, new policy) are `fresh: true`, as mox's.
 * - A store given as an object is the caller's: `close()` closes only a store it opened itself.
 */
export class MtaStsDb implements PolicyDatabase {
  /** The store the records live in (behind the memory cache when one is configured). */
  readonly store: PolicyStore;
  /** The in-process copy of recent records, when `memoryCache` is on. */
  private readonly memory: MemoryCachedStore | undefined;
  private readonly ownsStore: boolean;
  private readonly clock: Clock;
  private readonly resolver: DnsResolver;
  private readonly fetcher: PolicyFetcher;
  private readonly logger: Logger;
  private readonly metrics: Metrics;
  private readonly txtRecheckMs: number;
  private readonly useResolutionMs: number;
  private readonly flights = new SingleFlight<string, Flown>();
  private readonly refresher: Refresher;
  /** Aborted by close(): ends network work in progress and the refresher's sleeps. */
  private readonly closeAbort = new AbortController();
  private readonly closeSignal = shareSignal(this.closeAbort.signal);
  private readonly ops = new Set<Promise<unknown>>();
  private pendingUses = new Map<string, number>();
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  private constructor(backing: PolicyStore, ownsStore: boolean, options: MtaStsDbOptions) {
    this.ownsStore = ownsStore;
    this.clock = options.clock ?? systemClock;
    const mc = options.memoryCache;
    const clock = this.clock;
    // With 0 entries or 0 seconds it keeps nothing: every lookup reads the store.
    this.memory =
      mc === undefined
        ? undefined
        : new MemoryCachedStore(backing, {
            entries: mc.entries ?? DEFAULT_MEMORY_CACHE_ENTRIES,
            seconds: mc.seconds,
            ...(mc.bytes !== undefined ? { bytes: mc.bytes } : {}),
            now: () => clock.now(),
          });
    const store = this.memory ?? backing;
    this.store = store;
    this.logger = options.logger ?? silentLogger;
    this.metrics = options.metrics ?? noopMetrics;
    this.resolver = options.resolver ?? createNodeResolver();
    this.fetcher =
      options.fetcher ??
      createHttpsFetcher({
        ...(options.fetchOptions ?? {}),
        ...(options.fetchOptions?.resolver === undefined && options.resolver !== undefined
          ? { resolver: options.resolver }
          : {}),
      });
    const recheck = options.txtRecheckSeconds ?? 0;
    if (!Number.isFinite(recheck) || recheck < 0) {
      throw new MtaStsError('ERR_MTASTS_USAGE', `txtRecheckSeconds must be a number ≥ 0, got ${String(recheck)}`);
    }
    this.txtRecheckMs = recheck * 1000;
    const resolution = options.lastUseResolutionSeconds ?? DEFAULT_LAST_USE_RESOLUTION_SECONDS;
    if (!Number.isFinite(resolution) || resolution < 0) {
      throw new MtaStsError(
        'ERR_MTASTS_USAGE',
        `lastUseResolutionSeconds must be a number ≥ 0, got ${String(resolution)}`,
      );
    }
    this.useResolutionMs = resolution * 1000;
    this.refresher = new Refresher(
      {
        store,
        clock: this.clock,
        resolver: this.resolver,
        fetcher: this.fetcher,
        logger: this.logger,
        metrics: this.metrics,
        flushUses: () => this.flushUses(),
      },
      options.refresherOptions,
    );
  }

  /**
   * Opens the database: the store from `options.store` (a URL or a ready store), else
   * `options.path`/`options.dataDir`, else `MTASTSDB_STORE`/`MTASTSDB_DATA_DIR`, else
   * `./data/mtasts.db`. Starts the refresher when `options.refresher` is true.
   */
  static async open(options: MtaStsDbOptions = {}): Promise<MtaStsDb> {
    let store: PolicyStore;
    let owns = false;
    if (options.store !== undefined && typeof options.store !== 'string') {
      store = options.store;
    } else {
      store = await openStore({
        ...(options.store !== undefined ? { store: options.store } : {}),
        ...(options.path !== undefined ? { path: options.path } : {}),
        ...(options.dataDir !== undefined ? { dataDir: options.dataDir } : {}),
        ...(options.logger !== undefined ? { logger: options.logger } : {}),
      });
      owns = true;
    }
    let db: MtaStsDb;
    try {
      db = new MtaStsDb(store, owns, options);
    } catch (err) {
      if (owns) await store.close().catch(() => {});
      throw err;
    }
    try {
      db.metrics.cacheSize(await store.count());
    } catch (err) {
      db.logger.warn({ err }, 'counting cached mta-sts policies');
    }
    if (options.refresher === true) db.refresher.start();
    return db;
  }

  /** The refresher's lease owner id (this node's id in a fleet). */
  get nodeId(): string {
    return this.refresher.owner;
  }

  /** `lastUse` writes waiting in memory (see the class comment). */
  get pendingUseCount(): number {
    return this.pendingUses.size;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  private checkOpen(): void {
    if (this.closing !== undefined) throw new MtaStsError('ERR_MTASTSDB_CLOSED', 'the policy database is closed');
  }

  /** Keeps `p` in the set close() waits for. */
  private track<T>(p: Promise<T>): Promise<T> {
    this.ops.add(p);
    const forget = (): void => {
      this.ops.delete(p);
    };
    p.then(forget, forget);
    return p;
  }

  /** A signal for shared work: aborted by close() or after `ms`. Dispose it when the work ends. */
  private bound(ms: number): Deadline {
    return deadline(this.closeSignal, ms);
  }

  private closedError(cause?: unknown): MtaStsError {
    return new MtaStsError('ERR_MTASTSDB_CLOSED', 'the policy database was closed', { cause });
  }

  // ---------------------------------------------------------------------------------------------
  // lookup: the cache alone

  /** The stored record if it is still valid, with its use recorded; undefined when none is. */
  private async find(key: string, now: number): Promise<PolicyRecord | undefined> {
    const rec = this.memory !== undefined ? await this.memory.recent(key) : await this.store.get(key);
    // mox: only records with validEnd after now count.
    if (rec === undefined || rec.validEnd.getTime() <= now) return undefined;
    // A use within the resolution of the stored one changes nothing worth a write.
    if (now - rec.lastUse.getTime() >= this.useResolutionMs) {
      this.markUsed(key, now);
      // Lookups faster than the store takes their uses (a million first uses after a restart):
      // wait for the flush in progress rather than hold ever more uses in memory.
      if (this.pendingUses.size >= USE_BACKPRESSURE_ENTRIES && this.flushing !== undefined) await this.flushing;
    }
    return { ...rec, lastUse: new Date(now) };
  }

  /**
   * The cached record of `domain`, without network. Records the use (`lastUse`).
   *
   * @throws MtaStsError `ERR_MTASTSDB_NOT_FOUND` when no valid record is cached;
   *   `ERR_MTASTSDB_BACKOFF` when the record is a back-off after a recent failed fetch
   *   (`details.record` holds it); `ERR_MTASTS_DOMAIN` for an invalid name.
   */
  async lookup(domain: string | Domain): Promise<PolicyRecord> {
    this.checkOpen();
    const d = toDomain(domain);
    const rec = await this.track(this.find(d.name(), this.clock.now()));
    if (rec === undefined) {
      throw new MtaStsError('ERR_MTASTSDB_NOT_FOUND', `no valid cached MTA-STS policy for ${d.name()}`);
    }
    if (rec.backoff) {
      throw new MtaStsError('ERR_MTASTSDB_BACKOFF', `MTA-STS policy fetch for ${d.name()} failed recently`, {
        details: { record: rec },
      });
    }
    return rec;
  }

  // ---------------------------------------------------------------------------------------------
  // get: the cache with discovery and TXT checks

  /**
   * The policy to apply to mail for `domain`, with mox's `Get` semantics:
   *
   * - nothing valid cached → discovery (TXT lookup, then HTTPS fetch; one minute at most):
   *   no TXT record, several, or a malformed one → `policy: null`, nothing stored (the domain does
   *   not do MTA-STS); a temporary DNS failure → throws `ERR_MTASTS_DNS` (retry later;
   *   `details.report` holds the TLSRPT result); a fetch, TLS, HTTP or policy-syntax failure →
   *   a back-off record is stored (mode none, 5 minutes) and `policy: null`; success → stored, fresh.
   * - a back-off record cached → `policy: null, fresh: false`, no network.
   * - a policy cached → its TXT id is checked (30 s at most) unless confirmed within
   *   `txtRecheckSeconds`: same id → the cached policy, fresh; new id → the new policy is fetched
   *   and stored, fresh; any failure (TXT gone, DNS failing, fetch failing) → the cached policy,
   *   `fresh: false`: never weaker than the cache before it expires (RFC 8461 §10).
   * - Concurrent gets of one domain share one network step (single-flight).
   *
   * @throws MtaStsError `ERR_MTASTS_DNS` (temporary), `ERR_MTASTS_ABORTED` (`options.signal`),
   *   `ERR_MTASTS_DOMAIN` (invalid name), `ERR_MTASTSDB_CLOSED`, store errors.
   */
  async get(domain: string | Domain, options: GetOptions = {}): Promise<GetOutcome> {
    this.checkOpen();
    return this.track(this.getOutcome(domain, options));
  }

  private async getOutcome(domain: string | Domain, options: GetOptions): Promise<GetOutcome> {
    let result: GetResult = 'error';
    try {
      const d = toDomain(domain);
      const key = d.name();
      const now = this.clock.now();
      const resolver = options.resolver ?? this.resolver;
      const cached = await this.find(key, now);

      if (cached === undefined) {
        this.metrics.cache('miss');
        const flown = await this.flights.run(key, () => this.discover(d, resolver), options.signal);
        result = flown.result;
        return flown.outcome;
      }

      this.metrics.cache('hit');
      if (cached.backoff) {
        // RFC 8461 §3.3, mox: a fetch failed recently; act as if MTA-STS is not implemented.
        result = 'backoff';
        return { policy: null, fresh: false, report: stsFailureResult(d, [backoffDetails()]), record: cached };
      }
      if (this.txtRecheckMs > 0 && now - cached.lastUpdate.getTime() < this.txtRecheckMs) {
        // Confirmed within the grace period: answer without DNS. `fresh` because it was confirmed.
        result = 'ok';
        return new GraceOutcome(d, cached);
      }
      const flown = await this.flights.run(key, () => this.recheck(d, cached, resolver), options.signal);
      result = flown.result;
      return flown.outcome;
    } finally {
      this.metrics.get(result);
    }
  }

  /** Rethrows an error of shared work as "closed" when close() caused it. */
  private rethrowIfClosing(err: unknown): void {
    if (this.closeAbort.signal.aborted) throw this.closedError(err);
  }

  /** Nothing cached: look up the TXT record and fetch the policy (mox `Get`, not-found branch). */
  private async discover(d: Domain, resolver: DnsResolver): Promise<Flown> {
    const bound = this.bound(DISCOVERY_TIMEOUT_MS);
    try {
      return await this.discoverWithin(d, resolver, bound.signal);
    } finally {
      bound.dispose();
    }
  }

  private async discoverWithin(d: Domain, resolver: DnsResolver, signal: AbortSignal): Promise<Flown> {
    const key = d.name();
    let record: StsRecord;
    try {
      record = await lookupRecord(d, { resolver, signal });
    } catch (err) {
      this.rethrowIfClosing(err);
      if (isMtaStsError(err, 'ERR_MTASTS_NO_RECORD')) {
        // RFC 8461 §3.1: no record, the domain does not do MTA-STS. Nothing is stored.
        return { outcome: { policy: null, fresh: true, report: noPolicyResult(d) }, result: 'notfound' };
      }
      if (isMtaStsError(err, 'ERR_MTASTS_MULTIPLE_RECORDS', 'ERR_MTASTS_RECORD_SYNTAX')) {
        // RFC 8461 §3.1: treated as no record; reported (as mox does) so the domain owner learns of it.
        this.logger.debug({ err, domain: key }, 'invalid MTA-STS TXT record; treating the domain as not doing MTA-STS');
        return {
          outcome: { policy: null, fresh: true, report: stsFailureResult(d, [failureDetails(err)]) },
          result: 'notfound',
        };
      }
      if (isMtaStsError(err, 'ERR_MTASTS_DNS', 'ERR_MTASTS_ABORTED')) {
        // Temporary: the caller retries later. Our own time bound ending counts as a DNS failure.
        throw new MtaStsError('ERR_MTASTS_DNS', `looking up the MTA-STS record of ${key}: ${err.message}`, {
          cause: err,
          details: { ...err.details, report: stsFailureResult(d, [failureDetails(err)]) },
        });
      }
      throw err;
    }

    const t0 = performance.now();
    let fetched: FetchedPolicy;
    try {
      fetched = await this.fetcher.fetch(d, { signal });
      this.metrics.fetch('ok', (performance.now() - t0) / 1000);
    } catch (err) {
      this.rethrowIfClosing(err);
      const timedOut = isMtaStsError(err, 'ERR_MTASTS_ABORTED') && signal.aborted;
      if (!isFetchFailure(err) && !timedOut) throw err;
      this.metrics.fetch(fetchResult(err), (performance.now() - t0) / 1000);
      // RFC 8461 §3.3: the TXT record exists but no policy could be had. Back off for 5 minutes
      // (mox) so a broken domain is not fetched for every message.
      this.logger.info({ err, domain: key }, 'MTA-STS policy fetch failed; backing off');
      let stored: PolicyRecord | undefined;
      try {
        // Another node of a fleet may have stored the policy meanwhile: never put a back-off over
        // a valid policy (RFC 8461 §10); use that policy instead.
        const cur = await this.store.get(key);
        if (cur !== undefined && !cur.backoff && cur.validEnd.getTime() > this.clock.now()) {
          return fallbackToCached(d, cur, err, true);
        }
        stored = await this.write(key, record.id, null);
      } catch (werr) {
        this.logger.error({ err: werr, domain: key }, 'storing MTA-STS back-off record, continuing');
      }
      return {
        outcome: {
          policy: null,
          fresh: true,
          report: stsFailureResult(d, [failureDetails(err)]),
          ...(stored !== undefined ? { record: stored } : {}),
        },
        result: 'backoff',
      };
    }

    return this.answerFetched(d, record.id, fetched);
  }

  /** A policy is cached: check its TXT id, fetch when it changed (mox `Get`, found branch). */
  private async recheck(d: Domain, cached: PolicyRecord, resolver: DnsResolver): Promise<Flown> {
    const key = d.name();
    const policy = cached.policy;
    const enforcing = policy.mode !== 'none';
    let record: StsRecord;
    const txtBound = this.bound(TXT_CHECK_TIMEOUT_MS);
    try {
      record = await lookupRecord(d, { resolver, signal: txtBound.signal });
    } catch (err) {
      this.rethrowIfClosing(err);
      if (isMtaStsError(err, 'ERR_MTASTS_NO_RECORD') && enforcing) {
        // RFC 8461 §10.2: the owner should phase out with a `none` policy first; a TXT record that
        // vanishes under a live policy may be an attacker stripping it. Keep the cached policy.
        this.logger.error(
          { err, domain: key, mode: policy.mode },
          'no MTA-STS TXT record while a cached policy is valid: the domain removed MTA-STS without ' +
            'phasing it out, or this is a downgrade attempt; continuing with the cached policy',
        );
      } else {
        this.logger.debug(
          { err, domain: key },
          'checking the MTA-STS TXT record failed; continuing with the cached policy',
        );
      }
      // RFC 8461 §3.3: with no live policy, a valid cached one applies.
      return fallbackToCached(d, cached, err, enforcing);
    } finally {
      txtBound.dispose();
    }

    if (record.id === cached.recordId) {
      let rec = cached;
      if (this.txtRecheckMs > 0) {
        // Record the confirmation so the grace period starts now (see the class comment).
        try {
          rec = await this.confirm(cached);
        } catch (err) {
          this.logger.warn({ err, domain: key }, 'recording the MTA-STS TXT confirmation, continuing');
        }
      }
      return {
        outcome: { policy: rec.policy, fresh: true, report: policyResult(d, rec.policy, rec.policyText), record: rec },
        result: 'ok',
      };
    }

    // RFC 8461 §3.3: a new id announces a new policy.
    const t0 = performance.now();
    let fetched: FetchedPolicy;
    const fetchBound = this.bound(REFETCH_TIMEOUT_MS);
    try {
      fetched = await this.fetcher.fetch(d, { signal: fetchBound.signal });
      this.metrics.fetch('ok', (performance.now() - t0) / 1000);
    } catch (err) {
      this.rethrowIfClosing(err);
      this.metrics.fetch(fetchResult(err), (performance.now() - t0) / 1000);
      // RFC 8461 §3.3: keep applying the cached policy; never store a back-off over it.
      this.logger.error(
        { err, domain: key, recordId: record.id },
        'fetching the updated MTA-STS policy failed; continuing with the cached policy',
      );
      return fallbackToCached(d, cached, err, true);
    } finally {
      fetchBound.dispose();
    }
    return this.answerFetched(d, record.id, fetched);
  }

  /** A policy just fetched under TXT id `recordId`: stored, and answered fresh. */
  private async answerFetched(d: Domain, recordId: string, fetched: FetchedPolicy): Promise<Flown> {
    const stored = await this.storeFetched(d.name(), recordId, fetched);
    return {
      outcome: {
        policy: fetched.policy,
        fresh: true,
        report: policyResult(d, fetched.policy, fetched.text),
        record: stored,
      },
      result: 'ok',
    };
  }

  /** Stores a fetched policy; a store failure is logged and the policy still used (mox). */
  private async storeFetched(key: string, recordId: string, fetched: FetchedPolicy): Promise<PolicyRecord> {
    try {
      return await this.write(key, recordId, fetched.policy, fetched.text);
    } catch (err) {
      this.logger.error({ err, domain: key }, 'storing the MTA-STS policy failed, continuing with the fetched policy');
      const now = new Date(this.clock.now());
      return this.makeRecord(key, recordId, fetched.policy, fetched.text, now, now);
    }
  }

  /** `lastUpdate` = now and validity extended by max_age, after the TXT id was confirmed. */
  private async confirm(cached: PolicyRecord): Promise<PolicyRecord> {
    const now = this.clock.now();
    const rec: PolicyRecord = {
      ...cached,
      lastUpdate: new Date(now),
      validEnd: new Date(now + effectiveMaxAgeSeconds(cached.policy) * 1000),
      lastUse: new Date(now),
    };
    await this.store.put(rec);
    return rec;
  }

  // ---------------------------------------------------------------------------------------------
  // upsert and other writes

  private makeRecord(
    key: string,
    recordId: string,
    policy: Policy | null,
    policyText: string | undefined,
    now: Date,
    inserted: Date,
  ): PolicyRecord {
    const p = policy ?? BACKOFF_POLICY;
    return {
      domain: key,
      inserted,
      // RFC 8461 §3.2: max_age is capped to 31557600 s when cached.
      validEnd: new Date(now.getTime() + effectiveMaxAgeSeconds(p) * 1000),
      lastUpdate: now,
      lastUse: now,
      backoff: policy === null,
      recordId,
      policy: p,
      policyText: policyText !== undefined && policyText !== '' ? policyText : textOf(p),
    };
  }

  /** Upsert without the open check (used by get while closing). */
  private async write(
    key: string,
    recordId: string,
    policy: Policy | null,
    policyText?: string,
  ): Promise<PolicyRecord> {
    const now = new Date(this.clock.now());
    const existing = await this.store.get(key);
    // `inserted` is when the domain was first cached: kept across overwrites.
    const rec = this.makeRecord(key, recordId, policy, policyText, now, existing?.inserted ?? now);
    const written = await this.store.put(rec);
    if (!written) {
      // Another node stored a newer record meanwhile (fleet); it wins.
      this.logger.info({ domain: key }, 'a newer MTA-STS record is already stored; keeping it');
    }
    return rec;
  }

  /**
   * Inserts or overwrites the record of `domain` (mox `Upsert`): `validEnd` = now +
   * min(max_age, 31557600) s, `lastUpdate` = `lastUse` = now, `inserted` kept from an existing
   * record. `policy` null stores a back-off record (mode none, 5 minutes). `policyText` defaults to
   * the formatted policy.
   */
  async upsert(domain: string | Domain, recordId: string, policy: Policy | null, policyText?: string): Promise<void> {
    this.checkOpen();
    const key = toDomain(domain).name();
    await this.track(this.write(key, recordId, policy, policyText));
  }

  /**
   * Writes a whole record as given (CLI `import`): the store's newest-wins rule applies. True when
   * it was written, false when the store holds a newer one.
   */
  async importRecord(record: PolicyRecord): Promise<boolean> {
    this.checkOpen();
    return this.track(this.store.put(record));
  }

  /** Deletes the record of `domain`; true when there was one. */
  async delete(domain: string | Domain): Promise<boolean> {
    this.checkOpen();
    const key = toDomain(domain).name();
    this.pendingUses.delete(key);
    return this.track(this.store.delete(key));
  }

  /**
   * Deletes records expired before `expiredBefore` and records unused since `unusedSince` (either
   * or both; with neither, records expired now). Returns how many were deleted.
   */
  async purge(options: PurgeOptions = {}): Promise<number> {
    this.checkOpen();
    return this.track(
      (async () => {
        await this.flushUses();
        const sweeps: ListOptions[] = [];
        if (options.expiredBefore !== undefined) sweeps.push({ validEndBefore: options.expiredBefore });
        if (options.unusedSince !== undefined) sweeps.push({ usedBefore: options.unusedSince });
        if (sweeps.length === 0) sweeps.push({ validEndBefore: new Date(this.clock.now()) });
        let deleted = 0;
        for (const filter of sweeps) {
          // List a batch, delete it, list again: never delete under a running listing.
          for (;;) {
            const batch: string[] = [];
            for await (const r of this.store.list({ ...filter, pageSize: 1000 })) {
              batch.push(r.domain);
              if (batch.length >= 1000) break;
            }
            let n = 0;
            for (const domain of batch) {
              options.signal?.throwIfAborted();
              if (await this.store.delete(domain)) n++;
            }
            deleted += n;
            if (batch.length < 1000 || n === 0) break;
          }
        }
        return deleted;
      })(),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // listing

  /** Every record, newest `lastUse` first, then by domain (mox `PolicyRecords`). Loads all: see {@link policyRecordsStream}. */
  async policyRecords(): Promise<PolicyRecord[]> {
    const out: PolicyRecord[] = [];
    for await (const r of this.policyRecordsStream()) out.push(r);
    return out;
  }

  /** The records matching `options`, newest `lastUse` first, then by domain, read page by page. */
  async *policyRecordsStream(options: ListOptions = {}): AsyncGenerator<PolicyRecord> {
    this.checkOpen();
    await this.flushUses();
    yield* this.store.list(options);
  }

  // ---------------------------------------------------------------------------------------------
  // refresh

  /**
   * Refreshes now: the given domains (cached ones through the refresher's step, others by a
   * discovery as `get` does), or, with none given, one refresher pass over every due record without
   * the 3 h spread (deletions included).
   */
  async refresh(
    domains?: readonly string[],
    options: { readonly signal?: AbortSignal; readonly onProgress?: (done: number, total: number) => void } = {},
  ): Promise<RefreshSummary> {
    this.checkOpen();
    const signal =
      options.signal === undefined ? this.closeAbort.signal : AbortSignal.any([options.signal, this.closeAbort.signal]);
    if (domains === undefined) {
      return this.track(
        this.refresher.pass({
          signal,
          spread: false,
          ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
        }),
      );
    }
    return this.track(this.refreshDomains(domains, signal, options.onProgress));
  }

  private async refreshDomains(
    domains: readonly string[],
    signal: AbortSignal,
    onProgress: ((done: number, total: number) => void) | undefined,
  ): Promise<RefreshSummary> {
    const counts = { checked: 0, unchanged: 0, updated: 0, failed: 0, deleted: 0 };
    let next = 0;
    let done = 0;
    onProgress?.(0, domains.length);
    const worker = async (): Promise<void> => {
      while (next < domains.length) {
        signal.throwIfAborted();
        const name = domains[next++]!;
        counts.checked++;
        try {
          const d = toDomain(name);
          const cur = await this.store.get(d.name());
          if (cur !== undefined) {
            // Explicit refresh: due whatever its lastUpdate (updatedBefore just after now).
            const r = await this.refresher.refreshRecord(cur, {
              updatedBefore: new Date(this.clock.now() + 1),
              signal,
            });
            if (r === 'unchanged' || r === 'updated' || r === 'failed' || r === 'deleted') counts[r]++;
          } else {
            const out = await this.getOutcome(d, { signal });
            if (out.policy !== null) counts.updated++;
            else counts.failed++;
          }
        } catch (err) {
          if (signal.aborted) throw err;
          this.logger.error({ err, domain: name }, 'refreshing MTA-STS policy');
          counts.failed++;
        }
        onProgress?.(++done, domains.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, domains.length) }, worker));
    return counts;
  }

  // ---------------------------------------------------------------------------------------------
  // lastUse bookkeeping

  /** Records a use in memory; written in batches (see the class comment). */
  private markUsed(key: string, now: number): void {
    this.pendingUses.set(key, now);
    if (this.pendingUses.size >= USE_FLUSH_ENTRIES) {
      // One flush at a time; the one running starts the next when it ends (see flushUses).
      if (this.flushing === undefined) void this.flushUses();
    } else {
      this.scheduleFlush();
    }
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== undefined || this.pendingUses.size === 0 || this.closeAbort.signal.aborted) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flushUses();
    }, USE_FLUSH_MS);
    // A pending flush never keeps the process alive; close() flushes what is left.
    this.flushTimer.unref();
  }

  private dropOldestUses(): void {
    for (const k of this.pendingUses.keys()) {
      if (this.pendingUses.size <= MAX_PENDING_USES) break;
      this.pendingUses.delete(k);
    }
  }

  /** Writes the deferred `lastUse` times now (one batch at a time). Never throws: failures are logged and kept. */
  async flushUses(): Promise<void> {
    while (this.flushing !== undefined) await this.flushing;
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (this.pendingUses.size === 0) return;
    const batch = this.pendingUses;
    this.pendingUses = new Map();
    const flush = (async () => {
      let written = false;
      try {
        const uses = Array.from(batch, ([domain, t]) => ({ domain, lastUse: new Date(t) }));
        await this.store.touch(uses);
        written = true;
      } catch (err) {
        this.logger.error({ err, count: batch.size }, 'recording MTA-STS policy use (lastUse) failed; will retry');
        for (const [k, t] of batch) {
          const newer = this.pendingUses.get(k);
          if (newer === undefined || newer < t) this.pendingUses.set(k, t);
        }
        this.dropOldestUses();
      } finally {
        this.flushing = undefined;
      }
      // Uses recorded meanwhile: a full batch is written now, a partial one (or a retry after a
      // failure) by the timer. close() writes what is left itself.
      if (this.closeAbort.signal.aborted) return;
      if (written && this.pendingUses.size >= USE_FLUSH_ENTRIES) void this.flushUses();
      else this.scheduleFlush();
    })();
    this.flushing = flush;
    await flush;
  }

  // ---------------------------------------------------------------------------------------------
  // close

  /**
   * Stops the refresher (aborting its sleeps and network calls, waiting for the step in progress),
   * ends network work of gets in progress (they reject with `ERR_MTASTSDB_CLOSED`), waits for
   * pending writes, writes the deferred `lastUse` times, and closes the store if it opened it.
   * Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closeAbort.abort(this.closedError());
    await this.refresher.stop();
    while (this.ops.size > 0) await Promise.allSettled([...this.ops]);
    await this.flights.idle();
    await this.flushUses();
    if (this.pendingUses.size > 0) {
      // One more try: a transient store fault should not lose them.
      await this.flushUses();
      if (this.pendingUses.size > 0) {
        this.logger.error({ count: this.pendingUses.size }, 'lastUse updates could not be written before close');
      }
    }
    if (this.ownsStore) await this.store.close();
    else this.memory?.clear();
  }
}
