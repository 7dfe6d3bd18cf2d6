import { MtaStsError } from '../errors.js';
import type { Domain } from './domain.js';
import type { Extension } from './record.js';

/** RFC 8461 §5: what a sender does when no MX matches or TLS fails. */
export type Mode = 'enforce' | 'testing' | 'none';

/** One `mx:` line, RFC 8461 §3.2 and §4.1. `*.example.com` is `{ wildcard: true, domain: example.com }`. */
export interface MxPattern {
  readonly wildcard: boolean;
  readonly domain: Domain;
}

/** A parsed policy file (`/.well-known/mta-sts.txt`), RFC 8461 §3.2. */
export interface Policy {
  readonly version: 'STSv1';
  readonly mode: Mode;
  readonly mx: readonly MxPattern[];
  /** As published (1–10 digits); capped to 31557600 only when cached. */
  readonly maxAgeSeconds: number;
  readonly extensions: readonly Extension[];
}

/**
 * Parses a policy body.
 *
 * @throws MtaStsError `ERR_MTASTS_POLICY_SYNTAX`
 */
export function parsePolicy(text: string): Policy {
  void text;
  throw new MtaStsError('ERR_MTASTS_INTERNAL', 'parsePolicy: not implemented');
}

/** Formats a policy so that `parsePolicy(formatPolicy(p))` deep-equals `p`. Lines end in CRLF. */
export function formatPolicy(policy: Policy): string {
  void policy;
  throw new MtaStsError('ERR_MTASTS_INTERNAL', 'formatPolicy: not implemented');
}

/** The pattern as written in a policy: `*.example.com` or `mx.example.com` (A-label form). */
export function formatMxPattern(p: MxPattern): string {
  return p.wildcard ? `*.${p.domain.ascii}` : p.domain.ascii;
}
