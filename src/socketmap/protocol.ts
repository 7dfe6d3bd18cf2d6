/**
 * Socketmap request → reply mapping for Postfix's `smtp_tls_policy_maps`, byte-compatible with
 * postfix-mta-sts-resolver where it behaves the same, and stricter where it is unsafe.
 *
 * Pure: no I/O, timers or logging. The rules of the reply are the decision's ({@link decide}).
 */
import { isIP } from 'node:net';
import { MtaStsError } from '../errors.js';
import type { StsState } from '../cache/types.js';
import { decide, formatDecision, type DecisionZone } from '../decision/decide.js';
import type { Policy } from '../rfc8461/policy.js';

/** A parsed socketmap request: `<name> <key>`. */
export interface SocketmapRequest {
  /** The socketmap name from Postfix's map spec (`socketmap:inet:127.0.0.1:8461:postfix` → `postfix`); selects the zone. */
  readonly name: string;
  /** The lookup key as sent (a next-hop domain, possibly `[host]:port`). */
  readonly key: string;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses a request payload: UTF-8, split at the first space.
 *
 * @throws MtaStsError `ERR_MTASTS_SOCKETMAP_REQUEST` for an empty payload, no space, an empty
 * name or key, or invalid UTF-8.
 */
export function parseRequest(payload: Buffer): SocketmapRequest {
  let text: string;
  try {
    text = UTF8.decode(payload);
  } catch (cause) {
    throw new MtaStsError('ERR_MTASTS_SOCKETMAP_REQUEST', 'socketmap request is not valid UTF-8', { cause });
  }
  const space = text.indexOf(' ');
  if (space < 0) {
    throw new MtaStsError('ERR_MTASTS_SOCKETMAP_REQUEST', 'socketmap request has no space between name and key');
  }
  const name = text.slice(0, space);
  const key = text.slice(space + 1);
  if (name === '') throw new MtaStsError('ERR_MTASTS_SOCKETMAP_REQUEST', 'socketmap request has an empty name');
  if (key === '') throw new MtaStsError('ERR_MTASTS_SOCKETMAP_REQUEST', 'socketmap request has an empty key');
  return { name, key };
}

/**
 * A normalised key: either a domain to look up, or a reason to answer `NOTFOUND ` without any
 * lookup (postfix-mta-sts-resolver's `filter_domain` + the `.`/IP-literal short cut).
 */
export type NormalizedKey =
  | { readonly kind: 'domain'; readonly domain: string }
  | { readonly kind: 'skip'; readonly reason: 'parent-domain' | 'ip-literal' | 'empty' | 'not-a-domain' };

// inet_aton forms that getaddrinfo(AI_NUMERICHOST) accepts: 1 to 4 parts, decimal, octal or hex.
const INET_ATON = /^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}$/;

function isIpLiteral(host: string): boolean {
  if (isIP(host) !== 0) return true;
  if (INET_ATON.test(host)) return true;
  // Postfix address literals: [ipv6:2001:db8::1]; IPv6 with a zone index: fe80::1%eth0.
  if (host.startsWith('ipv6:')) return true;
  const pct = host.indexOf('%');
  if (pct > 0 && isIP(host.slice(0, pct)) === 6) return true;
  return false;
}

/**
 * Reduces a socketmap key to the domain whose policy applies, as postfix-mta-sts-resolver's
 * `filter_domain` does: `[host]`, `[host]:port` and `host:port` become `host`; trimmed,
 * lower-cased, one trailing dot removed. A key starting with `.` (Postfix's parent-domain lookup),
 * an IP literal, an empty label, or nothing at all is answered `NOTFOUND ` without a lookup.
 *
 * The domain is not validated here; the policy database rejects invalid names
 * (`ERR_MTASTS_DOMAIN`), which the daemon answers `NOTFOUND `.
 */
export function normalizeKey(key: string): NormalizedKey {
  let host = key.trim();
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    host = close < 0 ? host.slice(1) : host.slice(1, close);
  } else if (isIP(host) === 0) {
    // host:port (a bare IPv6 address has colons too; it is handled as an IP literal below).
    const colon = host.lastIndexOf(':');
    if (colon >= 0) host = host.slice(0, colon);
  }
  host = host.trim().toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1).trimEnd();
  if (host === '') return { kind: 'skip', reason: 'empty' };
  if (host.startsWith('.')) return { kind: 'skip', reason: 'parent-domain' };
  if (isIpLiteral(host)) return { kind: 'skip', reason: 'ip-literal' };
  // Only one trailing dot is the root; more, or an empty label inside, is no host name.
  if (host.endsWith('.') || host.includes('..')) return { kind: 'skip', reason: 'not-a-domain' };
  return { kind: 'domain', domain: host };
}

/** The zone options that shape an MTA-STS reply: a {@link DecisionZone} without DANE. */
export type ReplyZone = Omit<DecisionZone, 'dane'>;

/** What the lookup produced, as far as an MTA-STS reply is concerned. */
export type ReplyOutcome =
  /** A policy applies (from the cache or just fetched). */
  | {
      readonly kind: 'policy';
      /** The policy domain as Postfix should report it (A-label form). */
      readonly domain: string;
      readonly policy: Policy;
      /** The policy text as served; its non-empty lines become TLSRPT `policy_string`s. */
      readonly policyText?: string;
    }
  /** No policy: no record, `none`, a fetch failure in backoff, or a key that is not a domain. */
  | { readonly kind: 'none' }
  /** A temporary failure (DNS, timeout, store) with no usable cached policy. */
  | { readonly kind: 'temp-error'; readonly reason: string };

/** The `NOTFOUND ` reply, with postfix-mta-sts-resolver's trailing space. */
export const NOTFOUND_REPLY = 'NOTFOUND ';

function stsStateOf(outcome: ReplyOutcome): StsState {
  switch (outcome.kind) {
    case 'none':
      return { kind: 'none' };
    case 'temp-error':
      return { kind: 'temp', reason: outcome.reason, storeUnreadable: false };
    case 'policy':
      return {
        kind: 'policy',
        domain: outcome.domain,
        policy: outcome.policy,
        policyText: outcome.policyText ?? '',
        source: 'fresh',
      };
  }
}

/**
 * The MTA-STS socketmap reply for a lookup outcome, without DANE: {@link decide} then
 * {@link formatDecision} (see there for the rules), kept for callers that hold an outcome rather
 * than a cache state.
 *
 * - `NOTFOUND ` (trailing space) for no policy, `none`, and `testing` unless the zone has `strictTesting`.
 * - `OK secure match=<p1>:<p2>…` for `enforce` (or strict `testing`), ` servername=hostname` with
 *   `requireSni`, the TLSRPT attributes with `tlsrpt`, never over Postfix's 100,000 bytes.
 * - A temporary failure: `TEMP <reason>` with `tempOnError`, else `NOTFOUND `.
 */
export function formatReply(outcome: ReplyOutcome, zone: ReplyZone): string {
  return formatDecision(decide({ ...zone, dane: 'off' }, stsStateOf(outcome)));
}
