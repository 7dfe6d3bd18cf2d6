/**
 * The socketmap request handler: socketmap name → zone, key → domain, the policy database →
 * the reply. Errors become `NOTFOUND `/`TEMP` per the zone; a cached policy is never answered
 * weaker because the network is slow or failing.
 */
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { MtaStsError, isMtaStsError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { GetOutcome } from '../cache/types.js';
import type { PolicyRecord } from '../store/policy-store.js';
import type { Domain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import { parseDomain } from '../rfc8461/domain.js';
import { NOTFOUND_REPLY, formatReply, normalizeKey } from '../socketmap/protocol.js';
import type { ReplyOutcome } from '../socketmap/protocol.js';
import type { SocketmapHandler } from '../socketmap/server.js';
import type { Config } from '../config/schema.js';
import { zoneFor } from '../config/schema.js';
import { BoundedMap } from '../bounded-map.js';

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
  /** Wall clock for the validity of remembered policies. Default {@link systemClock}. */
  readonly clock?: Clock;
  /**
   * How many domains' last answered policies are kept in memory (the oldest remembered evicted first) to
   * answer while the store cannot be read. Default {@link DEFAULT_REMEMBERED_POLICIES}; 0 disables.
   */
  readonly rememberedPolicies?: number;
  /** Upper bound of the memory those policies take (estimated bytes). Default {@link DEFAULT_REMEMBERED_POLICY_BYTES}. */
  readonly rememberedPolicyBytes?: number;
}

/** Default of {@link HandlerOptions.rememberedPolicies}. */
export const DEFAULT_REMEMBERED_POLICIES = 10_000;
/** Default of {@link HandlerOptions.rememberedPolicyBytes}: 32 MiB (a policy is usually well under 1 KiB). */
export const DEFAULT_REMEMBERED_POLICY_BYTES = 32 * 1024 * 1024;

/** RFC 8461 §3.2: a cached policy's lifetime is capped at one year. */
const MAX_AGE_CAP_SECONDS = 31_557_600;

/** A policy the handler answered, kept to answer again while the store is unreadable. */
interface Remembered {
  readonly policy: Policy;
  readonly policyText: string | undefined;
  /** Epoch ms after which the policy no longer applies. */
  readonly validEnd: number;
}

/**
 * The last known policy per domain, oldest remembered evicted first, bounded by entries and by an
 * estimate of bytes (see {@link BoundedMap}).
 */
class LastKnownPolicies {
  private readonly entries: BoundedMap<string, Remembered>;

  constructor(maxEntries: number, maxBytes: number) {
    this.entries = new BoundedMap(maxEntries, maxBytes);
  }

  get size(): number {
    return this.entries.size;
  }

  remember(key: string, policy: Policy, policyText: string | undefined, validEnd: number): void {
    const old = this.entries.get(key);
    // The common warm answer: already remembered. Its place in the eviction order is left as it is
    // (first remembered, first evicted): moving it on every answer would make the Map rebuild its
    // table several times a second under load, and a busy domain evicted is remembered again at
    // its next answer.
    if (old !== undefined && old.policy === policy && old.validEnd === validEnd) return;
    // Strings are UTF-16 in V8; patterns and object headers estimated generously.
    const bytes = 2 * (key.length + (policyText?.length ?? 0)) + 160 * policy.mx.length + 512;
    this.entries.set(key, { policy, policyText, validEnd }, bytes);
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  /** The remembered policy if it is still valid at `now`. */
  recall(key: string, now: number): Remembered | undefined {
    const r = this.entries.get(key);
    if (r === undefined) return undefined;
    if (r.validEnd <= now) {
      this.forget(key);
      return undefined;
    }
    return r;
  }
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

/** Floor of the time a cache-only lookup gets after the request's own deadline was spent. */
const LOOKUP_FLOOR_MS = 1000;

/**
 * Creates the handler the socketmap server calls for each request.
 *
 * - Keys that are IP literals, start with `.`, or are not valid host names → `NOTFOUND `.
 * - `db.get` within the zone timeout; its outcome → {@link formatReply}.
 * - A temporary failure (DNS, timeout, store) first falls back to the cache alone
 *   (`db.lookup`): a valid cached policy is answered as is (RFC 8461 §10: never weaker than the
 *   cache before it expires). When the cache says it holds nothing usable (not found, back-off),
 *   the zone's `temp_on_error` decides between `TEMP <reason>` and `NOTFOUND `.
 * - When the cache cannot be read at all (store errors, closed, the lookup timing out), the last
 *   policy this handler answered for the domain is answered from memory while still valid; with
 *   none, `TEMP <reason>` whatever the zone says, because the store may hold an enforced policy.
 */
export function createSocketmapHandler(options: HandlerOptions): SocketmapHandler {
  const { db, logger, metrics } = options;
  const seconds = options.seconds ?? (() => performance.now() / 1000);
  const clock = options.clock ?? systemClock;
  const deadlines = new Deadlines();
  // Without TLSRPT attributes a reply depends only on the policy and the zone: build it once per
  // policy object (records share them) and zone (replaced on reload).
  const replies = new WeakMap<Policy, Map<Config['defaultZone'], string>>();
  const replyFor = (reply: ReplyOutcome, zone: Config['defaultZone']): string => {
    if (reply.kind !== 'policy' || zone.tlsrpt) return formatReply(reply, zone);
    let byZone = replies.get(reply.policy);
    if (byZone === undefined) {
      byZone = new Map();
      replies.set(reply.policy, byZone);
    }
    let text = byZone.get(zone);
    if (text === undefined) {
      text = formatReply(reply, zone);
      byZone.set(zone, text);
    }
    return text;
  };
  const lastKnown = new LastKnownPolicies(
    options.rememberedPolicies ?? DEFAULT_REMEMBERED_POLICIES,
    options.rememberedPolicyBytes ?? DEFAULT_REMEMBERED_POLICY_BYTES,
  );

  return async (name, key, connectionSignal) => {
    const started = seconds();
    const config = options.config();
    const zone = zoneFor(config, name);
    const zoneLabel = Object.hasOwn(config.zones, name) ? name : 'default';
    const reply = await answer(config, zone, key, connectionSignal);
    metrics.socketmapQuery(zoneLabel, firstWord(reply), seconds() - started);
    return reply;
  };

  /** Keeps (or drops) what the reply was built from, for answering while the store is unreadable. */
  function note(domain: Domain, outcome: ReplyOutcome, validEnd: number | undefined): void {
    if (outcome.kind === 'policy' && validEnd !== undefined) {
      lastKnown.remember(domain.ascii, outcome.policy, outcome.policyText, validEnd);
    } else {
      // The store answered that nothing applies (no MTA-STS, back-off, expired): memory follows it.
      lastKnown.forget(domain.ascii);
    }
  }

  /** Cache-only lookup, bounded: a store that hangs must not hang Postfix. */
  async function boundedLookup(domain: Domain, ms: number): Promise<PolicyRecord> {
    const bound = deadlines.add(Math.max(ms, LOOKUP_FLOOR_MS));
    try {
      const found = db.lookup(domain);
      found.catch(() => {});
      const r = await Promise.race([found, bound.expired]);
      if (r === TIMED_OUT) throw new MtaStsError('ERR_MTASTSDB_STORE_BUSY', 'cache lookup timed out');
      return r;
    } finally {
      deadlines.remove(bound);
    }
  }

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
      const reply = policyOutcome(domain, undefined, outcome);
      note(
        domain,
        reply,
        outcome.policy === null ? undefined : validEndOf(outcome.record, outcome.policy, clock.now()),
      );
      return replyFor(reply, zone);
    } catch (err) {
      if (isMtaStsError(err, 'ERR_MTASTS_DOMAIN')) return NOTFOUND_REPLY;
      if (connectionSignal.aborted) return 'TEMP client gone';
      const coded = isMtaStsError(err);
      if (!coded) logger.error({ err, domain: domain.ascii }, 'policy lookup failed unexpectedly');
      else logger.debug({ code: err.code, domain: domain.ascii, timedOut }, 'policy lookup failed');
      // RFC 8461 §10: whatever failed, a cached policy still applies until it expires.
      let lookupErr: unknown;
      try {
        const record = await boundedLookup(domain, deadline.at - performance.now());
        const reply = policyOutcome(domain, record, undefined);
        note(domain, reply, record.validEnd.getTime());
        return formatReply(reply, zone);
      } catch (e) {
        lookupErr = e;
      }
      if (isMtaStsError(lookupErr, 'ERR_MTASTSDB_BACKOFF', 'ERR_MTASTSDB_NOT_FOUND')) {
        // The cache answered: nothing usable is cached, so the zone decides.
        lastKnown.forget(domain.ascii);
        const reason = coded ? tempReason(err, timedOut) : 'MTA-STS lookup failed';
        return formatReply({ kind: 'temp-error', reason }, zone);
      }
      // RFC 8461 §10: the cache could not be read (store down, I/O error, closing, hung), so we do
      // not know what it holds; it may hold an enforced policy. Answer the last policy we answered
      // for this domain while it is valid, else TEMP even without temp_on_error: Postfix then
      // defers the mail instead of sending it without TLS.
      const remembered = lastKnown.recall(domain.ascii, clock.now());
      logger.warn(
        {
          err: lookupErr,
          domain: domain.ascii,
          answer: remembered !== undefined ? 'remembered policy' : 'TEMP',
        },
        'policy store unreadable; answering from memory or deferring',
      );
      if (remembered !== undefined) {
        return formatReply(
          {
            kind: 'policy',
            domain: domain.ascii,
            policy: remembered.policy,
            ...(remembered.policyText !== undefined ? { policyText: remembered.policyText } : {}),
          },
          zone,
        );
      }
      const reason = isMtaStsError(lookupErr) ? tempReason(lookupErr, false) : 'MTA-STS policy store unavailable';
      return formatReply({ kind: 'temp-error', reason }, { ...zone, tempOnError: true });
    } finally {
      deadlines.remove(deadline);
    }
  }
}

/** When an answered policy stops applying: the record's `validEnd`, else max_age from now. */
function validEndOf(record: PolicyRecord | undefined, policy: Policy, now: number): number {
  if (record !== undefined && !record.backoff) return record.validEnd.getTime();
  // RFC 8461 §3.2: a policy fetched now applies for max_age seconds (capped when cached).
  return now + Math.min(policy.maxAgeSeconds, MAX_AGE_CAP_SECONDS) * 1000;
}
