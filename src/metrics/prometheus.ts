/**
 * The prom-client implementation of {@link Metrics}, with its own Registry (never the global one,
 * so two daemons in one process, as in tests, do not collide). Wired only by the daemon.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DaneStateKind } from '../dane/dane-state.js';
import { DISCOVERY_LIMIT_REASONS, type DiscoveryLimitReason } from '../cache/discovery-admission.js';
import { DOWNGRADE_SIGNS, POLICY_CHANGES } from './metrics.js';
import type { DowngradeSign, FetchResult, GetResult, Metrics, PolicyChange, RefreshResult } from './metrics.js';

/** Why the daemon's rate limits held back a TXT lookup (the discovery limits report {@link DiscoveryLimitReason}s). */
export type LimitReason = 'rate_domain' | 'rate_global';

/** Options of {@link PrometheusMetrics}. */
export interface PrometheusMetricsOptions {
  /** Also collect Node process metrics (CPU, memory, event loop, handles). Default true. */
  readonly processMetrics?: boolean;
  /** Prefix of every metric name. Default `mtastsdb_`. */
  readonly prefix?: string;
}

// Socketmap answers are sub-millisecond when warm and up to the zone timeout when cold.
const QUERY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16];
const DANE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8];
const FETCH_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60];

/** Metrics for Prometheus: `registry.metrics()` is the `/metrics` text. */
export class PrometheusMetrics implements Metrics {
  readonly registry = new Registry();
  private readonly gets: Counter<'result'>;
  private readonly cacheLookups: Counter<'outcome'>;
  private readonly fetches: Counter<'result'>;
  private readonly fetchSeconds: Histogram<'result'>;
  private readonly refreshes: Counter<'result'>;
  private readonly records: Gauge;
  private readonly queries: Counter<'zone' | 'answer'>;
  private readonly querySeconds: Histogram<'zone'>;
  private readonly openConnections: Gauge;
  private readonly connectionsTotal: Counter;
  private readonly limited: Counter<'reason'>;
  private readonly discoveriesNow: Gauge;
  private readonly daneLookups: Counter<'state'>;
  private readonly daneLookupSeconds: Histogram;
  private readonly daneAnswers: Counter<'level'>;
  private readonly daneValidating: Gauge;
  private readonly policyChanges: Counter<'change'>;
  private readonly connectionsClosed: Counter<'reason'>;
  private readonly unusedDeletesRefused: Counter<'reason'>;
  private readonly downgrades: Counter<'reason'>;

  constructor(options: PrometheusMetricsOptions = {}) {
    const p = options.prefix ?? 'mtastsdb_';
    const registers = [this.registry];
    this.gets = new Counter({
      name: `${p}gets_total`,
      help: 'Policy database gets by result (ok, backoff, notfound, error)',
      labelNames: ['result'],
      registers,
    });
    this.cacheLookups = new Counter({
      name: `${p}cache_lookups_total`,
      help: 'Gets answered from the cache (hit) or needing discovery (miss)',
      labelNames: ['outcome'],
      registers,
    });
    this.fetches = new Counter({
      name: `${p}policy_fetches_total`,
      help: 'HTTPS policy fetches by result (ok, no_policy, error, invalid)',
      labelNames: ['result'],
      registers,
    });
    this.fetchSeconds = new Histogram({
      name: `${p}policy_fetch_duration_seconds`,
      help: 'Duration of HTTPS policy fetches',
      labelNames: ['result'],
      buckets: FETCH_BUCKETS,
      registers,
    });
    this.refreshes = new Counter({
      name: `${p}refreshes_total`,
      help: 'Refresher steps by result (unchanged, updated, failed, deleted, skipped)',
      labelNames: ['result'],
      registers,
    });
    this.records = new Gauge({ name: `${p}cache_records`, help: 'Policy records in the store', registers });
    this.queries = new Counter({
      name: `${p}socketmap_queries_total`,
      help: 'Socketmap answers by zone and answer (OK, NOTFOUND, TEMP)',
      labelNames: ['zone', 'answer'],
      registers,
    });
    this.querySeconds = new Histogram({
      name: `${p}socketmap_query_duration_seconds`,
      help: 'Time from a socketmap request to its answer',
      labelNames: ['zone'],
      buckets: QUERY_BUCKETS,
      registers,
    });
    this.openConnections = new Gauge({
      name: `${p}socketmap_connections`,
      help: 'Open socketmap connections',
      registers,
    });
    this.connectionsTotal = new Counter({
      name: `${p}socketmap_connections_total`,
      help: 'Socketmap connections accepted',
      registers,
    });
    this.connectionsClosed = new Counter({
      name: `${p}socketmap_connections_closed_total`,
      help: 'Socketmap connections the daemon closed, by reason (idle, frame_timeout, evicted at the limit, limit: refused)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['idle', 'frame_timeout', 'evicted', 'limit']) this.connectionsClosed.inc({ reason }, 0);
    this.limited = new Counter({
      name: `${p}discoveries_limited_total`,
      help:
        'Network lookups refused by the daemon limits: rate_domain, rate_global (rate limits); in_flight, ' +
        'domain_share, reserved (discovery limits)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['rate_domain', 'rate_global', ...DISCOVERY_LIMIT_REASONS]) this.limited.inc({ reason }, 0);
    this.discoveriesNow = new Gauge({
      name: `${p}discoveries_in_flight`,
      help: 'Network discoveries (TXT lookup and policy fetch) in flight now',
      registers,
    });
    this.daneLookups = new Counter({
      name: `${p}dane_lookups_total`,
      help: 'DANE lookups that reached DNS, by state found (dane-only, dane, unusable, none, temp)',
      labelNames: ['state'],
      registers,
    });
    this.daneLookupSeconds = new Histogram({
      name: `${p}dane_lookup_duration_seconds`,
      help: 'Duration of DANE lookups that reached DNS',
      buckets: DANE_BUCKETS,
      registers,
    });
    this.daneAnswers = new Counter({
      name: `${p}dane_answers_total`,
      help: 'Answers for which the DANE state was consulted, by level (dane-only, dane, temp; secure = MTA-STS kept)',
      labelNames: ['level'],
      registers,
    });
    this.daneValidating = new Gauge({
      name: `${p}dane_resolver_validating`,
      help: 'The DANE resolver probe: 1 while its answer carries AD, 0 otherwise (absent with DANE off)',
      registers,
    });
    this.policyChanges = new Counter({
      name: `${p}policy_changes_total`,
      help: 'Cached policies replaced by a different one, by what changed (id, mode, mx)',
      labelNames: ['change'],
      registers,
    });
    this.downgrades = new Counter({
      name: `${p}downgrades_suspected_total`,
      help:
        'Lookups that look like a downgrade attempt, the cached policy kept (txt_vanished, ' +
        'policy_fetch_failed, mode_weakened)',
      labelNames: ['reason'],
      registers,
    });
    this.unusedDeletesRefused = new Counter({
      name: `${p}unused_deletes_refused_total`,
      help:
        'Refresher passes that deleted no unused policies because the clock looks wrong ' +
        '(clock_step: the wall clock stepped; implausible_share: most of the store looked unused)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['clock_step', 'implausible_share']) this.unusedDeletesRefused.inc({ reason }, 0);
    // Every series from the start, so that rate() and increase() see the first event.
    for (const change of POLICY_CHANGES) this.policyChanges.inc({ change }, 0);
    for (const reason of DOWNGRADE_SIGNS) this.downgrades.inc({ reason }, 0);
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: p });
  }

  /** Labelled children by label values, so the hot path skips prom-client's label hashing. */
  private readonly children = new Map<string, { inc(): void } | { observe(v: number): void }>();

  private child<T extends { inc(): void } | { observe(v: number): void }>(key: string, make: () => T): T {
    let c = this.children.get(key) as T | undefined;
    if (c === undefined) {
      c = make();
      this.children.set(key, c);
    }
    return c;
  }

  get(result: GetResult): void {
    this.child(`get ${result}`, () => this.gets.labels({ result })).inc();
  }
  cache(outcome: 'hit' | 'miss'): void {
    this.child(`cache ${outcome}`, () => this.cacheLookups.labels({ outcome })).inc();
  }
  fetch(result: FetchResult, seconds: number): void {
    this.fetches.inc({ result });
    this.fetchSeconds.observe({ result }, seconds);
  }
  refresh(result: RefreshResult): void {
    this.refreshes.inc({ result });
  }
  cacheSize(records: number): void {
    this.records.set(records);
  }
  socketmapQuery(zone: string, answer: string, seconds: number): void {
    this.child(`query ${zone} ${answer}`, () => this.queries.labels({ zone, answer })).inc();
    this.child(`seconds ${zone}`, () => this.querySeconds.labels({ zone })).observe(seconds);
  }
  connections(delta: number): void {
    this.openConnections.inc(delta);
    if (delta > 0) this.connectionsTotal.inc(delta);
  }
  unusedDeleteRefused(reason: 'clock_step' | 'implausible_share'): void {
    this.unusedDeletesRefused.inc({ reason });
  }
  connectionClosed(reason: 'idle' | 'frame_timeout' | 'evicted' | 'limit'): void {
    this.connectionsClosed.inc({ reason });
  }
  /** A network lookup held back by a daemon limit. */
  limit(reason: LimitReason): void {
    this.limited.inc({ reason });
  }
  discoveryLimited(reason: DiscoveryLimitReason): void {
    this.limited.inc({ reason });
  }
  discoveriesInFlight(count: number): void {
    this.discoveriesNow.set(count);
  }

  daneLookup(state: DaneStateKind, seconds: number): void {
    this.daneLookups.inc({ state });
    this.daneLookupSeconds.observe(seconds);
  }
  daneAnswer(level: 'dane-only' | 'dane' | 'temp' | 'secure'): void {
    this.child(`dane ${level}`, () => this.daneAnswers.labels({ level })).inc();
  }
  daneResolverValidating(validating: boolean): void {
    this.daneValidating.set(validating ? 1 : 0);
  }
  policyChange(change: PolicyChange): void {
    this.policyChanges.inc({ change });
  }
  downgradeSuspected(sign: DowngradeSign): void {
    this.downgrades.inc({ reason: sign });
  }

  /** The exposition text for `/metrics`. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The Content-Type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
