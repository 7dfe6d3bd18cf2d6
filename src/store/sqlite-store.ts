/**
 * The SQLite policy store (better-sqlite3, loaded only when a SQLite store is opened).
 *
 * Durability and sharing: WAL with `synchronous=FULL` (the default; option `synchronous`): the WAL
 * is fsynced at every commit, so a write whose promise has resolved survives a process crash
 * (SIGKILL), an OS crash and a power loss (as far as the disk honours fsync). With
 * `synchronous: 'normal'` it survives a process crash, but a power loss or OS crash may roll back
 * the transactions committed since the last checkpoint; the file is never corrupted either way.
 * Readers never wait for the writer. A busy timeout makes writers of several processes queue
 * instead of failing at once.
 *
 * Faults: every driver error becomes a coded {@link MtaStsError}. A file or file system
 * that turns read-only, or a full disk, fails writes and keeps reads working. A connection that had
 * to fall back to read-only at open is reopened on the next write, so writes resume when the fault
 * clears. A clean close switches the file back to a rollback journal, so a closed database can be
 * read from read-only media (a WAL database needs a writable `-shm` file next to it).
 *
 * Drift: the file is identified by (device, inode) at open. Every write, and a read at most once
 * per {@link FILE_CHECK_INTERVAL_MS}, compares it with what is at the path now; a file deleted or
 * replaced (renamed over) under the store is logged as an error naming the path, the old
 * connection is closed without harming the new file's WAL (see `retireConnection`), the file
 * at the path is opened as it is (a missing one is created with the schema), and `problem()`
 * reports it for an hour. Writes acknowledged after the check went to the new file; what was
 * written to the old one since it was deleted is lost with it. A table dropped under a migrated
 * database is recreated empty, at open and at run time (at most once per
 * {@link TABLE_REPAIR_INTERVAL_MS}), and the call retried once.
 */
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  unlinkSync,
} from 'node:fs';
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
import {
  SQLITE_CURRENT_OBJECTS,
  SQLITE_MIGRATIONS,
  SQLITE_SCHEMA_VERSION,
  SQLITE_VERSION_TABLE_SQL,
} from './sqlite-schema.js';
import { DriftReport, FILE_CHECK_INTERVAL_MS, TABLE_REPAIR_INTERVAL_MS, namedObjects } from './store-drift.js';

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
  /** Stamps applied migrations; times the drift checks and reports. Default the system clock. */
  readonly clock?: Clock;
  /**
   * `full` (default): every commit is fsynced, so an acknowledged write survives a power loss.
   * `normal`: faster commits (see BENCHMARKS.md), but a power loss or OS crash may roll back the
   * writes since the last checkpoint (a process crash loses nothing).
   */
  readonly synchronous?: 'full' | 'normal';
}

/** A SQLite {@link PolicyStore}, with a bulk insert for imports and benchmarks. */
export interface SqliteStore extends PolicyStore {
  readonly kind: 'sqlite';
  /** The absolute path of the file, or `:memory:`. */
  readonly path: string;
  /** What the store repaired in the last hour (see {@link PolicyStore.problem}), or null. */
  problem(): string | null;
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

/** Which file a path names: device and inode. */
interface FileId {
  readonly dev: number;
  readonly ino: number;
}

/** The identity of the file at `path`; null when there is none, undefined when it cannot be told (EACCES, EIO). */
function fileId(path: string): FileId | null | undefined {
  try {
    const st = statSync(path);
    return { dev: st.dev, ino: st.ino };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? null : undefined;
  }
}

function sameFile(a: FileId | null | undefined, b: FileId | null | undefined): boolean {
  return a != null && b != null && a.dev === b.dev && a.ino === b.ino;
}

/** The files a connection opened: the database and, in WAL mode, its `-wal` and `-shm` files. */
interface FileIds {
  readonly main: FileId | null | undefined;
  readonly wal: FileId | null | undefined;
  readonly shm: FileId | null | undefined;
}

function fileIds(path: string): FileIds {
  return { main: fileId(path), wal: fileId(`${path}-wal`), shm: fileId(`${path}-shm`) };
}

/**
 * Closes a connection whose file is no longer the one at `path`, without harming the file that is.
 *
 * SQLite's close normally checkpoints and then deletes `path-wal` and `path-shm` by name; it skips
 * both when it sees the file moved or deleted (pager `databaseIsUnmoved`, SQLite ≥ 3.8.3), so the
 * close cannot delete the WAL of a file another process created at the path since. It also leaves
 * our own `-wal` and `-shm` behind when they are still at the path (only the main file was deleted
 * or renamed over): a new file must not start with them — SQLite would apply the old file's WAL
 * frames to it — so those whose (device, inode) is still ours are removed. A `-wal` of another
 * inode is the new file's and is left alone.
 */
function retireConnection(db: Database, path: string, ids: FileIds, logger: Logger): void {
  try {
    db.close();
  } catch {
    // the old handle is dropped either way
  }
  for (const [name, mine] of [
    [`${path}-wal`, ids.wal],
    [`${path}-shm`, ids.shm],
  ] as const) {
    if (!sameFile(fileId(name), mine)) continue;
    try {
      unlinkSync(name);
    } catch (err) {
      logger.error(
        { err, path: name },
        "sqlite store: cannot remove the old database file's WAL; the new file may read it",
      );
    }
  }
}

/** The current schema's objects missing from the database (a table dropped by hand). */
function missingObjects(db: Database): string[] {
  const have = new Set(db.prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'index')").pluck().all());
  return SQLITE_CURRENT_OBJECTS.filter((o) => !have.has(o.name)).map((o) => o.name);
}

/**
 * Recreates, empty, the objects a migrated database lacks, in one IMMEDIATE transaction (so two
 * processes repairing at once repair once). Returns their names.
 */
function recreateMissing(db: Database): string[] {
  if (missingObjects(db).length === 0) return [];
  db.exec('BEGIN IMMEDIATE');
  try {
    const missing = missingObjects(db);
    for (const o of SQLITE_CURRENT_OBJECTS) if (missing.includes(o.name)) db.exec(o.sql);
    db.exec('COMMIT');
    return missing;
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

/** A statement failed because a table is gone (SQLite has no finer code than SQLITE_ERROR for it). */
function isNoSuchTable(err: unknown): boolean {
  const message = (err as SqliteError | null)?.message;
  return primaryCode(err) === 'SQLITE_ERROR' && typeof message === 'string' && message.startsWith('no such table');
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

/**
 * Creates missing directories with mode 0770 and a missing file with mode 0660 (despite the umask).
 * Synchronous: it also runs when a deleted file is recreated in the middle of a call.
 */
function prepareFile(path: string): void {
  const dir = dirname(path);
  let first: string | undefined;
  try {
    first = mkdirSync(dir, { recursive: true, mode: 0o770 });
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
      chmodSync(d, 0o770);
      if (d === first || dirname(d) === d) break;
    }
  }
  try {
    const fd = openSync(path, 'wx', 0o660);
    try {
      fchmodSync(fd, 0o660);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    // EEXIST is the usual case; on a read-only file system an existing file is fine too.
    const id = fileId(path);
    if (id === null || id === undefined) {
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

/** A connection opened on the file at the path, with what identifies the file and what had to be recreated. */
interface Opened {
  readonly conn: Conn;
  /** Undefined for `:memory:`. */
  readonly ids: FileIds | undefined;
  /** Objects the schema version claimed but that were missing (recreated empty). */
  readonly recreated: readonly string[];
}

class SqliteStoreImpl implements SqliteStore {
  readonly kind = 'sqlite' as const;
  readonly path: string;
  /** Null while there is none: the file changed under the store and reopening it failed. */
  private conn: Conn | null;
  private closed = false;
  private readonly memo: PolicyMemo;
  /** The read connections of the snapshot walks in progress (closed by `close`). */
  private readonly readers = new Set<Database>();
  /** What the open connection's files are (undefined for `:memory:`). */
  private ids: FileIds | undefined;
  private checkedAt = Number.NEGATIVE_INFINITY;
  /** Why the last reopen failed, and when it was tried (retried at most once per FILE_CHECK_INTERVAL_MS). */
  private reopenError: MtaStsError | undefined;
  private reopenedAt = Number.NEGATIVE_INFINITY;
  private repairedAt = Number.NEGATIVE_INFINITY;
  private readonly drift: DriftReport;

  constructor(
    opened: Opened,
    path: string,
    private readonly readonly: boolean,
    /** Opens the file at the path again (creating it when missing unless read-only); undefined for `:memory:`. */
    private readonly reopen: (() => Opened) | undefined,
    private readonly logger: Logger,
    private readonly clock: Clock,
    memoEntries: number | undefined,
    /** Opens another connection on the file for one snapshot walk; undefined for `:memory:`. */
    private readonly openReader: (() => Database) | undefined,
  ) {
    this.conn = opened.conn;
    this.ids = opened.ids;
    this.path = path;
    this.memo = new PolicyMemo(memoEntries);
    this.drift = new DriftReport(clock);
    this.noteRecreated(opened.recreated, 'open');
  }

  problem(): string | null {
    return this.drift.current();
  }

  private assertOpen(): void {
    if (this.closed) throw closedError('sqlite');
  }

  /** The connection, after the drift check (every write; a read at most once per FILE_CHECK_INTERVAL_MS). */
  private c(write: boolean): Conn {
    this.assertOpen();
    this.checkFile(write);
    return this.conn ?? this.reopenLost();
  }

  /** Compares the file at the path with the one open; a deleted or replaced file is reopened. */
  private checkFile(force: boolean): void {
    if (this.ids === undefined || this.conn === null) return;
    const now = this.clock.now();
    if (!force && Math.abs(now - this.checkedAt) < FILE_CHECK_INTERVAL_MS) return;
    this.checkedAt = now;
    const id = fileId(this.path);
    // undefined: cannot tell (permissions, I/O error); SQLite's own errors say more.
    if (id === undefined || sameFile(id, this.ids.main)) return;
    const what = id === null ? 'deleted' : 'replaced';
    this.logger.error(
      { path: this.path, change: what },
      `sqlite store ${this.path}: the database file was ${what} while the store had it open; ` +
        `what was written to the old file since is lost with it; opening ${id === null ? 'a new, empty file' : 'the file now at the path'}`,
    );
    this.drift.note(`sqlite store ${this.path}: the database file was ${what} under the running store and reopened`);
    const old = this.conn;
    this.conn = null;
    retireConnection(old.db, this.path, this.ids, this.logger);
    this.reopenedAt = Number.NEGATIVE_INFINITY;
    this.reopenError = undefined;
  }

  /** Opens the file at the path after the old one went; throws (the same error for a second) when it cannot. */
  private reopenLost(): Conn {
    const now = this.clock.now();
    if (this.reopenError !== undefined && Math.abs(now - this.reopenedAt) < FILE_CHECK_INTERVAL_MS) {
      throw this.reopenError;
    }
    this.reopenedAt = now;
    let opened: Opened;
    try {
      opened = this.reopen!();
    } catch (err) {
      const mapped = storeError(this.path, 'reopen', err);
      this.reopenError = new MtaStsError(
        mapped.code,
        `sqlite store ${this.path}: the database file changed under the store and cannot be opened again: ${mapped.message}`,
        { cause: err },
      );
      this.logger.error({ path: this.path, err: this.reopenError }, 'sqlite store: reopening the database failed');
      throw this.reopenError;
    }
    this.reopenError = undefined;
    this.conn = opened.conn;
    this.ids = opened.ids;
    this.checkedAt = now;
    this.logger.warn({ path: this.path }, 'sqlite store: reopened the database file now at the path');
    return opened.conn;
  }

  /**
   * A table gone under a migrated database: recreate it (at most once per
   * TABLE_REPAIR_INTERVAL_MS) on the same connection, with fresh statements. Undefined when not now.
   */
  private repairTables(c: Conn, op: string): Conn | undefined {
    const now = this.clock.now();
    if (this.readonly || Math.abs(now - this.repairedAt) < TABLE_REPAIR_INTERVAL_MS) return undefined;
    this.repairedAt = now;
    let fresh: Conn;
    let recreated: string[];
    try {
      recreated = recreateMissing(c.db);
      fresh = prepare(c.db);
    } catch (err) {
      this.logger.error({ err, path: this.path, op }, 'sqlite store: a table is missing and recreating it failed');
      return undefined;
    }
    this.noteRecreated(recreated, op);
    this.conn = fresh;
    return fresh;
  }

  /** Logs and reports (`problem()`) the objects recreated at open (`op` 'open') or at run time. */
  private noteRecreated(recreated: readonly string[], op: string): void {
    if (recreated.length === 0) return;
    const what = `recreated the missing ${namedObjects(SQLITE_CURRENT_OBJECTS, recreated)}`;
    this.logger.warn(
      { path: this.path, op, recreated },
      `sqlite store ${this.path}: ${what}: the schema version said migrated, but they were gone (the data in them is lost; the cache refills as domains are asked for)`,
    );
    this.drift.note(`sqlite store ${this.path}: ${what}`);
  }

  /** Runs a read; errors become coded errors. A missing table is recreated and the read retried once. */
  private read<T>(op: string, fn: (c: Conn) => T): T {
    return this.run(op, false, fn);
  }

  /**
   * Runs a write. A write refused as read-only may come from a connection that fell back to
   * read-only at open (a read-only file or file system then): reopen once and retry, so writes
   * resume when the fault has cleared. A missing table is recreated and the write retried once.
   */
  private write<T>(op: string, fn: (c: Conn) => T): T {
    return this.run(op, true, fn);
  }

  /** {@link read} and {@link write}: one try, and one more on a connection that may fix the failure. */
  private run<T>(op: string, write: boolean, fn: (c: Conn) => T): T {
    const c = this.c(write);
    try {
      return fn(c);
    } catch (err) {
      let fresh: Conn | undefined;
      if (write && primaryCode(err) === 'SQLITE_READONLY' && !this.readonly && this.reopen !== undefined) {
        fresh = this.tryReopen(c);
      } else if (isNoSuchTable(err)) {
        fresh = this.repairTables(c, op);
      }
      if (fresh === undefined) throw storeError(this.path, op, err);
      try {
        return fn(fresh);
      } catch (err2) {
        throw storeError(this.path, op, err2);
      }
    }
  }

  private tryReopen(old: Conn): Conn | undefined {
    let fresh: Opened;
    try {
      fresh = this.reopen!();
    } catch (err) {
      this.logger.debug({ err, path: this.path }, 'sqlite store: reopen for writing failed');
      return undefined;
    }
    this.conn = fresh.conn;
    this.ids = fresh.ids;
    try {
      old.db.close();
    } catch {
      // the old handle is dropped either way
    }
    this.logger.info({ path: this.path }, 'sqlite store: reopened the database');
    return fresh.conn;
  }

  async get(domain: string): Promise<PolicyRecord | undefined> {
    checkDomainKey(domain);
    const row = this.read('get', (c) => c.get.get(domain) as PolicyRow | undefined);
    return row === undefined ? undefined : decodeRow(row, this.memo);
  }

  async put(record: PolicyRecord): Promise<boolean> {
    this.assertOpen();
    const e = encodeRecord(record, this.memo);
    return this.write('put', (c) => c.put.run(...putParams(e, e.backoff ? 1 : 0)).changes === 1);
  }

  async putMany(records: Iterable<PolicyRecord>): Promise<number> {
    this.assertOpen();
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
    this.assertOpen();
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
    this.c(false);
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
        if (this.closed || !db.open) throw closedError('sqlite');
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
        this.assertOpen();
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
    if (this.closed) return;
    this.closed = true;
    const c = this.conn;
    this.conn = null;
    if (c === null) return;
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
    const ids = this.ids;
    if (ids !== undefined) {
      const now = fileId(this.path);
      if (now !== undefined && !sameFile(now, ids.main)) {
        // The file changed since the last check: switching the journal mode would delete the
        // WAL at the path by name, which may be the new file's now.
        this.logger.error({ path: this.path }, `sqlite store ${this.path}: the database file changed before close`);
        retireConnection(c.db, this.path, ids, this.logger);
        return;
      }
    }
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

  const synchronous = options.synchronous ?? 'full';
  if (synchronous !== 'full' && synchronous !== 'normal') {
    throw new MtaStsError('ERR_MTASTS_USAGE', "openSqliteStore: synchronous must be 'full' or 'normal'");
  }

  const Database = await loadDriver();
  const prepareIfFile = (): void => {
    if (memory) return;
    if (!readonly) prepareFile(path);
    checkHeader(path);
  };
  prepareIfFile();

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
      // FULL in WAL mode: the WAL is fsynced at each commit, so an acknowledged write survives a
      // power loss (NORMAL syncs only at checkpoints). The cost is in BENCHMARKS.md.
      db.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      // Negative: a size in KiB rather than in pages.
      db.pragma(`cache_size = -${cacheKiB}`);
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  };

  /** Schema checks, migration and repair of an open connection; closes it when they fail. */
  const setUp = (db: Database): Opened => {
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
      let recreated: string[] = [];
      if (readonly) {
        const missing = missingObjects(db);
        if (missing.length > 0) {
          throw new MtaStsError(
            'ERR_MTASTSDB_STORE_READONLY',
            `sqlite store ${path}: ${missing.join(', ')} missing, though the schema version says ${version}, and the store was opened read-only (open it writable once to recreate them)`,
          );
        }
      } else {
        // The version table may say migrated while a table is gone (DROP TABLE by hand).
        recreated = recreateMissing(db);
      }
      const conn = prepare(db);
      // After the first read: in WAL mode the -wal and -shm files exist now.
      return { conn, ids: memory ? undefined : fileIds(path), recreated };
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
  const opened = setUp(db);
  // Synchronous: it runs inside a call that found the file deleted or replaced. A missing file is
  // created (with the schema) unless the store is read-only.
  const reopen = memory
    ? undefined
    : (): Opened => {
        prepareIfFile();
        return setUp(connect(false));
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
  return new SqliteStoreImpl(opened, path, readonly, reopen, logger, clock, options.policyMemoEntries, openReader);
}
