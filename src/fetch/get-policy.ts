import { isMtaStsError, MtaStsError } from '../errors.js';
import { Domain, parseDomain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import type { StsRecord } from '../rfc8461/record.js';
import { createNodeResolver } from '../discovery/node-resolver.js';
import { lookupRecord } from '../discovery/lookup-record.js';
import type { DnsResolver } from '../discovery/resolver.js';
import type { FetchPolicyOptions, PolicyFetcher } from './fetcher.js';
import { fetchPolicy } from './https-fetcher.js';

/** Options of {@link getPolicy}: those of the fetch, plus replaceable parts. */
export interface GetPolicyOptions extends FetchPolicyOptions {
  /** Used for the TXT lookup and (unless `fetcher` is given) for the policy host. Default: node:dns. */
  readonly resolver?: DnsResolver;
  /** Fetches the policy instead of `fetchPolicy` with these options. */
  readonly fetcher?: PolicyFetcher;
}

/** A discovered policy: the TXT record, the parsed policy and its exact text. */
export interface DiscoveredPolicy {
  readonly record: StsRecord;
  readonly policy: Policy;
  readonly text: string;
}

/**
 * Full discovery (RFC 8461 §3): {@link lookupRecord}, then the policy fetch.
 *
 * Errors of the TXT lookup pass through unchanged. When the fetch fails after a record was found,
 * the error is re-thrown as a new `MtaStsError` with the same code, `cause` = the original error
 * and `details.record` = the record, so a cache can store a backoff entry under the record's id.
 */
export async function getPolicy(domain: string | Domain, options: GetPolicyOptions = {}): Promise<DiscoveredPolicy> {
  const d = domain instanceof Domain ? domain : parseDomain(domain);
  const resolver = options.resolver ?? createNodeResolver();
  const signal = options.signal;
  const record = await lookupRecord(d, signal === undefined ? { resolver } : { resolver, signal });
  try {
    const fetched =
      options.fetcher === undefined
        ? await fetchPolicy(d, { ...options, resolver })
        : await options.fetcher.fetch(d, signal === undefined ? {} : { signal });
    return { record, policy: fetched.policy, text: fetched.text };
  } catch (err) {
    if (isMtaStsError(err)) {
      throw new MtaStsError(err.code, err.message, { cause: err, details: { ...err.details, record } });
    }
    throw new MtaStsError('ERR_MTASTS_POLICY_FETCH', `policy fetch for ${d.name()} failed`, {
      cause: err,
      details: { record },
    });
  }
}
