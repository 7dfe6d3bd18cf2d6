/**
 * How a policy record is made and renewed: the one place its validity is computed (RFC 8461 §3.2:
 * max_age from now, capped at one year when cached), and how a record stamped by a clock running
 * ahead is recognised and replaced.
 */
import type { Policy } from '../rfc8461/policy.js';
import { effectiveMaxAgeSeconds, policyTextOf } from '../rfc8461/policy.js';
import { BACKOFF_SECONDS, MAX_MAX_AGE_SECONDS } from '../rfc8461/limits.js';
import type { PolicyRecord, PolicyStore } from '../store/policy-store.js';
import { CLOCK_SKEW_MS } from './tunables.js';

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

/**
 * True when `rec` carries times no correct clock could have written by `now`: `lastUpdate` (or
 * `inserted`) more than {@link CLOCK_SKEW_MS} ahead, or `validEnd` beyond the one-year cap plus
 * that skew. Such a record was written while a clock ran ahead: it is stale, never fresh (its TXT
 * id is checked, a new id or policy replaces it), but it keeps protecting until then.
 */
export function fromTheFuture(rec: PolicyRecord, now: number): boolean {
  const ahead = now + CLOCK_SKEW_MS;
  return (
    rec.lastUpdate.getTime() > ahead ||
    rec.inserted.getTime() > ahead ||
    rec.validEnd.getTime() > ahead + MAX_MAX_AGE_SECONDS * 1000
  );
}

/**
 * `store.put(rec)`, except that a stored record {@link fromTheFuture} does not win by its
 * newest-wins stamp: it is deleted and `rec` written. True when `rec` was written.
 */
export async function putOverFuture(store: PolicyStore, rec: PolicyRecord, now: number): Promise<boolean> {
  if (await store.put(rec)) return true;
  const cur = await store.get(rec.domain);
  if (cur === undefined || !fromTheFuture(cur, now)) return false;
  await store.delete(rec.domain);
  return store.put(rec);
}
