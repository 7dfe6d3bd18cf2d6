/**
 * The TLS decision for one next-hop domain: the zone's options, the MTA-STS state the cache found
 * and, where it was consulted, the DANE state → what the sending MTA must do. Pure: values in,
 * values out; no I/O, clock or logging. {@link formatDecision} writes a decision as the socketmap
 * reply Postfix's `smtp_tls_policy_maps` reads; a Node MTA can use the {@link Decision} itself.
 *
 * The rules, in the order they apply:
 * 1. No MTA-STS policy → `notfound` (the MTA's own default applies, Postfix's `dane` level included).
 * 2. A temporary failure with no usable policy → `temp` with `temp_on_error`, else `notfound`; but
 *    an unreadable store → `temp` whatever `temp_on_error` says, because the store may hold an
 *    enforced policy (RFC 8461 §10).
 * 3. A policy in mode `none`, or `testing` without `strict_testing` → `notfound` (RFC 8461 §5).
 * 4. `enforce` (or strict `testing`) → `secure` with the match list; no usable pattern, or a match
 *    list too long for Postfix → `temp` (RFC 8461 §5.1: no delivery without a matching MX).
 * 5. Where rule 4 gives `secure` and the zone prefers DANE: a DANE state `dane-only` → `dane-only`,
 *    `dane` → `dane`, `temp` → `temp` whatever `temp_on_error` says (a DNS failure never downgrades
 *    to MTA-STS: RFC 8461 §2, MTA-STS must not override a failing DANE validation); `none` or
 *    `unusable` → the MTA-STS answer. DANE answers carry no TLSRPT attributes (Postfix rejects them
 *    on DANE levels and reports DANE itself) and no `servername=` (DANE names the server itself).
 * 6. `secure` in a `tlsrpt` zone carries the TLSRPT attributes, as many as fit in Postfix's
 *    100,000-byte reply: first the policy strings go, then all the attributes.
 */
import type { StsState } from '../cache/types.js';
import type { DaneState } from '../dane/dane-state.js';
import { policyLines, type Policy } from '../rfc8461/policy.js';

/** socketmap_table(5): Postfix refuses replies longer than this (payload bytes). */
export const POSTFIX_REPLY_LIMIT = 100_000;

/** The zone options a decision depends on (socketmap name → zone in the configuration). */
export interface DecisionZone {
  /** Treat `testing` policies like `enforce` (postfix-mta-sts-resolver `strict_testing`). */
  readonly strictTesting: boolean;
  /** Ask for SNI with the MX host name: ` servername=hostname` (Postfix ≥ 3.4). */
  readonly requireSni: boolean;
  /** Carry the TLSRPT attributes (Postfix ≥ 3.10). */
  readonly tlsrpt: boolean;
  /** A temporary failure with no usable policy gives `temp` instead of `notfound`. */
  readonly tempOnError: boolean;
  /** `prefer`: where MTA-STS would say `secure`, the domain's DANE protection wins. */
  readonly dane: 'off' | 'prefer';
}

/** RFC 8460 attributes of a `secure` answer in a `tlsrpt` zone. */
export interface TlsrptAttributes {
  /** The policy domain (A-label form). */
  readonly policyDomain: string;
  /** The policy's mx patterns as written (`*.example.com`), each once. */
  readonly mxHostPatterns: readonly string[];
  /** The policy's lines as served; empty when they did not fit in the reply. */
  readonly policyStrings: readonly string[];
}

/** What the sending MTA must do for the domain. */
export type Decision =
  /** MTA-STS: TLS with a Web PKI certificate whose name matches `match` (Postfix syntax: `.x` = any subdomain). */
  | {
      readonly level: 'secure';
      readonly match: readonly string[];
      /** Send SNI with the MX host name. */
      readonly servername: boolean;
      readonly tlsrpt?: TlsrptAttributes;
    }
  /** Mandatory DANE: every MX host is authenticated by TLSA records (RFC 7672 §2.2). */
  | { readonly level: 'dane-only' }
  /** Opportunistic DANE: hosts with usable TLSA records are authenticated by them (RFC 7672 §2.2.1). */
  | { readonly level: 'dane' }
  /** No policy from us: the MTA's own default applies. */
  | { readonly level: 'notfound' }
  /** Defer the mail and try again later. */
  | { readonly level: 'temp'; readonly reason: string };

// What may appear in a match list or mx_host_pattern: A-label host names, lower case.
const HOST_TEXT = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/;
// Policy lines copied into `{ policy_string = … }`: printable ASCII without the braces that
// delimit Postfix's attribute syntax, so a policy host cannot inject attributes.
const SAFE_POLICY_LINE = /^[\x20-\x7a\x7c\x7e]+$/;

const NOTFOUND: Decision = Object.freeze({ level: 'notfound' });
const DANE_ONLY: Decision = Object.freeze({ level: 'dane-only' });
const DANE: Decision = Object.freeze({ level: 'dane' });

/** A reason safe after `TEMP `: printable ASCII, one line, at most 200 characters. */
function temp(reason: string): Decision {
  const clean = reason.replace(/[^\x20-\x7e]+/g, ' ').trim();
  return { level: 'temp', reason: (clean === '' ? 'temporary failure' : clean).slice(0, 200) };
}

/** The MTA-STS policy that applies, or null when the answer is not `secure` (rules 1–3). */
function enforcedPolicy(zone: DecisionZone, sts: StsState): Policy | null {
  if (sts.kind !== 'policy') return null;
  const { mode } = sts.policy;
  // RFC 8461 §5: `none` means no policy; `testing` means deliver anyway (unless strict_testing).
  return mode === 'enforce' || (mode === 'testing' && zone.strictTesting) ? sts.policy : null;
}

/**
 * The `secure` answer for an enforced policy (rule 4), or `temp` when it cannot be written. Only
 * plain A-label host names reach Postfix; each pattern once, in the policy's order.
 */
function secure(zone: DecisionZone, policy: Policy): Decision & { readonly level: 'secure' | 'temp' } {
  const match: string[] = [];
  const seen = new Set<string>();
  for (const mx of policy.mx) {
    const host = mx.domain.ascii;
    if (!HOST_TEXT.test(host)) continue;
    // RFC 8461 §4.1 wildcard = one extra label; Postfix's `.example.com` matches any depth of
    // subdomain, the closest Postfix can express (postfix-mta-sts-resolver does the same).
    const entry = mx.wildcard ? `.${host}` : host;
    if (seen.has(entry)) continue;
    seen.add(entry);
    match.push(entry);
  }
  // RFC 8461 §5.1: no MX may be used when none matches; `secure` without a match list would fall
  // back to Postfix's default match (the next hop), which is weaker.
  if (match.length === 0) return { level: 'temp', reason: 'MTA-STS policy has no usable mx pattern' };
  const d = { level: 'secure', match, servername: zone.requireSni } as const;
  // A truncated match list would reject legitimate MX hosts; a missing one would weaken the policy.
  if (fits(d)) return d;
  return { level: 'temp', reason: 'MTA-STS policy too large for Postfix' };
}

function fits(d: Decision): boolean {
  return Buffer.byteLength(formatDecision(d)) <= POSTFIX_REPLY_LIMIT;
}

/** Rule 6: the TLSRPT attributes that fit, in the order served. */
function withTlsrpt(d: Decision & { readonly level: 'secure' }, sts: StsState & { readonly kind: 'policy' }): Decision {
  const mxHostPatterns = d.match.map((m) => (m.startsWith('.') ? `*${m}` : m));
  const policyStrings: string[] = [];
  for (const raw of policyLines(sts.policyText)) {
    const line = raw.replace(/\s+$/, '').replace(/^[ \t]+/, '');
    if (line !== '' && SAFE_POLICY_LINE.test(line)) policyStrings.push(line);
  }
  const full: Decision = { ...d, tlsrpt: { policyDomain: sts.domain, mxHostPatterns, policyStrings } };
  if (fits(full)) return full;
  const shorter: Decision = { ...d, tlsrpt: { policyDomain: sts.domain, mxHostPatterns, policyStrings: [] } };
  return fits(shorter) ? shorter : d;
}

/**
 * True when the zone prefers DANE and the MTA-STS answer alone would be `secure`: the only case
 * in which the DANE state can change the decision, so the only case worth a DANE lookup.
 */
export function needsDane(zone: DecisionZone, sts: StsState): boolean {
  if (zone.dane !== 'prefer') return false;
  const policy = enforcedPolicy(zone, sts);
  return policy !== null && secure(zone, policy).level === 'secure';
}

/**
 * The decision for a domain (see the module comment for the rules). `dane` undefined means DANE was
 * not consulted; it is ignored unless the zone has `dane: 'prefer'`.
 */
export function decide(zone: DecisionZone, sts: StsState, dane?: DaneState): Decision {
  if (sts.kind === 'temp') {
    // RFC 8461 §10: an unreadable store may hold an enforced policy: defer rather than send
    // without the TLS that policy demands.
    return sts.storeUnreadable || zone.tempOnError ? temp(sts.reason) : NOTFOUND;
  }
  const policy = enforcedPolicy(zone, sts);
  if (policy === null || sts.kind !== 'policy') return NOTFOUND;
  const d = secure(zone, policy);
  if (d.level !== 'secure') return d;
  if (dane !== undefined && zone.dane === 'prefer') {
    switch (dane.kind) {
      case 'dane-only':
        return DANE_ONLY;
      case 'dane':
        return DANE;
      case 'temp':
        // RFC 8461 §2: never fall back to MTA-STS because the DANE lookup failed.
        return temp(`DANE lookup failed: ${dane.reason}`);
      case 'none':
      case 'unusable':
        break;
    }
  }
  return zone.tlsrpt ? withTlsrpt(d, sts) : d;
}

/**
 * The socketmap reply for a decision (before netstring framing), byte-compatible with
 * postfix-mta-sts-resolver: `OK secure match=<p1>:<p2>… [servername=hostname]` then, with TLSRPT,
 * ` policy_type=sts policy_domain=<domain>`, one ` mx_host_pattern=<pattern>` per pattern and one
 * ` { policy_string = <line> }` per line; `OK dane-only`, `OK dane`; `NOTFOUND ` (with its
 * trailing space); `TEMP <reason>`.
 */
export function formatDecision(d: Decision): string {
  switch (d.level) {
    case 'notfound':
      return 'NOTFOUND ';
    case 'temp':
      return `TEMP ${d.reason}`;
    case 'dane-only':
      return 'OK dane-only';
    case 'dane':
      return 'OK dane';
    case 'secure': {
      let s = `OK secure match=${d.match.join(':')}`;
      if (d.servername) s += ' servername=hostname';
      if (d.tlsrpt === undefined) return s;
      s += ` policy_type=sts policy_domain=${d.tlsrpt.policyDomain}`;
      for (const p of d.tlsrpt.mxHostPatterns) s += ` mx_host_pattern=${p}`;
      for (const line of d.tlsrpt.policyStrings) s += ` { policy_string = ${line} }`;
      return s;
    }
  }
}
