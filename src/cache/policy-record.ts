/**
 * How a policy record is made and renewed: the one place its validity is computed (RFC 8461 §3.2:
 * max_age from now, capped at one year when cached). Pure.
 */
import type { Policy } from '../rfc8461/policy.js';
import { effectiveMaxAgeSeconds, policyTextOf } from '../rfc8461/policy.js';
import { BACKOFF_SECONDS } from '../rfc8461/limits.js';
import type { PolicyRecord } from '../store/policy-store.js';

/**
 * RFC 8461 §3.3 and mox: after a failed fetch the domain is treated as not doing MTA-STS for five
 * minutes. Stored as a policy in mode `none` with max_age 300 and `backoff: true`.
 */
const BACKOFF_POLICY: Policy = Object.freeze({
  version: 'STSv1',
  mode: 'none',
  mx: Object.freeze([]),
  maxAgeSeconds: BACKOFF_SECONDS,
  extensions: Object.freeze([]),
}) as Policy;

/** When a policy confirmed or fetched at `now` (epoch ms) stops applying. */
export function validEndOf(policy: Policy, now: number): Date {
  // RFC 8461 §3.2: max_age is capped to 31557600 s when cached.
  return new Date(now + effectiveMaxAgeSeconds(policy) * 1000);
}

/**
 * A new record (mox `Upsert`): valid for max_age from `now`, `lastUpdate` = `lastUse` = `now`;
 * `policy` null is a back-off record; `policyText` defaults to the policy written out.
 */
export function newRecord(
  key: string,
  recordId: string,
  policy: Policy | null,
  policyText: string | undefined,
  now: Date,
  inserted: Date,
): PolicyRecord {
  const p = policy ?? BACKOFF_POLICY;
  return {
    domain: key,
    inserted,
    validEnd: validEndOf(p, now.getTime()),
    lastUpdate: now,
    lastUse: now,
    backoff: policy === null,
    recordId,
    policy: p,
    policyText: policyTextOf(p, policyText),
  };
}

/** `rec` after its TXT id was confirmed at `now`: `lastUpdate` = now, validity extended by max_age (RFC 8461 §3.3). */
export function confirmedRecord(rec: PolicyRecord, now: number): PolicyRecord {
  return { ...rec, lastUpdate: new Date(now), validEnd: validEndOf(rec.policy, now) };
}
