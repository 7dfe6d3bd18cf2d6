/**
 * Picks and opens a policy store from one setting, so the daemon, the library and the CLI switch
 * between SQLite and PostgreSQL by changing a single string.
 */
import { join } from 'node:path';
import { MtaStsError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { PolicyStore } from './policy-store.js';
import { openPostgresStore } from './postgres-store.js';
import { openSqliteStore } from './sqlite-store.js';

/** The SQLite file name inside the data directory. */
const DEFAULT_DB_FILE = 'mtasts.db';
/** The data directory when neither an option nor `MTASTSDB_DATA_DIR` names one. */
const DEFAULT_DATA_DIR = './data';

/** Where the store lives. Every field is optional; see {@link openStore} for precedence. */
export interface OpenStoreSpec {
  /** `postgres://…`/`postgresql://…`, `sqlite:/path`, a plain path or `:memory:`. */
  readonly url?: string;
  /** Same as `url` (the name the daemon's config and the CLI's `--store` use). */
  readonly store?: string;
  /** A SQLite file path (`:memory:` works). */
  readonly path?: string;
  /** Directory of the default SQLite file `<dataDir>/mtasts.db`. */
  readonly dataDir?: string;
  /** Passed to the store for degraded-mode and connection warnings. */
  readonly logger?: Logger;
}

/** What a store setting names. */
export type StoreTarget =
  { readonly kind: 'sqlite'; readonly path: string } | { readonly kind: 'postgres'; readonly url: string };

function config(message: string, key: string, cause?: unknown): never {
  throw new MtaStsError(
    'ERR_MTASTS_CONFIG',
    message,
    cause === undefined ? { details: { key } } : { cause, details: { key } },
  );
}

/**
 * Parses one store setting: `postgres://…`/`postgresql://…` → PostgreSQL; `sqlite:/path`,
 * `sqlite:///path`, `sqlite::memory:`, a plain path or `:memory:` → SQLite.
 *
 * @throws MtaStsError `ERR_MTASTS_CONFIG` (with `details.key`) for an empty setting, a malformed
 *   PostgreSQL URL or an unknown scheme.
 */
export function parseStoreSpec(spec: string, key = 'store'): StoreTarget {
  if (typeof spec !== 'string' || spec.trim() === '') config(`${key}: empty store setting`, key);
  if (/^postgres(?:ql)?:/i.test(spec)) {
    let url: URL;
    try {
      url = new URL(spec);
    } catch (err) {
      config(`${key}: invalid PostgreSQL URL (expected postgres://user@host:port/database)`, key, err);
    }
    if (!spec.includes('//') || url.hostname === '') {
      config(`${key}: invalid PostgreSQL URL: no host (expected postgres://user@host:port/database)`, key);
    }
    if (url.pathname.length <= 1) config(`${key}: invalid PostgreSQL URL: no database name`, key);
    return { kind: 'postgres', url: spec };
  }
  if (/^sqlite:/i.test(spec)) {
    let path = spec.slice('sqlite:'.length);
    // sqlite:///abs/path and sqlite://relative (URL-style) as well as sqlite:/abs and sqlite:rel.
    if (path.startsWith('//')) path = path.slice(2);
    if (path === '') config(`${key}: "sqlite:" needs a path, e.g. sqlite:/var/lib/mtastsdb/mtasts.db`, key);
    return { kind: 'sqlite', path };
  }
  // Anything else that looks like a URL is a mistake, not a relative file name.
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(spec)) {
    config(
      `${key}: unsupported store URL scheme in ${JSON.stringify(spec.replace(/\/\/[^@/]*@/, '//…@'))} (use postgres://, sqlite: or a path)`,
      key,
    );
  }
  return { kind: 'sqlite', path: spec };
}

/**
 * Resolves where the store lives. Precedence: `spec` as a string; else `url`, `store`, `path` of
 * the object; else the environment's `MTASTSDB_STORE`; else SQLite at `<dataDir>/mtasts.db`, with
 * `dataDir` from the argument, else `MTASTSDB_DATA_DIR`, else `./data`.
 */
export function resolveStoreTarget(
  spec: string | OpenStoreSpec = {},
  env: Readonly<Record<string, string | undefined>> = process.env,
): StoreTarget {
  if (typeof spec === 'string') return parseStoreSpec(spec);
  if (spec.url !== undefined) return parseStoreSpec(spec.url, 'url');
  if (spec.store !== undefined) return parseStoreSpec(spec.store, 'store');
  if (spec.path !== undefined) {
    if (spec.path === '') config('path: empty SQLite path', 'path');
    return { kind: 'sqlite', path: spec.path };
  }
  const fromEnv = env.MTASTSDB_STORE;
  if (fromEnv !== undefined && fromEnv !== '') return parseStoreSpec(fromEnv, 'MTASTSDB_STORE');
  const envDir = env.MTASTSDB_DATA_DIR;
  const dataDir = spec.dataDir ?? (envDir !== undefined && envDir !== '' ? envDir : DEFAULT_DATA_DIR);
  return { kind: 'sqlite', path: join(dataDir, DEFAULT_DB_FILE) };
}

/**
 * Opens the store a setting names (see {@link resolveStoreTarget} for precedence).
 *
 * @throws MtaStsError `ERR_MTASTS_CONFIG` for a bad setting, otherwise whatever the store's open
 *   throws (`ERR_MTASTSDB_STORE*`).
 */
export async function openStore(
  spec: string | OpenStoreSpec = {},
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<PolicyStore> {
  const target = resolveStoreTarget(spec, env);
  const logger = typeof spec === 'string' ? undefined : spec.logger;
  if (target.kind === 'postgres') {
    return openPostgresStore({ url: target.url, ...(logger !== undefined ? { logger } : {}) });
  }
  return openSqliteStore({ path: target.path, ...(logger !== undefined ? { logger } : {}) });
}
