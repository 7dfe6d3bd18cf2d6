/**
 * The periodic refresher of the policy database (RFC 8461 §3.3: "proactively refresh cached
 * policies before they expire"), after mox's `mtastsdb/refresh.go`, made to page through a large
 * store and to share the work in a fleet.
 *
 * Every 24 h one pass:
 * 1. deletes records unused for 180 days;
 * 2. refreshes records whose `lastUpdate` is older than 12 h, in random order, spread evenly over
 *    3 h with jitter, the first at once (so an operator sees configuration problems in the log
 *    right after start);
 *    - TXT id unchanged → validity extended (`lastUpdate` = now, `validEnd` = now + max_age);
 *    - TXT id changed (or a back-off record) → the policy is fetched again and stored with its text;
 *    - a `none` policy (or back-off record) whose TXT record is gone is deleted: the domain has
 *      stopped doing MTA-STS (RFC 8461 §8.3 phases out with a `none` policy, then removes the TXT);
 *    - failures keep the old record (it stays usable until it expires) and are logged at error
 *      level, except for `none` policies, where they are expected and logged at debug level
 *      (RFC 8461 §3.3);
 *    - TXT lookup failing under a live policy → the policy is fetched anyway (perhaps only DNS is
 *      down; mox does the same), but a policy weaker than the cached one (enforce > testing > none)
 *      is not accepted without a TXT record announcing it (RFC 8461 §10).
 *
 * Where we differ from mox: a back-off record is retried (fetched) rather than "extended" when its
 * TXT id is unchanged, since extending it would only renew the back-off; and the TXT-failure
 * fetch never stores a weaker policy.
 *
 * Large stores: the due records are read through `store.list({ updatedBefore, order: 'domain' })` a
 * batch at a time (default 1000 records). Domain order pages on the primary key, which no write
 * moves, so a pass that runs for hours while lookups touch `lastUse` sees every due record once and
 * holds no snapshot (a `lastUse`-ordered walk would hold one for the whole pass). Each batch is
 * shuffled, so the order is random within a batch and the batches follow domain order: a full
 * shuffle of a million records would need all of them in memory, and what the random order is for
 * (not hitting one provider's domains in a row, not the same order every day) is served by
 * shuffling within batches of 1000. The number of due records is
 * counted first (one streaming pass) so the 3 h spread is even.
 *
 * Fleets: before refreshing a record the refresher claims it with `store.claimRefresh` (a lease of
 * 10 minutes by default, owned by a random node id). Only the claimer refreshes it, so N nodes on one
 * PostgreSQL store refresh each record once; a node that dies holds its leases only until they expire.
 *
 * Concurrency is bounded (default 4 refreshes at once); each refresh is bounded to 60 s like mox's.
 * `stop()` aborts the sleeps and the network calls in progress and waits for the running steps to
 * end. A step writes with one `store.put` (or `delete`) after all network work is done, so a stop
 * never leaves a refresh half-written.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { lookupRecord } from '../discovery/lookup-record.js';
import type { DnsResolver } from '../discovery/resolver.js';
import { isMtaStsError, MtaStsError } from '../errors.js';
import type { FetchedPolicy, PolicyFetcher } from '../fetch/fetcher.js';
import type { Logger } from '../logger.js';
import type { Metrics, RefreshResult } from '../metrics/metrics.js';
import { asDomain, parseDomain, type Domain } from '../rfc8461/domain.js';
import { REFRESH_AFTER_SECONDS, REFRESH_INTERVAL_SECONDS, UNUSED_DELETE_SECONDS } from '../rfc8461/limits.js';
import type { Mode } from '../rfc8461/policy.js';
import type { StsRecord } from '../rfc8461/record.js';
import type { ListOptions, PolicyRecord, PolicyStore } from '../store/policy-store.js';
import { yieldToEventLoop } from '../event-loop.js';
import { Semaphore } from '../semaphore.js';
import { deadline, shareSignal } from '../deadline.js';
import { fetchResult } from './outcomes.js';
import { auditDowngrade, auditPolicyChange } from './policy-audit.js';
import { confirmedRecord, putOverFuture, validEndOf } from './policy-record.js';
import {
  CLOCK_STEP_TOLERANCE_MS,
  DEFAULT_LEASE_SECONDS,
  DEFAULT_REFRESH_BATCH,
  DEFAULT_REFRESH_CONCURRENCY,
  REFRESH_SPREAD_SECONDS,
  REFRESH_STEP_TIMEOUT_MS,
  REFRESH_YIELD_EVERY_RECORDS,
  UNUSED_DELETE_MAX_SHARE,
} from './tunables.js';
import type { GetOutcome, PurgeOptions, RefresherOptions, RefreshSummary } from './types.js';

/** What the refresher works with. */
export interface RefresherDeps {
  readonly store: PolicyStore;
  readonly clock: Clock;
  readonly resolver: DnsResolver;
  readonly fetcher: PolicyFetcher;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Called before records are judged by `lastUse`, so deferred `lastUse` writes are in the store. */
  readonly flushUses?: () => Promise<void>;
  /** Discovers a domain that is not cached (refresh by name), as the cache's `get` does. */
  readonly discover?: (domain: Domain, signal: AbortSignal) => Promise<GetOutcome>;
  /**
   * Admits a refresh's network work under the cache's discovery limits (the refresher may use the
   * reserve); returns the release, or throws `ERR_MTASTSDB_DISCOVERY_LIMIT`.
   */
  readonly admit?: (domain: Domain) => () => void;
}

/** Options of one pass. */
export interface PassOptions {
  readonly signal?: AbortSignal;
  /** Spread the refreshes over 3 h (the periodic pass); false refreshes as fast as allowed (CLI `refresh`). */
  readonly spread?: boolean;
  readonly onProgress?: (done: number, total: number) => void;
}

type Counts = { -readonly [K in keyof RefreshSummary]: RefreshSummary[K] };

const STRENGTH: Readonly<Record<Mode, number>> = { none: 0, testing: 1, enforce: 2 };

function aborted(signal: AbortSignal): MtaStsError {
  return new MtaStsError('ERR_MTASTS_ABORTED', 'refresh aborted', { cause: signal.reason });
}

/** Runs refresh passes every 24 h (see the module comment). */
export class Refresher {
  /** This node's lease owner id. */
  readonly owner: string;
  private readonly deps: RefresherDeps;
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly batchSize: number;
  private readonly random: () => number;
  /** The one worker pool: passes, refresh by name and their steps share its slots. */
  private readonly pool: Semaphore;
  private loopAbort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  /** Wall clock minus monotonic clock at the previous pass, to notice a step (ms). */
  private wallOffset: number | undefined;

  constructor(deps: RefresherDeps, options: RefresherOptions = {}) {
    this.deps = deps;
    this.owner = options.owner ?? randomUUID();
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? DEFAULT_REFRESH_CONCURRENCY));
    this.leaseMs = Math.max(1, options.leaseSeconds ?? DEFAULT_LEASE_SECONDS) * 1000;
    this.batchSize = Math.max(1, Math.floor(options.batchSize ?? DEFAULT_REFRESH_BATCH));
    this.random = options.random ?? Math.random;
    this.pool = new Semaphore(this.concurrency);
  }

  /** Starts `task` once a slot of the pool is free; resolves when it has started (not finished). */
  private async launch(task: () => Promise<void>, signal: AbortSignal, running: Set<Promise<void>>): Promise<void> {
    if (signal.aborted) throw aborted(signal);
    const release = await this.pool.acquire(signal).catch(() => {
      throw aborted(signal);
    });
    // Tasks report their own failures; a rejection here must not go unhandled.
    const p: Promise<void> = task()
      .catch(() => {})
      .finally(() => {
        release();
        running.delete(p);
      });
    running.add(p);
  }

  private static async drain(running: Set<Promise<void>>): Promise<void> {
    while (running.size > 0) await Promise.allSettled([...running]);
  }

  /** True while the periodic loop runs. */
  get running(): boolean {
    return this.loop !== undefined;
  }

  /** Starts the periodic loop: a pass now, then one every 24 h (counted from the start of the previous). */
  start(): void {
    if (this.loop !== undefined) return;
    const ac = new AbortController();
    this.loopAbort = ac;
    this.loop = this.runLoop(shareSignal(ac.signal));
  }

  /** Stops the loop promptly: aborts its sleep and network calls, waits for the steps in progress. Idempotent. */
  async stop(): Promise<void> {
    this.loopAbort?.abort(new MtaStsError('ERR_MTASTS_ABORTED', 'refresher stopped'));
    await this.loop;
    this.loop = undefined;
    this.loopAbort = undefined;
  }

  private async runLoop(signal: AbortSignal): Promise<void> {
    const { clock, logger } = this.deps;
    while (!signal.aborted) {
      const started = clock.now();
      try {
        const summary = await this.pass({ signal, spread: true });
        logger.info({ ...summary }, 'mta-sts policy refresh pass done');
      } catch (err) {
        if (signal.aborted) break;
        logger.error({ err }, 'mta-sts policy refresh pass failed');
      }
      // RFC 8461 §3.3: refresh proactively; once a day is the suggested frequency (and mox's).
      const wait = started + REFRESH_INTERVAL_SECONDS * 1000 - clock.now();
      try {
        await clock.sleep(Math.max(0, wait), signal);
      } catch {
        break;
      }
    }
  }

  /**
   * One pass: deletes unused records, then refreshes the due ones (see the module comment).
   * Rejects with `ERR_MTASTS_ABORTED` when `signal` aborts, after the steps in progress ended.
   */
  async pass(options: PassOptions = {}): Promise<RefreshSummary> {
    const { store, clock, logger, metrics } = this.deps;
    const signal = options.signal ?? new AbortController().signal;
    const counts: Counts = { checked: 0, unchanged: 0, updated: 0, failed: 0, deleted: 0 };
    const start = clock.now();

    await this.deps.flushUses?.();
    counts.deleted += await this.deleteUnused(new Date(start - UNUSED_DELETE_SECONDS * 1000), signal);

    const updatedBefore = new Date(start - REFRESH_AFTER_SECONDS * 1000);
    let total = 0;
    for await (const _ of store.list({ updatedBefore, order: 'domain', pageSize: this.batchSize })) {
      if (++total % this.batchSize === 0) {
        await yieldToEventLoop();
        if (signal.aborted) throw aborted(signal);
      }
    }
    logger.debug({ count: total }, 'refreshing mta-sts policies');
    options.onProgress?.(0, total);
    const spread = options.spread !== false && total > 1;
    const interval = spread ? (REFRESH_SPREAD_SECONDS * 1000) / (total - 1) : 0;

    const running = new Set<Promise<void>>();
    let done = 0;
    let slot = 0;
    try {
      for await (const batch of this.batches(updatedBefore)) {
        this.shuffle(batch);
        for (const pr of batch) {
          if (signal.aborted) throw aborted(signal);
          if (spread && slot > 0) {
            // Slot i is due at start + i·interval, give or take half an interval of jitter.
            const due = start + slot * interval + (this.random() - 0.5) * interval;
            const wait = Math.ceil(due - clock.now());
            if (wait > 0) await clock.sleep(wait, signal);
          }
          if (++slot % REFRESH_YIELD_EVERY_RECORDS === 0) await yieldToEventLoop();
          await this.launch(
            async () => {
              const result = await this.refreshRecord(pr, { updatedBefore, signal });
              counts.checked++;
              if (result === 'unchanged' || result === 'updated' || result === 'failed' || result === 'deleted') {
                counts[result]++;
              }
              options.onProgress?.(++done, Math.max(total, done));
            },
            signal,
            running,
          );
        }
      }
    } finally {
      await Refresher.drain(running);
    }
    if (signal.aborted) throw aborted(signal);
    try {
      metrics.cacheSize(await store.count());
    } catch (err) {
      logger.warn({ err }, 'counting cached mta-sts policies');
    }
    return counts;
  }

  /**
   * Deletes records whose `lastUse` is before `usedBefore`; returns how many. Refuses (deletes
   * nothing, logs a warning, counts `mtastsdb_unused_deletes_refused_total{reason}`) when the wall
   * clock stepped since the previous pass, or when the records to delete are more than
   * {@link UNUSED_DELETE_MAX_SHARE} of the store: both mean a wrong clock, and a clock corrected
   * later must find the cache whole.
   */
  private async deleteUnused(usedBefore: Date, signal: AbortSignal): Promise<number> {
    const { store, clock, logger, metrics } = this.deps;
    const offset = clock.monotonic === undefined ? undefined : clock.now() - clock.monotonic();
    const previous = this.wallOffset;
    this.wallOffset = offset;
    if (offset !== undefined && previous !== undefined && Math.abs(offset - previous) > CLOCK_STEP_TOLERANCE_MS) {
      metrics.unusedDeleteRefused?.('clock_step');
      logger.warn(
        { steppedBySeconds: Math.round((offset - previous) / 1000) },
        'the wall clock stepped since the previous refresh pass; deleting no unused mta-sts policies in this pass',
      );
      return 0;
    }
    let candidates = 0;
    for await (const _ of store.list({ usedBefore, order: 'domain', pageSize: this.batchSize })) {
      if (++candidates % this.batchSize === 0) {
        await yieldToEventLoop();
        if (signal.aborted) throw aborted(signal);
      }
    }
    if (candidates === 0) return 0;
    const total = await store.count();
    if (candidates > UNUSED_DELETE_MAX_SHARE * total) {
      metrics.unusedDeleteRefused?.('implausible_share');
      logger.warn(
        { unused: candidates, records: total, usedBefore, now: new Date(clock.now()) },
        'most cached mta-sts policies look unused for 180 days: the clock may be wrong; deleting none ' +
          '(after a long downtime, `mtastsdb purge --unused-days 180` deletes them)',
      );
      return 0;
    }
    const deleted = await this.deleteListed({ usedBefore }, signal);
    if (deleted > 0)
      this.deps.logger.info({ count: deleted, usedBefore }, 'deleted mta-sts policies unused for 180 days');
    return deleted;
  }

  /** Deletes the records `filter` lists; returns how many. */
  private async deleteListed(filter: ListOptions, signal: AbortSignal): Promise<number> {
    const { store, metrics } = this.deps;
    let deleted = 0;
    // Collect a batch, then delete it, then list again: never delete under a running listing.
    for (;;) {
      const batch: PolicyRecord[] = [];
      for await (const r of store.list({ ...filter, order: 'domain', pageSize: this.batchSize })) {
        batch.push(r);
        if (batch.length >= this.batchSize) break;
      }
      let n = 0;
      await yieldToEventLoop();
      for (const r of batch) {
        if (signal.aborted) throw aborted(signal);
        if (await store.delete(r.domain)) {
          n++;
          metrics.refresh('deleted');
        }
      }
      deleted += n;
      // A batch that deleted nothing (someone else is deleting, or a store refuses) ends the sweep.
      if (batch.length < this.batchSize || n === 0) break;
    }
    return deleted;
  }

  /**
   * Deletes records expired before `expiredBefore` and records unused since `unusedSince` (either
   * or both; with neither, records expired now). Returns how many were deleted (CLI `purge`).
   */
  async purge(options: PurgeOptions = {}): Promise<number> {
    await this.deps.flushUses?.();
    const signal = options.signal ?? new AbortController().signal;
    const sweeps: ListOptions[] = [];
    if (options.expiredBefore !== undefined) sweeps.push({ validEndBefore: options.expiredBefore });
    if (options.unusedSince !== undefined) sweeps.push({ usedBefore: options.unusedSince });
    if (sweeps.length === 0) sweeps.push({ validEndBefore: new Date(this.deps.clock.now()) });
    let deleted = 0;
    for (const filter of sweeps) deleted += await this.deleteListed(filter, signal);
    return deleted;
  }

  /**
   * Refreshes the named domains now, through the pool: a cached one by the refresher's step
   * (due whatever its `lastUpdate`), one not cached by a discovery as `get` does.
   */
  async refreshDomains(
    names: readonly string[],
    options: { readonly signal: AbortSignal; readonly onProgress?: (done: number, total: number) => void },
  ): Promise<RefreshSummary> {
    const { store, clock, logger } = this.deps;
    const { signal, onProgress } = options;
    const counts: Counts = { checked: 0, unchanged: 0, updated: 0, failed: 0, deleted: 0 };
    const running = new Set<Promise<void>>();
    let done = 0;
    onProgress?.(0, names.length);
    try {
      for (const name of names) {
        signal.throwIfAborted();
        await this.launch(
          async () => {
            counts.checked++;
            try {
              const d = asDomain(name);
              const cur = await store.get(d.name());
              if (cur !== undefined) {
                // Explicit refresh: due whatever its lastUpdate (updatedBefore just after now, or
                // just after a lastUpdate a clock running ahead wrote: that record is stale).
                const due = Math.max(clock.now(), cur.lastUpdate.getTime()) + 1;
                const r = await this.refreshRecord(cur, { updatedBefore: new Date(due), signal });
                if (r === 'unchanged' || r === 'updated' || r === 'failed' || r === 'deleted') counts[r]++;
              } else if (this.deps.discover !== undefined) {
                const out = await this.deps.discover(d, signal);
                if (out.policy !== null) counts.updated++;
                else counts.failed++;
              } else {
                counts.failed++;
              }
            } catch (err) {
              if (!signal.aborted) {
                logger.error({ err, domain: name }, 'refreshing MTA-STS policy');
                counts.failed++;
              }
            }
            onProgress?.(++done, names.length);
          },
          signal,
          running,
        ).catch((err: unknown) => {
          signal.throwIfAborted();
          throw err;
        });
      }
    } finally {
      await Refresher.drain(running);
    }
    signal.throwIfAborted();
    return counts;
  }

  /** The due records, `batchSize` at a time. */
  private async *batches(updatedBefore: Date): AsyncGenerator<PolicyRecord[]> {
    let batch: PolicyRecord[] = [];
    for await (const r of this.deps.store.list({ updatedBefore, order: 'domain', pageSize: this.batchSize })) {
      batch.push(r);
      if (batch.length >= this.batchSize) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  private shuffle<T>(a: T[]): void {
    // Fisher–Yates.
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
  }

  /**
   * Refreshes one record if this node can claim it (see the module comment). Never throws for a
   * failed refresh (it returns `failed`); rejects with `ERR_MTASTS_ABORTED` only when `signal` aborts.
   */
  async refreshRecord(
    pr: PolicyRecord,
    options: { readonly updatedBefore: Date; readonly signal: AbortSignal },
  ): Promise<RefreshResult> {
    const { metrics, logger } = this.deps;
    let result: RefreshResult;
    try {
      result = await this.refreshClaimed(pr, options);
    } catch (err) {
      if (options.signal.aborted) throw aborted(options.signal);
      logger.error({ err, domain: pr.domain }, 'refreshing mta-sts policy');
      result = 'failed';
    }
    metrics.refresh(result);
    return result;
  }

  private async refreshClaimed(
    pr: PolicyRecord,
    options: { readonly updatedBefore: Date; readonly signal: AbortSignal },
  ): Promise<RefreshResult> {
    const { store, clock, logger } = this.deps;
    const { signal } = options;
    const now = clock.now();
    const claimed = await store.claimRefresh(pr.domain, {
      owner: this.owner,
      now: new Date(now),
      leaseUntil: new Date(now + this.leaseMs),
      updatedBefore: options.updatedBefore,
    });
    if (!claimed) return 'skipped';
    try {
      let domain: Domain;
      try {
        domain = parseDomain(pr.domain);
      } catch (err) {
        logger.error({ err, domain: pr.domain }, 'refreshing mta-sts policy: invalid domain in the store');
        return 'failed';
      }
      let release: () => void;
      try {
        release = this.deps.admit?.(domain) ?? (() => {});
      } catch (err) {
        // Every discovery slot, the reserve included, is taken: the record stays usable until it
        // expires and the next pass tries again.
        logger.warn({ err, domain: pr.domain }, 'refresh held back by the discovery limits; keeping the cached policy');
        return 'failed';
      }
      const step = deadline(signal, REFRESH_STEP_TIMEOUT_MS);
      try {
        return await this.refreshStep(pr, domain, step.signal, signal);
      } finally {
        step.dispose();
        release();
      }
    } finally {
      // Done with it (refreshed, failed or stopped): the next refresh need not wait for the lease.
      // If this fails the lease simply expires.
      await store.releaseRefresh(pr.domain, this.owner).catch((err: unknown) => {
        logger.debug({ err, domain: pr.domain }, 'releasing the refresh lease failed; it will expire');
      });
    }
  }

  /** The network part of a claimed refresh, bounded by `bound`; `signal` is the caller's (stop). */
  private async refreshStep(
    pr: PolicyRecord,
    domain: Domain,
    bound: AbortSignal,
    signal: AbortSignal,
  ): Promise<RefreshResult> {
    const { store, resolver, fetcher, logger, metrics } = this.deps;
    const log = logger.child({ domain: pr.domain });
    const none = pr.policy.mode === 'none';

    let record: StsRecord | undefined;
    let recordErr: unknown;
    try {
      record = await lookupRecord(domain, { resolver, signal: bound });
    } catch (err) {
      if (signal.aborted) throw aborted(signal);
      recordErr = err;
    }

    if (record !== undefined && record.id === pr.recordId && !pr.backoff) {
      // RFC 8461 §3.3: the id is unchanged, so the cached policy is current: extend it.
      return this.write(pr, confirmedRecord).then((ok) => (ok ? 'unchanged' : 'skipped'));
    }

    if (recordErr !== undefined) {
      if (none) {
        if (isMtaStsError(recordErr, 'ERR_MTASTS_NO_RECORD')) {
          // The domain stopped doing MTA-STS after phasing out with a `none` policy: forget it.
          const cur = await store.get(pr.domain);
          if (cur === undefined || cur.lastUpdate.getTime() !== pr.lastUpdate.getTime()) return 'skipped';
          await store.delete(pr.domain);
          log.info({}, 'deleted mta-sts none policy whose TXT record is gone');
          return 'deleted';
        }
        log.debug({ err: recordErr }, 'TXT lookup for a none policy failed; keeping it');
        return 'failed';
      }
      // Perhaps only DNS is down: try the policy anyway so that it does not expire.
      log.error({ err: recordErr }, 'TXT lookup while refreshing failed; fetching the policy anyway');
    }

    const t0 = performance.now();
    let fetched: FetchedPolicy;
    try {
      fetched = await fetcher.fetch(domain, { signal: bound });
      metrics.fetch('ok', (performance.now() - t0) / 1000);
    } catch (err) {
      if (signal.aborted) throw aborted(signal);
      metrics.fetch(fetchResult(err), (performance.now() - t0) / 1000);
      if (none) log.debug({ err }, 'refreshing mta-sts none policy failed; keeping it');
      else log.error({ err }, 'refreshing mta-sts policy failed; keeping the cached policy');
      return 'failed';
    }

    if (recordErr !== undefined && !pr.backoff && STRENGTH[fetched.policy.mode] < STRENGTH[pr.policy.mode]) {
      // RFC 8461 §10: without a TXT record announcing a new id, never replace a policy by a weaker one.
      auditDowngrade(
        logger,
        metrics,
        'mode_weakened',
        { domain: pr.domain, mode: pr.policy.mode, served: fetched.policy.mode },
        'weaker policy served while the TXT record is unavailable; keeping the cached policy',
      );
      return 'failed';
    }

    const ok = await this.write(pr, (cur, t) => ({
      ...cur,
      lastUpdate: new Date(t),
      validEnd: validEndOf(fetched.policy, t),
      backoff: false,
      recordId: record?.id ?? cur.recordId,
      policy: fetched.policy,
      policyText: fetched.text,
    }));
    if (ok && !pr.backoff) {
      auditPolicyChange(logger, metrics, pr.domain, pr, {
        recordId: record?.id ?? pr.recordId,
        policy: fetched.policy,
      });
    }
    return ok ? 'updated' : 'skipped';
  }

  /**
   * Writes `change(current record)` unless the record changed since it was listed (someone else
   * refreshed or replaced it). One `put`: a write is whole or absent.
   */
  private async write(pr: PolicyRecord, change: (cur: PolicyRecord, now: number) => PolicyRecord): Promise<boolean> {
    const { store, clock } = this.deps;
    const cur = await store.get(pr.domain);
    if (cur === undefined || cur.lastUpdate.getTime() !== pr.lastUpdate.getTime()) return false;
    const now = clock.now();
    return putOverFuture(store, change(cur, now), now);
  }
}
