/**
 * Socketmap request → reply mapping for Postfix's `smtp_tls_policy_maps`, byte-compatible with
 * postfix-mta-sts-resolver where it behaves the same, and stricter where it is unsafe.
 *
 * Pure: no I/O, timers or logging. The daemon looks the policy up and hands the outcome here.
 */
import { isIP } from 'node:net';
import { MtaStsError } from '../errors.js';
import type { Policy } from '../rfc8461/policy.js';
import { POSTFIX_REPLY_LIMIT } from './netstring.js';

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

/** The zone options that shape a reply (socketmap name → zone in the configuration). */
export interface ReplyZone {
  /** Treat `testing` policies like `enforce` (postfix-mta-sts-resolver `strict_testing`). Default off there. */
  readonly strictTesting: boolean;
  /** Append ` servername=hostname` (Postfix ≥ 3.4). */
  readonly requireSni: boolean;
  /** Append the TLSRPT attributes (Postfix ≥ 3.10). */
  readonly tlsrpt: boolean;
  /** Answer `TEMP <reason>` instead of `NOTFOUND ` when a temporary failure leaves no policy. */
  readonly tempOnError: boolean;
}

/** What the lookup produced, as far as the reply is concerned. */
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

// What may appear in a match list or mx_host_pattern: A-label host names, lower case.
const HOST_TEXT = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/;
// Policy lines copied into `{ policy_string = … }`: printable ASCII without the braces that
// delimit Postfix's attribute syntax, so a policy host cannot inject attributes.
const SAFE_POLICY_LINE = /^[\x20-\x7a\x7c\x7e]+$/;

/** Text that is safe after `TEMP `: printable ASCII, one line, bounded. */
function tempReason(reason: string): string {
  const clean = reason.replace(/[^\x20-\x7e]+/g, ' ').trim();
  return (clean === '' ? 'temporary failure' : clean).slice(0, 200);
}

/**
 * Maps a lookup outcome to the socketmap reply payload (before netstring framing).
 *
 * - `NOTFOUND ` (trailing space) for no policy, `none`, and `testing` unless the zone has `strictTesting`.
 * - `OK secure match=<p1>:<p2>…` for `enforce` (or strict `testing`): the policy's mx order, each
 *   pattern once, `*.x` written `.x` (Postfix's "any subdomain" form); ` servername=hostname` with
 *   `requireSni`; with `tlsrpt` then ` policy_type=sts policy_domain=<domain>`, one
 *   ` mx_host_pattern=<pattern>` per mx and one ` { policy_string = <line> }` per policy line, in
 *   the order served.
 * - A temporary failure: `TEMP <reason>` with `tempOnError`, else `NOTFOUND `.
 *
 * Our choices where postfix-mta-sts-resolver is unsafe or silent:
 * - A pattern that is not a plain A-label host name never reaches Postfix. If no pattern remains
 *   for an enforced policy, the answer is `TEMP` (Postfix defers): RFC 8461 §5.1 forbids delivery
 *   when no MX matches, and `secure` without a match list would fall back to Postfix's default
 *   match (the next hop), which is weaker.
 * - Policy lines with `{`, `}` or non-printable bytes are left out of the TLSRPT extras.
 * - The reply never exceeds Postfix's 100,000-byte limit: first the `policy_string`s are dropped,
 *   then all TLSRPT extras, and if the match list alone is too long, `TEMP` (a truncated match
 *   list would reject legitimate MX hosts; a missing one would weaken the policy).
 */
export function formatReply(outcome: ReplyOutcome, zone: ReplyZone): string {
  if (outcome.kind === 'none') return NOTFOUND_REPLY;
  if (outcome.kind === 'temp-error') {
    return zone.tempOnError ? `TEMP ${tempReason(outcome.reason)}` : NOTFOUND_REPLY;
  }
  const { policy } = outcome;
  // RFC 8461 §5: `none` means no policy; `testing` means deliver anyway (unless strict_testing).
  if (policy.mode === 'none' || (policy.mode === 'testing' && !zone.strictTesting)) return NOTFOUND_REPLY;

  const match: string[] = [];
  const patterns: string[] = [];
  const seen = new Set<string>();
  for (const mx of policy.mx) {
    const host = mx.domain.ascii;
    if (!HOST_TEXT.test(host)) continue;
    const pattern = mx.wildcard ? `*.${host}` : host;
    if (seen.has(pattern)) continue;
    seen.add(pattern);
    patterns.push(pattern);
    // RFC 8461 §4.1 wildcard = one extra label; Postfix's `.example.com` matches any depth of
    // subdomain, the closest Postfix can express (postfix-mta-sts-resolver does the same).
    match.push(mx.wildcard ? `.${host}` : host);
  }
  if (match.length === 0) return 'TEMP MTA-STS policy has no usable mx pattern';

  let base = `OK secure match=${match.join(':')}`;
  if (zone.requireSni) base += ' servername=hostname';
  if (Buffer.byteLength(base) > POSTFIX_REPLY_LIMIT) return 'TEMP MTA-STS policy too large for Postfix';
  if (!zone.tlsrpt) return base;

  let report = ` policy_type=sts policy_domain=${outcome.domain}`;
  for (const p of patterns) report += ` mx_host_pattern=${p}`;
  let strings = '';
  for (const line of policyLines(outcome.policyText)) strings += ` { policy_string = ${line} }`;

  const full = base + report + strings;
  if (Buffer.byteLength(full) <= POSTFIX_REPLY_LIMIT) return full;
  const shorter = base + report;
  if (Buffer.byteLength(shorter) <= POSTFIX_REPLY_LIMIT) return shorter;
  return base;
}

/** The non-empty lines of a policy text, trailing whitespace removed, unsafe lines left out. */
function policyLines(text: string | undefined): string[] {
  if (text === undefined) return [];
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[\s]+$/, '').replace(/^[ \t]+/, '');
    if (line === '' || !SAFE_POLICY_LINE.test(line)) continue;
    out.push(line);
  }
  return out;
}
