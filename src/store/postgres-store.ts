/**
 * The PostgreSQL policy store (fleet mode: several daemons share it), on a bounded `pg` Pool loaded only when a
 * PostgreSQL store is opened.
 *
 * Fleet semantics: upserts are one `INSERT … ON CONFLICT DO UPDATE … WHERE` (newest `lastUpdate`
 * wins, atomically); `touch` is one statement per batch that locks its rows in domain order (no
 * deadlock between nodes) and never blocks readers (MVCC); `claimRefresh` is one conditional
 * `UPDATE … RETURNING`, a row lease that expires, so a fleet refreshes each record once and a dead
 * node's claims lapse. Migrations run under a transaction-scoped advisory lock, so nodes starting
 * at once migrate once.
 *
 * Faults: a query that fails because its connection died (server restart, pg_terminate_backend,
 * network reset) is retried once on a fresh connection; every other failure is a coded error.
 *
 * Drift: a table (or the whole schema) dropped by hand while the version table still says
 * migrated is recreated, empty, with the current definition: at open, and at run time when a query
 * fails with undefined_table (42P01) or invalid_schema_name (3F000) — at most once per
 * {@link TABLE_REPAIR_INTERVAL_MS}, under the migration lock, then the query is retried once. Each
 * repair is logged as a warning naming the tables and reported by `problem()` for an hour.
 */
import type { Pool, PoolClient, PoolConfig, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { MtaStsError, isMtaStsError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { silentLogger } from '../logger.js';
import type { Logger } from '../logger.js';
import type { ListOptions, PolicyRecord, PolicyStore } from './policy-store.js';
import {
  POSTGRES_CURRENT_OBJECTS,
  POSTGRES_MIGRATIONS,
  POSTGRES_SCHEMA_VERSION,
  postgresVersionTableSql,
} from './postgres-schema.js';
import {
  PolicyMemo,
  ROW_COLUMNS,
  checkDomainKey,
  claimTime,
  closedError,
  collapseUses,
  decodeRow,
  encodeRecord,
  listPages,
  putParams,
} from './record-codec.js';
import type { EncodedRecord, ListFilter, ListReader, PageCursor, PolicyRow } from './record-codec.js';
import { DriftReport, TABLE_REPAIR_INTERVAL_MS, namedObjects } from './store-drift.js';

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** `postgres://user@host:port/db` (a `?schema=` parameter is read as {@link schema}). */
  readonly url: string;
  /** Schema holding the tables, created when missing. Default `public`. */
  readonly schema?: string;
  /** Most connections the pool opens. Default 8. */
  readonly poolSize?: number;
  /** Bound on connecting (and on waiting for a free pooled connection). Default 5000. */
  readonly connectTimeoutMs?: number;
  /** Server-side `statement_timeout` of every query (the client gives up a little later). Default 10000. */
  readonly statementTimeoutMs?: number;
  /** `application_name` of the connections (shows in pg_stat_activity). Default `mtastsdb`. */
  readonly applicationName?: string;
  /** Entries of the policy-text memo. Default 4096; 0 turns it off. */
  readonly policyMemoEntries?: number;
  /** Where connection trouble is reported. Default silent. */
  readonly logger?: Logger;
  /** Stamps applied migrations. Default the system clock. */
  readonly clock?: Clock;
}

/** A PostgreSQL {@link PolicyStore}, with a bulk insert for imports and benchmarks. */
export interface PostgresStore extends PolicyStore {
  readonly kind: 'postgres';
  /** The schema the tables live in. */
  readonly schema: string;
  /** What the store repaired in the last hour (see {@link PolicyStore.problem}), or null. */
  problem(): string | null;
  /** Writes many records, each with the newest-wins rule of `put`. Returns how many were written. */
  putMany(records: Iterable<PolicyRecord>): Promise<number>;
}

export const DEFAULT_POSTGRES_POOL_SIZE = 8;
export const DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS = 5000;
export const DEFAULT_POSTGRES_STATEMENT_TIMEOUT_MS = 10_000;
/**
 * Connections of the second, small pool that `list` in `lastUse` order holds its snapshot
 * transaction on, so that walks never take the connections lookups need. A walk beyond these many
 * at once waits for one (up to the connect timeout).
 */
const POSTGRES_LIST_SNAPSHOT_CONNECTIONS = 2;
/** Migrations may wait for another node's migration; they get longer than ordinary statements. */
const MIGRATION_TIMEOUT_MS = 300_000;
/** Rows per statement for bulk writes (touch, putMany). */
const BATCH_ROWS = 5000;
/** Most lookups coalesced into one query. */
const MAX_GET_BATCH = 256;
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** PostgreSQL's OID of int8/bigint: read as a JS number (our values are ms timestamps, < 2^53). */
const INT8_OID = 20;

type PgModule = typeof import('pg');

function usage(message: string): never {
  throw new MtaStsError('ERR_MTASTS_USAGE', message);
}

function sqlState(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/**
 * True when the failure is the connection's, not the statement's: a retry on a fresh connection
 * can succeed. pg reports a socket closed under it without a code, only with these messages.
 */
function isConnectionError(err: unknown): boolean {
  const code = sqlState(err);
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
  if (['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code)) return true;
  const message = err instanceof Error ? err.message : '';
  return /Connection terminated|connection error and is not queryable|Client was closed and is not queryable/.test(
    message,
  );
}

/** undefined_table or invalid_schema_name: an object of ours was dropped under us. */
function isMissingObject(err: unknown): boolean {
  const code = sqlState(err);
  return code === '42P01' || code === '3F000';
}

function errorCodeFor(err: unknown): ErrorCode {
  const code = sqlState(err);
  switch (code) {
    case '40001': // serialization_failure
    case '40P01': // deadlock_detected
    case '55P03': // lock_not_available
    case '57014': // query_canceled (statement_timeout)
      return 'ERR_MTASTSDB_STORE_BUSY';
    case '25006': // read_only_sql_transaction (a hot standby, default_transaction_read_only)
      return 'ERR_MTASTSDB_STORE_READONLY';
    case 'XX001': // data_corrupted
    case 'XX002': // index_corrupted
      return 'ERR_MTASTSDB_STORE_CORRUPT';
    default:
      return 'ERR_MTASTSDB_STORE';
  }
}

function describe(err: unknown): string {
  const code = sqlState(err);
  const text = err instanceof Error ? err.message : String(err);
  return code === '' ? text : `${text} (${code})`;
}

/** The URL without its password, for messages and logs. */
function redact(url: URL): string {
  const u = new URL(url.href);
  if (u.password !== '') u.password = '***';
  u.search = '';
  return u.href;
}

async function loadDriver(): Promise<PgModule> {
  try {
    const mod = (await import('pg')) as unknown as { default: PgModule };
    return mod.default;
  } catch (err) {
    throw new MtaStsError('ERR_MTASTSDB_STORE', `the PostgreSQL store needs the pg package: ${describe(err)}`, {
      cause: err,
    });
  }
}

function positiveInt(name: string, v: number, max: number): number {
  if (!Number.isSafeInteger(v) || v < 1 || v > max)
    usage(`openPostgresStore: ${name} must be an integer from 1 to ${max}`);
  return v;
}

interface Statements {
  readonly get: string;
  readonly getMany: string;
  readonly put: string;
  readonly putMany: string;
  readonly touch: string;
  readonly del: string;
  readonly count: string;
  readonly claim: string;
  readonly release: string;
}

function statements(s: string): Statements {
  const set = `inserted = excluded.inserted, valid_end = excluded.valid_end, last_update = excluded.last_update,
         last_use = GREATEST(p.last_use, excluded.last_use), backoff = excluded.backoff,
         record_id = excluded.record_id, mode = excluded.mode, max_age = excluded.max_age,
         policy_text = excluded.policy_text`;
  const cols = 'domain, inserted, valid_end, last_update, last_use, backoff, record_id, mode, max_age, policy_text';
  return {
    get: `SELECT ${ROW_COLUMNS} FROM ${s}.policies WHERE domain = $1`,
    getMany: `SELECT ${ROW_COLUMNS} FROM ${s}.policies WHERE domain = ANY($1::text[])`,
    // Newest wins on lastUpdate; lastUse never moves back; leases are left alone.
    put: `INSERT INTO ${s}.policies AS p (${cols}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (domain) DO UPDATE SET ${set} WHERE excluded.last_update >= p.last_update`,
    putMany: `INSERT INTO ${s}.policies AS p (${cols})
       SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::bool[], $7::text[],
                            $8::text[], $9::int8[], $10::text[])
       ON CONFLICT (domain) DO UPDATE SET ${set} WHERE excluded.last_update >= p.last_update`,
    // One statement per batch. Rows are locked in domain order, so two nodes touching overlapping
    // batches cannot deadlock; readers never wait for these row locks (MVCC).
    touch: `WITH u AS (SELECT d, l FROM unnest($1::text[], $2::int8[]) AS t(d, l)),
         locked AS (
           SELECT p.domain, u.l FROM ${s}.policies p JOIN u ON p.domain = u.d
           WHERE p.last_use < u.l ORDER BY p.domain FOR UPDATE OF p
         )
       UPDATE ${s}.policies p SET last_use = GREATEST(p.last_use, locked.l) FROM locked WHERE p.domain = locked.domain`,
    del: `DELETE FROM ${s}.policies WHERE domain = $1`,
    count: `SELECT count(*)::int8 AS n FROM ${s}.policies`,
    // The due check and the lease in one statement: a second claimer waits for the row lock, then
    // re-checks the WHERE against the new lease and loses.
    claim: `UPDATE ${s}.policies SET lease_owner = $2, lease_until = $3
       WHERE domain = $1 AND last_update < $4 AND (lease_until IS NULL OR lease_until < $5 OR lease_owner = $2)
       RETURNING domain`,
    release: `UPDATE ${s}.policies SET lease_owner = NULL, lease_until = NULL WHERE domain = $1 AND lease_owner = $2`,
  };
}

function listSql(s: string, filter: ListFilter, after: boolean): { name: string; text: string } {
  const where: string[] = [];
  const byDomain = filter.order === 'domain';
  let n = 0;
  // Keyset pagination on (last_use DESC, domain ASC) or on the primary key, as in SQLite.
  if (after && byDomain) {
    where.push(`domain > $${++n}`);
  } else if (after) {
    where.push(`last_use <= $${n + 1} AND (last_use < $${n + 1} OR domain > $${n + 2})`);
    n += 2;
  }
  if (filter.updatedBefore !== undefined) where.push(`last_update < $${++n}`);
  if (filter.usedBefore !== undefined) where.push(`last_use < $${++n}`);
  if (filter.validEndBefore !== undefined) where.push(`valid_end < $${++n}`);
  const name = `mtastsdb_list_${byDomain ? 'd' : 'u'}${after ? 1 : 0}${filter.updatedBefore !== undefined ? 1 : 0}${filter.usedBefore !== undefined ? 1 : 0}${filter.validEndBefore !== undefined ? 1 : 0}`;
  const text = `SELECT ${ROW_COLUMNS} FROM ${s}.policies ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY ${byDomain ? 'domain ASC' : 'last_use DESC, domain ASC'} LIMIT $${n + 1}`;
  return { name, text };
}

function listQuery(s: string, filter: ListFilter, after: PageCursor | undefined): QueryConfig {
  const { name, text } = listSql(s, filter, after !== undefined);
  const values: unknown[] = [];
  if (after !== undefined && filter.order === 'domain') values.push(after.domain);
  else if (after !== undefined) values.push(after.lastUse, after.domain);
  if (filter.updatedBefore !== undefined) values.push(filter.updatedBefore);
  if (filter.usedBefore !== undefined) values.push(filter.usedBefore);
  if (filter.validEndBefore !== undefined) values.push(filter.validEndBefore);
  values.push(filter.pageSize);
  return { name, text, values };
}

/** A `get` waiting for a connection. */
interface PendingGet {
  readonly domain: string;
  readonly resolve: (row: PolicyRow | undefined) => void;
  readonly reject: (err: unknown) => void;
}

class PostgresStoreImpl implements PostgresStore {
  readonly kind = 'postgres' as const;
  private closing: Promise<void> | undefined;
  private pendingGets: PendingGet[] = [];
  private getsInFlight = 0;
  private readonly memo: PolicyMemo;
  private readonly sql: Statements;
  private readonly q: string;
  /** Ends (destroys) the connection of each snapshot walk in progress; `close` calls them. */
  private readonly readers = new Set<(err: Error) => void>();
  private readonly drift: DriftReport;
  /** The repair in progress, shared by every query that failed on a missing table meanwhile. */
  private repairing: Promise<boolean> | undefined;
  private repairedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly pool: Pool,
    private readonly listPool: Pool,
    private readonly poolSize: number,
    readonly schema: string,
    private readonly target: string,
    private readonly logger: Logger,
    private readonly clock: Clock,
    memoEntries: number | undefined,
    drift: DriftReport,
  ) {
    this.q = `"${schema}"`;
    this.sql = statements(this.q);
    this.memo = new PolicyMemo(memoEntries);
    this.drift = drift;
  }

  problem(): string | null {
    return this.drift.current();
  }

  /**
   * Recreates what is missing (the migration step, under its lock); true when the failed query
   * is worth one more try. At most once per TABLE_REPAIR_INTERVAL_MS: a table dropped again at
   * once fails the calls in between with the store's temporary error.
   */
  private repair(op: string, err: unknown): Promise<boolean> {
    if (this.repairing !== undefined) return this.repairing;
    const now = this.clock.now();
    if (Math.abs(now - this.repairedAt) < TABLE_REPAIR_INTERVAL_MS) return Promise.resolve(false);
    this.repairedAt = now;
    const run = async (): Promise<boolean> => {
      try {
        const done = await migrate(this.pool, this.q, this.schema, this.clock);
        const what = describeRepair(done);
        if (what !== '') {
          this.logger.warn(
            { target: this.target, op, err: describe(err), ...done },
            `postgres store ${this.target}: ${what} (the data in them is lost; the cache refills as domains are asked for)`,
          );
          this.drift.note(`postgres store ${this.target}: ${what}`);
        }
        return true;
      } catch (repairErr) {
        this.logger.error(
          { target: this.target, op, err: repairErr },
          'postgres store: a table is missing and recreating it failed',
        );
        return false;
      } finally {
        this.repairing = undefined;
      }
    };
    this.repairing = run();
    return this.repairing;
  }

  private open(): void {
    if (this.closing !== undefined) throw closedError('postgres');
  }

  private fail(op: string, err: unknown): MtaStsError {
    if (isMtaStsError(err)) return err;
    if (this.closing !== undefined) return closedError('postgres');
    return new MtaStsError(errorCodeFor(err), `postgres store ${this.target}: ${op} failed: ${describe(err)}`, {
      cause: err,
    });
  }

  /**
   * One query through the pool. A connection that died under it (restart, terminated backend,
   * reset) is dropped by the pool; the query is retried once on another connection. Repeating
   * our statements is safe: put, putMany, touch and claimRefresh (same owner) converge to the same
   * row; only `delete` may report false when its first attempt committed unseen.
   */
  private async query<R extends QueryResultRow>(op: string, config: QueryConfig): Promise<QueryResult<R>> {
    this.open();
    try {
      return await this.pool.query<R>(config);
    } catch (err) {
      if (isMissingObject(err) && this.closing === undefined && (await this.repair(op, err))) {
        try {
          return await this.pool.query<R>(config);
        } catch (err2) {
          throw this.fail(op, err2);
        }
      }
      if (!isConnectionError(err) || this.closing !== undefined) throw this.fail(op, err);
      this.logger.warn({ err, target: this.target, op }, 'postgres store: connection lost, retrying once');
      try {
        return await this.pool.query<R>(config);
      } catch (err2) {
        throw this.fail(op, err2);
      }
    }
  }

  /**
   * Lookups are coalesced under load: while every connection is busy with lookups, new ones queue,
   * and the queue goes out as one `domain = ANY($1)` query when a connection frees up. An idle
   * store sends a lookup at once on its own, so coalescing adds no latency; a busy one saves a
   * round trip and a statement per lookup on both sides.
   */
  async get(domain: string): Promise<PolicyRecord | undefined> {
    checkDomainKey(domain);
    this.open();
    const row = await new Promise<PolicyRow | undefined>((resolve, reject) => {
      this.pendingGets.push({ domain, resolve, reject });
      this.pumpGets();
    });
    return row === undefined ? undefined : decodeRow(row, this.memo);
  }

  private pumpGets(): void {
    while (this.getsInFlight < this.poolSize && this.pendingGets.length > 0) {
      const batch = this.pendingGets.splice(0, MAX_GET_BATCH);
      this.getsInFlight++;
      void this.runGets(batch).finally(() => {
        this.getsInFlight--;
        this.pumpGets();
      });
    }
  }

  private async runGets(batch: readonly PendingGet[]): Promise<void> {
    try {
      if (batch.length === 1) {
        const only = batch[0]!;
        const res = await this.query<PolicyRow>('get', {
          name: 'mtastsdb_get',
          text: this.sql.get,
          values: [only.domain],
        });
        only.resolve(res.rows[0]);
        return;
      }
      const keys = [...new Set(batch.map((g) => g.domain))];
      const res = await this.query<PolicyRow>('get', {
        name: 'mtastsdb_get_many',
        text: this.sql.getMany,
        values: [keys],
      });
      const byDomain = new Map<string, PolicyRow>();
      for (const row of res.rows) byDomain.set(row.domain, row);
      for (const g of batch) g.resolve(byDomain.get(g.domain));
    } catch (err) {
      for (const g of batch) g.reject(err);
    }
  }

  async put(record: PolicyRecord): Promise<boolean> {
    this.open();
    const e = encodeRecord(record, this.memo);
    const res = await this.query('put', { name: 'mtastsdb_put', text: this.sql.put, values: putParams(e) });
    return res.rowCount === 1;
  }

  async putMany(records: Iterable<PolicyRecord>): Promise<number> {
    this.open();
    // ON CONFLICT cannot touch a row twice in one statement: keep the newest per domain.
    const newest = new Map<string, EncodedRecord>();
    for (const r of records) {
      const e = encodeRecord(r, this.memo);
      const prev = newest.get(e.domain);
      if (prev === undefined || e.lastUpdate >= prev.lastUpdate) newest.set(e.domain, e);
    }
    const all = [...newest.values()];
    let written = 0;
    for (let i = 0; i < all.length; i += BATCH_ROWS) {
      const chunk = all.slice(i, i + BATCH_ROWS);
      const columns: unknown[][] = Array.from({ length: 10 }, () => []);
      for (const e of chunk) putParams(e).forEach((v, k) => columns[k]!.push(v));
      const res = await this.query('putMany', { name: 'mtastsdb_put_many', text: this.sql.putMany, values: columns });
      written += res.rowCount ?? 0;
    }
    return written;
  }

  async touch(uses: ReadonlyArray<{ readonly domain: string; readonly lastUse: Date }>): Promise<void> {
    this.open();
    const batch = collapseUses(uses);
    for (let i = 0; i < batch.length; i += BATCH_ROWS) {
      const chunk = batch.slice(i, i + BATCH_ROWS);
      await this.query('touch', {
        name: 'mtastsdb_touch',
        text: this.sql.touch,
        values: [chunk.map((u) => u[0]), chunk.map((u) => u[1])],
      });
    }
  }

  async delete(domain: string): Promise<boolean> {
    checkDomainKey(domain);
    const res = await this.query('delete', { name: 'mtastsdb_delete', text: this.sql.del, values: [domain] });
    return res.rowCount === 1;
  }

  async count(): Promise<number> {
    const res = await this.query<{ n: number }>('count', { name: 'mtastsdb_count', text: this.sql.count });
    return res.rows[0]?.n ?? 0;
  }

  list(options?: ListOptions): AsyncIterable<PolicyRecord> {
    return listPages(options, (filter) => this.listReader(filter), this.memo);
  }

  private async listReader(filter: ListFilter): Promise<ListReader> {
    this.open();
    if (filter.order === 'domain') {
      // The primary key never moves: each page is its own short query, no transaction between pages.
      return {
        readPage: async (f, after) => (await this.query<PolicyRow>('list', listQuery(this.q, f, after))).rows,
        end: async () => {},
      };
    }
    return this.snapshotReader();
  }

  /**
   * `lastUse` order: one connection of the list pool holds a REPEATABLE READ, READ ONLY
   * transaction for the whole walk, and the keyset pages run inside it, so rows that `touch` or
   * `put` move between pages are still seen once. A page that fails is not retried elsewhere (the
   * snapshot is gone with its connection): the walk fails with a coded error.
   */
  private async snapshotReader(): Promise<ListReader> {
    let client: PoolClient;
    try {
      client = await this.listPool.connect();
    } catch (err) {
      throw this.fail('list', err);
    }
    // A checked-out client that loses its connection emits 'error'; unhandled, that would end the
    // process. The failure surfaces through the walk's next page.
    const onError = (err: Error): void =>
      this.logger.warn({ err, target: this.target }, 'postgres store: list connection lost');
    client.on('error', onError);
    let released = false;
    const release = (err?: Error): void => {
      if (released) return;
      released = true;
      this.readers.delete(release);
      client.off('error', onError);
      // With an error the pool destroys the connection (and any transaction on it) instead of reusing it.
      client.release(err);
    };
    this.readers.add(release);
    try {
      // The snapshot is taken at the first page's query.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    } catch (err) {
      release(err instanceof Error ? err : new Error(String(err)));
      throw this.fail('list', err);
    }
    return {
      readPage: async (f, after) => {
        this.open();
        if (released) throw closedError('postgres');
        try {
          return (await client.query<PolicyRow>(listQuery(this.q, f, after))).rows;
        } catch (err) {
          release(err instanceof Error ? err : new Error(String(err)));
          throw this.fail('list', err);
        }
      },
      end: async () => {
        if (released) return;
        try {
          await client.query('COMMIT');
          release();
        } catch (err) {
          release(err instanceof Error ? err : new Error(String(err)));
        }
      },
    };
  }

  async claimRefresh(
    domain: string,
    claim: { readonly owner: string; readonly now: Date; readonly leaseUntil: Date; readonly updatedBefore: Date },
  ): Promise<boolean> {
    checkDomainKey(domain);
    const { owner } = claim;
    if (typeof owner !== 'string' || owner === '') usage('claimRefresh: owner must be a non-empty string');
    const values = [
      domain,
      owner,
      claimTime('leaseUntil', claim.leaseUntil),
      claimTime('updatedBefore', claim.updatedBefore),
      claimTime('now', claim.now),
    ];
    const res = await this.query('claimRefresh', { name: 'mtastsdb_claim', text: this.sql.claim, values });
    return res.rowCount === 1;
  }

  async releaseRefresh(domain: string, owner: string): Promise<void> {
    checkDomainKey(domain);
    await this.query('releaseRefresh', { name: 'mtastsdb_release', text: this.sql.release, values: [domain, owner] });
  }

  close(): Promise<void> {
    if (this.closing === undefined) {
      // Ends idle connections at once and the busy ones when their query finishes. A walk holding
      // a snapshot would hold its connection until resumed: its connection is destroyed now and
      // its next page fails with ERR_MTASTSDB_CLOSED.
      this.closing = Promise.all([this.pool.end(), this.listPool.end()])
        .then(() => undefined)
        .catch((err: unknown) => {
          this.logger.warn({ err, target: this.target }, 'postgres store: error while closing the pool');
        });
      for (const release of [...this.readers]) release(closedError('postgres'));
    }
    return this.closing;
  }
}

/** What {@link migrate} had to create. */
interface MigrateResult {
  /** The schema did not exist. */
  readonly schemaCreated: boolean;
  /** Migrations applied (all of them on a new schema). */
  readonly applied: number;
  /** Objects the version table claims but that were missing, recreated empty. */
  readonly recreated: readonly string[];
}

/** The repair in words ('' when nothing was missing), for the log and `problem()`. */
function describeRepair(r: MigrateResult): string {
  if (r.schemaCreated) return 'the schema was missing; recreated it with empty tables';
  if (r.recreated.length > 0) return `recreated the missing ${namedObjects(POSTGRES_CURRENT_OBJECTS, r.recreated)}`;
  if (r.applied > 0) return 'the schema version table was missing; recreated the tables';
  return '';
}

/**
 * Creates the schema, applies missing migrations, and recreates objects the version table claims
 * but that are gone (a table dropped by hand), in one transaction under the schema's advisory lock.
 */
async function migrate(pool: Pool, q: string, schema: string, clock: Clock): Promise<MigrateResult> {
  const client = await pool.connect();
  // Migrations may wait for another node's migration or build an index on a large table: they get
  // a longer bound than ordinary statements, on the server and (per query) in the client.
  const run = <R extends QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>> =>
    client.query<R>({ text, ...(values ? { values } : {}), query_timeout: MIGRATION_TIMEOUT_MS + 5000 } as QueryConfig);
  let broken: unknown;
  try {
    await run('BEGIN');
    await run(`SET LOCAL statement_timeout = ${MIGRATION_TIMEOUT_MS}`);
    // Nodes starting at once take turns here; the lock is released with the transaction.
    await run('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`mtastsdb:schema:${schema}`]);
    const exists = await run('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    const schemaCreated = exists.rowCount === 0;
    if (schemaCreated) await run(`CREATE SCHEMA ${q}`);
    await run(postgresVersionTableSql(q));
    const res = await run<{ v: number | null }>(`SELECT max(version) AS v FROM ${q}.mtastsdb_schema`);
    const current = res.rows[0]?.v ?? 0;
    if (current > POSTGRES_SCHEMA_VERSION) {
      throw new MtaStsError(
        'ERR_MTASTSDB_STORE',
        `schema ${schema} has version ${current}, newer than this mtastsdb knows (${POSTGRES_SCHEMA_VERSION}); upgrade mtastsdb`,
      );
    }
    let applied = 0;
    for (const m of POSTGRES_MIGRATIONS) {
      if (m.version <= current) continue;
      await run(m.sql(q));
      await run(`INSERT INTO ${q}.mtastsdb_schema (version, description, applied) VALUES ($1, $2, $3)`, [
        m.version,
        m.description,
        clock.now(),
      ]);
      applied++;
    }
    // The version table may say migrated while a table is gone (DROP TABLE by hand): without this,
    // every query would fail until someone noticed. Recreated from the current definitions.
    const missing = await run<{ name: string }>(
      'SELECT name FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i) WHERE to_regclass($2 || $3 || name) IS NULL ORDER BY i',
      [POSTGRES_CURRENT_OBJECTS.map((o) => o.name), q, '.'],
    );
    const recreated = missing.rows.map((r) => r.name);
    for (const o of POSTGRES_CURRENT_OBJECTS) if (recreated.includes(o.name)) await run(o.sql(q));
    await run('COMMIT');
    return { schemaCreated, applied, recreated };
  } catch (err) {
    broken = err;
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release(broken instanceof Error && isConnectionError(broken) ? broken : undefined);
  }
}

/**
 * Opens a PostgreSQL policy store: a bounded pool, the schema created and migrated (safe when
 * several nodes start at once).
 *
 * @throws MtaStsError `ERR_MTASTS_CONFIG` for a bad URL or schema name, `ERR_MTASTS_USAGE` for bad
 *   options, `ERR_MTASTSDB_STORE` (naming the server, without the password) when it cannot connect
 *   or migrate.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  let url: URL;
  try {
    url = new URL(options.url);
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new Error('not a postgres:// URL');
  } catch (err) {
    throw new MtaStsError('ERR_MTASTS_CONFIG', `invalid PostgreSQL URL: ${(err as Error).message}`, {
      cause: err,
      details: { key: 'store' },
    });
  }
  const schema = options.schema ?? url.searchParams.get('schema') ?? 'public';
  if (!SCHEMA_NAME.test(schema)) {
    throw new MtaStsError('ERR_MTASTS_CONFIG', `invalid PostgreSQL schema name ${JSON.stringify(schema)}`, {
      details: { key: 'schema' },
    });
  }
  url.searchParams.delete('schema');
  const poolSize = positiveInt('poolSize', options.poolSize ?? DEFAULT_POSTGRES_POOL_SIZE, 1000);
  const connectTimeoutMs = positiveInt(
    'connectTimeoutMs',
    options.connectTimeoutMs ?? DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS,
    600_000,
  );
  const statementTimeoutMs = positiveInt(
    'statementTimeoutMs',
    options.statementTimeoutMs ?? DEFAULT_POSTGRES_STATEMENT_TIMEOUT_MS,
    3_600_000,
  );
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const target = `${redact(url)} schema ${schema}`;

  const pg = await loadDriver();
  const config: PoolConfig = {
    connectionString: url.href,
    max: poolSize,
    connectionTimeoutMillis: connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    // Idle pooled connections never keep the process alive.
    allowExitOnIdle: true,
    statement_timeout: statementTimeoutMs,
    // The client-side bound for a server that stopped answering; after the server's own timeout.
    query_timeout: statementTimeoutMs + connectTimeoutMs,
    application_name: options.applicationName ?? 'mtastsdb',
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8_OID && format !== 'binary'
          ? (v: string) => Number(v)
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  };
  const pool = new pg.Pool(config);
  // Connects only when a walk in lastUse order needs it.
  const listPool = new pg.Pool({ ...config, max: POSTGRES_LIST_SNAPSHOT_CONNECTIONS });
  // An idle connection that dies (server restart, terminated backend) is dropped by the pool; the
  // error must be handled here or it would crash the process.
  pool.on('error', (err) => logger.warn({ err, target }, 'postgres store: idle connection lost'));
  listPool.on('error', (err) => logger.warn({ err, target }, 'postgres store: idle connection lost'));
  const drift = new DriftReport(clock);
  try {
    const done = await migrate(pool, `"${schema}"`, schema, clock);
    if (done.recreated.length > 0) {
      const what = describeRepair(done);
      logger.warn(
        { target, recreated: done.recreated },
        `postgres store ${target}: ${what}: the schema version said migrated, but they were gone`,
      );
      drift.note(`postgres store ${target}: ${what}`);
    }
  } catch (err) {
    await Promise.all([pool.end(), listPool.end()]).catch(() => undefined);
    if (isMtaStsError(err)) {
      throw new MtaStsError(err.code, `postgres store ${target}: ${err.message}`, { cause: err });
    }
    throw new MtaStsError(errorCodeFor(err), `postgres store ${target}: cannot open: ${describe(err)}`, { cause: err });
  }
  return new PostgresStoreImpl(
    pool,
    listPool,
    poolSize,
    schema,
    target,
    logger,
    clock,
    options.policyMemoEntries,
    drift,
  );
}
