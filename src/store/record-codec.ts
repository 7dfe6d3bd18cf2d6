/**
 * Row ↔ {@link PolicyRecord} mapping shared by every store, so the SQLite and PostgreSQL stores
 * encode, validate and decode records the same way.
 *
 * A row keeps the exact policy text plus the few columns queries need (mode, max_age, backoff,
 * record_id and the timestamps as integer milliseconds). The parsed policy is never stored: it is
 * `parsePolicy(policy_text)` on read, through a small bounded memo so hot domains skip the parser.
 */
import { MtaStsError } from '../errors.js';
import { MAX_RECORD_ID_CHARS } from '../rfc8461/limits.js';
import { formatPolicy, parsePolicy } from '../rfc8461/policy.js';
import type { Mode, Policy } from '../rfc8461/policy.js';
import type { ListOptions, ListOrder, PolicyRecord } from './policy-store.js';

/** The columns of one stored policy, as both stores write them. */
export interface EncodedRecord {
  readonly domain: string;
  readonly inserted: number;
  readonly validEnd: number;
  readonly lastUpdate: number;
  readonly lastUse: number;
  readonly backoff: boolean;
  readonly recordId: string;
  readonly mode: Mode;
  readonly maxAge: number;
  readonly policyText: string;
}

/**
 * One row as a driver returns it (snake_case columns). Integers may come back as strings (pg's
 * int8) and booleans as 0/1 (SQLite), so both are accepted.
 */
export interface PolicyRow {
  readonly domain: string;
  readonly inserted: number | string;
  readonly valid_end: number | string;
  readonly last_update: number | string;
  readonly last_use: number | string;
  readonly backoff: number | boolean;
  readonly record_id: string;
  readonly policy_text: string;
}

/** The columns read back into a record, in this order, for both stores. */
export const ROW_COLUMNS = 'domain, inserted, valid_end, last_update, last_use, backoff, record_id, policy_text';

/** Longest key we accept. Real keys are ≤ 253 octets of A-labels, a few times that as U-labels. */
const MAX_DOMAIN_CHARS = 1024;
/** Default entries of the text → policy memo. */
const DEFAULT_POLICY_MEMO_ENTRIES = 4096;

function usage(message: string): never {
  throw new MtaStsError('ERR_MTASTS_USAGE', message);
}

function ms(what: string, domain: string, d: unknown): number {
  const t = d instanceof Date ? d.getTime() : Number.NaN;
  if (!Number.isSafeInteger(t)) usage(`policy record of ${JSON.stringify(domain)}: ${what} is not a valid Date`);
  return t;
}

/** Validates a domain key as the stores accept it (any non-empty string without NUL, bounded). */
export function checkDomainKey(domain: unknown): string {
  if (typeof domain !== 'string' || domain === '') usage('policy store key: domain must be a non-empty string');
  if (domain.length > MAX_DOMAIN_CHARS) usage(`policy store key: domain longer than ${MAX_DOMAIN_CHARS} characters`);
  if (domain.includes('\0')) usage('policy store key: domain contains NUL');
  return domain;
}

/**
 * A bounded memo from policy text to parsed policy. Texts repeat (a hot domain is read again and
 * again; many domains share one provider's policy), and a policy is immutable, so one parsed
 * object can be handed out many times. Eviction is first-in-first-out, which keeps hits free of
 * bookkeeping; a store owns one memo (no module state).
 */
export class PolicyMemo {
  private readonly map = new Map<string, Policy>();
  private readonly max: number;

  constructor(maxEntries: number = DEFAULT_POLICY_MEMO_ENTRIES) {
    this.max = Math.max(0, Math.floor(maxEntries));
  }

  /** The parsed policy of `text`; throws what `parsePolicy` throws. */
  parse(text: string): Policy {
    const hit = this.map.get(text);
    if (hit !== undefined) return hit;
    const policy = parsePolicy(text);
    this.remember(text, policy);
    return policy;
  }

  private remember(text: string, policy: Policy): void {
    if (this.max === 0) return;
    if (this.map.size >= this.max) {
      const oldest = this.map.keys().next();
      if (oldest.done !== true) this.map.delete(oldest.value);
    }
    this.map.set(text, policy);
  }

  /** Entries held (for tests). */
  get size(): number {
    return this.map.size;
  }
}

/**
 * Validates a record and turns it into columns. The stored text is `policyText`, or
 * `formatPolicy(policy)` when that is empty. The text must parse and agree with `policy` (mode,
 * max_age, mx count), because reads decode the text, not the object: a disagreement would make the
 * store hand back a different policy than the one written.
 *
 * @throws MtaStsError `ERR_MTASTS_USAGE` for a malformed record, `ERR_MTASTS_POLICY_SYNTAX` when the
 *   text does not parse or the policy cannot be formatted.
 */
export function encodeRecord(record: PolicyRecord, memo: PolicyMemo): EncodedRecord {
  if (record === null || typeof record !== 'object') usage('policy record must be an object');
  const domain = checkDomainKey(record.domain);
  const { policy } = record;
  if (policy === null || typeof policy !== 'object') usage(`policy record of ${JSON.stringify(domain)}: no policy`);
  if (typeof record.recordId !== 'string' || record.recordId.length > MAX_RECORD_ID_CHARS) {
    usage(
      `policy record of ${JSON.stringify(domain)}: recordId must be a string of at most ${MAX_RECORD_ID_CHARS} characters (RFC 8461 §3.1)`,
    );
  }
  if (typeof record.backoff !== 'boolean') usage(`policy record of ${JSON.stringify(domain)}: backoff must be boolean`);
  const given = record.policyText;
  if (given !== undefined && typeof given !== 'string') {
    usage(`policy record of ${JSON.stringify(domain)}: policyText must be a string`);
  }
  const policyText = given === undefined || given === '' ? formatPolicy(policy) : given;
  const parsed = memo.parse(policyText);
  if (
    parsed.mode !== policy.mode ||
    parsed.maxAgeSeconds !== policy.maxAgeSeconds ||
    parsed.mx.length !== policy.mx.length ||
    parsed.extensions.length !== policy.extensions.length
  ) {
    usage(`policy record of ${JSON.stringify(domain)}: policyText does not match policy`);
  }
  return {
    domain,
    inserted: ms('inserted', domain, record.inserted),
    validEnd: ms('validEnd', domain, record.validEnd),
    lastUpdate: ms('lastUpdate', domain, record.lastUpdate),
    lastUse: ms('lastUse', domain, record.lastUse),
    backoff: record.backoff,
    recordId: record.recordId,
    mode: parsed.mode,
    maxAge: parsed.maxAgeSeconds,
    policyText,
  };
}

/**
 * The put statement's parameters in column order (`domain`, `inserted`, `valid_end`, `last_update`,
 * `last_use`, `backoff`, `record_id`, `mode`, `max_age`, `policy_text`); `backoff` as the driver
 * wants a boolean (PostgreSQL: boolean, SQLite: 0/1).
 */
export function putParams(e: EncodedRecord, backoff: boolean | 0 | 1 = e.backoff): unknown[] {
  return [
    e.domain,
    e.inserted,
    e.validEnd,
    e.lastUpdate,
    e.lastUse,
    backoff,
    e.recordId,
    e.mode,
    e.maxAge,
    e.policyText,
  ];
}

/** A `claimRefresh` time as ms since the epoch. @throws MtaStsError `ERR_MTASTS_USAGE` when not a valid Date. */
export function claimTime(what: string, d: Date): number {
  const t = d instanceof Date ? d.getTime() : Number.NaN;
  if (!Number.isSafeInteger(t)) usage(`claimRefresh: ${what} is not a valid Date`);
  return t;
}

function int(v: number | string): number {
  return typeof v === 'number' ? v : Number(v);
}

/**
 * Turns a row back into a record, parsing the policy text through `memo`.
 *
 * @throws MtaStsError `ERR_MTASTSDB_STORE_CORRUPT` when the stored text no longer parses.
 */
export function decodeRow(row: PolicyRow, memo: PolicyMemo): PolicyRecord {
  let policy: Policy;
  try {
    policy = memo.parse(row.policy_text);
  } catch (err) {
    throw new MtaStsError(
      'ERR_MTASTSDB_STORE_CORRUPT',
      `stored policy of ${JSON.stringify(row.domain)} does not parse: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return {
    domain: row.domain,
    inserted: new Date(int(row.inserted)),
    validEnd: new Date(int(row.valid_end)),
    lastUpdate: new Date(int(row.last_update)),
    lastUse: new Date(int(row.last_use)),
    backoff: row.backoff === true || row.backoff === 1,
    recordId: row.record_id,
    policy,
    policyText: row.policy_text,
  };
}

/** Default rows per page of `list()`. */
const DEFAULT_PAGE_SIZE = 1000;
/** Largest page we read in one round trip. */
const MAX_PAGE_SIZE = 10_000;

/** `list()` options in milliseconds, validated. */
export interface ListFilter {
  readonly updatedBefore?: number;
  readonly usedBefore?: number;
  readonly validEndBefore?: number;
  readonly pageSize: number;
  readonly order: ListOrder;
}

/** Validates `ListOptions`. @throws MtaStsError `ERR_MTASTS_USAGE` */
function listFilter(options: ListOptions = {}): ListFilter {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    usage(`list: pageSize must be an integer from 1 to ${MAX_PAGE_SIZE}, got ${String(pageSize)}`);
  }
  const order = options.order ?? 'lastUse';
  if (order !== 'lastUse' && order !== 'domain') {
    usage(`list: order must be 'lastUse' or 'domain', got ${JSON.stringify(order)}`);
  }
  const f: {
    updatedBefore?: number;
    usedBefore?: number;
    validEndBefore?: number;
    pageSize: number;
    order: ListOrder;
  } = { pageSize, order };
  if (options.updatedBefore !== undefined) f.updatedBefore = ms('updatedBefore', 'list', options.updatedBefore);
  if (options.usedBefore !== undefined) f.usedBefore = ms('usedBefore', 'list', options.usedBefore);
  if (options.validEndBefore !== undefined) f.validEndBefore = ms('validEndBefore', 'list', options.validEndBefore);
  return f;
}

/** Where the previous page ended: the last row's sort key (`lastUse` unused in domain order). */
export interface PageCursor {
  readonly lastUse: number;
  readonly domain: string;
}

/** One walk over the records: its pages, and the end of whatever it holds (connection, snapshot). */
export interface ListReader {
  /** The page after `after` (the first page when undefined), at most `filter.pageSize` rows. */
  readPage(filter: ListFilter, after: PageCursor | undefined): Promise<readonly PolicyRow[]>;
  /** Ends the walk: called exactly once, when it ends, is left (`break`) or fails. Never throws. */
  end(): Promise<void>;
}

/**
 * Streams rows page by page with keyset pagination: on `(last_use DESC, domain ASC)` in `lastUse`
 * order, on `domain ASC` in `domain` order. Each page starts strictly after the previous page's
 * last key, so no OFFSET scan and no page holds more than `pageSize` rows.
 *
 * Exactly once: a key that moves while the walk runs (`touch` and `put` move `last_use`) would be
 * seen twice or not at all, so `lastUse` order is walked inside one read snapshot that the store's
 * `open` takes for this walk. The primary key never moves, so `domain` order needs none: every
 * record present for the whole walk is seen exactly once (in whichever version the page read), and
 * records written or deleted meanwhile may or may not be. The reader is opened on the first
 * iteration (after validation) and ended in `finally`: at the end, on `break` and on a throw.
 */
export async function* listPages(
  options: ListOptions | undefined,
  open: (filter: ListFilter) => Promise<ListReader>,
  memo: PolicyMemo,
): AsyncGenerator<PolicyRecord, void, undefined> {
  // Validated here, not when list() is called, so every failure surfaces the same way: on iteration.
  const filter = listFilter(options);
  const { pageSize } = filter;
  const reader = await open(filter);
  try {
    let after: PageCursor | undefined;
    for (;;) {
      const rows = await reader.readPage(filter, after);
      for (const row of rows) yield decodeRow(row, memo);
      if (rows.length < pageSize) return;
      const last = rows[rows.length - 1];
      if (last === undefined) return;
      after = { lastUse: int(last.last_use), domain: last.domain };
    }
  } finally {
    await reader.end();
  }
}

/**
 * Collapses a `touch` batch: one entry per domain, with its latest use, in domain order (a stable
 * lock order for stores that lock rows).
 */
export function collapseUses(
  uses: ReadonlyArray<{ readonly domain: string; readonly lastUse: Date }>,
): Array<[domain: string, lastUse: number]> {
  if (!Array.isArray(uses)) usage('touch: uses must be an array');
  const latest = new Map<string, number>();
  for (const u of uses) {
    const domain = checkDomainKey(u?.domain);
    const t = ms('lastUse', domain, u.lastUse);
    const prev = latest.get(domain);
    if (prev === undefined || t > prev) latest.set(domain, t);
  }
  return [...latest].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** The error every store throws once closed. */
export function closedError(kind: string): MtaStsError {
  return new MtaStsError('ERR_MTASTSDB_CLOSED', `the ${kind} policy store is closed`);
}
