/**
 * The audit trail of cached policies: one log line and one counter per policy change (a new id, a
 * mode change, an mx change) and per suspected downgrade (a TXT record gone under a live policy, a
 * policy fetch failing under one, a weaker policy offered without a new id). Operators read these
 * to tell a domain's planned change from an attacker stripping MTA-STS (RFC 8461 §10).
 */
import type { Logger } from '../logger.js';
import type { DowngradeSign, Metrics, PolicyChange } from '../metrics/metrics.js';
import { formatMxPattern, type Policy } from '../rfc8461/policy.js';

/** The changes from `before` (id, policy) to `after` (pure). Patterns compare as sets. */
export function policyChanges(
  before: { readonly recordId: string; readonly policy: Policy },
  after: { readonly recordId: string; readonly policy: Policy },
): PolicyChange[] {
  const out: PolicyChange[] = [];
  if (before.recordId !== after.recordId) out.push('id');
  if (before.policy.mode !== after.policy.mode) out.push('mode');
  const a = new Set(before.policy.mx.map(formatMxPattern));
  const b = new Set(after.policy.mx.map(formatMxPattern));
  if (a.size !== b.size || [...a].some((m) => !b.has(m))) out.push('mx');
  return out;
}

/** Logs and counts the change of a cached policy; nothing when nothing changed. */
export function auditPolicyChange(
  logger: Logger,
  metrics: Metrics,
  domain: string,
  before: { readonly recordId: string; readonly policy: Policy },
  after: { readonly recordId: string; readonly policy: Policy },
): void {
  const changes = policyChanges(before, after);
  if (changes.length === 0) return;
  for (const c of changes) metrics.policyChange?.(c);
  const was = before.policy.mx.map(formatMxPattern);
  const is = after.policy.mx.map(formatMxPattern);
  const removed = was.filter((m) => !is.includes(m));
  const added = is.filter((m) => !was.includes(m));
  logger.info(
    {
      event: 'policy-changed',
      domain,
      changes,
      id: { from: before.recordId, to: after.recordId },
      mode: { from: before.policy.mode, to: after.policy.mode },
      ...(added.length > 0 ? { mxAdded: added } : {}),
      ...(removed.length > 0 ? { mxRemoved: removed } : {}),
    },
    'MTA-STS policy changed',
  );
}

/** Logs and counts a suspected downgrade; the cached policy keeps applying. */
export function auditDowngrade(
  logger: Logger,
  metrics: Metrics,
  sign: DowngradeSign,
  fields: { readonly domain: string; readonly mode: Policy['mode']; readonly [k: string]: unknown },
  message: string,
): void {
  metrics.downgradeSuspected?.(sign);
  logger.warn({ event: 'downgrade-suspected', sign, ...fields }, message);
}
