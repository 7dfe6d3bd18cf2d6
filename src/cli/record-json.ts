import { MtaStsError } from '../errors.js';
import { parseDomain } from '../rfc8461/domain.js';
import { BACKOFF_SECONDS, MAX_POLICY_BYTES, MAX_RECORD_ID_CHARS } from '../rfc8461/limits.js';
import { effectiveMaxAgeSeconds, formatMxPattern, parsePolicy, type Policy } from '../rfc8461/policy.js';
import { CLOCK_SKEW_MS } from '../cache/tunables.js';
import type { PolicyRecord } from '../store/policy-store.js';

/** A policy as JSON: mx patterns as written (`*.example.net`, A-label form). */
export interface PolicyJson {
  readonly version: 'STSv1';
  readonly mode: Policy['mode'];
  readonly mx: readonly string[];
  readonly maxAgeSeconds: number;
  readonly extensions: ReadonlyArray<{ readonly key: string; readonly value: string }>;
}

/** One line of `mtastsdb export`: every field of a {@link PolicyRecord}, dates as ISO 8601 strings. */
export interface PolicyRecordJson {
  readonly domain: string;
  readonly inserted: string;
  readonly validEnd: string;
  readonly lastUpdate: string;
  readonly lastUse: string;
  readonly backoff: boolean;
  readonly recordId: string;
  readonly policy: PolicyJson;
  readonly policyText: string;
}

/** A policy in its JSON form. */
export function policyToJson(policy: Policy): PolicyJson {
  return {
    version: policy.version,
    mode: policy.mode,
    mx: policy.mx.map(formatMxPattern),
    maxAgeSeconds: policy.maxAgeSeconds,
    extensions: policy.extensions.map((e) => ({ key: e.key, value: e.value })),
  };
}

/** A record in its export form (field order as in {@link PolicyRecord}). */
export function recordToJson(record: PolicyRecord): PolicyRecordJson {
  return {
    domain: record.domain,
    inserted: record.inserted.toISOString(),
    validEnd: record.validEnd.toISOString(),
    lastUpdate: record.lastUpdate.toISOString(),
    lastUse: record.lastUse.toISOString(),
    backoff: record.backoff,
    recordId: record.recordId,
    policy: policyToJson(record.policy),
    policyText: record.policyText,
  };
}

// RFC 3339 date-time, as Date#toISOString writes it (offsets allowed for hand-written files).
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|[+-](\d{2}):(\d{2}))$/;
// RFC 8461 §3.1: sts-id = 1*32( ALPHA / DIGIT ); '' marks a record whose id is unknown.
const RECORD_ID = new RegExp(`^[A-Za-z0-9]{0,${MAX_RECORD_ID_CHARS}}$`);

function bad(what: string, cause?: unknown): never {
  throw new MtaStsError('ERR_MTASTS_USAGE', what, cause === undefined ? {} : { cause });
}

function field(obj: Record<string, unknown>, name: string): unknown {
  if (!Object.hasOwn(obj, name)) bad(`missing field ${name}`);
  return obj[name];
}

/** Days in `month` (1–12) of `year`, Gregorian. */
function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * A date-time field. Checked by its parts, because `Date` rolls an impossible day over
 * (`2026-02-30` would become 2 March) instead of refusing it; RFC 3339 §5.6 ranges, no leap second.
 */
function date(obj: Record<string, unknown>, name: string): Date {
  const v = field(obj, name);
  const m = typeof v === 'string' ? ISO_DATE.exec(v) : null;
  if (m === null) bad(`${name} is not an ISO 8601 date-time`);
  // Parts absent (no offset) count as 0.
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, offHour = 0, offMinute = 0] = m
    .slice(1)
    .map((x) => Number(x ?? 0));
  const d = new Date(v as string);
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysIn(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 59 ||
    offHour > 23 ||
    offMinute > 59 ||
    Number.isNaN(d.getTime())
  ) {
    bad(`${name} is not a valid date: ${String(v)}`);
  }
  return d;
}

/**
 * The times of a record no correct clock could have written by `now`, or that would make it
 * protect longer than its policy allows (RFC 8461 §3.2: max_age from the last update, capped at a
 * year). A back-off record carries no policy (mode `none`, max_age 300, RFC 8461 §3.3): one with a
 * real policy would answer "no MTA-STS" until its `validEnd`. Returns what is wrong, or undefined.
 */
function implausibleTimes(r: PolicyRecord, now: number): string | undefined {
  const ahead = now + CLOCK_SKEW_MS;
  for (const key of ['inserted', 'lastUpdate', 'lastUse'] as const) {
    if (r[key].getTime() > ahead) {
      return `${key} ${r[key].toISOString()} is in the future (written by a clock running ahead?)`;
    }
  }
  if (r.backoff && (r.policy.mode !== 'none' || r.policy.maxAgeSeconds > BACKOFF_SECONDS)) {
    return `backoff is true but the policy is mode ${r.policy.mode} with max_age ${r.policy.maxAgeSeconds}: a back-off record is mode none with max_age ${BACKOFF_SECONDS} at most`;
  }
  const maxAge = effectiveMaxAgeSeconds(r.policy);
  if (r.validEnd.getTime() > r.lastUpdate.getTime() + maxAge * 1000 + CLOCK_SKEW_MS) {
    return `validEnd ${r.validEnd.toISOString()} is later than lastUpdate + the policy's max_age (${maxAge} s)`;
  }
  return undefined;
}

function samePolicy(a: PolicyJson, b: unknown): string | undefined {
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return 'policy is not an object';
  const o = b as Record<string, unknown>;
  for (const key of ['version', 'mode', 'maxAgeSeconds'] as const) {
    if (Object.hasOwn(o, key) && o[key] !== a[key]) return `policy.${key} does not match policyText`;
  }
  if (Object.hasOwn(o, 'mx') && JSON.stringify(o.mx) !== JSON.stringify(a.mx))
    return 'policy.mx does not match policyText';
  if (Object.hasOwn(o, 'extensions') && JSON.stringify(o.extensions) !== JSON.stringify(a.extensions)) {
    return 'policy.extensions does not match policyText';
  }
  return undefined;
}

/**
 * Validates one parsed export line, read at `now` (epoch ms), and turns it into a record. Dates
 * must be real calendar dates, none in the future beyond the clock skew, `validEnd` no later than
 * the policy's max_age after `lastUpdate`, and a back-off record must carry no policy. The policy comes from
 * `policyText` (parsed by the RFC 8461 parser, so nothing invalid enters the cache); the `policy`
 * field, when present, must agree with it, which catches a hand edit of one but not the other.
 * Unknown fields are ignored so that files from newer versions still import.
 *
 * @throws MtaStsError `ERR_MTASTS_USAGE` naming the bad field.
 */
export function recordFromJson(value: unknown, now: number): PolicyRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('not a JSON object');
  const obj = value as Record<string, unknown>;

  const name = field(obj, 'domain');
  if (typeof name !== 'string') bad('domain is not a string');
  let domain: string;
  try {
    domain = parseDomain(name).name();
  } catch (err) {
    bad(`domain: ${(err as Error).message}`, err);
  }

  const backoff = field(obj, 'backoff');
  if (typeof backoff !== 'boolean') bad('backoff is not true or false');
  const recordId = field(obj, 'recordId');
  if (typeof recordId !== 'string' || !RECORD_ID.test(recordId)) {
    bad(`recordId is not 0-${MAX_RECORD_ID_CHARS} letters and digits`);
  }

  const policyText = field(obj, 'policyText');
  if (typeof policyText !== 'string') bad('policyText is not a string');
  if (Buffer.byteLength(policyText) > MAX_POLICY_BYTES) bad(`policyText is larger than ${MAX_POLICY_BYTES} bytes`);
  let policy: Policy;
  try {
    policy = parsePolicy(policyText);
  } catch (err) {
    bad(`policyText: ${(err as Error).message}`, err);
  }
  if (Object.hasOwn(obj, 'policy')) {
    const mismatch = samePolicy(policyToJson(policy), obj.policy);
    if (mismatch !== undefined) bad(mismatch);
  }

  const record: PolicyRecord = {
    domain,
    inserted: date(obj, 'inserted'),
    validEnd: date(obj, 'validEnd'),
    lastUpdate: date(obj, 'lastUpdate'),
    lastUse: date(obj, 'lastUse'),
    backoff,
    recordId,
    policy,
    policyText,
  };
  const wrong = implausibleTimes(record, now);
  if (wrong !== undefined) bad(wrong);
  return record;
}
