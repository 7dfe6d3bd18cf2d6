/**
 * What one DNSSEC answer says, for DANE discovery: its security status, the records that answer
 * the question (after a CNAME chain, owner names checked), and how long that may be relied on.
 * Pure: an answer in, a value out.
 */
import type { Answer } from 'dns-packet';
import { MAX_CNAME_HOPS } from '../rfc8461/limits.js';

/**
 * - `secure`: validated (AD) records of the asked type.
 * - `secure-nodata` / `secure-nxdomain`: a validated denial (RFC 7672 §2.1.1 "secure denial").
 * - `insecure`: an answer without AD (unsigned zone or non-validating resolver), records or not.
 * - `temp`: SERVFAIL (bogus or indeterminate, RFC 7672 §2.1.1), REFUSED, FORMERR, NOTIMP, any other
 *   rcode, or a broken CNAME chain: never treated as "insecure".
 */
export type AnswerStatus = 'secure' | 'secure-nodata' | 'secure-nxdomain' | 'insecure' | 'temp';

/** The reply fields classification reads (a `DnssecAnswer` has them). */
export interface ClassifiableAnswer {
  readonly rcode: string;
  readonly ad: boolean;
  readonly answers: readonly Answer[];
  readonly authorities: readonly Answer[];
}

/** One answer, classified. */
export interface Classified {
  readonly status: AnswerStatus;
  /** The answer has no records of the asked type (NODATA or NXDOMAIN), secure or not. */
  readonly negative: boolean;
  /** The records of the asked type owned by the name the chain ends at. */
  readonly records: readonly Answer[];
  /** The names asked and followed: `[qname, cname target, …]`, lower case, no trailing dot. */
  readonly chain: readonly string[];
  /**
   * The lowest TTL of what the classification rests on, seconds: the CNAMEs followed and the
   * records, or for a negative answer the negative TTL (RFC 2308 §5). 0 when the answer gives none.
   */
  readonly ttlSeconds: number;
  /** The lowest TTL of the CNAME records followed, seconds; undefined without a chain. */
  readonly cnameTtlSeconds?: number;
  /** For `temp`: the rcode or what was wrong with the chain, e.g. `SERVFAIL`, `CNAME loop`. */
  readonly problem?: string;
}

/** Lower case without the trailing dot: how names are compared (RFC 4343). */
export function bareName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function isAtOrBelow(name: string, ancestor: string): boolean {
  return ancestor === '' || name === ancestor || name.endsWith(`.${ancestor}`);
}

/**
 * RFC 2308 §5: the TTL of a negative answer is the lower of the SOA record's TTL and its MINIMUM
 * field. Only an SOA of the denied name's zone counts (owner at or above `name`); none → 0.
 */
export function negativeTtlSeconds(authorities: readonly Answer[], name: string): number {
  let ttl: number | undefined;
  for (const r of authorities) {
    if (r.type !== 'SOA' || !isAtOrBelow(name, bareName(r.name))) continue;
    const t = Math.min(r.ttl ?? 0, r.data.minimum ?? 0);
    ttl = ttl === undefined ? t : Math.min(ttl, t);
  }
  return ttl ?? 0;
}

const minTtl = (a: number, b: number | undefined): number => Math.min(a, b ?? 0);

/**
 * Classifies `answer` to the question `qname`/`qtype`. The CNAME chain is followed from `qname`
 * through CNAME records owned by the current name (at most `MAX_CNAME_HOPS`, no name twice);
 * records owned by any other name are ignored (RFC 7672 §2.1.2 asks for the validated RRset of the
 * name, and a resolver answer may carry unrelated data). AD covers the whole answer, so a secure
 * answer means a fully secure chain.
 */
export function classify(answer: ClassifiableAnswer, qname: string, qtype: string): Classified {
  const chain = [bareName(qname)];
  const base = { negative: false, records: [] as readonly Answer[], chain, ttlSeconds: 0 };
  const temp = (problem: string): Classified => ({ ...base, status: 'temp', problem });
  if (answer.rcode !== 'NOERROR' && answer.rcode !== 'NXDOMAIN') return temp(answer.rcode);

  let ttl = Number.POSITIVE_INFINITY;
  let cnameTtl: number | undefined;
  let current = chain[0] ?? '';
  if (qtype !== 'CNAME') {
    for (;;) {
      const cname = answer.answers.find((r) => r.type === 'CNAME' && bareName(r.name) === current);
      if (cname === undefined || cname.type !== 'CNAME') break;
      const target = bareName(cname.data);
      if (chain.includes(target)) return temp('CNAME loop');
      if (chain.length > MAX_CNAME_HOPS) return temp(`CNAME chain longer than ${MAX_CNAME_HOPS}`);
      chain.push(target);
      cnameTtl = minTtl(cnameTtl ?? Number.POSITIVE_INFINITY, cname.ttl);
      ttl = Math.min(ttl, cnameTtl);
      current = target;
    }
  }
  const records = answer.answers.filter((r) => r.type === qtype && bareName(r.name) === current);
  for (const r of records) ttl = minTtl(ttl, (r as { ttl?: number }).ttl);
  const negative = records.length === 0;
  if (negative) ttl = Math.min(ttl, negativeTtlSeconds(answer.authorities, current));
  const status: AnswerStatus = !answer.ad
    ? 'insecure'
    : !negative
      ? 'secure'
      : answer.rcode === 'NXDOMAIN'
        ? 'secure-nxdomain'
        : 'secure-nodata';
  // NXDOMAIN with records of the asked type is contradictory; the records are not trusted.
  if (answer.rcode === 'NXDOMAIN' && !negative) return temp('NXDOMAIN with records');
  const ttlSeconds = Number.isFinite(ttl) ? ttl : 0;
  return {
    status,
    negative,
    records,
    chain,
    ttlSeconds,
    ...(cnameTtl === undefined ? {} : { cnameTtlSeconds: cnameTtl }),
  };
}
