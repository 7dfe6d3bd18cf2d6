/**
 * The DANE state of recently asked domains, in memory: one lookup per domain per TTL, shared by
 * concurrent callers. Not in the policy store: the validating resolver caches the DNS answers
 * already, every fleet node has its own resolver, and a state is cheap to learn again.
 */
import { BoundedMap } from '../bounded-map.js';
import { MtaStsError, isMtaStsError } from '../errors.js';
import { parseDomain } from '../rfc8461/domain.js';
import { SingleFlight } from '../single-flight.js';
import { Deadlines, TIMED_OUT } from '../deadline.js';
import type { DaneState } from './dane-state.js';
import type { DaneReport } from './discover.js';
import { DANE_STATE_CACHE_MAX_ENTRIES, DANE_STATE_MAX_TTL_SECONDS, DANE_STATE_MIN_TTL_SECONDS } from './tunables.js';

/** What the cache needs. */
export interface DaneStateCacheOptions {
  /** The lookup, usually `(d, signal) => lookupDane(d, { client, signal })`. */
  readonly lookup: (domain: string, signal?: AbortSignal) => Promise<DaneReport>;
  /** Domains kept (default 10000); the oldest stored is evicted first. */
  readonly maxEntries?: number;
  /** The clock, epoch milliseconds (default `Date.now`). */
  readonly now?: () => number;
  /** Shortest time a state is kept, seconds (default 60). */
  readonly minTtlSeconds?: number;
  /** Longest time a state is kept, seconds (default 3600). */
  readonly maxTtlSeconds?: number;
}

/** Per-call options of {@link DaneStateCache.state}. */
export interface DaneStateOptions {
  /** Ends this caller's wait (the client went away); the shared lookup carries on. */
  readonly signal?: AbortSignal;
  /** How long the answer may take, ms; the lookup itself carries on and is kept when it ends. */
  readonly timeoutMs: number;
}

interface Entry {
  readonly state: DaneState;
  readonly expiresAtMs: number;
}

/**
 * A bounded map domain → {@link DaneState}. A state is kept for its `ttlSeconds` clamped to
 * [`minTtlSeconds`, `maxTtlSeconds`]: the floor stops a 0-TTL answer from costing a lookup per
 * reply, the ceiling bounds how long a `dane-only` can outlive withdrawn TLSA records (Postfix
 * would defer mail to them). A `temp` state is never kept (RFC 7672 §2.1.1: the next delivery asks
 * again). Concurrent gets of one domain share one lookup.
 */
export class DaneStateCache {
  private readonly entries: BoundedMap<string, Entry>;
  private readonly flights = new SingleFlight<string, DaneState>();
  private readonly lookup: DaneStateCacheOptions['lookup'];
  private readonly now: () => number;
  private readonly minTtlSeconds: number;
  private readonly maxTtlSeconds: number;
  private readonly deadlines = new Deadlines();
  // Bumped by clear(): a lookup that started before it does not store its result.
  private generation = 0;

  /** @throws MtaStsError `ERR_MTASTS_USAGE` for bounds that are not positive or not ordered. */
  constructor(options: DaneStateCacheOptions) {
    const maxEntries = options.maxEntries ?? DANE_STATE_CACHE_MAX_ENTRIES;
    this.minTtlSeconds = options.minTtlSeconds ?? DANE_STATE_MIN_TTL_SECONDS;
    this.maxTtlSeconds = options.maxTtlSeconds ?? DANE_STATE_MAX_TTL_SECONDS;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new MtaStsError(
        'ERR_MTASTS_USAGE',
        `DANE state cache maxEntries must be a positive integer, got ${maxEntries}`,
      );
    }
    const { minTtlSeconds: min, maxTtlSeconds: max } = this;
    if (!(Number.isFinite(min) && Number.isFinite(max) && min >= 0 && min <= max)) {
      throw new MtaStsError(
        'ERR_MTASTS_USAGE',
        `DANE state TTL bounds must satisfy 0 <= min <= max, got ${min}, ${max}`,
      );
    }
    this.entries = new BoundedMap(maxEntries);
    this.lookup = options.lookup;
    this.now = options.now ?? Date.now;
  }

  /** Domains held (expired ones included until they are asked for again or evicted). */
  get size(): number {
    return this.entries.size;
  }

  /**
   * The DANE state of `domain`: the kept one while it is fresh, else a new lookup (joined when one
   * is running). `signal` ends only this caller's wait; the shared lookup carries on, bounded by
   * its per-query timeouts.
   *
   * @throws MtaStsError `ERR_MTASTS_DOMAIN` for a name that is not a host name;
   *   `ERR_MTASTS_ABORTED` when `signal` aborts; whatever `lookup` rejects with.
   */
  get(domain: string, signal?: AbortSignal): Promise<DaneState> {
    let key: string;
    try {
      key = parseDomain(domain).ascii;
    } catch (err) {
      return Promise.reject(err);
    }
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      if (this.now() < entry.expiresAtMs) return Promise.resolve(entry.state);
      this.entries.delete(key);
    }
    const generation = this.generation;
    return this.flights.run(
      key,
      async () => {
        const { state } = await this.lookup(key);
        if (state.kind !== 'temp' && generation === this.generation) {
          const ttl = Math.min(this.maxTtlSeconds, Math.max(this.minTtlSeconds, state.ttlSeconds));
          this.entries.set(key, { state, expiresAtMs: this.now() + ttl * 1000 });
        }
        return state;
      },
      signal,
    );
  }

  /**
   * The DANE state of `domain` within `timeoutMs`; never rejects. A lookup that fails, times out
   * or is aborted is a `temp` state (RFC 7672 §2.1.1: a failed lookup is never "no DANE"), so a
   * caller can hand the result straight to the decision. The caller tells an abort of its own by
   * its signal.
   */
  async state(domain: string, options: DaneStateOptions): Promise<DaneState> {
    const fresh = this.fresh(domain);
    if (fresh !== undefined) return fresh;
    const bound = this.deadlines.add(options.timeoutMs);
    try {
      const got = this.get(domain, options.signal);
      // After a timeout nobody awaits `got`; its late failure is expected, not unhandled.
      got.catch(() => {});
      const outcome = await Promise.race([got, bound.expired]);
      return outcome === TIMED_OUT ? tempState('DANE lookup timed out') : outcome;
    } catch (err) {
      if (isMtaStsError(err, 'ERR_MTASTS_ABORTED')) return tempState('DANE lookup aborted');
      if (isMtaStsError(err, 'ERR_MTASTS_DOMAIN')) return tempState('not a host name');
      return tempState(isMtaStsError(err) ? `DANE lookup failed (${err.code})` : 'DANE lookup failed');
    } finally {
      this.deadlines.remove(bound);
    }
  }

  /**
   * The kept state of `domain` when it is fresh, looked up by the name as given (callers pass the
   * lower-case A-label form they already hold; other spellings simply miss and take the slow path).
   */
  private fresh(domain: string): DaneState | undefined {
    const entry = this.entries.get(domain);
    return entry !== undefined && this.now() < entry.expiresAtMs ? entry.state : undefined;
  }

  /** Forgets every state (a lookup in progress still answers its callers but is not kept). */
  clear(): void {
    this.generation++;
    this.entries.clear();
  }
}

function tempState(reason: string): DaneState {
  return { kind: 'temp', ttlSeconds: 0, reason };
}
