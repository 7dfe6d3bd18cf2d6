/**
 * The daemon: wires the configuration, the policy database, the limits, the socketmap server and
 * the metrics endpoint, and handles signals. Shutdown is ordered: stop accepting, answer what is
 * in flight, close the HTTP endpoint, close the database.
 */
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MtaStsDb } from '../cache/mtastsdb.js';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { createNodeResolver } from '../discovery/node-resolver.js';
import type { DnsResolver } from '../discovery/resolver.js';
import { MtaStsError } from '../errors.js';
import type { FetchPolicyOptions, PolicyFetcher } from '../fetch/fetcher.js';
import { createHttpsFetcher } from '../fetch/https-fetcher.js';
import type { Logger } from '../logger.js';
import { PrometheusMetrics } from '../metrics/prometheus.js';
import { startSocketmapServer } from '../socketmap/server.js';
import type { SocketmapHandler, SocketmapListen, SocketmapServer } from '../socketmap/server.js';
import { resolveStoreTarget } from '../store/open-store.js';
import { createSocketmapHandler } from './handler.js';
import { startDaneService, type DaneService } from './dane-service.js';
import type { DnssecClient } from '../dane/dnssec-client.js';
import { startHttpEndpoint } from './http-endpoint.js';
import type { HttpEndpoint } from './http-endpoint.js';
import { createDaemonLogger } from './log.js';
import { KeyedRateLimiter } from './rate-limit.js';
import { offerResolverImport } from './resolver-import-offer.js';

/** Options of {@link startDaemon}. */
export interface DaemonOptions {
  readonly config: Config;
  /** Re-reads the configuration on SIGHUP / `reload()`. Without it, reload keeps the current one. */
  readonly loadConfig?: () => Promise<Config>;
  /** Default: pino on stdout per `config.logging`. */
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** DNS for TXT lookups and policy hosts. Default: node:dns on the system's servers. */
  readonly resolver?: DnsResolver;
  /** Options of the HTTPS policy fetch (tests: CA, port, allowPrivateAddresses). */
  readonly fetchOptions?: Omit<FetchPolicyOptions, 'signal'>;
  /** Replaces the HTTPS fetcher (tests). */
  readonly fetcher?: PolicyFetcher;
  /** Handle SIGTERM/SIGINT (graceful shutdown) and SIGHUP (reload). Default false. */
  readonly handleSignals?: boolean;
  /** Prometheus metrics; default a new instance. */
  readonly metrics?: PrometheusMetrics;
  /** The configuration file the daemon was started with (named in the commands it logs). */
  readonly configFile?: string;
  /** Replaces the DNSSEC client built from `dane.resolver` (tests). */
  readonly dnssecClient?: DnssecClient;
  /** Time between DANE resolver probes, ms (tests; default 5 minutes). */
  readonly daneProbeIntervalMs?: number;
  /** Bounds of a kept DANE state's lifetime, seconds (tests; default 60 and 3600). */
  readonly daneStateTtlSeconds?: { readonly min: number; readonly max: number };
}

/** A running daemon. */
export interface Daemon {
  /** The socketmap address (`{ host, port }` or `{ path }`). */
  readonly address: SocketmapServer['address'];
  /** The metrics endpoint's address when enabled. */
  readonly metricsAddress?: { readonly host: string; readonly port: number };
  readonly db: MtaStsDb;
  readonly metrics: PrometheusMetrics;
  /** The DANE side, when the configuration has a `dane:` section. */
  readonly dane?: DaneService;
  /** The configuration in force (changes on reload). */
  config(): Config;
  /** Re-reads the configuration: zones and log level apply at once; connections stay open. */
  reload(): Promise<void>;
  /** Graceful shutdown, bounded by `shutdown_timeout`. Idempotent. */
  close(): Promise<void>;
  /** Resolves when the daemon has shut down (by `close()` or a signal). */
  readonly closed: Promise<void>;
}

/** Held-back TXT lookups are logged at most once per domain and limit in this long, ms. */
const RATE_LIMIT_LOG_MS = 60_000;
/** Domains tracked for that log at most (beyond it, further domains are not logged in the window). */
const RATE_LIMIT_LOG_KEYS = 1000;

/** A DNS error our limits raise; lookupRecord classifies it as a temporary DNS failure. */
function limitError(name: string, why: string): Error {
  return Object.assign(new Error(`TXT lookup of ${name} held back: ${why}`), { code: 'ERATELIMIT' });
}

/** Why a listen failed, in words, for the errno codes an operator meets. */
const LISTEN_REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'the address is already in use',
  EADDRNOTAVAIL: 'the address is not on this host',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a path component is not a directory',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve',
  EROFS: 'the file system is read-only',
};

/**
 * A failure to listen as `ERR_MTASTS_LISTEN` (one line for the operator, no stack). Coded errors
 * (a bad option, a live socket at the path) keep their code.
 */
function listenError(where: string, err: unknown, missingDir?: string): MtaStsError {
  if (err instanceof MtaStsError) return err;
  // Node reports a Unix socket in a missing directory as EACCES: say what is wrong instead.
  const code = missingDir !== undefined ? 'ENOENT' : (err as NodeJS.ErrnoException | null)?.code;
  const reason =
    missingDir !== undefined
      ? `the directory ${missingDir} does not exist`
      : (code !== undefined && LISTEN_REASONS[code]) || (err instanceof Error ? err.message : String(err));
  return new MtaStsError('ERR_MTASTS_LISTEN', `cannot listen on ${where}: ${reason}${code ? ` (${code})` : ''}`, {
    cause: err,
    ...(code !== undefined ? { details: { errno: code } } : {}),
  });
}

function zonesPreferDane(config: Config): boolean {
  return config.defaultZone.dane === 'prefer' || Object.values(config.zones).some((z) => z.dane === 'prefer');
}

/** Keys whose change needs a restart; reload warns about them. */
function restartKeys(a: Config, b: Config): string[] {
  const out: string[] = [];
  const same = (x: unknown, y: unknown): boolean => JSON.stringify(x) === JSON.stringify(y);
  if (a.host !== b.host || a.port !== b.port || a.path !== b.path || a.mode !== b.mode) out.push('listen address');
  if (a.store !== b.store || a.dataDir !== b.dataDir) out.push('store');
  if (!same(a.limits, b.limits)) out.push('limits');
  if (!same(a.metrics, b.metrics)) out.push('metrics');
  if (a.cacheGraceSeconds !== b.cacheGraceSeconds) out.push('cache_grace');
  if (!same(a.memoryCache, b.memoryCache)) out.push('memory_cache');
  if (!same(a.proactivePolicyFetching, b.proactivePolicyFetching)) out.push('proactive_policy_fetching');
  if (a.logging.format !== b.logging.format) out.push('logging.format');
  if (!same(a.dane, b.dane)) out.push('dane');
  return out;
}

/**
 * Starts the daemon: opens the policy database (refresher on unless
 * `proactive_policy_fetching.enabled: false`; TXT recheck grace = `cache_grace`), puts the limits
 * around its network access, and starts the socketmap server and, if enabled, the HTTP endpoint.
 *
 * Limits: every `_mta-sts` TXT lookup takes a token from a per-domain and a global bucket; a
 * refused token is a temporary DNS failure to the database, which then keeps any cached policy and
 * stores nothing. The database admits each discovery (TXT lookup and policy fetch) under
 * `max_in_flight_discoveries`, the share per registrable domain and the reserve for cached domains
 * and the refresher, refusing at once over a cap (see `cache/discovery-admission.ts`).
 */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  let config = options.config;
  const own = options.logger === undefined ? createDaemonLogger(config.logging) : undefined;
  const logger = options.logger ?? (own as NonNullable<typeof own>).logger;
  const clock = options.clock ?? systemClock;
  const metrics = options.metrics ?? new PrometheusMetrics();
  const { limits } = config;

  const perDomain = new KeyedRateLimiter({ ...limits.fetchRatePerDomain, clock });
  const global = new KeyedRateLimiter({ ...limits.fetchRateGlobal, clock, maxKeys: 1 });
  const baseResolver = options.resolver ?? createNodeResolver();

  // A lookup our own limits hold back is no DNS failure: say so, at most once per domain and
  // limit every RATE_LIMIT_LOG_MS (a flood must not flood the log), with the count held back.
  const heldBackCounts = new Map<string, number>();
  let heldBackSince = clock.now();
  const heldBack = (name: string, why: string): void => {
    const now = clock.now();
    if (now - heldBackSince >= RATE_LIMIT_LOG_MS) {
      heldBackCounts.clear();
      heldBackSince = now;
    }
    const k = `${why} ${name.toLowerCase()}`;
    const n = (heldBackCounts.get(k) ?? 0) + 1;
    if (heldBackCounts.size < RATE_LIMIT_LOG_KEYS || heldBackCounts.has(k)) heldBackCounts.set(k, n);
    if (n === 1 && heldBackCounts.has(k)) {
      logger.warn(
        { domain: name.slice('_mta-sts.'.length), limit: why },
        `MTA-STS TXT lookup held back by the ${why} (not a DNS failure); a cached policy still answers`,
      );
    }
  };

  const resolver: DnsResolver = {
    async resolveTxt(name, signal) {
      if (!name.toLowerCase().startsWith('_mta-sts.')) return baseResolver.resolveTxt(name, signal);
      if (!perDomain.take(name.toLowerCase())) {
        metrics.limit('rate_domain');
        heldBack(name, 'per-domain rate limit');
        throw limitError(name, 'per-domain rate limit');
      }
      if (!global.take('')) {
        metrics.limit('rate_global');
        heldBack(name, 'global rate limit');
        throw limitError(name, 'global rate limit');
      }
      return baseResolver.resolveTxt(name, signal);
    },
    resolveCname: (name, signal) => baseResolver.resolveCname(name, signal),
    resolve4: (name, signal) => baseResolver.resolve4(name, signal),
    resolve6: (name, signal) => baseResolver.resolve6(name, signal),
  };
  const fetcher =
    options.fetcher ??
    createHttpsFetcher({ ...(options.fetchOptions ?? {}), resolver: options.fetchOptions?.resolver ?? baseResolver });

  // Listen first, open the store second: a daemon that cannot listen (address in use, not on
  // this host, socket directory missing) exits before it has created or touched any store.
  // Requests that arrive in the few milliseconds until the store is open wait for it.
  let db: MtaStsDb | undefined;
  let resolveHandler: (h: SocketmapHandler) => void = () => {};
  let rejectHandler: (err: unknown) => void = () => {};
  const handlerReady = new Promise<SocketmapHandler>((res, rej) => {
    resolveHandler = res;
    rejectHandler = rej;
  });
  handlerReady.catch(() => {}); // a failed open is reported by startDaemon itself

  const listen: SocketmapListen =
    config.path !== undefined
      ? { path: config.path, ...(config.mode !== undefined ? { mode: config.mode } : {}) }
      : { host: config.host, port: config.port };
  const server = await startSocketmapServer({
    listen,
    handler: async (name, key, signal) => (await handlerReady)(name, key, signal),
    maxConnections: limits.maxConnections,
    idleTimeoutMs: Math.round(limits.idleTimeoutSeconds * 1000),
    frameTimeoutMs: Math.round(limits.frameTimeoutSeconds * 1000),
    maxInFlightPerConnection: limits.maxInFlightPerConnection,
    requestLimit: limits.requestLimit,
    reusePort: config.reusePort,
    logger: logger.child({ component: 'socketmap' }),
    metrics,
  }).catch(async (err: unknown) => {
    if (!('path' in listen)) throw listenError(`${listen.host}:${listen.port}`, err);
    const dir = dirname(listen.path);
    const dirMissing = await stat(dir).then(
      () => false,
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT',
    );
    throw listenError(`socket ${listen.path}`, err, dirMissing ? dir : undefined);
  });

  let http: HttpEndpoint | undefined;
  let dane: DaneService | undefined;
  try {
    if (config.metrics.enabled) {
      http = await startHttpEndpoint({
        host: config.metrics.host,
        port: config.metrics.port,
        metrics: async () => ({ text: await metrics.text(), contentType: metrics.contentType }),
        // A point read: cheap on any store size, and it fails when the store does.
        health: async () => db !== undefined && (await db.store.get('healthz.invalid'), !db.closed),
        // The store's recent repairs (a table recreated, the SQLite file deleted or replaced and
        // reopened) and the DANE resolver's state.
        degraded: () => {
          const out: string[] = [];
          for (const p of [db?.store.problem?.(), dane?.problem()]) if (p !== undefined && p !== null) out.push(p);
          return out;
        },
        logger,
      }).catch((err: unknown) => {
        throw listenError(`metrics ${config.metrics.host}:${config.metrics.port}`, err);
      });
    }
    const ppf = config.proactivePolicyFetching;
    // RFC 7672: the first probe runs beside the store's opening, so the first answers know
    // whether the resolver validates.
    const daneStarting =
      config.dane !== undefined
        ? startDaneService({
            config: config.dane,
            logger: logger.child({ component: 'dane' }),
            metrics,
            ...(options.dnssecClient !== undefined ? { client: options.dnssecClient } : {}),
            ...(options.daneProbeIntervalMs !== undefined ? { probeIntervalMs: options.daneProbeIntervalMs } : {}),
            ...(options.daneStateTtlSeconds !== undefined ? { stateTtlSeconds: options.daneStateTtlSeconds } : {}),
          })
        : undefined;
    if (daneStarting === undefined) {
      logger.info({}, 'DANE is off (no dane: section); answers are MTA-STS only, as postfix-mta-sts-resolver gives');
    }
    daneStarting?.catch(() => {});
    db = await MtaStsDb.open({
      ...(config.store !== undefined ? { store: config.store } : { dataDir: config.dataDir }),
      refresher: ppf.enabled,
      txtRecheckSeconds: config.cacheGraceSeconds,
      memoryCache: { entries: config.memoryCache.entries, seconds: config.memoryCache.ttlSeconds },
      clock,
      resolver,
      fetcher,
      logger: logger.child({ component: 'cache' }),
      metrics,
      discoveryLimits: {
        maxInFlight: limits.maxInFlightDiscoveries,
        reservePercent: limits.discoveryReservePercent,
        domainSharePercent: limits.discoveryDomainSharePercent,
      },
      ...(ppf.concurrencyLimit !== undefined ? { refresherOptions: { concurrency: ppf.concurrencyLimit } } : {}),
    });
    dane = await daneStarting;
    if (dane !== undefined && !zonesPreferDane(config)) {
      logger.warn({}, 'a dane: section is configured but no zone says dane: prefer; no answer uses DANE');
    }
  } catch (err) {
    dane?.close();
    rejectHandler(err);
    await http?.close().catch(() => {});
    await server.close(0).catch(() => {});
    throw err;
  }
  const openDb: MtaStsDb = db;
  const daneSide = dane;
  resolveHandler(
    createSocketmapHandler({
      db: openDb,
      config: () => config,
      logger,
      metrics,
      ...(daneSide !== undefined ? { dane: daneSide.handler } : {}),
    }),
  );
  // In the background: a large peer table must not delay the first answers.
  const offerAbort = new AbortController();
  const offer = offerResolverImport({
    target: resolveStoreTarget(config.store !== undefined ? config.store : { dataDir: config.dataDir }, {}),
    store: openDb.store,
    ...(options.configFile !== undefined ? { configFile: options.configFile } : {}),
    logger,
    now: () => clock.now(),
    signal: offerAbort.signal,
  });

  let closing: Promise<void> | undefined;
  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const signalHandlers: Array<[NodeJS.Signals, () => void]> = [];

  const close = (): Promise<void> => {
    closing ??= (async () => {
      const graceMs = config.shutdownTimeoutSeconds * 1000;
      logger.info({ graceMs }, 'shutting down');
      for (const [sig, fn] of signalHandlers) process.off(sig, fn);
      offerAbort.abort();
      await offer;
      await server.close(graceMs);
      daneSide?.close();
      await http?.close();
      // The database waits for its own work (refresher step, deferred lastUse writes); bound it.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        openDb.close(),
        new Promise<void>((resolve) => {
          timer = setTimeout(
            () => {
              logger.error({ graceMs }, 'database did not close within the shutdown timeout');
              resolve();
            },
            Math.max(1000, graceMs),
          );
          timer.unref();
        }),
      ]).catch((err: unknown) => logger.error({ err }, 'closing the database'));
      clearTimeout(timer);
      logger.info({}, 'stopped');
      try {
        own?.flush();
      } catch {
        // a plain stream has nothing to flush
      }
      resolveClosed();
    })();
    return closing;
  };

  const reload = async (): Promise<void> => {
    if (options.loadConfig === undefined) {
      logger.warn({}, 'reload requested but the daemon has no configuration source; nothing changed');
      return;
    }
    let next: Config;
    try {
      next = await options.loadConfig();
    } catch (err) {
      // A broken file must not take the running daemon down: keep the current configuration.
      logger.error(
        { err: err instanceof MtaStsError ? { code: err.code, message: err.message } : err },
        'configuration reload failed; keeping the current configuration',
      );
      return;
    }
    const needRestart = restartKeys(config, next);
    config = next;
    own?.setLevel(next.logging.level);
    if (needRestart.length > 0) logger.warn({ keys: needRestart }, 'these settings change only on restart');
    logger.info({ zones: Object.keys(next.zones), logLevel: next.logging.level }, 'configuration reloaded');
  };

  if (options.handleSignals === true) {
    const onStop = (sig: NodeJS.Signals) => () => {
      logger.info({ signal: sig }, 'signal received');
      void close();
    };
    const onHup = (): void => void reload();
    signalHandlers.push(['SIGTERM', onStop('SIGTERM')], ['SIGINT', onStop('SIGINT')], ['SIGHUP', onHup]);
    for (const [sig, fn] of signalHandlers) process.on(sig, fn);
  }

  return {
    address: server.address,
    ...(http !== undefined ? { metricsAddress: http.address } : {}),
    db: openDb,
    metrics,
    ...(daneSide !== undefined ? { dane: daneSide } : {}),
    config: () => config,
    reload,
    close,
    closed,
  };
}
