/**
 * The shapes `MtaStsDb.get` answers with, and how failures are labelled: pure helpers of the get
 * path and the refresher.
 */
import { isMtaStsError } from '../errors.js';
import type { FetchResult, GetResult } from '../metrics/metrics.js';
import type { Domain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import type { PolicyRecord } from '../store/policy-store.js';
import { failureDetails, policyResult } from './tlsrpt-report.js';
import type { GetOutcome } from './types.js';

/** What one shared network step produced, with the metric label for it. */
export interface Flown {
  readonly outcome: GetOutcome;
  readonly result: GetResult;
}

/**
 * RFC 8461 §3.3 and §10: a failure (DNS, fetch, another node's write) leaves a valid cached policy
 * in force; report the failure with it.
 */
export function fallbackToCached(d: Domain, cached: PolicyRecord, err: unknown, enforcing: boolean): Flown {
  return {
    outcome: {
      policy: cached.policy,
      fresh: false,
      report: policyResult(d, cached.policy, cached.policyText, [failureDetails(err, enforcing)]),
      record: cached,
    },
    result: 'ok',
  };
}

/**
 * A policy answered from the cache within the TXT recheck grace: the daemon's every warm answer.
 * The TLSRPT result is built when first read (most callers never read it).
 */
export class GraceOutcome implements GetOutcome {
  readonly fresh = true;
  #report: GetOutcome['report'] | undefined;

  constructor(
    private readonly domain: Domain,
    readonly record: PolicyRecord,
  ) {}

  get policy(): Policy {
    return this.record.policy;
  }

  get report(): GetOutcome['report'] {
    this.#report ??= policyResult(this.domain, this.record.policy, this.record.policyText);
    return this.#report;
  }

  toJSON(): GetOutcome {
    return { policy: this.policy, fresh: this.fresh, report: this.report, record: this.record };
  }
}

export function fetchResult(err: unknown): FetchResult {
  if (isMtaStsError(err, 'ERR_MTASTS_NO_POLICY')) return 'no_policy';
  if (isMtaStsError(err, 'ERR_MTASTS_POLICY_SYNTAX')) return 'invalid';
  return 'error';
}

/** A failed fetch that means "back off" (RFC 8461 §3.3), as opposed to a bug or bad usage. */
export function isFetchFailure(err: unknown): boolean {
  return isMtaStsError(err, 'ERR_MTASTS_NO_POLICY', 'ERR_MTASTS_POLICY_FETCH', 'ERR_MTASTS_POLICY_SYNTAX');
}
