/**
 * Reads postfix-mta-sts-resolver's cache, for migrating to mtastsdb: its `sts_policy_cache` table
 * (`domain`, `ts`, `pol_id`, `pol_body`) in its SQLite file (sqlite_cache.py: `pol_body` is the
 * policy as JSON text) or its PostgreSQL database (postgres_cache.py, releases after 1.1: `pol_body`
 * is jsonb, and rows have an `id`). `ts` is the Unix time, in seconds, of the last fetch or TXT
 * confirmation; the policy is valid until `ts + max_age`. Nothing is created or written: the SQLite
 * file is opened read-only.
 */
import { stat } from 'node:fs/promises';
import { MtaStsError } from '../errors.js';
import { parseStoreSpec } from './open-store.js';
import { RESOLVER_CACHE_TABLE } from './store-presence.js';

/** One row of the peer's cache, as stored. */
export interface ResolverCacheRow {
  /** The key the peer stored (the domain as Postfix asked for it). */
  readonly domain: string;
  /** Unix time in seconds of the last fetch or TXT id confirmation. */
  readonly ts: number;
  /** The TXT record id the policy was fetched under. */
  readonly polId: unknown;
  /** The policy as the peer parsed it (`{version, mode, mx: [...], max_age}`), or the text that did not parse. */
  readonly polBody: unknown;
  /** Set when `pol_body` was not valid JSON. */
  readonly polBodyError?: string;
}

/** Rows read per page (a short read each, so a running writer is never held up). */
const PAGE_ROWS = 1000;
/** Bound of the PostgreSQL connect. */
const CONNECT_TIMEOUT_MS = 5000;

interface SqliteReader {
  prepare(sql: string): { all(...args: unknown[]): unknown[]; pluck(): { get(...args: unknown[]): unknown } };
  close(): void;
}
type SqliteReaderConstructor = new (
  path: string,
  options: { readonly: boolean; fileMustExist: boolean },
) => SqliteReader;

interface PgReader {
  connect(): Promise<void>;
  query(sql: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
}
type PgReaderConstructor = new (config: { connectionString: string; connectionTimeoutMillis: number }) => PgReader;

function usage(message: string, cause?: unknown): MtaStsError {
  return new MtaStsError('ERR_MTASTS_USAGE', message, cause === undefined ? {} : { cause });
}

function row(domain: unknown, ts: unknown, polId: unknown, body: unknown, bodyIsText: boolean): ResolverCacheRow {
  const base = { domain: typeof domain === 'string' ? domain : String(domain), ts: Number(ts), polId };
  if (!bodyIsText) return { ...base, polBody: body };
  try {
    return { ...base, polBody: JSON.parse(String(body)) as unknown };
  } catch (err) {
    return { ...base, polBody: body, polBodyError: `pol_body is not JSON: ${(err as Error).message}` };
  }
}

async function* readSqlite(path: string, signal?: AbortSignal): AsyncGenerator<ResolverCacheRow> {
  try {
    await stat(path);
  } catch (err) {
    throw usage(`cannot read ${path}: ${(err as Error).message}`, err);
  }
  let db: SqliteReader;
  try {
    const mod = (await import('better-sqlite3')) as unknown as { default: SqliteReaderConstructor };
    db = new mod.default(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new MtaStsError('ERR_MTASTSDB_STORE', `cannot open ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    let has: unknown;
    try {
      has = db
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?")
        .pluck()
        .get(RESOLVER_CACHE_TABLE);
    } catch (err) {
      throw usage(`${path} is not an SQLite database: ${(err as Error).message}`, err);
    }
    if (has === undefined) {
      throw usage(`${path} has no ${RESOLVER_CACHE_TABLE} table: not a postfix-mta-sts-resolver cache`);
    }
    const page = db.prepare(
      `SELECT rowid AS r, domain, ts, pol_id, pol_body FROM ${RESOLVER_CACHE_TABLE} WHERE rowid > ? ORDER BY rowid LIMIT ?`,
    );
    for (let after = 0; ;) {
      signal?.throwIfAborted();
      const rows = page.all(after, PAGE_ROWS) as {
        r: number;
        domain: unknown;
        ts: unknown;
        pol_id: unknown;
        pol_body: unknown;
      }[];
      for (const r of rows) yield row(r.domain, r.ts, r.pol_id, r.pol_body, true);
      if (rows.length < PAGE_ROWS) break;
      after = rows[rows.length - 1]?.r ?? after;
    }
  } finally {
    db.close();
  }
}

function redact(url: URL): string {
  const u = new URL(url.href);
  if (u.password !== '') u.password = '…';
  return u.href;
}

async function* readPostgres(spec: string, signal?: AbortSignal): AsyncGenerator<ResolverCacheRow> {
  const url = new URL(spec);
  const schema = url.searchParams.get('schema') ?? 'public';
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) throw usage(`invalid schema name ${JSON.stringify(schema)}`);
  url.searchParams.delete('schema');
  const mod = (await import('pg')) as unknown as { default: { Client: PgReaderConstructor } };
  const client = new mod.default.Client({ connectionString: url.href, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  try {
    await client.connect();
  } catch (err) {
    throw new MtaStsError('ERR_MTASTSDB_STORE', `cannot connect to ${redact(url)}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    const table = `"${schema}".${RESOLVER_CACHE_TABLE}`;
    const found = await client.query('SELECT to_regclass($1)::text AS t', [table]);
    if (found.rows[0]?.t === null || found.rows[0]?.t === undefined) {
      throw usage(
        `${redact(url)} has no ${RESOLVER_CACHE_TABLE} table in schema ${schema}: not a postfix-mta-sts-resolver cache`,
      );
    }
    // pol_body is jsonb (pg parses it); read it as text too so a json/text column works the same.
    for (let after = -1; ;) {
      signal?.throwIfAborted();
      const { rows } = await client.query(
        `SELECT id, domain, ts, pol_id, pol_body::text AS pol_body FROM ${table} WHERE id > $1 ORDER BY id LIMIT $2`,
        [after, PAGE_ROWS],
      );
      for (const r of rows) yield row(r.domain, r.ts, r.pol_id, r.pol_body, true);
      if (rows.length < PAGE_ROWS) break;
      after = Number(rows[rows.length - 1]?.id ?? after);
    }
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * The rows of postfix-mta-sts-resolver's cache at `source`: a SQLite file (path or `sqlite:/path`)
 * or a `postgres://` URL (`?schema=` picks the schema). Read page by page.
 *
 * @throws MtaStsError `ERR_MTASTS_USAGE` when the source cannot be read or has no
 *   `sts_policy_cache` table; `ERR_MTASTSDB_STORE` when the database cannot be opened.
 */
export function readResolverCache(source: string, signal?: AbortSignal): AsyncGenerator<ResolverCacheRow> {
  const target = parseStoreSpec(source, '--from-postfix-mta-sts-resolver');
  return target.kind === 'sqlite' ? readSqlite(target.path, signal) : readPostgres(target.url, signal);
}
