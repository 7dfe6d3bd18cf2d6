import type { DaneStateKind } from '../dane/dane-state.js';

/** Outcome of `MtaStsDb.get`, as counted in metrics. */
export type GetResult = 'ok' | 'backoff' | 'notfound' | 'error';
/** Outcome of one HTTPS policy fetch. */
export type FetchResult = 'ok' | 'no_policy' | 'error' | 'invalid';
/** Outcome of one refresher step for one record. */
export type RefreshResult = 'unchanged' | 'updated' | 'failed' | 'deleted' | 'skipped';

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
  /** One DANE lookup that reached DNS (not a cached state): the state it found, its duration. Optional. */
  daneLookup?(state: DaneStateKind, seconds: number): void;
  /**
   * One answer for which the DANE state was consulted, by what it became: `dane-only`, `dane`,
   * `temp`, or `secure` (no usable DANE: the MTA-STS answer stands). Optional.
   */
  daneAnswer?(level: 'dane-only' | 'dane' | 'temp' | 'secure'): void;
  /** The resolver probe's verdict: 1 validating, 0 not (or unreachable). Optional. */
  daneResolverValidating?(validating: boolean): void;
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
