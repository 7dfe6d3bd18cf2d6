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
import { noopMetrics, type DowngradeSign, type GetResult, type Metrics } from '../metrics/metrics.js';
import { BoundedMap } from '../bounded-map.js';
import { asDomain, type Domain } from '../rfc8461/domain.js';
import { BACKOFF_SECONDS } from '../rfc8461/limits.js';
import { policyTextOf, type Policy } from '../rfc8461/policy.js';
import type { StsRecord } from '../rfc8461/record.js';
import { MemoryCachedStore } from '../store/memory-cached-store.js';
import { openStore } from '../store/open-store.js';
import type { ListOptions, PolicyRecord, PolicyStore } from '../store/policy-store.js';
import { Refresher } from './refresher.js';
import { DiscoveryAdmission, type DiscoveryPurpose } from './discovery-admission.js';
import { deadline, Deadlines, shareSignal, TIMED_OUT, type Deadline } from '../deadline.js';
import { fallbackToCached, fetchResult, GraceOutcome, isFetchFailure, type Flown } from './outcomes.js';
import { confirmedRecord, fromTheFuture, newRecord, putOverFuture, validEndOf } from './policy-record.js';
import { estimatePolicyBytes, RememberedPolicies } from './remembered-policies.js';
import { SingleFlight } from '../single-flight.js';
import { RepeatGate, repeatedFields } from '../repeat-gate.js';
import { auditDowngrade, auditPolicyChange } from './policy-audit.js';
import { backoffDetails, failureDetails, noPolicyResult, policyResult, stsFailureResult } from './tlsrpt-report.js';
import {
  DEFAULT_LAST_USE_RESOLUTION_SECONDS,
  DEFAULT_MEMORY_CACHE_ENTRIES,
  DEFAULT_REMEMBERED_POLICIES,
  DEFAULT_REMEMBERED_POLICY_BYTES,
  DISCOVERY_LIMIT_LOG_INTERVAL_MS,
  DISCOVERY_TIMEOUT_MS,
  DOWNGRADE_LOG_DOMAINS,
  DOWNGRADE_LOG_INTERVAL_MS,
  MAX_REFETCH_FAILURES,
  MAX_UNSTORED_POLICIES,
  MAX_UNSTORED_POLICY_BYTES,
  REFETCH_FAILURE_BYTES,
  REFETCH_TIMEOUT_MS,
  STORE_ERROR_LOG_INTERVAL_MS,
  STORE_READ_FLOOR_MS,
  TXT_CHECK_TIMEOUT_MS,
  UNSTORED_RETRY_MS,
} from './tunables.js';
import type { GetOutcome, MtaStsDbOptions, PolicyDatabase, PurgeOptions, RefreshSummary, StsState } from './types.js';
import { UseRecorder } from './use-recorder.js';

/** Per-call options of {@link MtaStsDb.get}. */
export interface GetOptions {
  /** Ends this caller's wait (`ERR_MTASTS_ABORTED`); shared work for other callers carries on. */
  readonly signal?: AbortSignal;
  /** The resolver for this call's TXT lookup (the module API's `get(resolver, domain)`). */
  readonly resolver?: DnsResolver;
}

/** Per-call options of {@link MtaStsDb.stsState}. */
export interface StsStateOptions {
  /** Ends this caller's wait (the client went away); shared work for other callers carries on. */
  readonly signal?: AbortSignal;
  /** How long the answer may take (the zone timeout), ms; the discovery itself carries on. */
  readonly timeoutMs: number;
}

const NO_MTA_STS: StsState = Object.freeze({ kind: 'none' });

/** A short reason for `TEMP`, safe to show, from what made an answer fail. */
function tempReason(err: unknown): string {
  if (!isMtaStsError(err)) return 'MTA-STS lookup failed';
  switch (err.code) {
    case 'ERR_MTASTS_DNS':
      return 'MTA-STS DNS lookup failed';
    case 'ERR_MTASTSDB_CLOSED':
      return 'MTA-STS daemon shutting down';
    case 'ERR_MTASTSDB_DISCOVERY_LIMIT':
      return 'MTA-STS discovery limit reached';
    case 'ERR_MTASTS_ABORTED':
      return 'MTA-STS lookup aborted';
    default:
      return err.code.startsWith('ERR_MTASTSDB_STORE') ? 'MTA-STS policy store unavailable' : 'MTA-STS lookup failed';
  }
}

/**
 * The MTA-STS policy database. Open with {@link MtaStsDb.open}; close with {@link MtaStsDb.close}.
 *
 * Decisions where mox left room (each also noted at the code):
 * - `lastUse` writes are deferred ({@link UseRecorder}): a hit records the time in memory and a batch is written with
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
  private readonly uses: UseRecorder;
  /** The last policy answered per domain, for an unreadable store (see {@link stsState}). */
  private readonly remembered: RememberedPolicies;
  private readonly deadlines = new Deadlines();
  /** Policies fetched but refused by the store, answered until their validEnd (see {@link find}). */
  private readonly unstored = new BoundedMap<string, { readonly rec: PolicyRecord; readonly retryAt: number }>(
    MAX_UNSTORED_POLICIES,
    MAX_UNSTORED_POLICY_BYTES,
  );
  /** The last failed fetch of a new TXT id per domain (RFC 8461 §3.3 back-off under a cached policy). */
  private readonly refetchFailures = new BoundedMap<string, { id: string; at: number; err: unknown }>(
    MAX_REFETCH_FAILURES,
  );
  private readonly flights = new SingleFlight<string, Flown>();
  private readonly refresher: Refresher;
  /** Store failures recur on every write of a full or read-only disk: logged once a minute. */
  private readonly storeLog = new RepeatGate(STORE_ERROR_LOG_INTERVAL_MS);
  /** The caps on discoveries in flight, when configured (see {@link admit}). */
  private readonly admission: DiscoveryAdmission | undefined;
  /** Refusals by the discovery limits come in floods: logged once per cap per interval. */
  private readonly limitLog = new RepeatGate(DISCOVERY_LIMIT_LOG_INTERVAL_MS);
  /** A suspected downgrade recurs on every lookup of the domain: logged once per interval. */
  private readonly downgradeLog = new RepeatGate(DOWNGRADE_LOG_INTERVAL_MS, DOWNGRADE_LOG_DOMAINS);
  /** Aborted by close(): ends network work in progress and the refresher's sleeps. */
  private readonly closeAbort = new AbortController();
  private readonly closeSignal = shareSignal(this.closeAbort.signal);
  private readonly ops = new Set<Promise<unknown>>();
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
    this.uses = new UseRecorder(store, this.logger, resolution * 1000);
    this.admission =
      options.discoveryLimits !== undefined ? new DiscoveryAdmission(options.discoveryLimits) : undefined;
    this.remembered = new RememberedPolicies(
      options.rememberedPolicies ?? DEFAULT_REMEMBERED_POLICIES,
      options.rememberedPolicyBytes ?? DEFAULT_REMEMBERED_POLICY_BYTES,
    );
    this.refresher = new Refresher(
      {
        store,
        clock: this.clock,
        resolver: this.resolver,
        fetcher: this.fetcher,
        logger: this.logger,
        metrics: this.metrics,
        flushUses: () => this.flushUses(),
        discover: (d, signal) => this.getOutcome(d, { signal }, 'refresh'),
        admit: (d) => this.admit(d, 'refresh'),
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
    return this.uses.pending;
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
    let rec: PolicyRecord | undefined;
    const kept = this.unstored.get(key)?.rec;
    try {
      rec = this.memory !== undefined ? await this.memory.recent(key) : await this.store.get(key);
    } catch (err) {
      // The store cannot be read: a policy it refused to take still applies (RFC 8461 §10).
      if (kept === undefined || kept.validEnd.getTime() <= now) throw err;
    }
    // A policy the store refused (read-only, full) is answered from memory until its validEnd.
    if (kept !== undefined && (rec === undefined || kept.lastUpdate.getTime() > rec.lastUpdate.getTime())) rec = kept;
    // mox: only records with validEnd after now count.
    if (rec === undefined || rec.validEnd.getTime() <= now) return undefined;
    await this.uses.use(key, rec.lastUse.getTime(), now);
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
    const d = asDomain(domain);
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
   * - With `discoveryLimits`, network work over a cap is refused at once: nothing cached → throws
   *   `ERR_MTASTSDB_DISCOVERY_LIMIT` (temporary, nothing stored); a policy cached → the cached
   *   policy, `fresh: false`, as for a DNS failure.
   *
   * @throws MtaStsError `ERR_MTASTS_DNS` (temporary), `ERR_MTASTSDB_DISCOVERY_LIMIT` (temporary),
   *   `ERR_MTASTS_ABORTED` (`options.signal`),
   *   `ERR_MTASTS_DOMAIN` (invalid name), `ERR_MTASTSDB_CLOSED`, store errors.
   */
  async get(domain: string | Domain, options: GetOptions = {}): Promise<GetOutcome> {
    this.checkOpen();
    return this.track(this.getOutcome(domain, options));
  }

  /**
   * The MTA-STS state of `domain` for an answer due within `options.timeoutMs`, every fallback
   * applied (the one place RFC 8461 §10's "never weaker than the cache" is decided):
   *
   * 1. {@link get} answers in time → its policy (`fresh`, or `fallback` when a TXT check or fetch
   *    failed) or `none`.
   * 2. It fails or runs out of time → the cache alone, bounded (a store that hangs must not hang the
   *    MTA): a valid cached policy → `fallback`; the cache says nothing usable is cached → `temp`.
   * 3. The cache cannot be read (store errors, closed, hung) → the last policy answered for the
   *    domain while it is valid (`remembered`), else `temp` with `storeUnreadable`: the store may
   *    hold an enforced policy.
   *
   * The discovery is shared and carries on after the deadline, so the next answer finds it cached.
   * Never rejects.
   */
  async stsState(domain: string | Domain, options: StsStateOptions): Promise<StsState> {
    let d: Domain;
    try {
      d = asDomain(domain);
    } catch {
      return NO_MTA_STS; // not a host name: no policy can exist for it
    }
    const key = d.name();
    const bound = this.deadlines.add(options.timeoutMs);
    let failure: unknown;
    try {
      const got = this.get(d, options.signal !== undefined ? { signal: options.signal } : {});
      // After a timeout nobody awaits `got`; its late failure is expected, not unhandled.
      got.catch(() => {});
      const outcome = await Promise.race([got, bound.expired]);
      if (outcome !== TIMED_OUT) return this.answered(d, outcome);
      failure = new MtaStsError('ERR_MTASTS_ABORTED', 'MTA-STS lookup timed out', { details: { timeout: true } });
    } catch (err) {
      if (isMtaStsError(err, 'ERR_MTASTS_DOMAIN')) return NO_MTA_STS;
      failure = err;
      if (isMtaStsError(err)) this.logger.debug({ code: err.code, domain: key }, 'policy lookup failed');
      else this.logger.error({ err, domain: key }, 'policy lookup failed unexpectedly');
    } finally {
      this.deadlines.remove(bound);
    }
    const reason =
      isMtaStsError(failure, 'ERR_MTASTS_ABORTED') && failure.details.timeout === true
        ? 'MTA-STS lookup timed out'
        : tempReason(failure);

    // RFC 8461 §10: whatever failed, a cached policy still applies until it expires.
    let readErr: unknown;
    try {
      const rec = await this.readBounded(d, bound.at - performance.now());
      this.remembered.remember(key, rec.policy, rec.policyText, rec.validEnd.getTime());
      return { kind: 'policy', domain: d.ascii, policy: rec.policy, policyText: rec.policyText, source: 'fallback' };
    } catch (err) {
      readErr = err;
    }
    if (isMtaStsError(readErr, 'ERR_MTASTSDB_BACKOFF', 'ERR_MTASTSDB_NOT_FOUND')) {
      // The cache answered: nothing usable is cached.
      this.remembered.forget(key);
      return { kind: 'temp', reason, storeUnreadable: false };
    }
    // The cache could not be read, so we do not know what it holds; it may hold an enforced policy.
    const r = this.remembered.recall(key, this.clock.now());
    this.storeFailure(
      'warn',
      { err: readErr, domain: key, answer: r !== undefined ? 'remembered policy' : 'TEMP' },
      'policy store unreadable; answering from memory or deferring',
    );
    if (r !== undefined) {
      return { kind: 'policy', domain: d.ascii, policy: r.policy, policyText: r.policyText, source: 'remembered' };
    }
    return {
      kind: 'temp',
      reason: isMtaStsError(readErr) ? tempReason(readErr) : 'MTA-STS policy store unavailable',
      storeUnreadable: true,
    };
  }

  /** The state of a `get` answer, remembered (or forgotten) for an unreadable store. */
  private answered(d: Domain, outcome: GetOutcome): StsState {
    const key = d.name();
    const { policy, record } = outcome;
    if (policy === null) {
      // The store answered that nothing applies (no MTA-STS, back-off): memory follows it.
      this.remembered.forget(key);
      return NO_MTA_STS;
    }
    // Not `outcome.report`: building the TLSRPT result is left to those who read it.
    const policyText = policyTextOf(policy, record?.policyText);
    const validEnd =
      record !== undefined && !record.backoff
        ? record.validEnd.getTime()
        : validEndOf(policy, this.clock.now()).getTime();
    this.remembered.remember(key, policy, policyText, validEnd);
    return { kind: 'policy', domain: d.ascii, policy, policyText, source: outcome.fresh ? 'fresh' : 'fallback' };
  }

  /** {@link lookup} within `ms` (at least {@link STORE_READ_FLOOR_MS}): a store that hangs must not hang the answer. */
  private async readBounded(d: Domain, ms: number): Promise<PolicyRecord> {
    const bound = this.deadlines.add(Math.max(ms, STORE_READ_FLOOR_MS));
    try {
      const found = this.lookup(d);
      found.catch(() => {});
      const r = await Promise.race([found, bound.expired]);
      if (r === TIMED_OUT) throw new MtaStsError('ERR_MTASTSDB_STORE_BUSY', 'cache lookup timed out');
      return r;
    } finally {
      this.deadlines.remove(bound);
    }
  }

  /** `refresh`: asked by the refresher (refresh by name), which may use the reserved discoveries. */
  private async getOutcome(domain: string | Domain, options: GetOptions, asker?: 'refresh'): Promise<GetOutcome> {
    let result: GetResult = 'error';
    try {
      const d = asDomain(domain);
      const key = d.name();
      const now = this.clock.now();
      const resolver = options.resolver ?? this.resolver;
      const cached = await this.find(key, now);

      if (cached === undefined) {
        this.metrics.cache('miss');
        const purpose = asker ?? 'new';
        const flown = await this.flights.run(key, () => this.discover(d, resolver, purpose), options.signal);
        result = flown.result;
        return flown.outcome;
      }

      this.metrics.cache('hit');
      // A policy kept in memory because the store refused it: offer it again now and then.
      if (this.unstored.size > 0) await this.retryUnstored(key);
      if (cached.backoff) {
        // RFC 8461 §3.3, mox: a fetch failed recently; act as if MTA-STS is not implemented.
        result = 'backoff';
        return { policy: null, fresh: false, report: stsFailureResult(d, [backoffDetails()]), record: cached };
      }
      // A record stamped by a clock running ahead is never "recently confirmed".
      if (
        this.txtRecheckMs > 0 &&
        now - cached.lastUpdate.getTime() < this.txtRecheckMs &&
        !fromTheFuture(cached, now)
      ) {
        // Confirmed within the grace period: answer without DNS. `fresh` because it was confirmed.
        result = 'ok';
        return new GraceOutcome(d, cached);
      }
      const purpose = asker ?? 'cached';
      const flown = await this.flights.run(key, () => this.recheck(d, cached, resolver, purpose), options.signal);
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

  /**
   * Admits network work for `d` under the discovery limits, or refuses it at once (no queue: a
   * waiting lookup would hold memory for as long as the flood lasts). Returns the release.
   *
   * @throws MtaStsError `ERR_MTASTSDB_DISCOVERY_LIMIT` (`details.reason`: the cap), temporary.
   */
  private admit(d: Domain, purpose: DiscoveryPurpose): () => void {
    const admission = this.admission;
    if (admission === undefined) return () => {};
    const entry = admission.enter(d.ascii, purpose);
    if (!entry.admitted) {
      const { reason } = entry;
      this.metrics.discoveryLimited?.(reason);
      const held = this.limitLog.pass(reason);
      if (held !== undefined) {
        this.logger.warn(
          {
            domain: d.name(),
            purpose,
            reason,
            inFlight: admission.inFlight,
            caps: admission.caps,
            ...repeatedFields(held),
          },
          'MTA-STS discovery refused by the discovery limits (answered as a temporary failure; a cached policy still answers)',
        );
      }
      const message = `MTA-STS discovery of ${d.name()} refused by the discovery limits (${reason})`;
      // The TLSRPT result a temporary DNS failure carries too (`sts-policy-fetch-error`).
      const report = stsFailureResult(d, [failureDetails(new MtaStsError('ERR_MTASTSDB_DISCOVERY_LIMIT', message))]);
      throw new MtaStsError('ERR_MTASTSDB_DISCOVERY_LIMIT', message, { details: { reason, report } });
    }
    this.metrics.discoveriesInFlight?.(admission.inFlight);
    return () => {
      entry.release();
      this.metrics.discoveriesInFlight?.(admission.inFlight);
    };
  }

  /** Nothing cached: look up the TXT record and fetch the policy (mox `Get`, not-found branch). */
  private async discover(d: Domain, resolver: DnsResolver, purpose: DiscoveryPurpose): Promise<Flown> {
    const release = this.admit(d, purpose);
    const bound = this.bound(DISCOVERY_TIMEOUT_MS);
    try {
      return await this.discoverWithin(d, resolver, bound.signal);
    } finally {
      bound.dispose();
      release();
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
        this.storeFailure('error', { err: werr, domain: key }, 'storing MTA-STS back-off record, continuing');
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

  /**
   * A policy is cached: check its TXT id under the discovery limits; refused, the cached policy
   * applies (RFC 8461 §3.3: with no live policy, a valid cached one applies).
   */
  private async recheck(
    d: Domain,
    cached: PolicyRecord,
    resolver: DnsResolver,
    purpose: DiscoveryPurpose,
  ): Promise<Flown> {
    let release: () => void;
    try {
      release = this.admit(d, purpose);
    } catch (err) {
      return fallbackToCached(d, cached, err, cached.policy.mode !== 'none');
    }
    try {
      return await this.recheckAdmitted(d, cached, resolver);
    } finally {
      release();
    }
  }

  /** A policy is cached: check its TXT id, fetch when it changed (mox `Get`, found branch). */
  private async recheckAdmitted(d: Domain, cached: PolicyRecord, resolver: DnsResolver): Promise<Flown> {
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
        this.downgrade(
          'txt_vanished',
          { domain: key, mode: policy.mode, recordId: cached.recordId },
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
          this.storeFailure('warn', { err, domain: key }, 'recording the MTA-STS TXT confirmation, continuing');
        }
      }
      return {
        outcome: { policy: rec.policy, fresh: true, report: policyResult(d, rec.policy, rec.policyText), record: rec },
        result: 'ok',
      };
    }

    // RFC 8461 §3.3: a new id announces a new policy.
    const failed = this.refetchFailures.get(key);
    if (failed !== undefined && failed.id === record.id && this.clock.now() - failed.at < BACKOFF_SECONDS * 1000) {
      // RFC 8461 §3.3: after a failed fetch, wait before fetching the policy of this id again (a
      // hostile host must not cost a fetch per delivery); the cached policy applies meanwhile.
      return fallbackToCached(d, cached, failed.err, true);
    }
    const t0 = performance.now();
    let fetched: FetchedPolicy;
    const fetchBound = this.bound(REFETCH_TIMEOUT_MS);
    try {
      fetched = await this.fetcher.fetch(d, { signal: fetchBound.signal });
      this.metrics.fetch('ok', (performance.now() - t0) / 1000);
    } catch (err) {
      this.rethrowIfClosing(err);
      this.metrics.fetch(fetchResult(err), (performance.now() - t0) / 1000);
      this.refetchFailures.set(key, { id: record.id, at: this.clock.now(), err }, REFETCH_FAILURE_BYTES);
      // RFC 8461 §3.3: keep applying the cached policy; never store a back-off over it. The
      // failure is what a TLSRPT report would carry (RFC 8460 §4.3.1).
      this.downgrade(
        'policy_fetch_failed',
        { err, domain: key, mode: policy.mode, recordId: cached.recordId, newRecordId: record.id },
        'fetching the updated MTA-STS policy failed; continuing with the cached policy',
      );
      return fallbackToCached(d, cached, err, true);
    } finally {
      fetchBound.dispose();
    }
    this.refetchFailures.delete(key);
    auditPolicyChange(this.logger, this.metrics, key, cached, { recordId: record.id, policy: fetched.policy });
    return this.answerFetched(d, record.id, fetched);
  }

  /** Logs a store failure, holding back repeats of the same message (see {@link storeLog}). */
  private storeFailure(level: 'warn' | 'error', fields: Record<string, unknown>, msg: string): void {
    const held = this.storeLog.pass(msg);
    if (held !== undefined) this.logger[level]({ ...fields, ...repeatedFields(held) }, msg);
  }

  /** Counts a suspected downgrade; logs it once per domain and sign per interval. */
  private downgrade(
    sign: DowngradeSign,
    fields: { readonly domain: string; readonly mode: Policy['mode']; readonly [k: string]: unknown },
    msg: string,
  ): void {
    const held = this.downgradeLog.pass(`${sign} ${fields.domain}`);
    if (held === undefined) this.metrics.downgradeSuspected?.(sign);
    else auditDowngrade(this.logger, this.metrics, sign, { ...fields, ...repeatedFields(held) }, msg);
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
      this.storeFailure(
        'error',
        { err, domain: key },
        'storing the MTA-STS policy failed; keeping it in memory until it expires and continuing with it',
      );
      const now = new Date(this.clock.now());
      return this.keepUnstored(newRecord(key, recordId, fetched.policy, fetched.text, now, now));
    }
  }

  /** Keeps a record the store refused, bounded (see {@link find}). */
  private keepUnstored(rec: PolicyRecord): PolicyRecord {
    const bytes = estimatePolicyBytes(rec.domain, rec.policy, rec.policyText);
    this.unstored.set(rec.domain, { rec, retryAt: this.clock.now() + UNSTORED_RETRY_MS }, bytes);
    return rec;
  }

  /** Offers a kept record to the store again (at most every {@link UNSTORED_RETRY_MS}); never throws. */
  private async retryUnstored(key: string): Promise<void> {
    const kept = this.unstored.get(key);
    const now = this.clock.now();
    if (kept === undefined || now < kept.retryAt) return;
    try {
      await putOverFuture(this.store, kept.rec, now);
      this.unstored.delete(key);
    } catch (err) {
      this.unstored.replace(key, { rec: kept.rec, retryAt: now + UNSTORED_RETRY_MS });
      this.logger.debug({ err, domain: key }, 'the store still refuses the MTA-STS policy kept in memory');
    }
  }

  /** `lastUpdate` = now and validity extended by max_age, after the TXT id was confirmed. */
  private async confirm(cached: PolicyRecord): Promise<PolicyRecord> {
    const now = this.clock.now();
    const rec: PolicyRecord = { ...confirmedRecord(cached, now), lastUse: new Date(now) };
    try {
      await putOverFuture(this.store, rec, now);
    } catch (err) {
      // Unstored, the confirmation still counts: the grace starts now for this process.
      this.keepUnstored(rec);
      throw err;
    }
    this.unstored.delete(cached.domain);
    return rec;
  }

  // ---------------------------------------------------------------------------------------------
  // upsert and other writes

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
    const rec = newRecord(key, recordId, policy, policyText, now, existing?.inserted ?? now);
    const written = await putOverFuture(this.store, rec, now.getTime());
    this.unstored.delete(key);
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
    const key = asDomain(domain).name();
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
    const key = asDomain(domain).name();
    this.uses.forget(key);
    this.remembered.forget(key);
    this.unstored.delete(key);
    return this.track(this.store.delete(key));
  }

  /**
   * Deletes records expired before `expiredBefore` and records unused since `unusedSince` (either
   * or both; with neither, records expired now). Returns how many were deleted.
   */
  async purge(options: PurgeOptions = {}): Promise<number> {
    this.checkOpen();
    return this.track(this.refresher.purge(options));
  }

  // ---------------------------------------------------------------------------------------------
  // listing

  /** Every record, newest `lastUse` first, then by domain descending (mox `PolicyRecords`). Loads all: see {@link policyRecordsStream}. */
  async policyRecords(): Promise<PolicyRecord[]> {
    const out: PolicyRecord[] = [];
    for await (const r of this.policyRecordsStream()) out.push(r);
    // mox's order: last use descending, then domain descending.
    return out.sort(
      (a, b) => b.lastUse.getTime() - a.lastUse.getTime() || (a.domain < b.domain ? 1 : a.domain > b.domain ? -1 : 0),
    );
  }

  /**
   * The records matching `options`, read page by page, each exactly once while lookups and the
   * refresher write: by default newest `lastUse` first, then by domain, from one read snapshot
   * (see {@link ListOptions.order}).
   */
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
    return this.track(
      this.refresher.refreshDomains(domains, {
        signal,
        ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
      }),
    );
  }

  /** Writes the deferred `lastUse` times now. Never throws: failures are logged and kept. */
  flushUses(): Promise<void> {
    return this.uses.flush();
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
    await this.uses.close();
    if (this.ownsStore) await this.store.close();
    else this.memory?.clear();
  }
}
