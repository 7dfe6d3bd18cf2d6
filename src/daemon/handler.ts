/**
 * The socketmap request handler: socketmap name → zone, key → domain, the policy database →
 * the reply. Errors become `NOTFOUND `/`TEMP` per the zone; a cached policy is never answered
 * weaker because the network is slow or failing.
 */
import { MtaStsError, isMtaStsError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { GetOutcome } from '../cache/types.js';
import type { PolicyRecord } from '../store/policy-store.js';
import type { Domain } from '../rfc8461/domain.js';
import { parseDomain } from '../rfc8461/domain.js';
import { NOTFOUND_REPLY, formatReply, normalizeKey } from '../socketmap/protocol.js';
import type { ReplyOutcome } from '../socketmap/protocol.js';
import type { SocketmapHandler } from '../socketmap/server.js';
import type { Config } from '../config/schema.js';
import { zoneFor } from '../config/schema.js';

/** The part of the policy database the handler uses. */
export interface HandlerDatabase {
  get(domain: string | Domain, options?: { readonly signal?: AbortSignal }): Promise<GetOutcome>;
  lookup(domain: string | Domain): Promise<PolicyRecord>;
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

function policyOutcome(
  domain: Domain,
  record: PolicyRecord | undefined,
  outcome: GetOutcome | undefined,
): ReplyOutcome {
  const policy = outcome?.policy ?? record?.policy ?? null;
  if (policy === null) return { kind: 'none' };
  const text = outcome?.record?.policyText ?? record?.policyText;
  const lines = outcome?.report.policy.string;
  const policyText = text !== undefined && text !== '' ? text : lines !== undefined ? lines.join('\n') : undefined;
  return {
    kind: 'policy',
    domain: domain.ascii,
    policy,
    ...(policyText !== undefined ? { policyText } : {}),
  };
}

const TIMED_OUT: unique symbol = Symbol('timed out');

interface Deadline {
  readonly at: number;
  readonly expired: Promise<typeof TIMED_OUT>;
  fire: () => void;
}

/**
 * Request deadlines checked by one unref'd 50 ms ticker that runs only while requests are pending:
 * zone timeouts are seconds, so 50 ms of slack is nothing, and a warm answer costs a Set insert
 * instead of a timer.
 */
class Deadlines {
  private readonly pending = new Set<Deadline>();
  private ticker: NodeJS.Timeout | undefined;

  add(ms: number): Deadline {
    let fire: () => void = () => {};
    const expired = new Promise<typeof TIMED_OUT>((resolve) => {
      fire = () => resolve(TIMED_OUT);
    });
    const d: Deadline = { at: performance.now() + ms, expired, fire };
    this.pending.add(d);
    if (this.ticker === undefined) {
      this.ticker = setInterval(() => this.tick(), 50);
      this.ticker.unref();
    }
    return d;
  }

  remove(d: Deadline): void {
    this.pending.delete(d);
  }

  private tick(): void {
    // Stopped by an idle tick rather than by remove(): a busy daemon keeps one interval.
    if (this.pending.size === 0 && this.ticker !== undefined) {
      clearInterval(this.ticker);
      this.ticker = undefined;
      return;
    }
    const now = performance.now();
    for (const d of this.pending) {
      if (d.at <= now) {
        this.pending.delete(d);
        d.fire();
      }
    }
  }
}

/** `OK`, `NOTFOUND` or `TEMP`: the metrics label of a reply. */
function firstWord(reply: string): string {
  const space = reply.indexOf(' ');
  return space < 0 ? reply : reply.slice(0, space);
}

/** A short, safe reason for `TEMP` from a coded error. */
function tempReason(err: MtaStsError, timedOut: boolean): string {
  if (timedOut) return 'MTA-STS lookup timed out';
  switch (err.code) {
    case 'ERR_MTASTS_DNS':
      return 'MTA-STS DNS lookup failed';
    case 'ERR_MTASTSDB_CLOSED':
      return 'MTA-STS daemon shutting down';
    case 'ERR_MTASTS_ABORTED':
      return 'MTA-STS lookup aborted';
    default:
      return err.code.startsWith('ERR_MTASTSDB_STORE') ? 'MTA-STS policy store unavailable' : 'MTA-STS lookup failed';
  }
}

/**
 * Creates the handler the socketmap server calls for each request.
 *
 * - Keys that are IP literals, start with `.`, or are not valid host names → `NOTFOUND `.
 * - `db.get` within the zone timeout; its outcome → {@link formatReply}.
 * - A temporary failure (DNS, timeout, store) first falls back to the cache alone
 *   (`db.lookup`): a valid cached policy is answered as is (RFC 8461 §10: never weaker than the
 *   cache before it expires). Only with nothing cached does the zone's `temp_on_error` decide
 *   between `TEMP <reason>` and `NOTFOUND `.
 */
export function createSocketmapHandler(options: HandlerOptions): SocketmapHandler {
  const { db, logger, metrics } = options;
  const seconds = options.seconds ?? (() => performance.now() / 1000);
  const deadlines = new Deadlines();

  return async (name, key, connectionSignal) => {
    const started = seconds();
    const config = options.config();
    const zone = zoneFor(config, name);
    const zoneLabel = Object.hasOwn(config.zones, name) ? name : 'default';
    const reply = await answer(config, zone, key, connectionSignal);
    metrics.socketmapQuery(zoneLabel, firstWord(reply), seconds() - started);
    return reply;
  };

  async function answer(
    _config: Config,
    zone: Config['defaultZone'],
    key: string,
    connectionSignal: AbortSignal,
  ): Promise<string> {
    const normalized = normalizeKey(key);
    if (normalized.kind === 'skip') return NOTFOUND_REPLY;
    let domain: Domain;
    try {
      domain = parseDomain(normalized.domain);
    } catch {
      return NOTFOUND_REPLY; // not a host name: no policy can exist for it
    }

    // The zone timeout bounds this answer; the discovery itself is shared and carries on, so the
    // next request for the domain finds it cached. One coarse ticker serves every request (a
    // timer and an AbortController per request cost more than a warm lookup).
    const deadline = deadlines.add(zone.timeoutSeconds * 1000);
    let timedOut = false;
    try {
      const got = db.get(domain, { signal: connectionSignal });
      // After a timeout nobody awaits `got`; its late failure is expected, not unhandled.
      got.catch(() => {});
      const outcome = await Promise.race([got, deadline.expired]);
      if (outcome === TIMED_OUT) {
        timedOut = true;
        throw new MtaStsError('ERR_MTASTS_ABORTED', 'zone timeout');
      }
      return formatReply(policyOutcome(domain, undefined, outcome), zone);
    } catch (err) {
      if (isMtaStsError(err, 'ERR_MTASTS_DOMAIN')) return NOTFOUND_REPLY;
      if (connectionSignal.aborted) return 'TEMP client gone';
      const coded = isMtaStsError(err);
      if (!coded) logger.error({ err, domain: domain.ascii }, 'policy lookup failed unexpectedly');
      else logger.debug({ code: err.code, domain: domain.ascii, timedOut }, 'policy lookup failed');
      // RFC 8461 §10: whatever failed, a cached policy still applies until it expires.
      try {
        const record = await db.lookup(domain);
        return formatReply(policyOutcome(domain, record, undefined), zone);
      } catch (lookupErr) {
        if (isMtaStsError(lookupErr, 'ERR_MTASTSDB_BACKOFF', 'ERR_MTASTSDB_NOT_FOUND')) {
          // Nothing usable cached.
        } else {
          logger.warn({ err: lookupErr, domain: domain.ascii }, 'cache lookup failed after a failed get');
        }
      }
      const reason = coded ? tempReason(err, timedOut) : 'MTA-STS lookup failed';
      return formatReply({ kind: 'temp-error', reason }, zone);
    } finally {
      deadlines.remove(deadline);
    }
  }
}
