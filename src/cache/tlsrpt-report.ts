/**
 * Builders of the RFC 8460 §4.4 result data that `MtaStsDb.get` returns with every answer. Pure:
 * values in, values out.
 *
 * The shapes follow mox's `mtastsdb.Get`: a usable policy gives policy type `sts` with the policy
 * strings and mx patterns; a domain without MTA-STS gives `no-policy-found`; a failed discovery or
 * a back-off gives type `sts` without policy strings plus failure details; a failure while a cached
 * policy is used gives the cached policy plus failure details whose reason ends in
 * `+fallback-to-cached-policy`.
 *
 * One choice of ours where mox is inconsistent: a policy in mode `none` is reported as
 * `no-policy-found` (mox does so after a fetch, but reports `sts` for a cached `none` policy).
 * RFC 8461 §5 makes mode `none` mean "no MTA-STS applies", so the report says so in every case.
 */
import { isMtaStsError, type ErrorCode } from '../errors.js';
import type { Domain } from '../rfc8461/domain.js';
import { formatMxPattern, policyLines, policyTextOf, type Policy } from '../rfc8461/policy.js';
import type { TlsrptFailureDetails, TlsrptResult, TlsrptResultType } from './tlsrpt.js';

/** Reason given while a recent failed fetch is being backed off (the same text as mox). */
export const BACKOFF_REASON = 'back-off-after-recent-fetch-error';
/** Appended to the reason when the answer falls back to a cached policy (the same text as mox). */
export const FALLBACK_SUFFIX = '+fallback-to-cached-policy';

const NO_FAILURES: readonly TlsrptFailureDetails[] = Object.freeze([]);
const NO_STRINGS: readonly string[] = Object.freeze([]);

/** Short, stable reason codes per error code, in the style of mox's `TLSReportFailureReason`. */
const REASONS: Partial<Record<ErrorCode, string>> = {
  ERR_MTASTS_NO_RECORD: 'no-mta-sts-dns-txt-record',
  ERR_MTASTS_MULTIPLE_RECORDS: 'multiple-mta-sts-records',
  ERR_MTASTS_RECORD_SYNTAX: 'malformed-mta-sts-dns-txt-record',
  ERR_MTASTS_DNS: 'dns-error',
  ERR_MTASTS_NO_POLICY: 'no-policy',
  ERR_MTASTS_POLICY_FETCH: 'policy-fetch-error',
  ERR_MTASTS_POLICY_SYNTAX: 'malformed-policy',
  ERR_MTASTS_ABORTED: 'timeout',
};

/** Node/OpenSSL certificate error codes → RFC 8460 §4.4 result-type names (used as the reason). */
const TLS_REASONS: Readonly<Record<string, string>> = {
  CERT_HAS_EXPIRED: 'certificate-expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'certificate-host-mismatch',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate-not-trusted',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate-not-trusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate-not-trusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'certificate-not-trusted',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'certificate-not-trusted',
  CERT_UNTRUSTED: 'certificate-not-trusted',
};

/** The first string `code` along the `cause` chain below `err` that is not one of ours (e.g. `CERT_HAS_EXPIRED`, `ESERVFAIL`). */
function lowerCode(err: unknown): string | undefined {
  let e: unknown = (err as { cause?: unknown } | null)?.cause;
  for (let depth = 0; depth < 8 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && !code.startsWith('ERR_MTASTS')) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** A one-token reason for a failure, e.g. `dns-error+ESERVFAIL`, `certificate-expired`, `policy-fetch-error+http-500`. */
export function failureReason(err: unknown): string {
  if (!isMtaStsError(err)) return 'internal-error';
  const d = err.details;
  const low = lowerCode(err);
  if (d.webpki === true) {
    const code = typeof d.tlsCode === 'string' ? d.tlsCode : low;
    const tls = code === undefined ? undefined : TLS_REASONS[code];
    if (tls !== undefined) return tls;
    return code === undefined ? 'validation-failure' : `validation-failure+${code}`;
  }
  const base = REASONS[err.code] ?? err.code.toLowerCase().replace(/^err_/, '').replace(/_/g, '-');
  // Details only where they tell the domain owner something: DNS and fetch failures.
  if (!isMtaStsError(err, 'ERR_MTASTS_DNS', 'ERR_MTASTS_POLICY_FETCH', 'ERR_MTASTS_NO_POLICY')) return base;
  if (typeof d.httpStatus === 'number') return `${base}+http-${d.httpStatus}`;
  if (d.timeout === true) return `${base}+timeout`;
  if (d.refused === true) return `${base}+non-public-address`;
  for (const c of [d.dnsCode, d.errorCode, low]) if (typeof c === 'string' && c !== '') return `${base}+${c}`;
  return base;
}

/**
 * RFC 8460 §4.4.4 result type of a discovery failure: web PKI, an invalid policy (bad syntax, or a
 * body over RFC 8461 §3.3's 64 KiB, as mox reports it), or any other fetch error.
 */
export function failureResultType(err: unknown): TlsrptResultType {
  if (isMtaStsError(err) && err.details.webpki === true) return 'sts-webpki-invalid';
  if (isMtaStsError(err, 'ERR_MTASTS_POLICY_SYNTAX')) return 'sts-policy-invalid';
  if (isMtaStsError(err, 'ERR_MTASTS_POLICY_FETCH') && err.details.tooLarge === true) return 'sts-policy-invalid';
  return 'sts-policy-fetch-error';
}

/** Failure details for `err`; `fallback` marks that a cached policy is used instead. */
export function failureDetails(err: unknown, fallback = false): TlsrptFailureDetails {
  return {
    resultType: failureResultType(err),
    failureReasonCode: failureReason(err) + (fallback ? FALLBACK_SUFFIX : ''),
  };
}

/** Failure details of a back-off: a recent fetch failed, the domain is treated as having no policy. */
export function backoffDetails(): TlsrptFailureDetails {
  return { resultType: 'sts-policy-fetch-error', failureReasonCode: BACKOFF_REASON };
}

/** `no-policy-found`: the domain publishes no (usable) MTA-STS policy. */
export function noPolicyResult(domain: Domain, failures: readonly TlsrptFailureDetails[] = NO_FAILURES): TlsrptResult {
  return {
    policy: { type: 'no-policy-found', string: NO_STRINGS, domain: domain.ascii, mxHost: NO_STRINGS },
    failureDetails: failures,
  };
}

/** Type `sts` without policy contents: MTA-STS is advertised but the policy could not be had. */
export function stsFailureResult(domain: Domain, failures: readonly TlsrptFailureDetails[]): TlsrptResult {
  return {
    policy: { type: 'sts', string: NO_STRINGS, domain: domain.ascii, mxHost: NO_STRINGS },
    failureDetails: failures,
  };
}

/**
 * The result for a policy that applies: type `sts` with RFC 8460 §4.4.1 `policy-string` (the
 * policy's lines as served) and `mx-host` (the patterns as written, A-label form). A policy in mode
 * `none` gives `no-policy-found` (see the module comment). `policyText` empty means the text is
 * unknown, and is then reconstructed from the policy.
 */
export function policyResult(
  domain: Domain,
  policy: Policy,
  policyText: string,
  failures: readonly TlsrptFailureDetails[] = NO_FAILURES,
): TlsrptResult {
  if (policy.mode === 'none') return noPolicyResult(domain, failures);
  return {
    policy: {
      type: 'sts',
      string: policyLines(policyTextOf(policy, policyText)),
      domain: domain.ascii,
      mxHost: policy.mx.map(formatMxPattern),
    },
    failureDetails: failures,
  };
}
