/**
 * Whether a store exists, found without creating, migrating or writing anything: commands that
 * only read the cache must fail on a wrong path instead of creating an empty store there.
 */
import { stat } from 'node:fs/promises';
import { MtaStsError } from '../errors.js';
import type { StoreTarget } from './open-store.js';

/** What a store setting points at. */
export type StorePresence =
  /** An mtastsdb store (its schema table exists). */
  | { readonly kind: 'present' }
  /** Nothing: no file, an empty file, or a database without our tables. */
  | {
      readonly kind: 'missing';
      /** Why, for the message: `no such file`, `empty file`, `no mtastsdb tables`. */
      readonly why: string;
      /** The database holds postfix-mta-sts-resolver's `sts_policy_cache` table. */
      readonly resolverCache: boolean;
    }
  /** Could not tell (unreadable file, server down): opening the store reports the real error. */
  | { readonly kind: 'unknown' };

/** The table every migrated mtastsdb store has, in SQLite and PostgreSQL alike. */
const SCHEMA_TABLE = 'mtastsdb_schema';
/** postfix-mta-sts-resolver's cache table (its sqlite and postgres backends). */
export const RESOLVER_CACHE_TABLE = 'sts_policy_cache';

interface SqliteProbe {
  prepare(sql: string): { pluck(): { all(...args: unknown[]): unknown[] } };
  close(): void;
}
type SqliteProbeConstructor = new (path: string, options: { readonly: boolean; fileMustExist: boolean }) => SqliteProbe;

interface PgProbe {
  connect(): Promise<void>;
  query(sql: string, values: unknown[]): Promise<{ rows: { name: string | null }[] }>;
  end(): Promise<void>;
}
type PgProbeConstructor = new (config: { connectionString: string; connectionTimeoutMillis: number }) => PgProbe;

/** Bound of the PostgreSQL probe's connect. */
const PROBE_CONNECT_TIMEOUT_MS = 5000;

async function probeSqlite(path: string): Promise<StorePresence> {
  if (path === ':memory:') return { kind: 'missing', why: 'an in-memory store holds nothing', resolverCache: false };
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    // Only a path that does not exist is missing; ENOTDIR, EACCES… are for the open to report.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { kind: 'missing', why: 'no such file', resolverCache: false };
    }
    return { kind: 'unknown' };
  }
  if (size === 0) return { kind: 'missing', why: 'empty file', resolverCache: false };
  let tables: string[];
  try {
    const mod = (await import('better-sqlite3')) as unknown as { default: SqliteProbeConstructor };
    const db = new mod.default(path, { readonly: true, fileMustExist: true });
    try {
      tables = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name IN (?, ?)")
        .pluck()
        .all(SCHEMA_TABLE, RESOLVER_CACHE_TABLE) as string[];
    } finally {
      db.close();
    }
  } catch {
    return { kind: 'unknown' };
  }
  if (tables.includes(SCHEMA_TABLE)) return { kind: 'present' };
  return { kind: 'missing', why: 'no mtastsdb tables', resolverCache: tables.includes(RESOLVER_CACHE_TABLE) };
}

async function probePostgres(spec: string): Promise<StorePresence> {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    return { kind: 'unknown' };
  }
  const schema = url.searchParams.get('schema') ?? 'public';
  url.searchParams.delete('schema');
  let client: PgProbe;
  try {
    const mod = (await import('pg')) as unknown as { default: { Client: PgProbeConstructor } };
    client = new mod.default.Client({ connectionString: url.href, connectionTimeoutMillis: PROBE_CONNECT_TIMEOUT_MS });
    await client.connect();
  } catch {
    return { kind: 'unknown' };
  }
  try {
    const names = await Promise.all(
      [SCHEMA_TABLE, RESOLVER_CACHE_TABLE].map(async (t) => {
        const r = await client.query('SELECT to_regclass($1)::text AS name', [`"${schema}".${t}`]);
        return r.rows[0]?.name ?? null;
      }),
    );
    if (names[0] !== null) return { kind: 'present' };
    return { kind: 'missing', why: `no mtastsdb tables in schema ${schema}`, resolverCache: names[1] !== null };
  } catch {
    return { kind: 'unknown' };
  } finally {
    await client.end().catch(() => {});
  }
}

/** Looks at a store without creating, migrating or writing anything. */
export function probeStore(target: StoreTarget): Promise<StorePresence> {
  return target.kind === 'sqlite' ? probeSqlite(target.path) : probePostgres(target.url);
}

/** A store's location for messages: the SQLite path, or the PostgreSQL URL without its password. */
export function describeStoreTarget(target: StoreTarget): string {
  if (target.kind === 'sqlite') return target.path;
  return target.url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:…@');
}

/**
 * Throws `ERR_MTASTSDB_STORE_MISSING` naming the store and where its setting came from unless the
 * store exists. `from` says which setting chose it (e.g. `--data-dir ./data`).
 */
export async function requireExistingStore(target: StoreTarget, from: string): Promise<void> {
  const presence = await probeStore(target);
  if (presence.kind !== 'missing') return;
  const where = describeStoreTarget(target);
  const hint = presence.resolverCache
    ? `; it holds a postfix-mta-sts-resolver cache: import it with \`mtastsdb import --from-postfix-mta-sts-resolver ${where}\``
    : "; give -c FILE (the daemon configuration), --data-dir or --store to read the daemon's store";
  throw new MtaStsError(
    'ERR_MTASTSDB_STORE_MISSING',
    `no policy store at ${where} (${presence.why}; from ${from})${hint}`,
    { details: { store: where } },
  );
}
