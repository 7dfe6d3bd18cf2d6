/**
 * The PostgreSQL schema as an ordered list of forward migrations, parallel to sqlite-schema.ts.
 * Statements take the quoted schema name, so every object is schema-qualified and a pooled
 * connection never depends on its `search_path`. A migration is never edited once released.
 */

/** One forward step of the schema. */
export interface PostgresMigration {
  readonly version: number;
  readonly description: string;
  /** Statements for the quoted schema name `s`, run in the migration's transaction. */
  readonly sql: (s: string) => string;
}

/** The version table, created before any migration runs. */
export function postgresVersionTableSql(s: string): string {
  return `CREATE TABLE IF NOT EXISTS ${s}.mtastsdb_schema (
  version integer PRIMARY KEY,
  description text NOT NULL,
  applied bigint NOT NULL
)`;
}

/** Every migration, oldest first. */
export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    description: 'policies table, keyed by domain, with the lastUse index',
    // COLLATE "C": domains compare by code point, as in SQLite, whatever the database locale, and
    // the b-tree compares bytes. Times are bigint milliseconds since the epoch.
    sql: (s) => `
CREATE TABLE ${s}.policies (
  domain text COLLATE "C" PRIMARY KEY,
  inserted bigint NOT NULL,
  valid_end bigint NOT NULL,
  last_update bigint NOT NULL,
  last_use bigint NOT NULL,
  backoff boolean NOT NULL,
  record_id text NOT NULL,
  mode text NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
  max_age bigint NOT NULL,
  policy_text text NOT NULL
);
CREATE INDEX policies_last_use ON ${s}.policies (last_use DESC, domain ASC);
`,
  },
  {
    version: 2,
    description: 'refresh leases and the lastUpdate index for the refresher',
    sql: (s) => `
ALTER TABLE ${s}.policies ADD COLUMN lease_owner text, ADD COLUMN lease_until bigint;
CREATE INDEX policies_last_update ON ${s}.policies (last_update);
`,
  },
];

/** The version a database has after every migration. */
export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS.length;

/** A table or index as the latest migration leaves it, with a statement that recreates it. */
export interface PostgresCurrentObject {
  readonly type: 'table' | 'index';
  readonly name: string;
  /** Idempotent (`IF NOT EXISTS`), for the quoted schema name `s`. */
  readonly sql: (s: string) => string;
}

/**
 * The objects of {@link POSTGRES_SCHEMA_VERSION}, tables before their indexes, parallel to
 * `SQLITE_CURRENT_OBJECTS`: a schema whose version table says migrated but which lacks one of them
 * (dropped by hand) gets it back, empty, from here. Must equal what the migrations build (a test
 * compares the two); a migration that changes a table changes its entry here too.
 */
export const POSTGRES_CURRENT_OBJECTS: readonly PostgresCurrentObject[] = [
  {
    type: 'table',
    name: 'policies',
    sql: (s) => `CREATE TABLE IF NOT EXISTS ${s}.policies (
  domain text COLLATE "C" PRIMARY KEY,
  inserted bigint NOT NULL,
  valid_end bigint NOT NULL,
  last_update bigint NOT NULL,
  last_use bigint NOT NULL,
  backoff boolean NOT NULL,
  record_id text NOT NULL,
  mode text NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
  max_age bigint NOT NULL,
  policy_text text NOT NULL,
  lease_owner text,
  lease_until bigint
)`,
  },
  {
    type: 'index',
    name: 'policies_last_use',
    sql: (s) => `CREATE INDEX IF NOT EXISTS policies_last_use ON ${s}.policies (last_use DESC, domain ASC)`,
  },
  {
    type: 'index',
    name: 'policies_last_update',
    sql: (s) => `CREATE INDEX IF NOT EXISTS policies_last_update ON ${s}.policies (last_update)`,
  },
];
