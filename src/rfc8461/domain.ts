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

// UTS-46 with STD3 rules and DNS length checks (RFC 5891 §5, UTS #46 §4). `checkHyphens` is off
// because it also rejects ASCII labels with `--` in positions 3-4 (e.g. `r3---sn`, which real DNS
// names use and RFC 5321 allows); we apply the hyphen rules ourselves: LDH labels must not start or
// end with a hyphen, and U-labels must also not have `--` in positions 3-4 (RFC 5891 §4.2.3.1).
const UTS46 = {
  checkBidi: true,
  checkHyphens: false,
  checkJoiners: true,
  useSTD3ASCIIRules: true,
  verifyDNSLength: true,
  transitionalProcessing: false,
} as const;

const IPV4_LIKE = /^[0-9.]+$/;
// WHATWG URL "ends in a number": a last label of digits or 0x-hex is an IPv4 address to
// inet_aton/getaddrinfo (`0x7f000001`, `1.2.3.010`); no TLD looks like that (RFC 3696 §2).
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;

function fail(input: string, why: string): never {
  throw new MtaStsError('ERR_MTASTS_DOMAIN', `invalid domain ${JSON.stringify(input.slice(0, 300))}: ${why}`);
}

/**
 * Fast path: 0 when `s` is plain ASCII letters/digits/hyphen/dot with no `xn--` (UTS-46 maps it by
 * lower-casing only), 1 when it also has upper-case letters, -1 when it needs UTS-46.
 */
function plainAscii(s: string): number {
  let upper = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d) continue;
    if (c >= 0x41 && c <= 0x5a) upper = 1;
    else return -1;
  }
  if (s.length >= 4 && (upper ? s.toLowerCase() : s).includes('xn--')) return -1;
  return upper;
}

/**
 * Our checks on the A-label form, in one pass (this is on the hot path of policy parsing): a name of
 * at most 253 octets, labels of 1–63 letters, digits and hyphens, no hyphen at either end of a label
 * (RFC 1123 §2.1, RFC 5890 §2.3.1 LDH labels), and a last label that is not numeric.
 * Returns why the name is invalid, or `undefined`.
 */
function ldhProblem(ascii: string): string | undefined {
  const n = ascii.length;
  if (n > MAX_DOMAIN_OCTETS) return `longer than ${MAX_DOMAIN_OCTETS} octets`;
  let start = 0;
  for (let i = 0; i <= n; i++) {
    const c = i === n ? 0x2e : ascii.charCodeAt(i);
    if (c === 0x2e) {
      const len = i - start;
      if (len === 0) return 'empty label';
      if (len > MAX_LABEL_OCTETS) return `label longer than ${MAX_LABEL_OCTETS} octets`;
      if (ascii.charCodeAt(start) === 0x2d || ascii.charCodeAt(i - 1) === 0x2d) {
        return `label ${JSON.stringify(ascii.slice(start, i))} starts or ends with a hyphen`;
      }
      if (i < n) start = i + 1;
    } else if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d)) {
      const end = ascii.indexOf('.', i);
      const label = ascii.slice(start, end < 0 ? n : end);
      return `label ${JSON.stringify(label)} is not letters, digits and hyphens`;
    }
  }
  // A name whose last label is numeric is an IPv4 literal in disguise (RFC 3696 §2).
  const first = ascii.charCodeAt(start);
  if (first >= 0x30 && first <= 0x39 && NUMERIC_LABEL.test(ascii.slice(start))) return 'top-level label is numeric';
  return undefined;
}

/**
 * Parses and normalises a host name: UTS-46 mapping (non-transitional), then our own checks:
 * labels of 1–63 octets, a name of at most 253 octets, letters/digits/hyphen only, no leading or
 * trailing hyphen, no empty label, and no IP literal (nor a name whose last label is numeric, which
 * resolvers read as an IPv4 address). One trailing dot is allowed and removed. ASCII labels with
 * `--` in positions 3-4 (`r3---sn`) are accepted; U-labels with them are not (RFC 5891 §4.2.3.1).
 *
 * @throws MtaStsError `ERR_MTASTS_DOMAIN`
 */
export function parseDomain(input: string): Domain {
  if (typeof input !== 'string') fail(String(input), 'not a string');
  const s = input.endsWith('.') ? input.slice(0, -1) : input;
  if (s === '') fail(input, 'empty name');
  if (s.length > 1024) fail(input, 'name too long');
  if (s.startsWith('[') || s.includes(':')) fail(input, 'IP literals and ports are not host names');
  const c0 = s.charCodeAt(0);
  if (c0 >= 0x30 && c0 <= 0x39 && IPV4_LIKE.test(s)) fail(input, 'IP literals are not host names');

  let ascii: string;
  const plain = plainAscii(s);
  if (plain >= 0) {
    ascii = plain === 1 ? s.toLowerCase() : s;
  } else {
    const mapped = toASCII(s, UTS46);
    if (mapped === null || mapped === '') fail(input, 'not a valid IDNA host name');
    ascii = mapped;
  }
  const problem = ldhProblem(ascii);
  if (problem !== undefined) fail(input, problem);

  let unicode = '';
  if (plain < 0 && ascii.includes('xn--')) {
    const u = toUnicode(ascii, UTS46);
    if (u.error) fail(input, 'invalid A-label');
    unicode = u.domain;
    // A Punycode label must round-trip (rejects `xn--` labels that decode to ASCII or to disallowed text).
    if (toASCII(unicode, UTS46) !== ascii) fail(input, 'A-label does not round-trip');
    const labels = ascii.split('.');
    const ulabels = unicode.split('.');
    for (let i = 0; i < labels.length; i++) {
      const u = ulabels[i] ?? '';
      // RFC 5891 §4.2.3.1: a U-label neither starts nor ends with a hyphen nor has `--` in positions 3-4.
      if (labels[i]!.startsWith('xn--') && (u.startsWith('-') || u.endsWith('-') || u.slice(2, 4) === '--')) {
        fail(input, `label ${JSON.stringify(u)} has hyphens where IDNA forbids them`);
      }
    }
    if (unicode === ascii) unicode = '';
  }
  return new Domain(ascii, unicode);
}

/** `domain` as a {@link Domain}: returned as is when it already is one, else parsed. */
export function asDomain(domain: string | Domain): Domain {
  return domain instanceof Domain ? domain : parseDomain(domain);
}
