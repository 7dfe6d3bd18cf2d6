import type { Domain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import type { DnsResolver } from '../discovery/resolver.js';

/** A fetched, parsed policy with the exact text served (kept for TLSRPT). */
export interface FetchedPolicy {
  readonly policy: Policy;
  readonly text: string;
}

/** Fetches the policy of a domain (RFC 8461 §3.3). Injected into the cache so tests can count or replace fetches. */
export interface PolicyFetcher {
  fetch(domain: Domain, options?: { signal?: AbortSignal }): Promise<FetchedPolicy>;
}

/** Options of the HTTPS policy fetch. */
export interface FetchPolicyOptions {
  /** Resolves `mta-sts.<domain>` (A and AAAA). Default: a node:dns resolver on the system's servers. */
  readonly resolver?: DnsResolver;
  /** Cancels the whole fetch. */
  readonly signal?: AbortSignal;
  /** One deadline for DNS, connect, TLS, headers and body. Default 60 s (RFC 8461 §3.3). */
  readonly timeoutMs?: number;
  /** Allow policy hosts on loopback/private/link-local/unspecified addresses. Default false, or true when `MTASTSDB_ALLOW_PRIVATE_ADDRESSES=1`. */
  readonly allowPrivateAddresses?: boolean;
  /** Extra trusted CA certificates (PEM), added to Node's Web PKI roots. */
  readonly ca?: string | readonly string[];
  /** Port override for tests (default 443). */
  readonly port?: number;
  /** Require `Content-Type: text/plain` (RFC 8461 §3.3). Default true. */
  readonly requireTextPlain?: boolean;
  /** Sent as User-Agent. */
  readonly userAgent?: string;
}
