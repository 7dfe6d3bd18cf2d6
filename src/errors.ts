/**
 * The one error class of mtastsdb. Callers branch on `code`, never on the message.
 * A code never changes meaning once released.
 */

/** Every error code mtastsdb throws, grouped by what the caller does next. */
export type ErrorCode =
  // Bad input: the caller passed something invalid; retrying will not help.
  | 'ERR_MTASTS_DOMAIN'
  | 'ERR_MTASTS_USAGE'
  | 'ERR_MTASTS_CONFIG'
  // Syntax of data published by the recipient domain (fetch/syntax failure: back off).
  | 'ERR_MTASTS_RECORD_SYNTAX'
  | 'ERR_MTASTS_POLICY_SYNTAX'
  | 'ERR_MTASTS_MULTIPLE_RECORDS'
  // No policy: the domain does not publish MTA-STS.
  | 'ERR_MTASTS_NO_RECORD'
  | 'ERR_MTASTS_NO_POLICY'
  // Temporary failure: try again later, keep what is cached.
  | 'ERR_MTASTS_DNS'
  | 'ERR_MTASTS_POLICY_FETCH'
  | 'ERR_MTASTS_ABORTED'
  // Temporary: the discovery limits refused the lookup (`details.reason`: in_flight, domain_share, reserved).
  | 'ERR_MTASTSDB_DISCOVERY_LIMIT'
  // A DNSSEC query for DANE failed (`details.reason`: timeout, network, malformed): the DANE state is temporary.
  | 'ERR_DANE_DNS'
  // Policy database.
  | 'ERR_MTASTSDB_NOT_FOUND'
  | 'ERR_MTASTSDB_BACKOFF'
  | 'ERR_MTASTSDB_STORE'
  | 'ERR_MTASTSDB_STORE_BUSY'
  | 'ERR_MTASTSDB_STORE_CORRUPT'
  | 'ERR_MTASTSDB_STORE_READONLY'
  | 'ERR_MTASTSDB_CLOSED'
  // A command that only reads found no store where it looked (nothing was created).
  | 'ERR_MTASTSDB_STORE_MISSING'
  // The daemon cannot listen on its socketmap or metrics address (in use, not on this host, no such directory).
  | 'ERR_MTASTS_LISTEN'
  // Socketmap framing and requests.
  | 'ERR_MTASTS_NETSTRING'
  | 'ERR_MTASTS_SOCKETMAP_REQUEST'
  // A bug or an impossible state.
  | 'ERR_MTASTS_INTERNAL';

/** Every code, for exhaustive checks and documentation. */
export const ERROR_CODES: readonly ErrorCode[] = [
  'ERR_MTASTS_DOMAIN',
  'ERR_MTASTS_USAGE',
  'ERR_MTASTS_CONFIG',
  'ERR_MTASTS_RECORD_SYNTAX',
  'ERR_MTASTS_POLICY_SYNTAX',
  'ERR_MTASTS_MULTIPLE_RECORDS',
  'ERR_MTASTS_NO_RECORD',
  'ERR_MTASTS_NO_POLICY',
  'ERR_MTASTS_DNS',
  'ERR_MTASTS_POLICY_FETCH',
  'ERR_MTASTS_ABORTED',
  'ERR_MTASTSDB_DISCOVERY_LIMIT',
  'ERR_DANE_DNS',
  'ERR_MTASTSDB_NOT_FOUND',
  'ERR_MTASTSDB_BACKOFF',
  'ERR_MTASTSDB_STORE',
  'ERR_MTASTSDB_STORE_BUSY',
  'ERR_MTASTSDB_STORE_CORRUPT',
  'ERR_MTASTSDB_STORE_READONLY',
  'ERR_MTASTSDB_CLOSED',
  'ERR_MTASTSDB_STORE_MISSING',
  'ERR_MTASTS_LISTEN',
  'ERR_MTASTS_NETSTRING',
  'ERR_MTASTS_SOCKETMAP_REQUEST',
  'ERR_MTASTS_INTERNAL',
];

/** Extra, code-specific facts an error carries (never needed to branch). */
export interface ErrorDetails {
  /** For `ERR_MTASTS_POLICY_FETCH`/`ERR_MTASTS_NO_POLICY` from `getPolicy`: the TXT record that was found. */
  readonly record?: unknown;
  /** For `ERR_MTASTS_POLICY_FETCH`: the failure was in certificate verification (RFC 8460 `sts-webpki-invalid`). */
  readonly webpki?: boolean;
  /** For config errors: the offending key path, e.g. `zones.postfix.timeout`. */
  readonly key?: string;
  /**
   * For `ERR_DANE_DNS` (and `ERR_MTASTS_ABORTED` from the DNSSEC client): why the query failed; for
   * `ERR_MTASTSDB_DISCOVERY_LIMIT`: which cap refused it.
   */
  readonly reason?: string;
  readonly [name: string]: unknown;
}

/** The error class thrown everywhere in mtastsdb. */
export class MtaStsError extends Error {
  override readonly name = 'MtaStsError';
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: ErrorDetails } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True when `err` is an {@link MtaStsError}, optionally with one of `codes`. */
export function isMtaStsError(err: unknown, ...codes: ErrorCode[]): err is MtaStsError {
  return err instanceof MtaStsError && (codes.length === 0 || codes.includes(err.code));
}
