/**
 * The DNS lookups mtastsdb needs. Implementations reject with an Error whose `code` is one of
 * node:dns's codes (`ENOTFOUND`, `ENODATA`, `ESERVFAIL`, `EREFUSED`, `ETIMEOUT`, `ECANCELLED`, …),
 * so that callers classify failures the same way whatever the implementation.
 */
export interface DnsResolver {
  /** TXT records of `name`, each as its list of character-strings (not yet joined). */
  resolveTxt(name: string, signal?: AbortSignal): Promise<string[][]>;
  /** CNAME targets of `name`. */
  resolveCname(name: string, signal?: AbortSignal): Promise<string[]>;
  /** IPv4 addresses of `name`. */
  resolve4(name: string, signal?: AbortSignal): Promise<string[]>;
  /** IPv6 addresses of `name`. */
  resolve6(name: string, signal?: AbortSignal): Promise<string[]>;
}

/** Options of the node:dns resolver. */
export interface NodeResolverOptions {
  /** `host` or `host:port` (IPv6 as `[addr]:port`). Default: the system's resolvers from /etc/resolv.conf. */
  readonly servers?: readonly string[];
  /** Upper bound of every query, enforced with our own timer (c-ares' own timeouts overshoot). Default 10 s. */
  readonly timeoutMs?: number;
}
