/**
 * The daemon's DANE side (RFC 7672): the DNSSEC client for the configured resolver, the resolver
 * probe, and the bounded cache of DANE states, put together for the handler.
 */
import type { DaneConfig } from '../config/schema.js';
import { createDnssecClient, type DnssecClient } from '../dane/dnssec-client.js';
import { lookupDane } from '../dane/discover.js';
import { ResolverProbe } from '../dane/resolver-probe.js';
import { DaneStateCache } from '../dane/state-cache.js';
import { DANE_PROBE_INTERVAL_MS } from '../dane/tunables.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { HandlerDane } from './handler.js';

/** Options of {@link startDaneService}. */
export interface DaneServiceOptions {
  readonly config: DaneConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Replaces the client built from `config.resolver` (tests). */
  readonly client?: DnssecClient;
  /** Time between resolver probes, ms (default 5 minutes). */
  readonly probeIntervalMs?: number;
  /** Bounds of a kept state's lifetime, seconds (default the state cache's 60 and 3600). */
  readonly stateTtlSeconds?: { readonly min: number; readonly max: number };
  /** Monotonic seconds for lookup durations. Default `performance.now() / 1000`. */
  readonly seconds?: () => number;
}

/** The running DANE side. */
export interface DaneService {
  readonly handler: HandlerDane;
  /** Null while DANE can be used as configured; else why `/healthz` reports the daemon degraded. */
  problem(): string | null;
  /** Stops the probe. */
  close(): void;
}

/**
 * Builds the DANE side and runs the first resolver probe (bounded by the query timeout) before it
 * resolves, so the first answers already know whether the resolver validates.
 *
 * While the probe finds the resolver not validating (an answer without AD), no DANE state is
 * asked for and every zone answers as with `dane: off`: without AD every lookup would say "no
 * DANE", and `dane-only` must never rest on an unauthenticated answer. An unreachable resolver
 * keeps DANE on: lookups through it fail, and fail closed (`TEMP`), never down to MTA-STS. Both
 * make `/healthz` report degraded. Every change of the verdict forgets the kept states, which may
 * have been learnt through a resolver in the other condition.
 */
export async function startDaneService(options: DaneServiceOptions): Promise<DaneService> {
  const { config, logger, metrics } = options;
  const seconds = options.seconds ?? (() => performance.now() / 1000);
  const client =
    options.client ?? createDnssecClient({ server: config.resolver, timeoutMs: config.timeoutSeconds * 1000 });
  const cache = new DaneStateCache({
    ...(options.stateTtlSeconds !== undefined
      ? { minTtlSeconds: options.stateTtlSeconds.min, maxTtlSeconds: options.stateTtlSeconds.max }
      : {}),
    lookup: async (domain, signal) => {
      const started = seconds();
      const report = await lookupDane(domain, { client, signal });
      metrics.daneLookup?.(report.state.kind, seconds() - started);
      return report;
    },
  });
  let problem: string | null = 'the DANE resolver has not been probed yet';
  const probe = new ResolverProbe({
    client,
    name: config.probe,
    intervalMs: options.probeIntervalMs ?? DANE_PROBE_INTERVAL_MS,
    onChange: (result, previous) => {
      cache.clear();
      metrics.daneResolverValidating?.(result.verdict === 'validating');
      const fields = { resolver: config.resolver, probe: config.probe, verdict: result.verdict, reason: result.reason };
      switch (result.verdict) {
        case 'validating':
          problem = null;
          logger.info(
            fields,
            previous === undefined ? 'DANE is on: the resolver validates' : 'DANE resolver validates again; DANE is on',
          );
          break;
        case 'not-validating':
          problem = `the DANE resolver ${config.resolver} does not validate (${result.reason})`;
          logger.error(
            fields,
            'DANE is off: the resolver does not validate DNSSEC (no AD bit); answering MTA-STS only until it does',
          );
          break;
        case 'unreachable':
          problem = `the DANE resolver ${config.resolver} does not answer (${result.reason})`;
          logger.error(
            fields,
            'DANE resolver does not answer; domains whose MTA-STS answer DANE could replace get TEMP until it does',
          );
          break;
      }
    },
  });
  await probe.start();
  return {
    handler: {
      usable: () => probe.usable,
      state: (domain, opts) => cache.state(domain, opts),
    },
    problem: () => problem,
    close: () => probe.stop(),
  };
}
