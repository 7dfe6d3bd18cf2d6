/**
 * RFC 8460 §4.4 result data for one policy lookup, the shape a TLSRPT report needs:
 * which policy applied (or none) and why a fetch failed.
 */

/** RFC 8460 §4.4.2 policy types relevant to MTA-STS. */
export type TlsrptPolicyType = 'sts' | 'no-policy-found';

/** RFC 8460 §4.4.4: the MTA-STS failure result types (the negotiation ones are the MTA's). */
export type TlsrptResultType = 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid';

export interface TlsrptFailureDetails {
  readonly resultType: TlsrptResultType;
  /** Free text, e.g. `fetch failed, using cached policy: CERT_HAS_EXPIRED`. */
  readonly failureReasonCode: string;
}

export interface TlsrptResult {
  readonly policy: {
    readonly type: TlsrptPolicyType;
    /** RFC 8460 §4.4.1 `policy-string`: the policy's lines, empty for `no-policy-found`. */
    readonly string: readonly string[];
    /** The policy domain (A-label form). */
    readonly domain: string;
    /** RFC 8460 §4.4.1 `mx-host`: the policy's mx patterns as written. */
    readonly mxHost: readonly string[];
  };
  readonly failureDetails: readonly TlsrptFailureDetails[];
}
