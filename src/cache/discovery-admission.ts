/**
 * Admission of network discoveries (a TXT lookup and, when needed, a policy fetch): decided from
 * counts alone, with no queue. A discovery is admitted or refused at once; a refusal is a temporary
 * failure the cache answers like a DNS failure (a cached policy still applies, nothing is stored).
 *
 * Three caps, checked in this order:
 * 1. `in_flight`: at most `maxInFlight` discoveries at once, whatever their purpose.
 * 2. `domain_share`: at most `perDomain` of them for one registrable domain ({@link registrableDomain}),
 *    whatever their purpose, so that many subdomains of one hostile domain, each with a policy host
 *    that trickles its answer, hold a small share of the capacity and not all of it.
 * 3. `reserved`: lookups of domains with nothing cached (`new`) may use only `maxInFlight` minus the
 *    reserve; the reserve is kept for TXT checks of domains with a cached policy (`cached`) and the
 *    refresher (`refresh`), so a flood of new names cannot starve the domains the cache protects.
 *
 * Why no queue: a waiting lookup costs memory for as long as it waits, and a DNS server that never
 * answers keeps every admitted lookup in flight until its timeout, so any queue fills at the flood
 * rate. A refused lookup is answered at once and costs nothing afterwards.
 */
import { MtaStsError } from '../errors.js';

/** Why a discovery is wanted, which decides whether it may use the reserve. */
export type DiscoveryPurpose = 'new' | 'cached' | 'refresh';

/** Why a discovery was refused (the `reason` label of `mtastsdb_discoveries_limited_total`). */
export type DiscoveryLimitReason = 'in_flight' | 'domain_share' | 'reserved';

/** Every {@link DiscoveryLimitReason}. */
export const DISCOVERY_LIMIT_REASONS: readonly DiscoveryLimitReason[] = ['in_flight', 'domain_share', 'reserved'];

/** The configured limits (the daemon's `limits.max_in_flight_discoveries` and the two percentages). */
export interface DiscoveryLimits {
  /** Discoveries in flight at once, all purposes. A positive integer. */
  readonly maxInFlight: number;
  /** Share of `maxInFlight` only `cached` and `refresh` discoveries may use, percent (0–90). */
  readonly reservePercent: number;
  /** Share of `maxInFlight` one registrable domain may hold, percent (0–100; at least 2 discoveries). */
  readonly domainSharePercent: number;
}

/** The limits as counts of discoveries. */
export interface DiscoveryCaps {
  readonly total: number;
  /** What `new` discoveries may use: `total` minus the reserve. */
  readonly unreserved: number;
  readonly perDomain: number;
}

/** A registrable domain may always hold this many discoveries (a domain and its `www`, say), up to `total`. */
const MIN_PER_DOMAIN = 2;

/** The caps of `limits`: the reserve rounds down, the per-domain share down but not below {@link MIN_PER_DOMAIN}. */
export function discoveryCaps(limits: DiscoveryLimits): DiscoveryCaps {
  const { maxInFlight, reservePercent, domainSharePercent } = limits;
  if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `maxInFlight must be a positive integer, got ${String(maxInFlight)}`);
  }
  if (!(reservePercent >= 0 && reservePercent <= 90)) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `reservePercent must be 0–90, got ${String(reservePercent)}`);
  }
  if (!(domainSharePercent >= 0 && domainSharePercent <= 100)) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `domainSharePercent must be 0–100, got ${String(domainSharePercent)}`);
  }
  const reserve = Math.floor((maxInFlight * reservePercent) / 100);
  const share = Math.floor((maxInFlight * domainSharePercent) / 100);
  return {
    total: maxInFlight,
    unreserved: maxInFlight - reserve,
    perDomain: Math.min(maxInFlight, Math.max(MIN_PER_DOMAIN, share)),
  };
}

/** What is in flight when a discovery asks to start. */
export interface InFlightCounts {
  /** All discoveries in flight. */
  readonly total: number;
  /** Those of the asking domain's registrable domain. */
  readonly domain: number;
}

/** Null to admit, else why the discovery is refused (the caps in the order of the module comment). */
export function admission(
  counts: InFlightCounts,
  purpose: DiscoveryPurpose,
  caps: DiscoveryCaps,
): DiscoveryLimitReason | null {
  if (counts.total >= caps.total) return 'in_flight';
  if (counts.domain >= caps.perDomain) return 'domain_share';
  if (purpose === 'new' && counts.total >= caps.unreserved) return 'reserved';
  return null;
}

/**
 * Second-level labels under a two-letter country code that are themselves public suffixes
 * (`example.co.uk`, `example.com.au`, `example.ac.jp`): under them the registrable domain has three
 * labels. A short fixed list rather than the Public Suffix List: the share only has to keep one
 * party from holding the capacity, so a suffix missing here merely puts the domains under it in one
 * share (a smaller share for them, never a bypass), and a party gets no more than its own name's share.
 */
const SECOND_LEVEL_SUFFIXES = new Set([
  'ac',
  'co',
  'com',
  'edu',
  'gov',
  'gob',
  'govt',
  'ltd',
  'mil',
  'ne',
  'net',
  'nic',
  'nom',
  'or',
  'org',
  'plc',
  'sch',
]);

/**
 * The registrable domain of `name` (A-labels, lower case, no trailing dot) as the share counts it:
 * the last two labels, or the last three when the TLD has two letters and the label before it is
 * in {@link SECOND_LEVEL_SUFFIXES}. A name with fewer labels is its own registrable domain.
 */
export function registrableDomain(name: string): string {
  const labels = name.split('.');
  const n = labels.length;
  if (n <= 2) return name;
  const tld = labels[n - 1] as string;
  const sld = labels[n - 2] as string;
  const keep = tld.length === 2 && SECOND_LEVEL_SUFFIXES.has(sld) ? 3 : 2;
  return labels.slice(n - keep).join('.');
}

/** Admitted: call `release` exactly once when the discovery ends (later calls do nothing). */
export type Admitted = { readonly admitted: true; readonly release: () => void };
/** Refused, and why. */
export type Refused = { readonly admitted: false; readonly reason: DiscoveryLimitReason };

/**
 * The counts behind {@link admission}: discoveries in flight, in all and per registrable domain.
 * Memory is bounded by the discoveries in flight (a domain's count goes when it reaches 0).
 */
export class DiscoveryAdmission {
  readonly caps: DiscoveryCaps;
  private total = 0;
  private readonly perDomain = new Map<string, number>();

  constructor(limits: DiscoveryLimits) {
    this.caps = discoveryCaps(limits);
  }

  /** Discoveries in flight. */
  get inFlight(): number {
    return this.total;
  }

  /** Admits a discovery of `name` (A-label domain) for `purpose`, or says why not. */
  enter(name: string, purpose: DiscoveryPurpose): Admitted | Refused {
    const key = registrableDomain(name);
    const domain = this.perDomain.get(key) ?? 0;
    const reason = admission({ total: this.total, domain }, purpose, this.caps);
    if (reason !== null) return { admitted: false, reason };
    this.total++;
    this.perDomain.set(key, domain + 1);
    let released = false;
    return {
      admitted: true,
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const left = (this.perDomain.get(key) ?? 1) - 1;
        if (left <= 0) this.perDomain.delete(key);
        else this.perDomain.set(key, left);
      },
    };
  }
}
