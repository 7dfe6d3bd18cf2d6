import { isMtaStsError, MtaStsError } from '../errors.js';
import { Domain, parseDomain } from '../rfc8461/domain.js';
import { MAX_DOMAIN_OCTETS } from '../rfc8461/limits.js';
import { parseRecord, type StsRecord } from '../rfc8461/record.js';
import { resolveFollowingCnames } from './follow-cname.js';
import type { DnsResolver } from './resolver.js';

/** Options of {@link lookupRecord}. */
export interface LookupRecordOptions {
  /** Answers the TXT (and, rarely, CNAME) queries; e.g. `createNodeResolver()`. */
  readonly resolver: DnsResolver;
  /** Cancels the lookup (rejects with `ERR_MTASTS_ABORTED`). */
  readonly signal?: AbortSignal;
}

/** The resolver's "this name has no such data" codes: the domain publishes no record. */
const NO_DATA_CODES = new Set(['ENOTFOUND', 'ENODATA']);

function dnsCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Looks up the MTA-STS TXT record of a domain (RFC 8461 §3.1): TXT of `_mta-sts.<domain>` in
 * A-label form, each record's character-strings joined without separator.
 *
 * - Records that are not MTA-STS records (`parseRecord` returns `null`) are ignored.
 * - More than one MTA-STS record (valid or not) → `ERR_MTASTS_MULTIPLE_RECORDS`.
 * - Exactly one, which breaks the §3.1 grammar → `ERR_MTASTS_RECORD_SYNTAX`. RFC 8461 §3.1 says a
 *   sender then assumes the domain has no available policy; the distinct code lets the cache tell
 *   "no record" from "broken record" in logs and TLSRPT while acting on both alike.
 * - No MTA-STS record: NXDOMAIN, NODATA, an empty answer or only other TXT records →
 *   `ERR_MTASTS_NO_RECORD`.
 * - SERVFAIL, REFUSED, a timeout or any other resolver failure → `ERR_MTASTS_DNS` (temporary;
 *   `cause` is the resolver's error, `details.dnsCode` its code).
 * - A CNAME-only answer is followed here (see `resolveFollowingCnames`); a CNAME loop or more than
 *   `MAX_CNAME_HOPS` hops → `ERR_MTASTS_DNS`, as a recursive resolver would answer SERVFAIL.
 * - The caller's `signal` aborting → `ERR_MTASTS_ABORTED`.
 *
 * @throws MtaStsError with the codes above, or `ERR_MTASTS_DOMAIN` for an invalid `domain` string.
 */
export async function lookupRecord(domain: string | Domain, options: LookupRecordOptions): Promise<StsRecord> {
  const d = domain instanceof Domain ? domain : parseDomain(domain);
  const { resolver, signal } = options;
  if (signal?.aborted) throw new MtaStsError('ERR_MTASTS_ABORTED', 'TXT lookup aborted', { cause: signal.reason });
  // RFC 8461 §3.1: the record lives at `_mta-sts.` + the policy domain.
  const qname = `_mta-sts.${d.ascii}`;
  // A name this long cannot exist in the DNS, so neither can its record.
  if (qname.length > MAX_DOMAIN_OCTETS) {
    throw new MtaStsError('ERR_MTASTS_NO_RECORD', `${qname} is longer than a DNS name can be`);
  }

  let txt: string[][];
  try {
    txt = (await resolveFollowingCnames(resolver, qname, (n, s) => resolver.resolveTxt(n, s), signal)).answers;
  } catch (err) {
    if (signal?.aborted) throw new MtaStsError('ERR_MTASTS_ABORTED', 'TXT lookup aborted', { cause: err });
    if (isMtaStsError(err)) throw err;
    const code = dnsCode(err);
    if (code !== undefined && NO_DATA_CODES.has(code)) {
      throw new MtaStsError('ERR_MTASTS_NO_RECORD', `no TXT record at ${qname} (${code})`, { cause: err });
    }
    throw new MtaStsError('ERR_MTASTS_DNS', `TXT lookup of ${qname} failed (${code ?? 'unknown error'})`, {
      cause: err,
      details: { dnsCode: code },
    });
  }

  // RFC 8461 §3.1: discard records that are not MTA-STS records; exactly one must remain.
  let found: StsRecord | undefined;
  let syntaxError: MtaStsError | undefined;
  let count = 0;
  for (const strings of txt) {
    // RFC 7208 §3.3 style: a TXT record of several character-strings is their concatenation.
    const text = strings.join('');
    let record: StsRecord | null;
    try {
      record = parseRecord(text);
    } catch (err) {
      if (!isMtaStsError(err, 'ERR_MTASTS_RECORD_SYNTAX')) throw err;
      count++;
      syntaxError = err;
      continue;
    }
    if (record === null) continue;
    count++;
    found = record;
  }
  if (count > 1) {
    throw new MtaStsError('ERR_MTASTS_MULTIPLE_RECORDS', `${count} MTA-STS TXT records at ${qname}`, {
      details: { count },
    });
  }
  if (found !== undefined) return found;
  if (syntaxError !== undefined) {
    throw new MtaStsError(
      'ERR_MTASTS_RECORD_SYNTAX',
      `invalid MTA-STS TXT record at ${qname}: ${syntaxError.message}`,
      {
        cause: syntaxError,
        details: syntaxError.details,
      },
    );
  }
  throw new MtaStsError('ERR_MTASTS_NO_RECORD', `no MTA-STS TXT record at ${qname}`);
}
