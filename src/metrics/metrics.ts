import type { DaneStateKind } from '../dane/dane-state.js';
import type { DiscoveryLimitReason } from '../cache/discovery-admission.js';

/** Outcome of `MtaStsDb.get`, as counted in metrics. */
export type GetResult = 'ok' | 'backoff' | 'notfound' | 'error';
/** Outcome of one HTTPS policy fetch. */
export type FetchResult = 'ok' | 'no_policy' | 'error' | 'invalid';
/** Outcome of one refresher step for one record. */
export type RefreshResult = 'unchanged' | 'updated' | 'failed' | 'deleted' | 'skipped';

/** What changed between the cached policy and its replacement. */
export type PolicyChange = 'id' | 'mode' | 'mx';
/** Every {@link PolicyChange}. */
export const POLICY_CHANGES: readonly PolicyChange[] = ['id', 'mode', 'mx'];

/**
 * Why a lookup looks like a downgrade attempt:
 * - `txt_vanished`: no `_mta-sts` TXT record while an `enforce` or `testing` policy is cached
 *   (RFC 8461 §10.2: a domain phases out with `mode: none` first);
 * - `policy_fetch_failed`: a new id announced, its policy could not be fetched (the failures a
 *   TLSRPT report carries: certificate, HTTP, syntax, RFC 8460 §4.3.1);
 * - `mode_weakened`: a weaker mode served while the TXT record was unavailable, refused.
 */
export type DowngradeSign = 'txt_vanished' | 'policy_fetch_failed' | 'mode_weakened';
/** Every {@link DowngradeSign}. */
export const DOWNGRADE_SIGNS: readonly DowngradeSign[] = ['txt_vanished', 'policy_fetch_failed', 'mode_weakened'];

/**
 * Counters and histograms the library and daemon report. Library code receives an implementation
 * (default: no-op); the daemon wires the prom-client one.
 */
export interface Metrics {
  get(result: GetResult): void;
  /** Served from the cache without network (`hit`) or needing discovery (`miss`). */
  cache(outcome: 'hit' | 'miss'): void;
  fetch(result: FetchResult, seconds: number): void;
  refresh(result: RefreshResult): void;
  cacheSize(records: number): void;
  /** One socketmap answer: zone name, first word of the answer (`OK`, `NOTFOUND`, `TEMP`), latency. */
  socketmapQuery(zone: string, answer: string, seconds: number): void;
  connections(delta: number): void;
  /** A connection the server closed: quiet too long, a frame too slow, evicted or refused at the limit. Optional. */
  connectionClosed?(reason: 'idle' | 'frame_timeout' | 'evicted' | 'limit'): void;
  /** One DANE lookup that reached DNS (not a cached state): the state it found, its duration. Optional. */
  daneLookup?(state: DaneStateKind, seconds: number): void;
  /**
   * One answer for which the DANE state was consulted, by what it became: `dane-only`, `dane`,
   * `temp`, or `secure` (no usable DANE: the MTA-STS answer stands). Optional.
   */
  daneAnswer?(level: 'dane-only' | 'dane' | 'temp' | 'secure'): void;
  /** The resolver probe's verdict: 1 validating, 0 not (or unreachable). Optional. */
  daneResolverValidating?(validating: boolean): void;
  /** A cached policy replaced by a different one: its id, mode or mx patterns changed. Optional. */
  policyChange?(change: PolicyChange): void;
  /** A refresher pass that deleted nothing as unused because the clock looks wrong. Optional. */
  unusedDeleteRefused?(reason: 'clock_step' | 'implausible_share'): void;
  /** A discovery refused by the discovery limits (answered as a temporary failure). Optional. */
  discoveryLimited?(reason: DiscoveryLimitReason): void;
  /** Discoveries in flight now, after one started or ended. Optional. */
  discoveriesInFlight?(count: number): void;
  /** A lookup that looks like a downgrade attempt; the cached policy kept applying. Optional. */
  downgradeSuspected?(sign: DowngradeSign): void;
}

/** Metrics that go nowhere. */
export const noopMetrics: Metrics = {
  get() {},
  cache() {},
  fetch() {},
  refresh() {},
  cacheSize() {},
  socketmapQuery() {},
  connections() {},
};
