/**
 * The socketmap request handler: normalise the key → ask the cache for the domain's MTA-STS state
 * (every fallback and the zone timeout applied there) → one pure decision → format. Nothing else.
 */
import type { StsState } from '../cache/types.js';
import type { StsStateOptions } from '../cache/mtastsdb.js';
import type { Config, ZoneConfig } from '../config/schema.js';
import { zoneFor } from '../config/schema.js';
import { decide, formatDecision } from '../decision/decide.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Domain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import { NOTFOUND_REPLY, normalizeKey } from '../socketmap/protocol.js';
import type { SocketmapHandler } from '../socketmap/server.js';

/** The part of the policy database the handler uses. */
export interface HandlerDatabase {
  stsState(domain: string | Domain, options: StsStateOptions): Promise<StsState>;
}

/** Options of {@link createSocketmapHandler}. */
export interface HandlerOptions {
  readonly db: HandlerDatabase;
  /** The current configuration (re-read on every request, so SIGHUP reloads take effect at once). */
  readonly config: () => Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Monotonic seconds for latency. Default `performance.now() / 1000`. */
  readonly seconds?: () => number;
}

/** `OK`, `NOTFOUND` or `TEMP`: the metrics label of a reply. */
function firstWord(reply: string): string {
  const space = reply.indexOf(' ');
  return space < 0 ? reply : reply.slice(0, space);
}

/**
 * Creates the handler the socketmap server calls for each request. Keys that are IP literals,
 * start with `.`, or are not host names → `NOTFOUND ` without a lookup; a client gone before the
 * answer → `TEMP client gone`; everything else is the decision's ({@link decide}).
 */
export function createSocketmapHandler(options: HandlerOptions): SocketmapHandler {
  const { db, metrics } = options;
  const seconds = options.seconds ?? (() => performance.now() / 1000);
  // A reply without DANE or TLSRPT depends only on the policy and the zone: built once per policy
  // object (records share them) and zone. Both keys are weak, so the zones of a replaced
  // configuration (SIGHUP) and the policies no longer cached are collected with their replies.
  const replies = new WeakMap<ZoneConfig, WeakMap<Policy, string>>();
  const memoised = (zone: ZoneConfig, sts: StsState & { readonly kind: 'policy' }): string => {
    let byPolicy = replies.get(zone);
    if (byPolicy === undefined) {
      byPolicy = new WeakMap();
      replies.set(zone, byPolicy);
    }
    let text = byPolicy.get(sts.policy);
    if (text === undefined) {
      text = formatDecision(decide(zone, sts));
      byPolicy.set(sts.policy, text);
    }
    return text;
  };

  return async (name, key, connectionSignal) => {
    const started = seconds();
    const config = options.config();
    const zone = zoneFor(config, name);
    const zoneLabel = Object.hasOwn(config.zones, name) ? name : 'default';
    const reply = await answer(zone, key, connectionSignal);
    metrics.socketmapQuery(zoneLabel, firstWord(reply), seconds() - started);
    return reply;
  };

  async function answer(zone: ZoneConfig, key: string, connectionSignal: AbortSignal): Promise<string> {
    const normalized = normalizeKey(key);
    if (normalized.kind === 'skip') return NOTFOUND_REPLY;
    const sts = await db.stsState(normalized.domain, {
      signal: connectionSignal,
      timeoutMs: zone.timeoutSeconds * 1000,
    });
    if (connectionSignal.aborted) return 'TEMP client gone';
    if (sts.kind === 'policy' && !zone.tlsrpt && zone.dane === 'off') return memoised(zone, sts);
    return formatDecision(decide(zone, sts));
  }
}
