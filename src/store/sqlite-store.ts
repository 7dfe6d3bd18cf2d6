/**
 * The SQLite policy store (better-sqlite3, loaded only when a SQLite store is opened).
 *
 * Durability and sharing: WAL with `synchronous=NORMAL`, so a committed write survives a process
 * crash (SIGKILL) and readers never wait for the writer; a power loss may roll back the last
 * transactions but never corrupts the file. A busy timeout makes writers of several processes
 * queue instead of failing at once.
 *
 * Faults: every driver error becomes a coded {@link MtaStsError}. A file or file system
 * that turns read-only, or a full disk, fails writes and keeps reads working. A connection that had
 * to fall back to read-only at open is reopened on the next write, so writes resume when the fault
 * clears. A clean close switches the file back to a rollback journal, so a closed database can be
 * read from read-only media (a WAL database needs a writable `-shm` file next to it).
 */
import { chmod, mkdir, open as openFile, stat } from 'node:fs/promises';
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { MtaStsError, isMtaStsError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { yieldToEventLoop } from '../event-loop.js';
import { silentLogger } from '../logger.js';
import type { Logger } from '../logger.js';
import type { ListOptions, PolicyRecord, PolicyStore } from './policy-store.js';
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
import { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION, SQLITE_VERSION_TABLE_SQL } from './sqlite-schema.js';

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** The database file, or `:memory:`. Its directory is created (mode 0770) and the file (mode 0660) when missing. */
  readonly path: string;
  /** How long a write waits for another process's write lock before `ERR_MTASTSDB_STORE_BUSY`. Default 5000. */
  readonly busyTimeoutMs?: number;
  /** Open read-only: nothing is created or migrated, every write fails with `ERR_MTASTSDB_STORE_READONLY`. */
  readonly readonly?: boolean;
  /** Entries of the policy-text memo (parsed policies reused across reads). Default 4096; 0 turns it off. */
  readonly policyMemoEntries?: number;
  /** SQLite's page cache of the connection, KiB (`PRAGMA cache_size`). Default {@link DEFAULT_SQLITE_CACHE_KIB}. */
  readonly cacheSizeKiB?: number;
  /** Where degraded modes (read-only fallback, reopen) are reported. Default silent. */
  readonly logger?: Logger;
  /** Stamps applied migrations. Default the system clock. */
  readonly clock?: Clock;
}

/** A SQLite {@link PolicyStore}, with a bulk insert for imports and benchmarks. */
export interface SqliteStore extends PolicyStore {
  readonly kind: 'sqlite';
  /** The absolute path of the file, or `:memory:`. */
  readonly path: string;
  /**
   * Writes many records in one transaction, each with the newest-wins rule of `put`.
   * Returns how many were written.
   */
  putMany(records: Iterable<PolicyRecord>): Promise<number>;
}

/** Default busy timeout. */
export const DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 5000;
/**
 * Default page cache, KiB. better-sqlite3 builds SQLite with 16,000 KiB (SQLite's own default is
 * 2,000), which a daemon on a large store fills and keeps: 15.6 MiB of its RSS (our target: ≤ 150 MB
 * with 1,000,000 policies). Lookups are random point reads whose leaves rarely repeat, so the bigger
 * cache buys nothing: measured on 1,000,000 records, random gets, a hot set of 1,000 and 1,000-row
 * `touch` batches ran at the same speed with 16,000, 4,000 and 2,000 KiB. 4 MiB holds the b-tree's
 * interior pages and a hot set.
 */
export const DEFAULT_SQLITE_CACHE_KIB = 4096;
/** The 16-byte magic string at the start of every SQLite 3 file. */
const SQLITE_MAGIC = 'SQLite format 3\0';

type Database = BetterSqlite3.Database;
type Statement = BetterSqlite3.Statement;
type DatabaseConstructor = typeof BetterSqlite3;

/** The driver error fields we read. */
interface SqliteError {
  readonly code?: unknown;
  readonly message?: unknown;
}

function sqliteCode(err: unknown): string {
  const code = (err as SqliteError | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** SQLite's primary result code (`SQLITE_BUSY` for `SQLITE_BUSY_SNAPSHOT`). */
function primaryCode(err: unknown): string {
  const m = /^SQLITE_[A-Z]+/.exec(sqliteCode(err));
  return m === null ? '' : m[0];
}

function errorCodeFor(err: unknown): ErrorCode {
  switch (primaryCode(err)) {
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return 'ERR_MTASTSDB_STORE_BUSY';
    case 'SQLITE_CORRUPT':
    case 'SQLITE_NOTADB':
      return 'ERR_MTASTSDB_STORE_CORRUPT';
    case 'SQLITE_READONLY':
      return 'ERR_MTASTSDB_STORE_READONLY';
    default:
      // SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_PERM, …: the operator has to look.
      return 'ERR_MTASTSDB_STORE';
  }
}

function describe(err: unknown): string {
  const code = sqliteCode(err);
  const message = (err as SqliteError | null)?.message;
  const text = typeof message === 'string' ? message : String(err);
  return code === '' ? text : `${text} (${code})`;
}

/** Maps a driver error to a coded error that names the file and the operation. */
function storeError(path: string, op: string, err: unknown): MtaStsError {
  if (isMtaStsError(err)) return err;
  const code = errorCodeFor(err);
  const hint =
    code === 'ERR_MTASTSDB_STORE_CORRUPT'
      ? ' (the file is damaged or not an mtastsdb database; move it away to start an empty cache)'
      : code === 'ERR_MTASTSDB_STORE_BUSY'
        ? ' (another process holds the database lock)'
        : '';
  return new MtaStsError(code, `sqlite store ${path}: ${op} failed: ${describe(err)}${hint}`, { cause: err });
}

function corrupt(path: string, why: string): never {
  throw new MtaStsError(
    'ERR_MTASTSDB_STORE_CORRUPT',
    `sqlite store ${path}: ${why} (the file is damaged or not an SQLite database; move it away to start an empty cache)`,
  );
}

function nonEmpty(path: string): boolean {
  try {
    return statSync(path).size > 0;
  } catch {
    return false;
  }
}

/**
 * Reads the 100-byte header before SQLite sees the file. SQLite itself accepts a truncated file
 * and only fails (or silently misses rows) when a query reaches a lost page, so a file shorter
 * than its header's page count is reported here, naming the file. The check is skipped while a
 * WAL file has content: recovery may legitimately rewrite the tail.
 */
function checkHeader(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return; // missing: created later; unreadable: the driver's error says why
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return; // SQLite treats an empty file as an empty database
    const header = Buffer.alloc(100);
    const n = readSync(fd, header, 0, 100, 0);
    if (n < 100 || header.toString('latin1', 0, 16) !== SQLITE_MAGIC) corrupt(path, 'not an SQLite 3 database');
    const raw = header.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      corrupt(path, `invalid page size ${raw} in the header`);
    }
    if (nonEmpty(`${path}-wal`)) return;
    const changeCounter = header.readUInt32BE(24);
    const pages = header.readUInt32BE(28);
    const validFor = header.readUInt32BE(92);
    if (size % pageSize !== 0)
      corrupt(path, `truncated: ${size} bytes is not a whole number of ${pageSize}-byte pages`);
    if (pages > 0 && validFor === changeCounter && size < pages * pageSize) {
      corrupt(path, `truncated: the header counts ${pages} pages of ${pageSize} bytes, the file has ${size} bytes`);
    }
  } finally {
    closeSync(fd);
  }
}

/** Creates missing directories with mode 0770 and a missing file with mode 0660 (despite the umask). */
async function prepareFile(path: string): Promise<void> {
  const dir = dirname(path);
  let first: string | undefined;
  try {
    first = await mkdir(dir, { recursive: true, mode: 0o770 });
  } catch (err) {
    throw new MtaStsError(
      'ERR_MTASTSDB_STORE',
      `sqlite store ${path}: cannot create directory ${dir}: ${describe(err)}`,
      {
        cause: err,
      },
    );
  }
  if (first !== undefined) {
    // mkdir's mode is filtered by the umask; set it on every directory we created.
    for (let d = dir; ; d = dirname(d)) {
      await chmod(d, 0o770);
      if (d === first || dirname(d) === d) break;
    }
  }
  try {
    const fh = await openFile(path, 'wx', 0o660);
    try {
      await fh.chmod(0o660);
    } finally {
      await fh.close();
    }
  } catch (err) {
    // EEXIST is the usual case; on a read-only file system an existing file is fine too.
    const exists = await stat(path).then(
      () => true,
      () => false,
    );
    if (!exists) {
      throw new MtaStsError('ERR_MTASTSDB_STORE', `sqlite store ${path}: cannot create the file: ${describe(err)}`, {
        cause: err,
      });
    }
  }
}

async function loadDriver(): Promise<DatabaseConstructor> {
  try {
    const mod = (await import('better-sqlite3')) as unknown as { default: DatabaseConstructor };
    return mod.default;
  } catch (err) {
    throw new MtaStsError('ERR_MTASTSDB_STORE', `the SQLite store needs the better-sqlite3 package: ${describe(err)}`, {
      cause: err,
    });
  }
}

const COLUMNS_IN = 'domain, inserted, valid_end, last_update, last_use, backoff, record_id, mode, max_age, policy_text';

/** Rows of `lastUse` written per transaction by `touch` (about a millisecond on a large file). */
export const TOUCH_CHUNK_ROWS = 128;

/** A connection with the `list` page statements prepared on it (keyed by {@link listSql}'s key). */
interface PageSource {
  readonly db: Database;
  readonly pages: Map<string, Statement>;
}

/** A connection and its prepared statements; replaced as a whole when the store reopens. */
interface Conn {
  readonly db: Database;
  readonly get: Statement;
  readonly put: Statement;
  readonly touch: Statement;
  readonly del: Statement;
  readonly count: Statement;
  readonly claim: Statement;
  readonly release: Statement;
  readonly pages: Map<string, Statement>;
}

function prepare(db: Database): Conn {
  return {
    db,
    get: db.prepare(`SELECT ${ROW_COLUMNS} FROM policies WHERE domain = ?`),
    // Newest wins on lastUpdate; lastUse never moves back (a refresher writing a record it read
    // before a use must not erase that use). Leases are left alone: see claimRefresh.
    put: db.prepare(
      `INSERT INTO policies (${COLUMNS_IN}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (domain) DO UPDATE SET
         inserted = excluded.inserted, valid_end = excluded.valid_end, last_update = excluded.last_update,
         last_use = max(policies.last_use, excluded.last_use), backoff = excluded.backoff,
         record_id = excluded.record_id, mode = excluded.mode, max_age = excluded.max_age,
         policy_text = excluded.policy_text
       WHERE excluded.last_update >= policies.last_update`,
    ),
    touch: db.prepare('UPDATE policies SET last_use = ? WHERE domain = ? AND last_use < ?'),
    del: db.prepare('DELETE FROM policies WHERE domain = ?'),
    count: db.prepare('SELECT count(*) AS n FROM policies').pluck(),
    claim: db.prepare(
      `UPDATE policies SET lease_owner = ?, lease_until = ?
       WHERE domain = ? AND last_update < ? AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)`,
    ),
    release: db.prepare(
      'UPDATE policies SET lease_owner = NULL, lease_until = NULL WHERE domain = ? AND lease_owner = ?',
    ),
    pages: new Map(),
  };
}

/** Reads the schema version without writing (works on read-only files). 0 when never migrated. */
function schemaVersion(db: Database): number {
  const hasTable = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'mtastsdb_schema'").get();
  if (hasTable === undefined) return 0;
  const v = db.prepare('SELECT max(version) FROM mtastsdb_schema').pluck().get();
  return typeof v === 'number' ? v : 0;
}

/**
 * Applies the missing migrations of `migrations` in one IMMEDIATE transaction (so two processes
 * opening a new file at once migrate it once). Exported for tests that build old databases.
 *
 * @internal Not in the published types: its parameter is a driver type (better-sqlite3's types
 *   are not a dependency of the package).
 */
export function migrateSqlite(
  db: Database,
  path: string,
  clock: Clock,
  migrations: readonly {
    readonly version: number;
    readonly description: string;
    readonly sql: string;
  }[] = SQLITE_MIGRATIONS,
): number {
  const latest = migrations.length;
  const current = schemaVersion(db);
  if (current > SQLITE_SCHEMA_VERSION) {
    throw new MtaStsError(
      'ERR_MTASTSDB_STORE',
      `sqlite store ${path}: schema version ${current} is newer than this mtastsdb knows (${SQLITE_SCHEMA_VERSION}); upgrade mtastsdb`,
    );
  }
  if (current >= latest) return current;
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(SQLITE_VERSION_TABLE_SQL);
    const now = schemaVersion(db); // another process may have migrated while we waited for the lock
    const insert = db.prepare('INSERT INTO mtastsdb_schema (version, description, applied) VALUES (?, ?, ?)');
    for (const m of migrations) {
      if (m.version <= now) continue;
      db.exec(m.sql);
      insert.run(m.version, m.description, clock.now());
    }
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw err;
  }
  return latest;
}

function listSql(filter: ListFilter, after: boolean): { key: string; sql: string } {
  const where: string[] = [];
  const byDomain = filter.order === 'domain';
  if (after) {
    // Keyset pagination. On (last_use DESC, domain ASC): the range on last_use uses the index, the
    // second term skips the rows of the previous page that share its last_use. On domain: the
    // primary key, which no write moves.
    where.push(byDomain ? 'domain > @d' : 'last_use <= @lu AND (last_use < @lu OR domain > @d)');
  }
  if (filter.updatedBefore !== undefined) where.push('last_update < @updatedBefore');
  if (filter.usedBefore !== undefined) where.push('last_use < @usedBefore');
  if (filter.validEndBefore !== undefined) where.push('valid_end < @validEndBefore');
  const key = `${byDomain ? 'd' : 'u'}${after ? 1 : 0}${filter.updatedBefore !== undefined ? 1 : 0}${filter.usedBefore !== undefined ? 1 : 0}${filter.validEndBefore !== undefined ? 1 : 0}`;
  const sql = `SELECT ${ROW_COLUMNS} FROM policies ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY ${byDomain ? 'domain ASC' : 'last_use DESC, domain ASC'} LIMIT @limit`;
  return { key, sql };
}

/** One page of `list` on `src` (`limit` -1: every matching row). */
function readPageOn(src: PageSource, filter: ListFilter, after: PageCursor | undefined, limit: number): PolicyRow[] {
  const { key, sql } = listSql(filter, after !== undefined);
  let stmt = src.pages.get(key);
  if (stmt === undefined) {
    stmt = src.db.prepare(sql);
    src.pages.set(key, stmt);
  }
  const params: Record<string, number | string> = { limit };
  if (after !== undefined) {
    if (filter.order !== 'domain') params.lu = after.lastUse;
    params.d = after.domain;
  }
  if (filter.updatedBefore !== undefined) params.updatedBefore = filter.updatedBefore;
  if (filter.usedBefore !== undefined) params.usedBefore = filter.usedBefore;
  if (filter.validEndBefore !== undefined) params.validEndBefore = filter.validEndBefore;
  return stmt.all(params) as PolicyRow[];
}

class SqliteStoreImpl implements SqliteStore {
  readonly kind = 'sqlite' as const;
  readonly path: string;
  private conn: Conn | undefined;
  private readonly memo: PolicyMemo;
  /** The read connections of the snapshot walks in progress (closed by `close`). */
  private readonly readers = new Set<Database>();

  constructor(
    conn: Conn,
    path: string,
    private readonly readonly: boolean,
    private readonly reconnect: (() => Conn) | undefined,
    private readonly logger: Logger,
    memoEntries: number | undefined,
    /** Opens another connection on the file for one snapshot walk; undefined for `:memory:`. */
    private readonly openReader: (() => Database) | undefined,
  ) {
    this.conn = conn;
    this.path = path;
    this.memo = new PolicyMemo(memoEntries);
  }

  private c(): Conn {
    if (this.conn === undefined) throw closedError('sqlite');
    return this.conn;
  }

  /** Runs a read; errors become coded errors. */
  private read<T>(op: string, fn: (c: Conn) => T): T {
    const c = this.c();
    try {
      return fn(c);
    } catch (err) {
      throw storeError(this.path, op, err);
    }
  }

  /**
   * Runs a write. A write refused as read-only may come from a connection that fell back to
   * read-only at open (a read-only file or file system then): reopen once and retry, so writes
   * resume when the fault has cleared.
   */
  private write<T>(op: string, fn: (c: Conn) => T): T {
    const c = this.c();
    try {
      return fn(c);
    } catch (err) {
      if (primaryCode(err) === 'SQLITE_READONLY' && !this.readonly && this.reconnect !== undefined) {
        const fresh = this.tryReopen(c);
        if (fresh !== undefined) {
          try {
            return fn(fresh);
          } catch (err2) {
            throw storeError(this.path, op, err2);
          }
        }
      }
      throw storeError(this.path, op, err);
    }
  }

  private tryReopen(old: Conn): Conn | undefined {
    let fresh: Conn;
    try {
      fresh = this.reconnect!();
    } catch (err) {
      this.logger.debug({ err, path: this.path }, 'sqlite store: reopen for writing failed');
      return undefined;
    }
    this.conn = fresh;
    try {
      old.db.close();
    } catch {
      // the old handle is dropped either way
    }
    this.logger.info({ path: this.path }, 'sqlite store: reopened the database');
    return fresh;
  }

  async get(domain: string): Promise<PolicyRecord | undefined> {
    checkDomainKey(domain);
    const row = this.read('get', (c) => c.get.get(domain) as PolicyRow | undefined);
    return row === undefined ? undefined : decodeRow(row, this.memo);
  }

  async put(record: PolicyRecord): Promise<boolean> {
    this.c();
    const e = encodeRecord(record, this.memo);
    return this.write('put', (c) => c.put.run(...putParams(e, e.backoff ? 1 : 0)).changes === 1);
  }

  async putMany(records: Iterable<PolicyRecord>): Promise<number> {
    this.c();
    const encoded: EncodedRecord[] = [];
    for (const r of records) encoded.push(encodeRecord(r, this.memo));
    return this.write('putMany', (c) =>
      c.db.transaction(() => {
        let n = 0;
        for (const e of encoded) n += c.put.run(...putParams(e, e.backoff ? 1 : 0)).changes;
        return n;
      })(),
    );
  }

  async touch(uses: ReadonlyArray<{ readonly domain: string; readonly lastUse: Date }>): Promise<void> {
    this.c();
    const batch = collapseUses(uses);
    // better-sqlite3 blocks the event loop while it writes: a thousand random rows of a large file
    // take tens of milliseconds, which every lookup waiting behind them would feel. Write a short
    // transaction at a time and let other work run between them.
    for (let i = 0; i < batch.length; i += TOUCH_CHUNK_ROWS) {
      if (i > 0) await yieldToEventLoop();
      const chunk = batch.slice(i, i + TOUCH_CHUNK_ROWS);
      this.write('touch', (c) =>
        c.db.transaction(() => {
          for (const [domain, t] of chunk) c.touch.run(t, domain, t);
        })(),
      );
    }
  }

  async delete(domain: string): Promise<boolean> {
    checkDomainKey(domain);
    return this.write('delete', (c) => c.del.run(domain).changes === 1);
  }

  async count(): Promise<number> {
    return this.read('count', (c) => c.count.get() as number);
  }

  list(options?: ListOptions): AsyncIterable<PolicyRecord> {
    return listPages(options, async (filter) => this.listReader(filter), this.memo);
  }

  private listReader(filter: ListFilter): ListReader {
    this.c();
    // The primary key never moves: short reads on the main connection, no snapshot held.
    if (filter.order === 'domain') {
      return {
        readPage: async (f, after) => this.read('list', (c) => readPageOn(c, f, after, f.pageSize)),
        end: async () => {},
      };
    }
    return this.openReader === undefined ? this.materialisedReader(filter) : this.snapshotReader(this.openReader);
  }

  /**
   * `lastUse` order on a file: a second connection holds one read transaction for the whole walk
   * (WAL lets it read its snapshot while the main connection writes), and the keyset pages run
   * inside it, so rows that `touch` or `put` move between pages are still seen once. The snapshot
   * starts at the first page. While it is held the WAL cannot be checkpointed past it.
   */
  private snapshotReader(open: () => Database): ListReader {
    let db: Database;
    try {
      db = open();
    } catch (err) {
      throw storeError(this.path, 'list', err);
    }
    const src: PageSource = { db, pages: new Map() };
    try {
      db.exec('BEGIN');
    } catch (err) {
      db.close();
      throw storeError(this.path, 'list', err);
    }
    this.readers.add(db);
    return {
      readPage: async (f, after) => {
        if (this.conn === undefined || !db.open) throw closedError('sqlite');
        try {
          return readPageOn(src, f, after, f.pageSize);
        } catch (err) {
          throw storeError(this.path, 'list', err);
        }
      },
      end: async () => {
        this.readers.delete(db);
        try {
          // Closing ends the read transaction; nothing was written in it.
          if (db.open) db.close();
        } catch (err) {
          this.logger.debug({ err, path: this.path }, 'sqlite store: closing a list reader failed');
        }
      },
    };
  }

  /**
   * `lastUse` order on `:memory:`: there is no second connection to hold a snapshot on (and a read
   * transaction on the only one would take in its writes), so every matching row is read at once
   * in one statement, which nothing can interleave with (better-sqlite3 is synchronous), and handed
   * out page by page. The rows sit in memory for the walk, next to a database that is in memory
   * anyway.
   */
  private materialisedReader(filter: ListFilter): ListReader {
    const rows = this.read('list', (c) => readPageOn(c, filter, undefined, -1));
    let at = 0;
    return {
      readPage: async (f) => {
        this.c();
        const page = rows.slice(at, at + f.pageSize);
        at += page.length;
        return page;
      },
      end: async () => {
        rows.length = 0;
      },
    };
  }

  async claimRefresh(
    domain: string,
    claim: { readonly owner: string; readonly now: Date; readonly leaseUntil: Date; readonly updatedBefore: Date },
  ): Promise<boolean> {
    checkDomainKey(domain);
    const { owner } = claim;
    if (typeof owner !== 'string' || owner === '') {
      throw new MtaStsError('ERR_MTASTS_USAGE', 'claimRefresh: owner must be a non-empty string');
    }
    const now = claimTime('now', claim.now);
    const until = claimTime('leaseUntil', claim.leaseUntil);
    const before = claimTime('updatedBefore', claim.updatedBefore);
    // One statement: the due check and the lease are one atomic step.
    return this.write('claimRefresh', (c) => c.claim.run(owner, until, domain, before, now, owner).changes === 1);
  }
  async releaseRefresh(domain: string, owner: string): Promise<void> {
    checkDomainKey(domain);
    this.write('releaseRefresh', (c) => c.release.run(domain, owner));
  }

  async close(): Promise<void> {
    const c = this.conn;
    if (c === undefined) return;
    this.conn = undefined;
    // Walks still open end here (their next page fails with ERR_MTASTSDB_CLOSED), before the
    // journal mode switch below, which needs the file to itself.
    for (const db of this.readers) {
      try {
        db.close();
      } catch {
        // dropped either way
      }
    }
    this.readers.clear();
    try {
      if (!this.readonly && this.path !== ':memory:' && c.db.open) {
        // Leave a rollback-journal file behind, readable from read-only media; skipped (at once,
        // no busy wait) while another process still has the database open.
        c.db.pragma('busy_timeout = 0');
        try {
          c.db.pragma('journal_mode = DELETE');
        } catch {
          // another connection holds it, or the file is read-only: it stays in WAL mode
        }
      }
    } finally {
      c.db.close();
    }
  }
}

/**
 * Opens (creating and migrating as needed) a SQLite policy store.
 *
 * @throws MtaStsError `ERR_MTASTSDB_STORE_CORRUPT` (naming the file) for a damaged or foreign
 *   file, `ERR_MTASTSDB_STORE_BUSY` when another process holds the lock past the busy timeout,
 *   `ERR_MTASTSDB_STORE_READONLY` when a read-only database needs a migration, `ERR_MTASTSDB_STORE`
 *   otherwise, `ERR_MTASTS_USAGE` for bad options.
 */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  const { path: given, readonly = false } = options;
  if (typeof given !== 'string' || given === '') {
    throw new MtaStsError('ERR_MTASTS_USAGE', 'openSqliteStore: path must be a non-empty string');
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_SQLITE_BUSY_TIMEOUT_MS;
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 600_000) {
    throw new MtaStsError('ERR_MTASTS_USAGE', 'openSqliteStore: busyTimeoutMs must be an integer from 0 to 600000');
  }
  const cacheKiB = options.cacheSizeKiB ?? DEFAULT_SQLITE_CACHE_KIB;
  if (!Number.isSafeInteger(cacheKiB) || cacheKiB < 64 || cacheKiB > 4_194_304) {
    throw new MtaStsError('ERR_MTASTS_USAGE', 'openSqliteStore: cacheSizeKiB must be an integer from 64 to 4194304');
  }
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const memory = given === ':memory:';
  if (memory && readonly) throw new MtaStsError('ERR_MTASTS_USAGE', 'openSqliteStore: :memory: cannot be read-only');
  const path = memory ? given : resolve(given);

  const Database = await loadDriver();
  if (!memory) {
    if (!readonly) await prepareFile(path);
    checkHeader(path);
  }

  const connect = (mustExist: boolean): Database => {
    const db = new Database(path, { readonly, fileMustExist: readonly || mustExist, timeout: busyTimeoutMs });
    try {
      if (!memory && !readonly) {
        try {
          db.pragma('journal_mode = WAL');
        } catch (err) {
          // A read-only file or file system: read in whatever journal mode the file has.
          if (primaryCode(err) !== 'SQLITE_READONLY') throw err;
          logger.warn({ path }, 'sqlite store: the database is read-only; writes will fail until it is writable');
        }
      }
      db.pragma('synchronous = NORMAL');
      // Negative: a size in KiB rather than in pages.
      db.pragma(`cache_size = -${cacheKiB}`);
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  };

  let db: Database;
  // Another process closing the file (its last connection checkpoints and removes the WAL) can
  // answer an opening connection SQLITE_BUSY without SQLite's busy handler waiting: wait here,
  // within the same bound.
  const openDeadline = Date.now() + busyTimeoutMs;
  for (;;) {
    try {
      db = connect(false);
      break;
    } catch (err) {
      if (primaryCode(err) !== 'SQLITE_BUSY' || Date.now() >= openDeadline) throw storeError(path, 'open', err);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  try {
    const version = schemaVersion(db);
    if (readonly || version > SQLITE_SCHEMA_VERSION) {
      if (version > SQLITE_SCHEMA_VERSION) migrateSqlite(db, path, clock); // throws the clear "newer" error
      if (version < SQLITE_SCHEMA_VERSION) {
        throw new MtaStsError(
          'ERR_MTASTSDB_STORE_READONLY',
          `sqlite store ${path}: schema version ${version} needs migrating to ${SQLITE_SCHEMA_VERSION}, but the store was opened read-only`,
        );
      }
    } else if (version < SQLITE_SCHEMA_VERSION) {
      migrateSqlite(db, path, clock);
    }
    const conn = prepare(db);
    const reconnect = memory
      ? undefined
      : (): Conn => {
          const fresh = connect(true);
          try {
            return prepare(fresh);
          } catch (err) {
            fresh.close();
            throw err;
          }
        };
    const openReader = memory
      ? undefined
      : (): Database => {
          // Read-only: a list reader never writes; the main connection keeps the file in WAL mode.
          const reader = new Database(path, { readonly: true, fileMustExist: true, timeout: busyTimeoutMs });
          try {
            reader.pragma(`cache_size = -${cacheKiB}`);
          } catch (err) {
            reader.close();
            throw err;
          }
          return reader;
        };
    return new SqliteStoreImpl(conn, path, readonly, reconnect, logger, options.policyMemoEntries, openReader);
  } catch (err) {
    db.close();
    if (isMtaStsError(err)) throw err;
    const mapped = storeError(path, 'open', err);
    if (mapped.code === 'ERR_MTASTSDB_STORE_READONLY') {
      throw new MtaStsError(
        'ERR_MTASTSDB_STORE_READONLY',
        `sqlite store ${path}: the database needs its schema created or migrated, but it is read-only: ${describe(err)}`,
        { cause: err },
      );
    }
    throw mapped;
  }
}
