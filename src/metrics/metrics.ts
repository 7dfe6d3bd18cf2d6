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
