/**
 * DANE discovery for one next-hop domain (RFC 7672 §2.2): its MX hosts, their DNSSEC-secure
 * addresses and the TLSA records at `_25._tcp.<host>`, ending in a {@link DaneState}. The DNS
 * answers come from a {@link DnssecClient}; the rules are in classify.ts, tlsa.ts and lattice.ts.
 */
import { MtaStsError, isMtaStsError } from '../errors.js';
import { parseDomain } from '../rfc8461/domain.js';
import { bareName, classify, type Classified } from './classify.js';
import type { DaneState } from './dane-state.js';
import type { DnssecClient, DnssecQueryType } from './dnssec-client.js';
import { daneKind } from './lattice.js';
import { toDaneTlsaRecord, type DaneTlsaRecord } from './tlsa.js';
import { DANE_HOST_CONCURRENCY } from './tunables.js';

export type { DaneTlsaRecord } from './tlsa.js';

/** One MX host and what DNSSEC said about it. */
export interface DaneHost {
  /** The MX host name (A-label, lower case, no trailing dot); the domain itself for an implicit MX. */
  readonly host: string;
  readonly preference: number;
  /** Its A (or else AAAA) answer was validated and had an address; `'unknown'` when not learned (a failure elsewhere). */
  readonly addressSecure: boolean | 'unknown';
  /** Where TLSA records were looked up last: the CNAME target's `_25._tcp` name or the host's. */
  readonly tlsaName?: string;
  /** The TLSA answer at `tlsaName` was validated (records or a secure denial). */
  readonly tlsaSecure?: boolean;
  /** The validated TLSA records at `tlsaName` (none when the answer was insecure or a denial). */
  readonly tlsa: readonly DaneTlsaRecord[];
}

/** What DANE discovery found for a domain. */
export interface DaneReport {
  /** The domain asked about, A-label, lower case. */
  readonly domain: string;
  /** The MX RRset was authenticated (AD), or the implicit MX rests on a secure NODATA. */
  readonly mxSecure: boolean;
  /** No MX records: the domain itself is the host (RFC 7672 §2.2.2, RFC 5321 §5.1). */
  readonly implicitMx: boolean;
  readonly hosts: readonly DaneHost[];
  readonly state: DaneState;
  /** DNS queries made. */
  readonly queries: number;
}

/** How to look. */
export interface LookupDaneOptions {
  readonly client: DnssecClient;
  /** Ends the lookup: it rejects with `ERR_MTASTS_ABORTED`. */
  readonly signal?: AbortSignal | undefined;
  /** MX hosts worked on at once (default 4). */
  readonly concurrency?: number;
}

/** A classified answer, or the reason the query failed (timeout, network, malformed reply). */
type Asked = { readonly ok: true; readonly c: Classified } | { readonly ok: false; readonly reason: string };

/** Raised inside discovery when an answer makes the whole state `temp`. */
class TempFailure extends Error {}

/**
 * Finds the DANE state of `domain` (RFC 7672 §2.2):
 *
 * 1. MX (CNAMEs followed): NXDOMAIN → `none`; only a Null MX (`0 .`, RFC 7505) → `none`; a secure
 *    NODATA → implicit MX, the domain itself (§2.2.2); an insecure NODATA → `none`; SERVFAIL or a
 *    failed query → `temp`. A Null MX beside real MX records is ignored (RFC 7505 §3 forbids the mix;
 *    mail goes to the real hosts, so their DANE protection applies). Hosts are deduplicated.
 * 2. Per host (`concurrency` at once): A, then AAAA when A gave no secure address. A validated
 *    address → secure; no AD, a secure NODATA or NXDOMAIN → the host is skipped (the state can be at
 *    most `dane`); SERVFAIL or a failed query → `temp` for the whole domain.
 * 3. TLSA at `_25._tcp.<host>` for hosts with a secure address: when the host is a CNAME with a
 *    fully secure chain, the target's name first, then the host's (§2.2.2, as Postfix does).
 *    SERVFAIL → `temp`; no AD or a secure denial → no DANE for that host.
 * 4. The lattice (lattice.ts) → `dane-only` | `dane` | `unusable` | `none`; TTL = the lowest of the
 *    MX, CNAME, negative and TLSA TTLs used (address records' own TTLs are not: the TLSA and MX
 *    answers are what the state asserts).
 *
 * DNS failures never reject: they are `state.kind === 'temp'` with a reason such as
 * `SERVFAIL at _25._tcp.mx.example TLSA` or `timeout at mx.example A`.
 *
 * @throws MtaStsError `ERR_MTASTS_DOMAIN` for a name that is not a host name; `ERR_MTASTS_ABORTED`
 *   when `signal` aborts; `ERR_MTASTS_USAGE` for a bad `concurrency`.
 */
export async function lookupDane(domain: string, options: LookupDaneOptions): Promise<DaneReport> {
  const name = parseDomain(domain).ascii;
  const { client, signal } = options;
  const concurrency = options.concurrency ?? DANE_HOST_CONCURRENCY;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `DANE concurrency must be a positive integer, got ${concurrency}`);
  }
  let queries = 0;
  let ttl = Number.POSITIVE_INFINITY;
  const useTtl = (seconds: number): void => {
    ttl = Math.min(ttl, seconds);
  };

  async function ask(qname: string, type: DnssecQueryType): Promise<Asked> {
    if (signal?.aborted) throw aborted(signal);
    queries++;
    try {
      return { ok: true, c: classify(await client.query(qname, type, signal), qname, type) };
    } catch (err) {
      if (signal?.aborted) throw aborted(signal);
      if (isMtaStsError(err, 'ERR_DANE_DNS')) return { ok: false, reason: String(err.details.reason ?? 'error') };
      return { ok: false, reason: isMtaStsError(err) ? err.code : 'error' };
    }
  }
  /** The classified answer, or a TempFailure naming the rcode (or failure) and the question. */
  async function must(qname: string, type: DnssecQueryType): Promise<Classified> {
    const a = await ask(qname, type);
    if (!a.ok) throw new TempFailure(`${a.reason} at ${qname} ${type}`);
    if (a.c.status === 'temp') throw new TempFailure(`${a.c.problem ?? 'failure'} at ${qname} ${type}`);
    return a.c;
  }

  const report = (
    mxSecure: boolean,
    implicitMx: boolean,
    hosts: readonly DaneHost[],
    state: DaneState,
  ): DaneReport => ({ domain: name, mxSecure, implicitMx, hosts, state, queries });
  const temp = (reason: string): DaneState => ({ kind: 'temp', ttlSeconds: 0, reason });
  const finalTtl = (): number => (Number.isFinite(ttl) ? ttl : 0);

  // 1. The MX RRset.
  let mx: Classified;
  try {
    mx = await must(name, 'MX');
  } catch (err) {
    if (err instanceof TempFailure) return report(false, false, [], temp(err.message));
    throw err;
  }
  useTtl(mx.ttlSeconds);
  // An implicit MX from a secure NODATA is as authenticated as a secure MX RRset (RFC 7672 §2.2.2).
  const mxSecure = mx.status === 'secure' || mx.status === 'secure-nodata';
  if (mx.status === 'secure-nxdomain' || (mx.status === 'insecure' && mx.negative)) {
    const why = mx.status === 'insecure' ? 'no MX records (not DNSSEC-signed)' : 'domain does not exist';
    return report(false, false, [], { kind: 'none', ttlSeconds: finalTtl(), reason: why });
  }
  const implicitMx = mx.status === 'secure-nodata';
  const candidates: { host: string; preference: number }[] = implicitMx
    ? [{ host: name, preference: 0 }] // RFC 7672 §2.2.2, RFC 5321 §5.1: the domain itself
    : [];
  for (const r of mx.records) {
    if (r.type !== 'MX') continue;
    const host = bareName(r.data.exchange);
    if (host === '') continue; // RFC 7505 Null MX
    const preference = r.data.preference ?? 0;
    const seen = candidates.find((c) => c.host === host);
    if (seen === undefined) candidates.push({ host, preference });
    else seen.preference = Math.min(seen.preference, preference);
  }
  if (candidates.length === 0) {
    return report(mxSecure, false, [], { kind: 'none', ttlSeconds: finalTtl(), reason: 'Null MX: no mail accepted' });
  }
  candidates.sort((a, b) => a.preference - b.preference || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));

  // 2 and 3. Each host's address, then its TLSA records.
  async function hostWork(host: string, preference: number): Promise<DaneHost> {
    let address = await must(host, 'A');
    if (address.status !== 'secure') {
      const aaaa = await must(host, 'AAAA');
      if (aaaa.status === 'secure') address = aaaa;
    }
    // The CNAMEs on the way to the address and a denial count; the address records' own TTLs do not.
    if (address.negative) useTtl(address.ttlSeconds);
    if (address.cnameTtlSeconds !== undefined) useTtl(address.cnameTtlSeconds);
    if (address.status !== 'secure') return { host, preference, addressSecure: false, tlsa: [] };

    const target = address.chain[address.chain.length - 1] ?? host;
    const names = target === host ? [host] : [target, host];
    let found: DaneHost = { host, preference, addressSecure: true, tlsa: [] };
    for (const n of names) {
      const tlsaName = `_25._tcp.${n}`;
      const t = await must(tlsaName, 'TLSA');
      useTtl(t.ttlSeconds);
      const tlsa =
        t.status === 'secure' ? t.records.flatMap((r) => (r.type === 'TLSA' ? [toDaneTlsaRecord(r.data)] : [])) : [];
      found = { host, preference, addressSecure: true, tlsaName, tlsaSecure: t.status !== 'insecure', tlsa };
      // RFC 7672 §2.2.2: the original name is tried only when the target has no validated TLSA records.
      if (tlsa.length > 0) break;
    }
    return found;
  }

  const results: (DaneHost | undefined)[] = new Array(candidates.length);
  let failure: TempFailure | undefined;
  let next = 0;
  async function worker(): Promise<void> {
    while (next < candidates.length && failure === undefined) {
      const i = next++;
      const c = candidates[i];
      if (c === undefined) break;
      try {
        results[i] = await hostWork(c.host, c.preference);
      } catch (err) {
        if (!(err instanceof TempFailure)) throw err;
        failure ??= err;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, candidates.length) }, worker));

  const hosts = candidates.map(
    (c, i): DaneHost => results[i] ?? { host: c.host, preference: c.preference, addressSecure: 'unknown', tlsa: [] },
  );
  if (failure !== undefined) return report(mxSecure, implicitMx, hosts, temp(failure.message));
  const { kind, reason } = daneKind(mxSecure, hosts);
  return report(mxSecure, implicitMx, hosts, { kind, ttlSeconds: finalTtl(), reason });
}

function aborted(signal: AbortSignal): MtaStsError {
  return new MtaStsError('ERR_MTASTS_ABORTED', 'DANE lookup aborted', { cause: signal.reason });
}
