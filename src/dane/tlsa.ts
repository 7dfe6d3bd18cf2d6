/**
 * TLSA records for SMTP (RFC 7672 §3.1): which ones a sending MTA can use. Pure.
 */

/** A TLSA record as DANE discovery reports it. */
export interface DaneTlsaRecord {
  /** Certificate usage (RFC 6698 §2.1.1): 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE. */
  readonly usage: number;
  /** 0: the full certificate, 1: its SubjectPublicKeyInfo. */
  readonly selector: number;
  /** 0: the selected data itself, 1: its SHA-256, 2: its SHA-512. */
  readonly matchingType: number;
  /** The certificate association data, lower-case hex. */
  readonly data: string;
  /** RFC 7672 §3.1: the record can authenticate an SMTP server. */
  readonly usable: boolean;
}

/** Octets of the association data each digest matching type requires (RFC 6698 §2.1.3). */
const DIGEST_OCTETS: Readonly<Record<number, number>> = { 1: 32, 2: 64 };

/**
 * RFC 7672 §3.1: only DANE-TA(2) and DANE-EE(3) are usable for SMTP (PKIX-TA(0) and PKIX-EE(1) are
 * not, §3.1.3; others are unassigned); selector 0 or 1; matching type 0 with non-empty data, 1 with
 * exactly 32 octets, 2 with exactly 64. Everything else is unusable (RFC 7671 §4.1).
 *
 * `3 1 0` (a full public key) is usable; we do not parse full certificates or keys here (the MTA
 * does), so matching type 0 only needs data.
 */
export function isUsableTlsa(usage: number, selector: number, matchingType: number, dataOctets: number): boolean {
  if (usage !== 2 && usage !== 3) return false;
  if (selector !== 0 && selector !== 1) return false;
  if (matchingType === 0) return dataOctets > 0;
  const want = DIGEST_OCTETS[matchingType];
  return want !== undefined && dataOctets === want;
}

/** A decoded TLSA record (dns-packet's shape) → the reported record with its usability. */
export function toDaneTlsaRecord(r: {
  readonly usage: number;
  readonly selector: number;
  readonly matchingType: number;
  readonly certificate: Uint8Array;
}): DaneTlsaRecord {
  return {
    usage: r.usage,
    selector: r.selector,
    matchingType: r.matchingType,
    data: Buffer.from(r.certificate).toString('hex'),
    usable: isUsableTlsa(r.usage, r.selector, r.matchingType, r.certificate.length),
  };
}
