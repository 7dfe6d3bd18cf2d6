/**
 * At start, looks whether the daemon's store also holds postfix-mta-sts-resolver's cache (the same
 * SQLite file or PostgreSQL database, as when `cache:` of an existing /etc/mta-sts-daemon.yml is
 * reused) with policies this store does not have, and if so logs one warning with the exact import
 * command. We offer instead of importing on our own: an import is a one-time decision of the
 * operator (it can bring back policies deliberately deleted since), and the command prints what it
 * did.
 */
import type { Logger } from '../logger.js';
import { parseDomain } from '../rfc8461/domain.js';
import { parsePolicy } from '../rfc8461/policy.js';
import type { StoreTarget } from '../store/open-store.js';
import type { PolicyStore } from '../store/policy-store.js';
import { readResolverCache } from '../store/resolver-cache.js';
import { resolverRowToExport } from '../store/resolver-row.js';

/** Unexpired peer policies looked up in our store to decide whether they were imported. */
const SAMPLE_DOMAINS = 20;

/** Options of {@link offerResolverImport}. */
export interface ResolverImportOfferOptions {
  readonly target: StoreTarget;
  readonly store: PolicyStore;
  /** The daemon's configuration file, for the command (`-c FILE`). */
  readonly configFile?: string;
  readonly logger: Logger;
  readonly now: () => number;
  readonly signal?: AbortSignal;
}

/** The shell-quoted form of `s` when it needs quoting. */
function quote(s: string): string {
  return /^[\w./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The command that imports the peer's cache at `source` into the store of `configFile`. */
function resolverImportCommand(source: string, configFile?: string): string {
  return [
    'mtastsdb import --from-postfix-mta-sts-resolver',
    quote(source),
    ...(configFile !== undefined ? ['-c', quote(configFile)] : [`--store ${quote(source)}`]),
  ].join(' ');
}

/**
 * Scans the peer's table (if the store has one) and logs the import command when unexpired peer
 * policies are missing from our store. Never throws: this is advice, not a start-up condition.
 */
export async function offerResolverImport(options: ResolverImportOfferOptions): Promise<void> {
  const { target, store, logger } = options;
  const source = target.kind === 'sqlite' ? target.path : target.url;
  if (source === ':memory:') return;
  let unexpired = 0;
  let missing = 0;
  let sampled = 0;
  try {
    const now = options.now();
    for await (const row of readResolverCache(source, options.signal)) {
      // Only what the import would bring over counts: unexpired rows that are valid policies.
      let name: string;
      try {
        const out = resolverRowToExport(row, now);
        if (out.kind === 'expired') continue;
        parsePolicy(String(out.json.policyText));
        name = parseDomain(row.domain).name();
      } catch {
        continue;
      }
      unexpired++;
      if (sampled >= SAMPLE_DOMAINS) continue;
      sampled++;
      if ((await store.get(name)) === undefined) missing++;
    }
  } catch {
    // No such table (the usual case), or the store went away: nothing to offer.
    return;
  }
  if (missing === 0) {
    if (unexpired > 0) logger.debug({ source, unexpired }, "postfix-mta-sts-resolver's cache is already imported");
    return;
  }
  const command = resolverImportCommand(source, options.configFile);
  logger.warn(
    { source, unexpired, command },
    `the store holds postfix-mta-sts-resolver's cache with ${unexpired} unexpired policies that mtastsdb ` +
      `does not read; import them once: ${command}`,
  );
}
