/**
 * PostgreSQL for tests: the server URL, a reachability check, and throw-away schemas so parallel
 * test files never share tables.
 */
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import pg from 'pg';
import { inCI } from './ci.js';

/** The test server: `MTASTSDB_TEST_POSTGRES` (set in CI), else the local trust-auth server. */
export const postgresTestUrl = process.env.MTASTSDB_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Whether the server answers `SELECT 1` within `timeoutMs`; `why` explains a failure. */
export async function postgresReachable(
  url: string = postgresTestUrl,
  timeoutMs = 3000,
): Promise<{ readonly ok: boolean; readonly why: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { ok: true, why: '' };
  } catch (err) {
    return { ok: false, why: `PostgreSQL at ${url} is unreachable: ${(err as Error).message}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Options for a `describe` that needs PostgreSQL. When the server is unreachable: in CI a failing
 * test says so (a missing server fails the run); elsewhere the suite is skipped, the reason printed.
 */
export async function postgresSuite(): Promise<{ readonly skip?: string }> {
  const reach = await postgresReachable();
  if (reach.ok) return {};
  if (inCI) {
    test('PostgreSQL is reachable (required in CI)', () => {
      throw new Error(reach.why);
    });
  } else {
    console.log(`# skipped: ${reach.why}`);
  }
  return { skip: reach.why };
}

/** Runs `fn` on a short-lived admin connection. */
export async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>, url: string = postgresTestUrl): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A fresh schema name, unique across processes. */
export function uniqueSchemaName(prefix = 't'): string {
  return `mtastsdb_${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** Drops a test schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  await withAdmin((c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
}

/**
 * A unique schema name for one test and its cleanup. The schema itself is created by whoever opens
 * a store on it (the store migrates on open); `drop` removes it.
 */
export function testSchema(prefix?: string): { readonly schema: string; drop(): Promise<void> } {
  const schema = uniqueSchemaName(prefix);
  return { schema, drop: () => dropSchema(schema) };
}

/** Runs `fn` with a unique schema and drops the schema afterwards, whatever happens. */
export async function withSchema<T>(fn: (schema: string) => Promise<T>, prefix?: string): Promise<T> {
  const { schema, drop } = testSchema(prefix);
  try {
    return await fn(schema);
  } finally {
    await drop();
  }
}

/** Terminates every server backend whose application_name is `applicationName`; returns how many. */
export async function terminateBackends(applicationName: string): Promise<number> {
  return withAdmin(async (c) => {
    const res = await c.query<{ ok: boolean }>(
      'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
      [applicationName],
    );
    return res.rows.filter((r) => r.ok).length;
  });
}

/** Backend pids of connections named `applicationName`. */
export async function backendPids(applicationName: string): Promise<number[]> {
  return withAdmin(async (c) => {
    const res = await c.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid',
      [applicationName],
    );
    return res.rows.map((r) => r.pid);
  });
}
