/**
 * The daemon's configuration: keys, defaults and validation.
 *
 * Keys and defaults are postfix-mta-sts-resolver's (`/etc/mta-sts-daemon.yml`) wherever they mean
 * the same thing, so an operator can point `mtastsdb serve -c` at the existing file. Our own keys
 * (`temp_on_error`, `data_dir`, `store`, `logging`, `metrics`, `limits`) are additions. Anything
 * else is an error naming the key: a typo must not silently fall back to a default.
 */
import { isIP } from 'node:net';
import { MtaStsError } from '../errors.js';

/** Per-zone options; a zone is selected by the socketmap name (`socketmap:inet:…:<name>`). */
export interface ZoneConfig {
  /** Treat `testing` policies as `enforce`. Default false. */
  readonly strictTesting: boolean;
  /** How long one socketmap answer may take (DNS + HTTPS for a cold domain), seconds. Default 4. */
  readonly timeoutSeconds: number;
  /** Append ` servername=hostname` (Postfix ≥ 3.4). Default true. */
  readonly requireSni: boolean;
  /** Append the TLSRPT attributes (Postfix ≥ 3.10). Default false. */
  readonly tlsrpt: boolean;
  /** Ours: answer `TEMP <reason>` instead of `NOTFOUND ` on a temporary failure with nothing cached. Default false. */
  readonly tempOnError: boolean;
  /**
   * `prefer`: where MTA-STS would answer `OK secure`, the domain's DANE protection wins (RFC 8461
   * §2, RFC 7672); `off`: MTA-STS alone, as postfix-mta-sts-resolver. Default `off`.
   */
  readonly dane: 'off' | 'prefer';
}

/** A token bucket: `rate` tokens per second, at most `burst` at once. */
export interface RateLimitConfig {
  readonly rate: number;
  readonly burst: number;
}

/** Log settings (ours). */
export interface LoggingConfig {
  readonly format: 'json' | 'text';
  readonly level: LogLevelName;
}

/** The log levels, most verbose first; `silent` logs nothing. */
export const LOG_LEVEL_NAMES = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevelName = (typeof LOG_LEVEL_NAMES)[number];

/** The validated, frozen daemon configuration. */
export interface Config {
  /** TCP listen address (ignored when `path` is set). Default `127.0.0.1`. */
  readonly host: string;
  /** TCP port. Default 8461. */
  readonly port: number;
  /** Unix socket path; when set the daemon listens there instead of TCP. */
  readonly path?: string;
  /** File mode of the Unix socket, e.g. 0o666. */
  readonly mode?: number;
  /** SO_REUSEPORT. Default true (needs Node ≥ 22.12; ignored with a log line on older Node). */
  readonly reusePort: boolean;
  /** Seconds to let in-flight requests finish on shutdown. Default 20. */
  readonly shutdownTimeoutSeconds: number;
  /** Seconds after a TXT check during which a cached policy is served without DNS. Default 60. */
  readonly cacheGraceSeconds: number;
  /**
   * Ours: the in-process copy of recently read records (`MtaStsDb`'s `memoryCache`): `entries`
   * (default 10,000; 0 turns it off) and `ttlSeconds` (default 5; 0 turns it off).
   */
  readonly memoryCache: { readonly entries: number; readonly ttlSeconds: number };
  /** `cache:` as written (informational; `store` is what is opened). */
  readonly cache: {
    readonly type: 'sqlite' | 'postgres' | 'internal';
    readonly filename?: string;
    readonly dsn?: string;
  };
  /** The directory of the default SQLite file. Default `./data`. */
  readonly dataDir: string;
  /**
   * The store to open: a URL or path for `MtaStsDb.open({ store })`, or undefined for
   * `<dataDir>/mtasts.db`. From `store`, else `cache:` (sqlite filename, postgres dsn, internal
   * → `:memory:`).
   */
  readonly store?: string;
  readonly proactivePolicyFetching: {
    /** Run the refresher. Default true (ours; postfix-mta-sts-resolver defaults to false). */
    readonly enabled: boolean;
    /** Accepted for compatibility; our refresher's schedule is fixed (a pass every 24 h). */
    readonly intervalSeconds: number;
    /** Records refreshed at once; undefined = the refresher's default. */
    readonly concurrencyLimit?: number;
    /** Accepted for compatibility; our refresher refreshes records not updated for 12 h. */
    readonly graceRatio: number;
  };
  /**
   * The DANE resolver (RFC 7672 §2.1.1): absent means DANE is off and every zone answers as with
   * `dane: off`. Required when any zone says `dane: prefer`.
   */
  readonly dane?: DaneConfig;
  readonly defaultZone: ZoneConfig;
  readonly zones: Readonly<Record<string, ZoneConfig>>;
  readonly logging: LoggingConfig;
  /** The HTTP endpoint with `/metrics` and `/healthz`. Off by default; loopback when on. */
  readonly metrics: { readonly enabled: boolean; readonly host: string; readonly port: number };
  readonly limits: {
    readonly maxConnections: number;
    /** A connection quiet (nothing asked, nothing being answered) this long is closed, seconds. Default 300. */
    readonly idleTimeoutSeconds: number;
    /** A request frame must be complete this long after its first byte, seconds. Default 10. */
    readonly frameTimeoutSeconds: number;
    readonly maxInFlightPerConnection: number;
    /** Largest request payload, bytes (postfix-mta-sts-resolver: 1024). */
    readonly requestLimit: number;
    /** Network discoveries (TXT lookup and policy fetch of a domain) in flight at once, all clients together. */
    readonly maxInFlightDiscoveries: number;
    /**
     * Share of `maxInFlightDiscoveries` kept for TXT checks of domains with a cached policy and for
     * the refresher: lookups of domains with nothing cached never use it, percent. Default 25.
     */
    readonly discoveryReservePercent: number;
    /**
     * Share of `maxInFlightDiscoveries` one registrable domain (its subdomains together) may hold,
     * percent (at least 2 discoveries). Default 5.
     */
    readonly discoveryDomainSharePercent: number;
    /** TXT lookups per recipient domain. */
    readonly fetchRatePerDomain: RateLimitConfig;
    /** TXT lookups over all domains. */
    readonly fetchRateGlobal: RateLimitConfig;
  };
}

/** `dane:`: where DANE asks, how long, and what proves that the resolver validates. */
export interface DaneConfig {
  /** The validating resolver, `host:port` or `[v6]:port`, host an IP address. */
  readonly resolver: string;
  /** Per query, seconds. Default 2. */
  readonly timeoutSeconds: number;
  /** A name whose answer must carry AD, checked at start and periodically. Default `.`. */
  readonly probe: string;
  /** Accept a resolver off loopback (its AD bit crosses a network unprotected). Default false. */
  readonly allowRemoteResolver: boolean;
}

/** Built-in zone defaults (postfix-mta-sts-resolver's; zones do not inherit from `default_zone`, as there). */
export const DEFAULT_ZONE: ZoneConfig = Object.freeze({
  strictTesting: false,
  timeoutSeconds: 4,
  requireSni: true,
  tlsrpt: false,
  tempOnError: false,
  dane: 'off',
});

/** Defaults of everything else. */
const DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: 8461,
  reusePort: true,
  shutdownTimeoutSeconds: 20,
  cacheGraceSeconds: 60,
  memoryCacheEntries: 10_000,
  memoryCacheTtlSeconds: 5,
  dataDir: './data',
  intervalSeconds: 86400,
  graceRatio: 2.0,
  daneResolver: '127.0.0.1:53',
  daneTimeoutSeconds: 2,
  daneProbe: '.',
  metricsHost: '127.0.0.1',
  metricsPort: 9461,
  maxConnections: 10_000,
  idleTimeoutSeconds: 300,
  frameTimeoutSeconds: 10,
  maxInFlightPerConnection: 128,
  requestLimit: 1024,
  maxInFlightDiscoveries: 256,
  discoveryReservePercent: 25,
  discoveryDomainSharePercent: 5,
  fetchRatePerDomain: Object.freeze({ rate: 1, burst: 10 }),
  fetchRateGlobal: Object.freeze({ rate: 2000, burst: 4000 }),
});

// ------------------------------------------------------------------------------------------------
// Checkers: each takes the raw value and its key path, and returns the typed value or throws.

function fail(key: string, message: string): never {
  throw new MtaStsError('ERR_MTASTS_CONFIG', `${key === '' ? 'configuration' : key}: ${message}`, {
    details: { key },
  });
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  // JSON.stringify writes Infinity and NaN (YAML `.inf`, `.nan`) as null.
  if (typeof v === 'number') return `number ${String(v)}`;
  return `${typeof v} ${JSON.stringify(v)}`;
}

type Mapping = Readonly<Record<string, unknown>>;

function mapping(v: unknown, key: string, allowed: readonly string[]): Mapping {
  if (v === null || v === undefined) return {};
  if (typeof v !== 'object' || Array.isArray(v) || v instanceof Date)
    fail(key, `expected a mapping, got ${describe(v)}`);
  const m = v as Mapping;
  for (const k of Object.keys(m)) {
    if (!allowed.includes(k)) {
      fail(join(key, k), `unknown key (allowed here: ${allowed.join(', ')})`);
    }
  }
  return m;
}

function join(key: string, k: string): string {
  return key === '' ? k : `${key}.${k}`;
}

function bool(v: unknown, key: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail(key, `expected true or false, got ${describe(v)}`);
  return v;
}

/** Every number is bounded on both sides: a value past `max` is refused here, not later by a driver or a timer. */
interface NumberRule {
  readonly min: number;
  readonly max: number;
  /** Must be greater than `min` (not equal). */
  readonly exclusiveMin?: boolean;
  readonly integer?: boolean;
}

function num(v: unknown, key: string, dflt: number, rule: NumberRule): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    fail(key, `expected a number from ${rule.min} to ${rule.max}, got ${describe(v)}`);
  }
  if (rule.integer && !Number.isInteger(v)) fail(key, `expected a whole number, got ${v}`);
  if (rule.exclusiveMin ? v <= rule.min : v < rule.min) {
    fail(key, `must be ${rule.exclusiveMin ? 'greater than' : 'at least'} ${rule.min}, got ${v}`);
  }
  if (v > rule.max) fail(key, `must be at most ${rule.max}, got ${v}`);
  return v;
}

function str(v: unknown, key: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') fail(key, `expected a string, got ${describe(v)}`);
  if (v.trim() === '') fail(key, 'must not be empty');
  return v;
}

function oneOf<T extends string>(v: unknown, key: string, values: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    fail(key, `expected one of ${values.join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}

function port(v: unknown, key: string, dflt: number, allowZero = false): number {
  return num(v, key, dflt, { integer: true, min: allowZero ? 0 : 1, max: 65535 });
}

/** A file mode: an integer (YAML 1.1 reads `0666` as octal, as PyYAML does) or an octal string. */
function fileMode(v: unknown, key: string): number | undefined {
  if (v === undefined) return undefined;
  let mode: number;
  if (typeof v === 'string' && /^0?o?[0-7]{1,4}$/.test(v)) mode = parseInt(v.replace(/^0?o?/, ''), 8);
  else if (typeof v === 'number' && Number.isInteger(v)) mode = v;
  else fail(key, `expected an octal file mode such as 0666, got ${describe(v)}`);
  if (mode < 0 || mode > 0o7777) fail(key, `not a file mode: ${v}`);
  return mode;
}

const ZONE_KEYS = ['strict_testing', 'timeout', 'require_sni', 'tlsrpt', 'temp_on_error', 'dane'] as const;

function zone(v: unknown, key: string): ZoneConfig {
  const m = mapping(v, key, ZONE_KEYS);
  return Object.freeze({
    strictTesting: bool(m.strict_testing, join(key, 'strict_testing'), DEFAULT_ZONE.strictTesting),
    timeoutSeconds: num(m.timeout, join(key, 'timeout'), DEFAULT_ZONE.timeoutSeconds, {
      min: 0,
      exclusiveMin: true,
      max: 3600,
    }),
    requireSni: bool(m.require_sni, join(key, 'require_sni'), DEFAULT_ZONE.requireSni),
    tlsrpt: bool(m.tlsrpt, join(key, 'tlsrpt'), DEFAULT_ZONE.tlsrpt),
    tempOnError: bool(m.temp_on_error, join(key, 'temp_on_error'), DEFAULT_ZONE.tempOnError),
    // YAML 1.1 reads a bare `off` as false: `dane: off` means what it says.
    dane: oneOf(m.dane === false ? 'off' : m.dane, join(key, 'dane'), ['off', 'prefer'] as const, DEFAULT_ZONE.dane),
  });
}

function rate(v: unknown, key: string, dflt: RateLimitConfig): RateLimitConfig {
  const m = mapping(v, key, ['rate', 'burst']);
  const r = {
    rate: num(m.rate, join(key, 'rate'), dflt.rate, { min: 0, exclusiveMin: true, max: 1_000_000 }),
    burst: num(m.burst, join(key, 'burst'), dflt.burst, { min: 1, integer: true, max: 1_000_000 }),
  };
  return Object.freeze(r);
}

const TOP_KEYS = [
  'host',
  'port',
  'path',
  'mode',
  'reuse_port',
  'shutdown_timeout',
  'cache_grace',
  'memory_cache',
  'cache',
  'proactive_policy_fetching',
  'dane',
  'default_zone',
  'zones',
  'data_dir',
  'store',
  'logging',
  'metrics',
  'limits',
] as const;

function cacheSection(v: unknown): { cache: Config['cache']; store?: string } {
  const m = mapping(v, 'cache', ['type', 'options']);
  const type = oneOf(m.type, 'cache.type', ['sqlite', 'postgres', 'internal', 'redis', 'redis_sentinel'], 'sqlite');
  if (type === 'redis' || type === 'redis_sentinel') {
    fail('cache.type', `${type} is not supported by mtastsdb; use sqlite (one server) or postgres (a fleet)`);
  }
  if (type === 'sqlite') {
    // threads and timeout are postfix-mta-sts-resolver's pool settings; better-sqlite3 needs neither.
    const o = mapping(m.options, 'cache.options', ['filename', 'threads', 'timeout']);
    num(o.threads, 'cache.options.threads', 1, { integer: true, min: 1, max: 1024 });
    num(o.timeout, 'cache.options.timeout', 5, { min: 0, exclusiveMin: true, max: 3600 });
    const filename = str(o.filename, 'cache.options.filename');
    return filename === undefined ? { cache: { type } } : { cache: { type, filename }, store: filename };
  }
  if (type === 'postgres') {
    const o = mapping(m.options, 'cache.options', ['dsn', 'timeout']);
    num(o.timeout, 'cache.options.timeout', 5, { min: 0, exclusiveMin: true, max: 3600 });
    const dsn = str(o.dsn, 'cache.options.dsn');
    if (dsn === undefined) fail('cache.options.dsn', 'required when cache.type is postgres');
    if (!/^postgres(?:ql)?:\/\//i.test(dsn)) fail('cache.options.dsn', 'expected a postgres:// URL');
    return { cache: { type, dsn }, store: dsn };
  }
  // internal: postfix-mta-sts-resolver's in-memory LRU. We keep the same lifetime (lost on restart)
  // with an in-memory SQLite store; cache_size is accepted and not needed.
  const o = mapping(m.options, 'cache.options', ['cache_size']);
  num(o.cache_size, 'cache.options.cache_size', 10000, { integer: true, min: 1, max: 100_000_000 });
  return { cache: { type }, store: ':memory:' };
}

/** Parses `host:port` / `[v6]:port` with an IP address host, or undefined. */
function ipAndPort(v: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(v) ?? /^([^:[\]]+):(\d{1,5})$/.exec(v);
  if (m === null || isIP(m[1] as string) === 0) return undefined;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: m[1] as string, port } : undefined;
}

function isLoopback(ip: string): boolean {
  return isIP(ip) === 4 ? ip.startsWith('127.') : ip === '::1' || /^::ffff:127\./i.test(ip);
}

function daneSection(v: unknown): DaneConfig | undefined {
  if (v === undefined) return undefined;
  const m = mapping(v, 'dane', ['resolver', 'timeout', 'probe', 'allow_remote_resolver']);
  const resolver = str(m.resolver, 'dane.resolver') ?? DEFAULTS.daneResolver;
  const addr = ipAndPort(resolver);
  if (addr === undefined)
    fail('dane.resolver', `expected an IP address and port (127.0.0.1:53, [::1]:53), got ${describe(resolver)}`);
  const allowRemoteResolver = bool(m.allow_remote_resolver, 'dane.allow_remote_resolver', false);
  // RFC 7672 §2.1.1: the AD bit is only as trustworthy as the channel to the resolver.
  if (!allowRemoteResolver && !isLoopback(addr.host)) {
    fail(
      'dane.resolver',
      `${resolver} is not on loopback; its AD bit can be forged on the way (set allow_remote_resolver: true to accept it)`,
    );
  }
  const probe = str(m.probe, 'dane.probe') ?? DEFAULTS.daneProbe;
  if (
    probe !== '.' &&
    !/^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.?$/i.test(probe)
  ) {
    fail('dane.probe', `expected a DNS name such as "." or "example.org", got ${describe(probe)}`);
  }
  return Object.freeze({
    resolver,
    timeoutSeconds: num(m.timeout, 'dane.timeout', DEFAULTS.daneTimeoutSeconds, {
      min: 0,
      exclusiveMin: true,
      max: 60,
    }),
    probe,
    allowRemoteResolver,
  });
}

/**
 * Validates a parsed YAML document (null or a mapping) and returns the frozen configuration.
 *
 * @throws MtaStsError `ERR_MTASTS_CONFIG` with `details.key` the offending key path
 *   (e.g. `zones.postfix.timeout`) for wrong types, unknown keys and impossible values.
 */
export function validateConfig(raw: unknown): Config {
  const m = mapping(raw, '', TOP_KEYS);

  const path = str(m.path, 'path');
  const mode = fileMode(m.mode, 'mode');
  if (mode !== undefined && path === undefined) fail('mode', 'only meaningful with path (a Unix socket)');

  const { cache, store: cacheStore } = cacheSection(m.cache);
  const memoryCache = mapping(m.memory_cache, 'memory_cache', ['entries', 'ttl']);
  const store = str(m.store, 'store') ?? cacheStore;

  const ppf = mapping(m.proactive_policy_fetching, 'proactive_policy_fetching', [
    'enabled',
    'interval',
    'concurrency_limit',
    'grace_ratio',
  ]);
  const concurrencyLimit =
    ppf.concurrency_limit === undefined
      ? undefined
      : num(ppf.concurrency_limit, 'proactive_policy_fetching.concurrency_limit', 0, {
          integer: true,
          min: 1,
          max: 10_000,
        });

  const zonesRaw = mapping(m.zones, 'zones', Object.keys((m.zones ?? {}) as object));
  const zones: Record<string, ZoneConfig> = {};
  for (const [name, z] of Object.entries(zonesRaw)) {
    if (name === '' || /\s/.test(name)) fail(join('zones', name), 'a zone name is a socketmap name: no spaces');
    zones[name] = zone(z, join('zones', name));
  }

  const dane = daneSection(m.dane);
  const defaultZone = zone(m.default_zone, 'default_zone');
  if (dane === undefined) {
    const all: Array<[string, ZoneConfig]> = [
      ['default_zone', defaultZone],
      ...Object.entries(zones).map(([n, z]): [string, ZoneConfig] => [join('zones', n), z]),
    ];
    for (const [key, z] of all) {
      if (z.dane === 'prefer') fail(join(key, 'dane'), 'dane: prefer needs a dane: section (the validating resolver)');
    }
  }

  const logging = mapping(m.logging, 'logging', ['format', 'level']);
  const metrics = mapping(m.metrics, 'metrics', ['enabled', 'host', 'port']);
  const limits = mapping(m.limits, 'limits', [
    'max_connections',
    'idle_timeout',
    'frame_timeout',
    'max_in_flight_per_connection',
    'request_limit',
    'max_in_flight_discoveries',
    'discovery_reserve_percent',
    'discovery_domain_share_percent',
    'fetch_rate_per_domain',
    'fetch_rate_global',
  ]);

  const config: Config = {
    host: str(m.host, 'host') ?? DEFAULTS.host,
    port: port(m.port, 'port', DEFAULTS.port, true),
    ...(path !== undefined ? { path } : {}),
    ...(mode !== undefined ? { mode } : {}),
    reusePort: bool(m.reuse_port, 'reuse_port', DEFAULTS.reusePort),
    shutdownTimeoutSeconds: num(m.shutdown_timeout, 'shutdown_timeout', DEFAULTS.shutdownTimeoutSeconds, {
      min: 0,
      max: 3600,
    }),
    cacheGraceSeconds: num(m.cache_grace, 'cache_grace', DEFAULTS.cacheGraceSeconds, { min: 0, max: 31_557_600 }),
    memoryCache: Object.freeze({
      entries: num(memoryCache.entries, 'memory_cache.entries', DEFAULTS.memoryCacheEntries, {
        integer: true,
        min: 0,
        max: 10_000_000,
      }),
      // Kept well inside the TXT recheck grace's order of magnitude: other nodes' writes are seen within it.
      ttlSeconds: num(memoryCache.ttl, 'memory_cache.ttl', DEFAULTS.memoryCacheTtlSeconds, { min: 0, max: 3600 }),
    }),
    cache: Object.freeze(cache),
    dataDir: str(m.data_dir, 'data_dir') ?? DEFAULTS.dataDir,
    ...(store !== undefined ? { store } : {}),
    proactivePolicyFetching: Object.freeze({
      enabled: bool(ppf.enabled, 'proactive_policy_fetching.enabled', true),
      intervalSeconds: num(ppf.interval, 'proactive_policy_fetching.interval', DEFAULTS.intervalSeconds, {
        min: 1,
        max: 31_557_600,
      }),
      ...(concurrencyLimit !== undefined ? { concurrencyLimit } : {}),
      graceRatio: num(ppf.grace_ratio, 'proactive_policy_fetching.grace_ratio', DEFAULTS.graceRatio, {
        min: 0,
        exclusiveMin: true,
        max: 1000,
      }),
    }),
    ...(dane !== undefined ? { dane } : {}),
    defaultZone,
    zones: Object.freeze(zones),
    logging: Object.freeze({
      format: oneOf(logging.format, 'logging.format', ['json', 'text'] as const, 'json'),
      level: oneOf(logging.level, 'logging.level', LOG_LEVEL_NAMES, 'info'),
    }),
    metrics: Object.freeze({
      enabled: bool(metrics.enabled, 'metrics.enabled', false),
      host: str(metrics.host, 'metrics.host') ?? DEFAULTS.metricsHost,
      port: port(metrics.port, 'metrics.port', DEFAULTS.metricsPort, true),
    }),
    limits: Object.freeze({
      maxConnections: num(limits.max_connections, 'limits.max_connections', DEFAULTS.maxConnections, {
        integer: true,
        min: 1,
        max: 1_000_000,
      }),
      idleTimeoutSeconds: num(limits.idle_timeout, 'limits.idle_timeout', DEFAULTS.idleTimeoutSeconds, {
        min: 0,
        exclusiveMin: true,
        max: 86_400,
      }),
      frameTimeoutSeconds: num(limits.frame_timeout, 'limits.frame_timeout', DEFAULTS.frameTimeoutSeconds, {
        min: 0,
        exclusiveMin: true,
        max: 3600,
      }),
      maxInFlightPerConnection: num(
        limits.max_in_flight_per_connection,
        'limits.max_in_flight_per_connection',
        DEFAULTS.maxInFlightPerConnection,
        { integer: true, min: 1, max: 100_000 },
      ),
      requestLimit: num(limits.request_limit, 'limits.request_limit', DEFAULTS.requestLimit, {
        integer: true,
        min: 16,
        max: 1_000_000,
      }),
      maxInFlightDiscoveries: num(
        limits.max_in_flight_discoveries,
        'limits.max_in_flight_discoveries',
        DEFAULTS.maxInFlightDiscoveries,
        { integer: true, min: 1, max: 100_000 },
      ),
      discoveryReservePercent: num(
        limits.discovery_reserve_percent,
        'limits.discovery_reserve_percent',
        DEFAULTS.discoveryReservePercent,
        { min: 0, max: 90 },
      ),
      discoveryDomainSharePercent: num(
        limits.discovery_domain_share_percent,
        'limits.discovery_domain_share_percent',
        DEFAULTS.discoveryDomainSharePercent,
        { min: 0, exclusiveMin: true, max: 100 },
      ),
      fetchRatePerDomain: rate(
        limits.fetch_rate_per_domain,
        'limits.fetch_rate_per_domain',
        DEFAULTS.fetchRatePerDomain,
      ),
      fetchRateGlobal: rate(limits.fetch_rate_global, 'limits.fetch_rate_global', DEFAULTS.fetchRateGlobal),
    }),
  };
  return Object.freeze(config);
}

/** The zone for a socketmap name: its own zone, else the default zone (postfix-mta-sts-resolver). */
export function zoneFor(config: Config, name: string): ZoneConfig {
  return Object.hasOwn(config.zones, name) ? (config.zones[name] as ZoneConfig) : config.defaultZone;
}
