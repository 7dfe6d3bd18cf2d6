import { parseDomain } from './domain.js';
import type { Domain } from './domain.js';
import { MAX_DOMAIN_OCTETS, MAX_LABEL_OCTETS } from './limits.js';
import type { MxPattern, Policy } from './policy.js';

const DOT = 0x2e;
const HYPHEN = 0x2d;

/**
 * The host in lower-case A-label form without the trailing dot, or `null` when it is not a valid
 * host name. Hot path: a plain ASCII name (letters, digits, `-`, `.`) without `xn--` is only
 * lower-cased; it is not fully validated here because an exact match against a valid pattern proves
 * it valid, and {@link matchAscii} checks the one label a wildcard adds. Anything else (non-ASCII,
 * `xn--`, other characters) goes through parseDomain, which validates it (UTS-46, A-label round trip).
 */
function hostAscii(host: string | Domain): string | null {
  if (typeof host !== 'string') return host.ascii;
  let n = host.length;
  // RFC 8461 §4.1 (via DNS): one trailing dot is the same name.
  if (n > 0 && host.charCodeAt(n - 1) === DOT) n--;
  if (n === 0) return null;
  let upper = false;
  let plain = true;
  for (let i = 0; i < n; i++) {
    const c = host.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === DOT || c === HYPHEN) continue;
    if (c >= 0x41 && c <= 0x5a) {
      upper = true;
      continue;
    }
    plain = false;
    break;
  }
  if (plain) {
    let s = n === host.length ? host : host.slice(0, n);
    if (upper) s = s.toLowerCase();
    // An A-label needs IDNA validation (a bogus `xn--` label must not match anything).
    if (!s.includes('xn--')) return s;
  }
  try {
    return parseDomain(host).ascii;
  } catch {
    return null; // an invalid host name matches nothing
  }
}

/**
 * RFC 8461 §4.1: an exact pattern matches its name; `*.example.com` matches exactly one extra
 * left-most label (`mx.example.com`), never two (`a.b.example.com`) and never the bare name.
 * `host` is lower-case A-label form without trailing dot (see {@link hostAscii}).
 */
function matchAscii(pattern: MxPattern, host: string): boolean {
  const base = pattern.domain.ascii;
  if (!pattern.wildcard) return host === base;
  const labelLen = host.length - base.length - 1;
  if (labelLen < 1 || labelLen > MAX_LABEL_OCTETS || host.length > MAX_DOMAIN_OCTETS) return false;
  if (host.charCodeAt(labelLen) !== DOT || !host.endsWith(base)) return false;
  // The extra label is one label (no dot) and a valid LDH label (no hyphen at either end).
  return host.indexOf('.') === labelLen && host.charCodeAt(0) !== HYPHEN && host.charCodeAt(labelLen - 1) !== HYPHEN;
}

/**
 * RFC 8461 §4.1: whether `host` (an MX host name, a string or a parsed Domain) matches one of the
 * policy's `mx` patterns. Case-insensitive, trailing dot ignored, IDNs compared in A-label form;
 * a wildcard matches exactly one extra left-most label and never the bare domain.
 * An invalid host name matches nothing (no throw).
 */
export function policyMatches(policy: Policy, host: string | Domain): boolean {
  const ascii = hostAscii(host);
  if (ascii === null) return false;
  const mx = policy.mx;
  for (let i = 0; i < mx.length; i++) {
    if (matchAscii(mx[i]!, ascii)) return true;
  }
  return false;
}

/** Whether one pattern matches `host` (see {@link policyMatches}). */
export function mxPatternMatches(pattern: MxPattern, host: string | Domain): boolean {
  const ascii = hostAscii(host);
  return ascii !== null && matchAscii(pattern, ascii);
}
