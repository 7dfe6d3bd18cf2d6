/**
 * The DANE state of a domain from what its MX hosts showed (RFC 7672 §2.2): each host ranks
 * none < dane < dane-only, and the domain gets the lowest rank, capped by an insecure MX RRset or
 * a host without a secure address. Pure.
 */
import type { DaneStateKind } from './dane-state.js';
import type { DaneTlsaRecord } from './tlsa.js';

/** What discovery learned about one MX host. */
export interface HostEvidence {
  readonly host: string;
  /** Its A/AAAA answer was validated and had an address (RFC 7672 §2.2: TLSA only for those). */
  readonly addressSecure: boolean | 'unknown';
  /** The TLSA answer was validated (records or a secure denial); undefined when not asked. */
  readonly tlsaSecure?: boolean;
  readonly tlsa: readonly DaneTlsaRecord[];
}

/** The resulting state kind and why. */
export interface LatticeResult {
  readonly kind: Exclude<DaneStateKind, 'temp'>;
  readonly reason: string;
}

/**
 * - `dane-only`: the MX RRset is secure (or an implicit MX from a secure NODATA), every host has a
 *   secure address, and each has usable secure TLSA records.
 * - `dane`: some host with a secure address has usable secure TLSA records, but not all hosts do,
 *   or the MX RRset is insecure (RFC 7672 §2.2.1), or a host lacks a secure address.
 * - `unusable`: secure TLSA records exist but none is usable (RFC 7672 §3.1). postfix-tlspol says
 *   `dane` here; Postfix would then only encrypt, while MTA-STS `secure` authenticates the server,
 *   which is stronger and still honours RFC 8461 §2 (no DANE validation could fail).
 * - `none`: otherwise (no host with usable or unusable secure TLSA).
 */
export function daneKind(mxSecure: boolean, hosts: readonly HostEvidence[]): LatticeResult {
  const secureHosts = hosts.filter((h) => h.addressSecure === true);
  const covered = (h: HostEvidence): boolean => h.tlsaSecure === true && h.tlsa.some((r) => r.usable);
  const withUsable = secureHosts.filter(covered);
  const withTlsa = secureHosts.filter((h) => h.tlsaSecure === true && h.tlsa.length > 0);
  const insecureHosts = hosts.length - secureHosts.length;

  if (withUsable.length > 0) {
    if (!mxSecure) return { kind: 'dane', reason: 'MX records not DNSSEC-signed; TLSA published' };
    if (insecureHosts > 0) {
      return { kind: 'dane', reason: `${insecureHosts} of ${hosts.length} MX hosts without a DNSSEC-signed address` };
    }
    if (withUsable.length < secureHosts.length) {
      const n = secureHosts.length - withUsable.length;
      return { kind: 'dane', reason: `${n} of ${hosts.length} MX hosts without usable TLSA` };
    }
    return { kind: 'dane-only', reason: 'every MX host has usable TLSA' };
  }
  if (withTlsa.length > 0) return { kind: 'unusable', reason: 'TLSA records published, none usable for SMTP' };
  if (hosts.length === 0) return { kind: 'none', reason: 'no MX host' };
  if (secureHosts.length === 0) return { kind: 'none', reason: 'no MX host with a DNSSEC-signed address' };
  return { kind: 'none', reason: 'no TLSA records' };
}
