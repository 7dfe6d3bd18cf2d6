/**
 * The PostgreSQL store when its tables are dropped under it (parallel to sqlite-drift.test.ts):
 * DROP TABLE on a closed schema and on an open store, the rate limit of the repair, and the whole
 * schema dropped. Each test in its own schema on the real server (MTASTSDB_TEST_POSTGRES).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { captureLogger } from '../../test/helpers/cache-fixture.js';
import { ManualClock } from '../../test/helpers/manual-clock.js';
import { postgresSuite, postgresTestUrl, withAdmin, withSchema } from '../../test/helpers/postgres.js';
import { makeRecord, rejectsWith } from '../../test/helpers/store-contract.js';
import { POSTGRES_CURRENT_OBJECTS, postgresVersionTableSql } from './postgres-schema.js';
import { openPostgresStore } from './postgres-store.js';
import { STORE_PROBLEM_REPORT_MS, TABLE_REPAIR_INTERVAL_MS } from './store-drift.js';

const skip = await postgresSuite();

/** Columns, indexes and constraints of `policies` in `schema`, without the schema's name. */
async function shape(schema: string): Promise<unknown> {
  return withAdmin(async (c) => {
    const columns = await c.query(
      `SELECT column_name, ordinal_position, data_type, is_nullable, collation_name, column_default
       FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'policies' ORDER BY ordinal_position`,
      [schema],
    );
    const indexes = await c.query(
      `SELECT indexname, replace(indexdef, $2, 'S.') AS def FROM pg_indexes
       WHERE schemaname = $1 AND tablename = 'policies' ORDER BY indexname`,
      [schema, `${schema}.`],
    );
    const constraints = await c.query(
      `SELECT contype, pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE conrelid = to_regclass($1) ORDER BY contype, def`,
      [`"${schema}".policies`],
    );
    return {
      columns: columns.rows,
      indexes: indexes.rows,
      constraints: constraints.rows,
    };
  });
}

async function drop(sql: string): Promise<void> {
  await withAdmin(async (c) => {
    await c.query('SET lock_timeout = 5000');
    await c.query(sql);
  });
}

describe('postgres store: drift', skip, () => {
  test('the current definitions build exactly what the migrations build', async () => {
    await withSchema(async (migrated) => {
      await (await openPostgresStore({ url: postgresTestUrl, schema: migrated })).close();
      await withSchema(async (built) => {
        await withAdmin(async (c) => {
          await c.query(`CREATE SCHEMA "${built}"`);
          await c.query(postgresVersionTableSql(`"${built}"`));
          for (const o of POSTGRES_CURRENT_OBJECTS) await c.query(o.sql(`"${built}"`));
          for (const o of POSTGRES_CURRENT_OBJECTS) await c.query(o.sql(`"${built}"`)); // idempotent
        });
        assert.deepEqual(await shape(built), await shape(migrated));
      });
    });
  });

  test('DROP TABLE on a closed schema: recreated at the next open, a warning names it, get and put work', async () => {
    await withSchema(async (schema) => {
      const first = await openPostgresStore({ url: postgresTestUrl, schema });
      await first.put(makeRecord('gone.test'));
      await first.close();
      const before = await shape(schema);
      await drop(`DROP TABLE "${schema}".policies`);
      const logger = captureLogger();
      const store = await openPostgresStore({ url: postgresTestUrl, schema, logger });
      try {
        const warn = logger.entries.find((e) => e.level === 'warn' && e.msg.includes('recreated'));
        assert.ok(warn !== undefined, 'a warning at open');
        assert.match(warn.msg, /table policies \(empty\) and indexes policies_last_use, policies_last_update/);
        assert.ok(warn.msg.includes(schema));
        assert.match(store.problem() ?? '', /recreated the missing table policies/);
        assert.equal(await store.get('gone.test'), undefined);
        assert.equal(await store.put(makeRecord('back.test')), true);
        assert.equal((await store.get('back.test'))?.domain, 'back.test');
        assert.deepEqual(await shape(schema), before, 'recreated as the migrations built it');
      } finally {
        await store.close();
      }
    });
  });

  test('DROP TABLE while open: the next calls recover; again within 10 s fails, later works', async () => {
    await withSchema(async (schema) => {
      const clock = new ManualClock(Date.now());
      const logger = captureLogger();
      const store = await openPostgresStore({ url: postgresTestUrl, schema, logger, clock });
      try {
        await store.put(makeRecord('a.test'));
        assert.equal(store.problem(), null);
        await drop(`DROP TABLE "${schema}".policies`);
        // Several calls at once share one repair.
        const [got, put, n] = await Promise.all([store.get('a.test'), store.put(makeRecord('b.test')), store.count()]);
        assert.equal(got, undefined);
        assert.equal(put, true);
        assert.ok(n === 0 || n === 1);
        assert.equal((await store.get('b.test'))?.domain, 'b.test');
        assert.match(store.problem() ?? '', /recreated the missing table policies \(empty\)/);
        assert.equal(logger.entries.filter((e) => e.level === 'warn' && e.msg.includes('recreated')).length, 1);

        await drop(`DROP TABLE "${schema}".policies`);
        await rejectsWith(store.put(makeRecord('c.test')), 'ERR_MTASTSDB_STORE');
        await clock.advance(TABLE_REPAIR_INTERVAL_MS);
        assert.equal(await store.put(makeRecord('c.test')), true);
        assert.equal(await store.count(), 1);
        await clock.advance(STORE_PROBLEM_REPORT_MS);
        assert.equal(store.problem(), null);
      } finally {
        await store.close();
      }
    });
  });

  test('the whole schema dropped while open: recreated with its tables, writes work', async () => {
    await withSchema(async (schema) => {
      const logger = captureLogger();
      const store = await openPostgresStore({ url: postgresTestUrl, schema, logger });
      try {
        await store.put(makeRecord('a.test'));
        await drop(`DROP SCHEMA "${schema}" CASCADE`);
        assert.equal(await store.put(makeRecord('b.test')), true);
        assert.equal(await store.count(), 1);
        assert.match(store.problem() ?? '', /the schema was missing/);
        const versions = await withAdmin(
          async (c) => (await c.query(`SELECT version FROM "${schema}".mtastsdb_schema ORDER BY version`)).rows,
        );
        assert.deepEqual(
          versions.map((r: { version: number }) => r.version),
          [1, 2],
        );
      } finally {
        await store.close();
      }
    });
  });
});
