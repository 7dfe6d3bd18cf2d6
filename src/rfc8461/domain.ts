import { toASCII, toUnicode } from 'tr46';
import { MtaStsError } from '../errors.js';
import { MAX_DOMAIN_OCTETS, MAX_LABEL_OCTETS } from './limits.js';

/**
 * A validated DNS host name in both forms. Compare names by `ascii`.
 *
 * RFC 8461 §3 and §4.1: policy domains and MX names are compared in A-label form
 * (RFC 5890); we keep the U-label form for display and as the database key.
 */
export class Domain {
  /** Lower-case A-label form, no trailing dot, e.g. `xn--bcher-kva.example`. */
  readonly ascii: string;
  /** U-label form, e.g. `bücher.example`; `''` when the name has no IDN label. */
  readonly unicode: string;

  /** Use {@link parseDomain}; this constructor trusts its arguments. */
  constructor(ascii: string, unicode: string) {
    this.ascii = ascii;
    this.unicode = unicode;
  }

  /** The name to show people and to key the database: Unicode if the name has IDN labels, else ASCII. */
  name(): string {
    return this.unicode === '' ? this.ascii : this.unicode;
  }

  toString(): string {
    return this.name();
  }

  /** Same host name (A-label comparison). */
  equals(other: Domain): boolean {
    return this.ascii === other.ascii;
  }
}

// UTS-46 with STD3 rules and DNS length checks (RFC 5891 §5, UTS #46 §4).
const STRICT = {
  checkBidi: true,
  checkHyphens: true,
  checkJoiners: true,
  useSTD3ASCIIRules: true,
  verifyDNSLength: true,
  transitionalProcessing: false,
} as const;

const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const IPV4_LIKE = /^[0-9.]+$/;
// Fast path: an all-ASCII, already lower-case LDH name needs no UTS-46 mapping.
const PLAIN_ASCII_NAME = /^[a-z0-9.-]+$/;

function fail(input: string, why: string): never {
  throw new MtaStsError('ERR_MTASTS_DOMAIN', `invalid domain ${JSON.stringify(input.slice(0, 300))}: ${why}`);
}

/**
 * Parses and normalises a host name: UTS-46 mapping (non-transitional), then our own checks:
 * labels of 1–63 octets, a name of at most 253 octets, letters/digits/hyphen only, no leading or
 * trailing hyphen, no empty label, and no IP literal. One trailing dot is allowed and removed.
 *
 * @throws MtaStsError `ERR_MTASTS_DOMAIN`
 */
export function parseDomain(input: string): Domain {
  if (typeof input !== 'string') fail(String(input), 'not a string');
  let s = input.endsWith('.') ? input.slice(0, -1) : input;
  if (s === '') fail(input, 'empty name');
  if (s.length > 1024) fail(input, 'name too long');
  if (s.startsWith('[') || s.includes(':')) fail(input, 'IP literals are not host names');
  if (IPV4_LIKE.test(s)) fail(input, 'IP literals are not host names');

  let ascii: string;
  if (PLAIN_ASCII_NAME.test(s) && !s.includes('xn--')) {
    ascii = s;
  } else {
    const mapped = toASCII(s, STRICT);
    if (mapped === null || mapped === '') fail(input, 'not a valid IDNA host name');
    ascii = mapped;
  }
  if (ascii.length > MAX_DOMAIN_OCTETS) fail(input, `longer than ${MAX_DOMAIN_OCTETS} octets`);
  const labels = ascii.split('.');
  for (const label of labels) {
    if (label.length === 0) fail(input, 'empty label');
    if (label.length > MAX_LABEL_OCTETS) fail(input, `label longer than ${MAX_LABEL_OCTETS} octets`);
    if (!LDH_LABEL.test(label)) fail(input, `label ${JSON.stringify(label)} is not letters, digits and inner hyphens`);
  }
  // A name whose last label is numeric is an IPv4 literal in disguise (RFC 3696 §2).
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) fail(input, 'top-level label is numeric');

  let unicode = '';
  if (ascii.includes('xn--')) {
    const u = toUnicode(ascii, STRICT);
    if (u.error) fail(input, 'invalid A-label');
    unicode = u.domain;
    // A Punycode label must round-trip (rejects `xn--` labels that decode to ASCII or to disallowed text).
    if (toASCII(unicode, STRICT) !== ascii) fail(input, 'A-label does not round-trip');
    if (unicode === ascii) unicode = '';
  }
  s = ascii;
  return new Domain(s, unicode);
}
