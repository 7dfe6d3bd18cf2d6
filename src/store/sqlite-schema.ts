/**
 * The SQLite schema as an ordered list of forward migrations. A database records the migrations
 * applied in `mtastsdb_schema`; opening applies the missing ones in one write transaction. A
 * migration is never edited once released: a change is a new entry at the end.
 */

/** One forward step of the schema. */
export interface SqliteMigration {
  /** 1, 2, 3… in order, without gaps. */
  readonly version: number;
  readonly description: string;
  /** Statements run in the migration's transaction. */
  readonly sql: string;
}

/** The version table, created before any migration runs. */
export const SQLITE_VERSION_TABLE_SQL = `CREATE TABLE IF NOT EXISTS mtastsdb_schema (
  version INTEGER PRIMARY KEY NOT NULL,
  description TEXT NOT NULL,
  applied INTEGER NOT NULL
) STRICT`;

/** Every migration, oldest first. */
export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    description: 'policies table, keyed by domain, with the lastUse index',
    // WITHOUT ROWID: the domain is the key, so a lookup reads one b-tree instead of an index plus
    // the table. Times are integer milliseconds since the epoch. STRICT rejects mistyped values.
    sql: `
CREATE TABLE policies (
  domain TEXT PRIMARY KEY NOT NULL,
  inserted INTEGER NOT NULL,
  valid_end INTEGER NOT NULL,
  last_update INTEGER NOT NULL,
  last_use INTEGER NOT NULL,
  backoff INTEGER NOT NULL CHECK (backoff IN (0, 1)),
  record_id TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
  max_age INTEGER NOT NULL,
  policy_text TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX policies_last_use ON policies (last_use DESC, domain ASC);
`,
  },
  {
    version: 2,
    description: 'refresh leases and the lastUpdate index for the refresher',
    sql: `
ALTER TABLE policies ADD COLUMN lease_owner TEXT;
ALTER TABLE policies ADD COLUMN lease_until INTEGER;
CREATE INDEX policies_last_update ON policies (last_update);
`,
  },
];

/** The version a database has after every migration. */
export const SQLITE_SCHEMA_VERSION = SQLITE_MIGRATIONS.length;

/** A table or index as the latest migration leaves it, with a statement that recreates it. */
export interface SqliteCurrentObject {
  readonly type: 'table' | 'index';
  readonly name: string;
  /** Idempotent (`IF NOT EXISTS`). */
  readonly sql: string;
}

/**
 * The objects of {@link SQLITE_SCHEMA_VERSION}, tables before their indexes. A database whose
 * version table says migrated but which lacks one of them (dropped by hand) gets it back, empty,
 * from here. Must equal what the migrations build (a test compares the two); a migration that
 * changes a table changes its entry here too.
 */
export const SQLITE_CURRENT_OBJECTS: readonly SqliteCurrentObject[] = [
  {
    type: 'table',
    name: 'policies',
    sql: `CREATE TABLE IF NOT EXISTS policies (
  domain TEXT PRIMARY KEY NOT NULL,
  inserted INTEGER NOT NULL,
  valid_end INTEGER NOT NULL,
  last_update INTEGER NOT NULL,
  last_use INTEGER NOT NULL,
  backoff INTEGER NOT NULL CHECK (backoff IN (0, 1)),
  record_id TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
  max_age INTEGER NOT NULL,
  policy_text TEXT NOT NULL,
  lease_owner TEXT,
  lease_until INTEGER
) STRICT, WITHOUT ROWID`,
  },
  {
    type: 'index',
    name: 'policies_last_use',
    sql: 'CREATE INDEX IF NOT EXISTS policies_last_use ON policies (last_use DESC, domain ASC)',
  },
  {
    type: 'index',
    name: 'policies_last_update',
    sql: 'CREATE INDEX IF NOT EXISTS policies_last_update ON policies (last_update)',
  },
];
