import { MtaStsError } from '../errors.js';
import { MAX_MAX_AGE_SECONDS } from '../rfc8461/limits.js';
import type { ResolverCacheRow } from './resolver-cache.js';

/** What one row of postfix-mta-sts-resolver's cache becomes. */
export type ResolverRowOutcome =
  /** A record in the export format, to be validated by `recordFromJson` like any import line. */
  | { readonly kind: 'record'; readonly json: Record<string, unknown> }
  /** The policy expired (`ts + max_age` is past): a stale policy protects nothing, it is not imported. */
  | { readonly kind: 'expired' };

function bad(domain: string, what: string): never {
  throw new MtaStsError('ERR_MTASTS_USAGE', `${domain}: ${what}`);
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/**
 * Turns one row of the peer's cache into a record in our export format.
 *
 * Dates, and why: the peer stores one time, `ts` (last fetch or TXT id confirmation), and treats
 * the policy as valid until `ts + max_age`. So `lastUpdate` is `ts`, `validEnd` is `ts + max_age`
 * with max_age capped at 31557600 s (RFC 8461 §3.2), and `inserted`/`lastUse` are `ts` too (the
 * peer keeps neither; a used domain's `ts` moves every `cache_grace`). A `ts` in the future (a wrong
 * clock on the old host) is taken as now, so the record can never outlive the cap from now and a
 * later refresh is never refused as older. A policy already expired is skipped.
 *
 * The policy text is rebuilt from the parsed policy (version, mode, mx, max_age; the peer kept no
 * text) and then goes through the RFC 8461 parser in `recordFromJson`, so a row the peer accepted
 * but that is not a valid policy (a bad mx pattern, an unknown mode) is refused with its domain.
 *
 * @throws MtaStsError `ERR_MTASTS_USAGE` naming the domain and what is wrong.
 */
export function resolverRowToExport(row: ResolverCacheRow, nowMs: number): ResolverRowOutcome {
  const domain = row.domain;
  if (row.polBodyError !== undefined) bad(domain, row.polBodyError);
  if (!Number.isFinite(row.ts) || row.ts < 0) bad(domain, `ts is not a Unix time: ${String(row.ts)}`);
  const body = row.polBody;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) bad(domain, 'pol_body is not an object');
  const p = body as Record<string, unknown>;
  if (p.version !== 'STSv1') bad(domain, `policy version is ${JSON.stringify(p.version)}, not STSv1`);
  const mode = text(p.mode);
  if (mode === undefined) bad(domain, 'policy has no mode');
  const maxAge = typeof p.max_age === 'string' && /^[0-9]{1,10}$/.test(p.max_age) ? Number(p.max_age) : p.max_age;
  if (typeof maxAge !== 'number' || !Number.isSafeInteger(maxAge) || maxAge < 0) {
    bad(domain, `policy max_age is not a whole number of seconds: ${JSON.stringify(p.max_age)}`);
  }
  const mx = p.mx ?? [];
  if (!Array.isArray(mx) || !mx.every((m) => typeof m === 'string')) bad(domain, 'policy mx is not a list of names');
  // A line break inside a value would smuggle extra lines into the rebuilt policy text.
  if ([mode, ...(mx as string[])].some((v) => /[\r\n]/.test(v))) bad(domain, 'policy value contains a line break');
  const polId = text(row.polId);
  if (polId === undefined) bad(domain, 'pol_id is not a string');

  const ts = Math.min(Math.round(row.ts * 1000), nowMs);
  const validEnd = ts + Math.min(maxAge, MAX_MAX_AGE_SECONDS) * 1000;
  if (validEnd <= nowMs) return { kind: 'expired' };
  const when = new Date(ts).toISOString();
  const policyText =
    `version: STSv1\r\nmode: ${mode}\r\n` +
    (mx as string[]).map((m) => `mx: ${m}\r\n`).join('') +
    `max_age: ${maxAge}\r\n`;
  return {
    kind: 'record',
    json: {
      domain,
      inserted: when,
      validEnd: new Date(validEnd).toISOString(),
      lastUpdate: when,
      lastUse: when,
      backoff: false,
      recordId: polId,
      policyText,
    },
  };
}
