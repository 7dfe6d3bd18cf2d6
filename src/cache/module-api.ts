/**
 * The API of mox's Go package `mtastsdb` as module-level functions on one default database, so a Go
 * user recognises it: `init`, `close`, `get`, `upsert`, `policyRecords`, `ErrNotFound`, `ErrBackoff`.
 *
 * ```ts
 * import { mtastsdb, createNodeResolver } from 'mtastsdb';
 * await mtastsdb.init({ refresher: true });
 * const { policy, report, fresh } = await mtastsdb.get(createNodeResolver(), 'example.com');
 * await mtastsdb.close();
 * ```
 *
 * This is the one place in mtastsdb with module state (the default database), because the Go API
 * it mirrors is package-level (`mtastsdb.Get(ctx, resolver, domain)` works on a package-global
 * database). Everything here delegates to an {@link MtaStsDb}; code that can pass an instance
 * around should use `MtaStsDb.open` instead.
 *
 * Errors: Go's `ErrNotFound`/`ErrBackoff` are sentinel values tested with `errors.Is`. Here they are
 * the error codes themselves, so both `err.code === ErrNotFound` and
 * `isMtaStsError(err, ErrNotFound)` work.
 */
import type { DnsResolver } from '../discovery/resolver.js';
import type { ErrorCode } from '../errors.js';
import type { Domain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import type { PolicyRecord } from '../store/policy-store.js';
import { MtaStsDb } from './mtastsdb.js';
import type { GetOutcome, MtaStsDbOptions } from './types.js';

/** No valid (non-expired) policy in the database (Go `mtastsdb.ErrNotFound`). */
export const ErrNotFound = 'ERR_MTASTSDB_NOT_FOUND' satisfies ErrorCode;
/** A TXT record was found recently but fetching the policy failed; not retried yet (Go `mtastsdb.ErrBackoff`). */
export const ErrBackoff = 'ERR_MTASTSDB_BACKOFF' satisfies ErrorCode;

// The default database (see the module comment for why there is module state).
let opening: Promise<MtaStsDb> | undefined;

/**
 * Opens the default database and, with `refresher: true`, starts the refresher (Go `Init`). Other
 * {@link MtaStsDbOptions} may be given (data dir, store URL, injected parts). Calling it again while
 * open does nothing.
 */
export async function init(options: MtaStsDbOptions = {}): Promise<void> {
  opening ??= MtaStsDb.open(options);
  try {
    await opening;
  } catch (err) {
    opening = undefined;
    throw err;
  }
}

/** The default database, opened with default options on first use (as Go's package does). */
export async function database(): Promise<MtaStsDb> {
  await init();
  return opening!;
}

/** Closes the default database (Go `Close`): stops the refresher, writes pending state. Idempotent. */
export async function close(): Promise<void> {
  const p = opening;
  opening = undefined;
  if (p === undefined) return;
  const db = await p.catch(() => undefined);
  await db?.close();
}

/**
 * The policy for `domain` and whether it is fresh, plus the TLSRPT result (Go `Get`, which returns
 * policy, report, fresh and an error): `resolver` answers the TXT lookup. A returned error is
 * temporary (`ERR_MTASTS_DNS`); `policy` null without an error means no MTA-STS.
 */
export async function get(
  resolver: DnsResolver,
  domain: string | Domain,
  options: { readonly signal?: AbortSignal } = {},
): Promise<GetOutcome> {
  return (await database()).get(domain, { ...options, resolver });
}

/** Adds or overwrites the policy of `domain` (Go `Upsert`); `policy` null stores a back-off record. */
export async function upsert(
  domain: string | Domain,
  recordId: string,
  policy: Policy | null,
  policyText?: string,
): Promise<void> {
  return (await database()).upsert(domain, recordId, policy, policyText);
}

/** Every record, newest `lastUse` first, then by domain descending (Go `PolicyRecords`). */
export async function policyRecords(): Promise<PolicyRecord[]> {
  return (await database()).policyRecords();
}

/** The cached record without network (Go's unexported `lookup`); throws {@link ErrNotFound} or {@link ErrBackoff}. */
export async function lookup(domain: string | Domain): Promise<PolicyRecord> {
  return (await database()).lookup(domain);
}
