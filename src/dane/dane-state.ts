/**
 * The DANE state of a next-hop domain (RFC 7672 §2.2): what a DNSSEC-validated look at its MX hosts
 * and their TLSA records found. Pure data; the lookup that produces it lives beside this file.
 */

/**
 * - `dane-only`: the MX RRset is secure and every host with a secure address has usable TLSA
 *   records (RFC 7672 §2.2): Postfix's mandatory DANE.
 * - `dane`: some hosts have usable TLSA records, but not all, or the MX RRset is insecure
 *   (RFC 7672 §2.2.1): Postfix's opportunistic DANE.
 * - `unusable`: secure TLSA records exist, but none is usable for SMTP (RFC 7672 §3.1).
 * - `none`: a validated answer says there is no DANE (insecure or secure denial).
 * - `temp`: a lookup failed or was bogus (RFC 7672 §2.1.1); never "insecure", never cached.
 */
export type DaneStateKind = 'dane-only' | 'dane' | 'unusable' | 'none' | 'temp';

/** What the DANE lookup of one domain found. */
export interface DaneState {
  readonly kind: DaneStateKind;
  /** How long the state may be kept, seconds: the lowest TTL of the answers it rests on; 0 for `temp`. */
  readonly ttlSeconds: number;
  /** Why, in a few words safe for a log line or a `TEMP` reply (e.g. `SERVFAIL at _25._tcp.mx.example TLSA`). */
  readonly reason: string;
}
