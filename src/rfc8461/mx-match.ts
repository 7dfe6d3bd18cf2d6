import type { Domain } from './domain.js';
import type { MxPattern, Policy } from './policy.js';

/**
 * RFC 8461 §4.1: whether `host` (an MX host name, a string or a parsed Domain) matches one of the
 * policy's `mx` patterns. Case-insensitive, trailing dot ignored, IDNs compared in A-label form;
 * a wildcard matches exactly one extra left-most label and never the bare domain.
 * An invalid host name matches nothing.
 */
export function policyMatches(policy: Policy, host: string | Domain): boolean {
  void policy;
  void host;
  throw new Error('policyMatches: not implemented');
}

/** Whether one pattern matches `host` (see {@link policyMatches}). */
export function mxPatternMatches(pattern: MxPattern, host: string | Domain): boolean {
  void pattern;
  void host;
  throw new Error('mxPatternMatches: not implemented');
}
